"""Kafka stopped: the collector answers 503 with Retry-After within its bound, never 500,
and takes writes again once Kafka is back; a consumer that held its partition through the
outage reads again at once. Stops and starts the stack's own broker."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest
from kafka import KafkaConsumer

from streams.topics import admin_client, client_options
from tests.helpers import example_settings, stack_ctl, wait_until
from tests.integration.pipeline import INGEST_KEY
from web.ingestion.app import create_app

TIMEOUT = 2.0
# Clients that lived through the outage work again within this many seconds of the broker.
RECOVERY = 10.0


@pytest.fixture
def topic(settings):
    name = f"test-outage-{uuid.uuid4().hex[:10]}"
    admin = admin_client(settings)
    admin.create_topics({name: {"num_partitions": 1}}, wait_for_metadata=True)
    admin.close()
    yield name
    admin = admin_client(settings)
    admin.delete_topics([name])
    admin.close()


def kafka_answers(settings) -> bool:
    try:
        admin = admin_client(settings, request_timeout_ms=2000)
    except Exception:
        return False
    try:
        admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        admin.close()


def body() -> dict:
    return {
        "transaction_id": f"outage-{uuid.uuid4().hex}",
        "product_id": "sku-1",
        "quantity": 1,
        "timestamp": datetime.now(UTC).isoformat(),
    }


def read(consumer: KafkaConsumer, key: str, timeout: float) -> None:
    """Polls until the message with `key` has been read (as the services' loops poll)."""
    seen: set[str] = set()

    def got_it() -> bool:
        for records in consumer.poll(timeout_ms=200).values():
            seen.update(record.key.decode() for record in records)
        return key in seen

    wait_until(got_it, timeout=timeout, what=f"the consumer to read {key}")


def test_503_while_kafka_is_down_then_recovery(settings, topic):
    app_settings = example_settings(
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        kafka_topic_transactions=topic,
        collector_kafka_timeout_seconds=TIMEOUT,
    )
    running = create_app(app_settings).test_client()
    before = body()
    assert running.post("/api/v1/transactions", json=before, headers=INGEST_KEY).status_code == 202
    # A group consumer configured as the services' are, holding its partition.
    reader = KafkaConsumer(
        topic,
        **client_options(settings, "test-outage-reader"),
        group_id=f"{topic}-readers",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    read(reader, before["transaction_id"], timeout=30)

    stack_ctl("stop", "servers:kafka")
    try:
        cold = create_app(app_settings).test_client()
        for client in (running, cold):  # warm and cold producer
            started = time.monotonic()
            answer = client.post("/api/v1/transactions", json=body(), headers=INGEST_KEY)
            elapsed = time.monotonic() - started
            assert answer.status_code == 503, answer.get_json()
            assert answer.headers["Retry-After"].isdigit()
            assert "retry" in answer.get_json()["message"].lower()
            assert elapsed < TIMEOUT + 3, f"took {elapsed:.1f}s"
        assert running.get("/ready").status_code == 503
    finally:
        stack_ctl("start", "servers:kafka")
    cold.application.extensions["publisher"].close()
    wait_until(lambda: kafka_answers(settings), timeout=90, what="Kafka to come back")

    # The producer and the consumer that lived through the outage do not sit out a long
    # backoff once the broker answers (kafka-python's own bound is half a minute).
    after = body()
    wait_until(
        lambda: (
            running.post("/api/v1/transactions", json=after, headers=INGEST_KEY).status_code == 202
        ),
        timeout=RECOVERY,
        interval=0.5,
        what="a 202 after Kafka is back",
    )
    assert running.get("/ready").status_code == 200
    read(reader, after["transaction_id"], timeout=RECOVERY)
    reader.close()
    # Both writes that were answered 202 are on the topic.
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    keys = {record.key.decode() for record in consumer}
    consumer.close()
    running.application.extensions["publisher"].close()
    assert {before["transaction_id"], after["transaction_id"]} <= keys
