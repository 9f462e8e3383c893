"""Format-2 records (one per request and partition, many items) written straight onto the
topic: a bad item is rejected alone, named by its index, and replayed alone; a record
whose envelope is broken is set aside whole; format-1 records, as written before format 2
(and still by the single-item endpoints and replay), are read beside them; a replayed
record goes to the partition the collector gives its id."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.partitioner.default import murmur2

from streams.partitioning import partition_of
from streams.replay import REPLAY_HEADER, make_producer, replay
from tests.helpers import wait_until
from tests.integration.pipeline import ADMIN_KEY, Pipeline

NOW = datetime.now(UTC).replace(microsecond=0).isoformat()
BATCH = [("kind", b"transaction"), ("format", b"2")]


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def pipeline(settings, admin_engine, migrated_template, tmp_path):
    p = Pipeline(settings, admin_engine, migrated_template, tmp_path)
    p.start("worker", "processor")
    yield p
    p.close()


def seed_product(pipeline, price: str = "2.50") -> str:
    sku = uid("sku")
    body = {"product_id": sku, "name": "Cup", "category": "Kitchen", "price": price}
    assert pipeline.post("products", body).status_code == 202
    wait_until(
        lambda: pipeline.scalar("SELECT count(*) FROM products WHERE product_id = :p", p=sku),
        what="the product",
    )
    return sku


def sale(sku: str, prefix: str = "ok", **changes) -> dict:
    return {
        "transaction_id": uid(prefix),
        "product_id": sku,
        "quantity": 1,
        "total_amount": "2.50",
        "timestamp": NOW,
    } | changes


def batch_record(items: list) -> bytes:
    return orjson.dumps({"received_at": NOW, "items": items})


def send(pipeline, records: list[tuple[list, bytes | None]]) -> list[int]:
    """Writes the records to partition 0, in order; returns their offsets."""
    producer = KafkaProducer(bootstrap_servers=pipeline.kafka)
    futures = [
        producer.send(pipeline.topic, value=value, headers=headers, partition=0)
        for headers, value in records
    ]
    producer.flush()
    offsets = [f.get(timeout=10).offset for f in futures]
    producer.close()
    return offsets


def test_bad_items_of_a_batch_record_are_rejected_alone_and_one_is_replayed_alone(pipeline):
    sku = seed_product(pipeline)
    good = [sale(sku) for _ in range(4)]
    refused = sale(sku, "over", total_amount="99.00")  # above the list price
    items = [
        good[0],
        sale(sku, quantity=0),
        good[1],
        sale(sku, transaction_id="tx\x00"),
        refused,
        good[2],
        "not an object",
        good[3],
    ]
    (offset,) = send(pipeline, [([*BATCH, ("items", b"8")], batch_record(items))])
    stored = pipeline.wait_stored([g["transaction_id"] for g in good])
    assert sorted(r["kafka_item"] for r in stored.values()) == [0, 2, 5, 7]
    assert {r["kafka_offset"] for r in stored.values()} == {offset}
    rows = wait_until(
        lambda: r if len(r := pipeline.rows("SELECT * FROM rejected_transactions")) >= 4 else None,
        what="4 rejections",
    )
    by_item = {r["kafka_item"]: r for r in rows}
    assert sorted(by_item) == [1, 3, 4, 6] and len(rows) == 4
    assert {r["kafka_offset"] for r in rows} == {offset}
    assert [by_item[i]["reason"] for i in (1, 3, 4, 6)] == [
        "malformed_message",
        "malformed_message",
        "amount_above_list_price",
        "malformed_message",
    ]
    assert "quantity" in by_item[1]["details"]["problem"]
    assert "not a JSON object" in by_item[6]["details"]["problem"]
    # Each is kept as the single record it would have been: its fields and received_at.
    kept = orjson.loads(by_item[4]["raw_payload"])
    assert kept == refused | {"received_at": datetime.fromisoformat(NOW).isoformat()}
    assert orjson.loads(by_item[3]["raw_payload"])["transaction_id"] == "tx\x00"

    # The price was wrong: once it is fixed, that one item is replayed, and only it.
    assert (
        pipeline.post(
            "products", {"product_id": sku, "name": "Cup", "category": "Kitchen", "price": "99.00"}
        ).status_code
        == 202
    )
    wait_until(
        lambda: pipeline.scalar("SELECT price FROM products WHERE product_id = :p", p=sku) == 99,
        what="the new price",
    )
    answer = pipeline.post("rejected/replay", {"ids": [by_item[4]["id"]]}, headers=ADMIN_KEY)
    assert answer.status_code == 200 and answer.get_json()["replayed"] == [by_item[4]["id"]]
    pipeline.wait_stored([refused["transaction_id"]])
    left = pipeline.rows("SELECT kafka_item, status FROM rejected_transactions ORDER BY 1")
    assert [(r["kafka_item"], r["status"]) for r in left] == [
        (1, "open"),
        (3, "open"),
        (4, "replayed"),
        (6, "open"),
    ]
    assert pipeline.scalar("SELECT count(*) FROM transactions") == 5
    pipeline.wait_idle()


def test_a_batch_record_whose_envelope_is_broken_is_set_aside_whole(pipeline):
    sku = seed_product(pipeline)
    broken = {
        b"\xff\xfe not json": "",
        b'[{"transaction_id": "x"}]': "must be",
        orjson.dumps({"received_at": NOW, "items": []}): "non-empty",
        orjson.dumps({"received_at": "yesterday", "items": [sale(sku)]}): "received_at",
        orjson.dumps({"received_at": NOW, "items": [sale(sku)], "more": 1}): "must be",
        b"": "",
    }
    after = [sale(sku) for _ in range(3)]
    offsets = send(
        pipeline,
        [([*BATCH, ("items", b"99")], raw) for raw in broken]
        + [([*BATCH, ("items", b"3")], batch_record(after))],
    )
    pipeline.wait_stored([a["transaction_id"] for a in after])
    rows = wait_until(
        lambda: (
            r
            if len(r := pipeline.rows("SELECT * FROM rejected_transactions")) >= len(broken)
            else None
        ),
        what="a rejection per broken record",
    )
    assert len(rows) == len(broken)
    by_offset = {r["kafka_offset"]: r for r in rows}
    assert sorted(by_offset) == offsets[:-1]
    for offset, (raw, problem) in zip(offsets, broken.items(), strict=False):
        row = by_offset[offset]
        assert bytes(row["raw_payload"]) == raw and row["kafka_item"] == 0
        assert row["reason"] == "malformed_message" and problem in row["details"]["problem"]
    assert pipeline.scalar("SELECT count(*) FROM transactions") == len(after)
    pipeline.wait_idle()


def test_format_1_records_are_read_beside_format_2_ones_and_an_id_is_stored_once(pipeline):
    """As during an upgrade: records the previous collector wrote wait on the topic."""
    sku = seed_product(pipeline)
    old = [sale(sku, "old") for _ in range(3)]
    new = [sale(sku, "new") for _ in range(3)]
    single = [([("kind", b"transaction")], orjson.dumps(s | {"received_at": NOW})) for s in old]
    # The first new one again, as a single record: the same transaction, stored once.
    again = ([("kind", b"transaction")], orjson.dumps(new[0] | {"received_at": NOW}))
    send(pipeline, [single[0], ([*BATCH, ("items", b"3")], batch_record(new)), *single[1:], again])
    # And through the collector, which writes format 2 for a batch, format 1 for one.
    posted = [sale(sku, "posted") for _ in range(5)]
    assert pipeline.post("transactions/batch", {"transactions": posted[:4]}).status_code == 202
    assert pipeline.post("transactions", posted[4]).status_code == 202
    ids = [s["transaction_id"] for s in old + new + posted]
    pipeline.wait_stored(ids)
    pipeline.wait_idle()
    assert pipeline.scalar("SELECT count(*) FROM transactions") == len(ids)
    # The resend was counted as a duplicate, not rejected as a conflict.
    assert pipeline.scalar("SELECT count(*) FROM rejected_transactions") == 0


def off_partition_0(prefix: str) -> str:
    """An id the collector puts on a partition other than 0 (where the test writes), and
    that kafka-python's default hash would put on yet another one."""
    while True:
        candidate = uid(prefix)
        ours = partition_of(candidate.encode(), [0, 1, 2])
        if ours != 0 and ours != (murmur2(candidate.encode()) & 0x7FFFFFFF) % 3:
            return candidate


