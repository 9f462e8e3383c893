"""Writes validated items to Kafka and waits until the broker acknowledged them (acks=all)."""

from __future__ import annotations

import logging
import threading
import time

from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError

from config import Settings
from streams import counts
from streams.counts import PRODUCED
from streams.messages import KEY, Outgoing, batch_records
from streams.partitioning import Crc32Partitioner, partition_of
from streams.topics import admin_client, client_options

logger = logging.getLogger(__name__)


class KafkaUnavailable(Exception):
    """Kafka did not take the write in time; nothing is known to be lost, the client retries."""


def batch_by_partition(
    kind: str, items: list[dict], received_at, partitions: list[int]
) -> list[Outgoing]:
    """The items as format-2 records, one or more per partition, each item in the
    partition its own key gives (where a format-1 record of it would go)."""
    groups: dict[int, list[dict]] = {}
    key = KEY[kind]
    for item in items:
        groups.setdefault(partition_of(item[key].encode(), partitions), []).append(item)
    return [
        record
        for partition, group in groups.items()
        for record in batch_records(kind, group, received_at, partition)
    ]


def write_options() -> dict:
    """How the collector's producer writes: acknowledged by every in-sync replica, without
    duplicates on retry, in compressed batches."""
    return {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "compression_type": "lz4",
        "partitioner": Crc32Partitioner(),
    }


class Publisher:
    """One producer per process, created on first use (after gunicorn forks) and shared by
    the request threads: kafka-python's producer is thread-safe."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topic = settings.kafka_topic_transactions
        counts.declare(produces=(self.topic,))
        self.timeout = settings.collector_kafka_timeout_seconds
        self._producer: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None
        self._lock = threading.Lock()
        self._admin_lock = threading.Lock()

    def producer(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                timeout_ms = int(self.timeout * 1000)
                try:
                    self._producer = KafkaProducer(
                        **client_options(self.settings, "collector"),
                        **write_options(),
                        max_block_ms=timeout_ms,
                        request_timeout_ms=max(timeout_ms, 1000),
                        delivery_timeout_ms=max(timeout_ms * 2, 5000),
                        bootstrap_timeout_ms=timeout_ms,
                    )
                except KafkaError as exc:
                    raise KafkaUnavailable(f"cannot connect to Kafka: {exc}") from exc
            return self._producer

    def publish_batch(self, kind: str, items: list[dict], received_at) -> None:
        """The items as format-2 records (batch_by_partition); returns once every record
        is acknowledged."""
        try:
            partitions = sorted(self.producer().partitions_for(self.topic))
        except KafkaError as exc:
            raise KafkaUnavailable(str(exc)) from exc
        self.publish(batch_by_partition(kind, items, received_at, partitions))

    def publish(self, messages: list[Outgoing]) -> None:
        """Returns once every message is acknowledged; raises KafkaUnavailable otherwise."""
        deadline = time.monotonic() + self.timeout
        producer = self.producer()
        try:
            futures = [
                producer.send(
                    self.topic,
                    key=m.key,
                    value=m.value,
                    headers=m.headers,
                    partition=m.partition,
                )
                for m in messages
            ]
            producer.flush(timeout=max(0.0, deadline - time.monotonic()))
            for future in futures:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
        except KafkaError as exc:
            logger.warning("kafka write failed: %r", exc)
            raise KafkaUnavailable(str(exc)) from exc
        PRODUCED.labels(self.topic).inc(len(messages))

    def ready(self) -> bool:
        """Asks the broker (the producer's cached metadata would say yes while it is down)."""
        with self._admin_lock:
            try:
                if self._admin is None:
                    self._admin = admin_client(
                        self.settings,
                        client_id="collector-ready",
                        request_timeout_ms=int(self.timeout * 1000),
                    )
                described = self._admin.describe_topics([self.topic])
                return bool(described and described[0]["error_code"] == 0)
            except KafkaError:
                if self._admin is not None:
                    self._admin.close()
                    self._admin = None
                return False

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=self.timeout)
