"""What the services export beyond their own counters, after a short load on real
servers: the accepted-to-stored latency of every stored transaction, the broker's queue
depth and the Kafka consumer lag (beat's /metrics), each against the figures read
directly from PostgreSQL and Kafka."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest
import requests
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from streams.lag import LagCollector
from streams.topics import admin_client
from tests.helpers import wait_until
from tests.integration.pipeline import Pipeline


@pytest.fixture(scope="module")
def pipeline(settings, admin_engine, migrated_template, tmp_path_factory):
    p = Pipeline(settings, admin_engine, migrated_template, tmp_path_factory.mktemp("metrics"))
    p.start("worker", "beat", "processor")
    p.wait_ready("worker", "beat", "processor")
    yield p
    p.close()


def metrics(pipeline: Pipeline, name: str) -> str:
    port = pipeline.health_ports[name]
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def sample(text: str, series: str) -> float | None:
    """The value of one series, written as in the exposition (`name{labels}`)."""
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def new_product(pipeline: Pipeline) -> str:
    sku = f"sku-{uuid.uuid4().hex[:8]}"
    body = {"product_id": sku, "name": "Mug", "category": "Kitchen", "price": "5.00"}
    assert pipeline.post("products", body).status_code == 202
    return sku


def load(pipeline: Pipeline, count: int) -> list[str]:
    sku = new_product(pipeline)
    now = datetime.now(UTC).isoformat()
    ids = [f"m-{uuid.uuid4().hex[:12]}" for _ in range(count)]
    items = [{"transaction_id": i, "product_id": sku, "quantity": 1, "timestamp": now} for i in ids]
    for start in range(0, count, 500):
        answer = pipeline.post("transactions/batch", {"transactions": items[start : start + 500]})
        assert answer.status_code == 202, answer.get_json()
    pipeline.wait_stored(ids, timeout=60)
    return ids


def produced(topic: str) -> float:
    """The collector's count (it runs in this process here)."""
    return REGISTRY.get_sample_value("kafka_messages_produced_total", {"topic": topic}) or 0


def records_on(pipeline: Pipeline) -> int:
    """The records the topic holds: the sum of its partitions' end offsets."""
    consumer = KafkaConsumer(bootstrap_servers=pipeline.kafka)
    partitions = [
        TopicPartition(pipeline.topic, p) for p in consumer.partitions_for_topic(pipeline.topic)
    ]
    ends = sum(consumer.end_offsets(partitions).values())
    consumer.close()
    return ends


def test_the_accepted_to_stored_histogram_counts_every_stored_transaction(pipeline):
    before, on_topic = produced(pipeline.topic), records_on(pipeline)
    ids = load(pipeline, 1500)
    pipeline.wait_idle()
    # Every record the collector wrote is counted once: the product's, and a batch's
    # per partition (3 batches of 500 items on 3 partitions: 3 to 9 records).
    written = records_on(pipeline) - on_topic
    assert produced(pipeline.topic) - before == written
    assert 1 + 3 <= written <= 1 + 9

    def counted():
        text = metrics(pipeline, "worker")
        return sample(text, "ingest_accepted_to_stored_seconds_count") == len(ids) and text

    text = wait_until(counted, timeout=20, what="the histogram to count every row")
    # Every row took less than the slowest bucket, and the sum is that of the rows' own
    # times (stored within seconds here).
    assert sample(text, 'ingest_accepted_to_stored_seconds_bucket{le="900.0"}') == len(ids)
    total = sample(text, "ingest_accepted_to_stored_seconds_sum")
    assert 0 < total < 60 * len(ids)
    # The processor timed each poll's hand-off to the workers.
    processor = metrics(pipeline, "processor")
    assert sample(processor, "processor_handoff_seconds_count") >= 1
    assert sample(processor, "processor_max_inflight_chunks") == (
        pipeline.settings.processor_max_inflight_chunks
    )