def test_a_replayed_record_goes_to_the_partition_the_collector_gives_its_id(pipeline):
    """From the API and from the command line's producer alike, for a product as for a
    transaction, so an id's versions and resends share a partition whoever wrote them."""
    sku = seed_product(pipeline)
    refused = sale(sku, transaction_id=off_partition_0("over"), total_amount="99.00")
    product = {"product_id": off_partition_0("p"), "name": "cup\x00", "category": "c"}
    product |= {"price": "1.00", "received_at": NOW}
    send(
        pipeline,
        [
            ([*BATCH, ("items", b"1")], batch_record([refused])),
            ([("kind", b"product")], orjson.dumps(product)),
        ],
    )
    rows = wait_until(
        lambda: r if len(r := pipeline.rows("SELECT * FROM rejected_transactions")) == 2 else None,
        what="2 rejections",
    )
    by_kind = {r["kind"]: r["id"] for r in rows}
    answer = pipeline.post("rejected/replay", {"ids": [by_kind["transaction"]]}, headers=ADMIN_KEY)
    assert answer.status_code == 200 and answer.get_json()["replayed"] == [by_kind["transaction"]]
    producer = make_producer(pipeline.settings)
    try:
        assert replay(pipeline.engine, producer, pipeline.topic, ids=[by_kind["product"]]) == [
            by_kind["product"]
        ]
    finally:
        producer.close()

    consumer = KafkaConsumer(
        pipeline.topic,
        bootstrap_servers=pipeline.kafka,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    replayed = {
        record.key: record.partition
        for record in consumer
        if any(name == REPLAY_HEADER for name, _ in record.headers)
    }
    consumer.close()
    keys = [refused["transaction_id"].encode(), product["product_id"].encode()]
    assert replayed == {key: partition_of(key, [0, 1, 2]) for key in keys}
    pipeline.wait_idle()