def test_beat_exports_the_consumer_lag_of_the_processors_group(pipeline):
    load(pipeline, 300)
    pipeline.wait_idle()
    group = pipeline.settings.processor_group
    text = metrics(pipeline, "beat")
    assert sample(text, "kafka_lag_scrape_success") == 1
    labels = f'{{consumergroup="{group}",topic="{pipeline.topic}"}}'
    assert sample(text, f"kafka_consumergroup_lag_sum{labels}") == 0
    ends = sum(
        v for k, v in _series(text, "kafka_topic_partition_current_offset").items()
        if f'topic="{pipeline.topic}"' in k
    )  # fmt: skip
    # Every record on it was written by the collector (in this process), and counted.
    assert ends == produced(pipeline.topic) >= 2
    # The processor read every record of its topic once, and counted them by topic.
    processor = metrics(pipeline, "processor")
    assert sample(processor, f'kafka_messages_consumed_total{{topic="{pipeline.topic}"}}') == ends


def test_beat_exports_the_brokers_queue_depth(pipeline):
    """No worker: the chunks the processor hands out wait in kombu_message."""
    pipeline.stop("worker")
    try:
        load_without_waiting(pipeline, 30)

        def waiting():
            direct = pipeline.scalar(
                "SELECT count(*) FROM kombu_message m JOIN kombu_queue q ON q.id = m.queue_id"
                " WHERE m.visible AND q.name = 'ingest'"
            )
            exported = sample(metrics(pipeline, "beat"), 'celery_queue_length{queue="ingest"}')
            return direct > 0 and exported == direct

        wait_until(waiting, timeout=30, interval=0.5, what="the queue depth to match the table")
    finally:
        pipeline.start("worker")
    pipeline.wait_idle(timeout=60)


def load_without_waiting(pipeline: Pipeline, count: int) -> None:
    sku = new_product(pipeline)
    now = datetime.now(UTC).isoformat()
    for _ in range(count):
        item = {"transaction_id": f"q-{uuid.uuid4().hex[:12]}", "product_id": sku,
                "quantity": 1, "timestamp": now}  # fmt: skip
        assert pipeline.post("transactions", item).status_code == 202


def _series(text: str, name: str) -> dict[str, float]:
    return {
        labels: float(value)
        for labels, value in re.findall(rf"^{name}(\{{[^}}]*\}}) (\S+)$", text, re.M)
    }


def test_the_lag_gauges_match_the_offsets_read_directly(settings):
    """A group that committed part of a topic: the collector's figures against Kafka's."""
    topic, group = f"lag-{uuid.uuid4().hex[:8]}", f"lag-group-{uuid.uuid4().hex[:8]}"
    admin = admin_client(settings)
    admin.create_topics({topic: {"num_partitions": 2}}, wait_for_metadata=True)
    try:
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        for i in range(50):
            producer.send(topic, b"x", partition=i % 2)
        producer.flush()
        producer.close()
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=group,
            enable_auto_commit=False,
        )
        committed = {TopicPartition(topic, 0): 10, TopicPartition(topic, 1): 3}
        consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in committed.items()})
        ends = consumer.end_offsets(list(committed))
        consumer.close()

        registry = CollectorRegistry()
        registry.register(LagCollector(settings, [group]))
        text = generate_latest(registry).decode()
        lags = _series(text, "kafka_consumergroup_lag")
        for tp, offset in committed.items():
            # (The exposition writes labels in alphabetical order.)
            labels = f'{{consumergroup="{group}",partition="{tp.partition}",topic="{topic}"}}'
            assert lags[labels] == ends[tp] - offset
            assert _series(text, "kafka_consumergroup_current_offset")[labels] == offset
        total = sample(
            text, f'kafka_consumergroup_lag_sum{{consumergroup="{group}",topic="{topic}"}}'
        )
        assert total == sum(ends[tp] - o for tp, o in committed.items()) == 50 - 13
    finally:
        admin.delete_topics([topic])
        admin.close()
