"""Poison never stops the pipeline: messages no rule or column would take, written straight
onto the topic, end in rejected_transactions with their raw bytes, and valid transactions
behind them are stored promptly; a message the database itself refuses is isolated from
its chunk; a chunk that always fails is given up after the cap, its messages rejected."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest
from kafka import KafkaProducer
from sqlalchemy import text

from tests.helpers import wait_until
from tests.integration.pipeline import ADMIN_KEY, Pipeline

NOW = datetime.now(UTC).replace(microsecond=0).isoformat()


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def pipeline(settings, admin_engine, migrated_template, tmp_path):
    p = Pipeline(
        settings, admin_engine, migrated_template, tmp_path, processor_chunk_max_attempts=2
    )
    yield p
    p.close()


def seed_product(pipeline) -> str:
    sku = uid("sku")
    body = {"product_id": sku, "name": "Cup", "category": "Kitchen", "price": "2.50"}
    assert pipeline.post("products", body).status_code == 202
    return sku


def post_valid(pipeline, sku: str, count: int, prefix: str = "ok") -> list[str]:
    items = [
        {"transaction_id": uid(prefix), "product_id": sku, "quantity": 1, "timestamp": NOW}
        for _ in range(count)
    ]
    answer = pipeline.post("transactions/batch", {"transactions": items})
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["accepted"] == count
    return [i["transaction_id"] for i in items]


def wire(sku: str, **changes) -> bytes:
    """A transaction in the collector's wire format, with some fields changed."""
    body = {
        "transaction_id": uid("poison"),
        "product_id": sku,
        "quantity": 1,
        "total_amount": "2.50",
        "timestamp": NOW,
        "received_at": NOW,
    } | changes
    return orjson.dumps(body)


def poison_messages(sku: str) -> dict[str, tuple[str | None, bytes | None]]:
    """Each class of poison: (kind header, value)."""
    product = {"product_id": uid("p"), "name": "n", "category": "c", "price": "1.00"}
    product["received_at"] = NOW
    nested = b'{"a":' * 5000 + b"1" + b"}" * 5000
    return {
        "id of 64 characters and a newline": (
            "transaction",
            wire(sku, transaction_id="A" * 64 + "\n"),
        ),
        "id with a trailing newline": ("transaction", wire(sku, transaction_id="x\n")),
        "product id with a newline": ("transaction", wire(sku + "\n")),
        "quantity of 30 digits": (
            "transaction",
            wire(sku, quantity=0).replace(b'"quantity":0', b'"quantity":' + b"9" * 30),
        ),
        "amount beyond the column": ("transaction", wire(sku, total_amount="9" * 25 + ".00")),
        "amount in exponent form": ("transaction", wire(sku, total_amount="1e30")),
        "timestamp at the end of the calendar": (
            "transaction",
            wire(sku, timestamp="9999-12-31T23:59:59-05:00"),
        ),
        "timestamp at the start of the calendar": (
            "transaction",
            wire(sku, timestamp="0001-01-01T00:00:00+05:00"),
        ),
        "received_at out of range": ("transaction", wire(sku, received_at="9999-12-31T23:59:59Z")),
        "NUL in an id": ("transaction", wire(sku, transaction_id="tx\x00")),
        "NUL in an extra field": ("transaction", wire(sku, note="a\x00b")),
        "NUL in a product name": ("product", orjson.dumps(product | {"name": "cup\x00"})),
        "product name too long": ("product", orjson.dumps(product | {"name": "n" * 201})),
        "price beyond the column": ("product", orjson.dumps(product | {"price": "1" * 14})),
        "not JSON": ("transaction", b"\xff\xfe not json at all"),
        "deeply nested JSON": ("transaction", nested),
        "a JSON list": ("transaction", b"[1, 2, 3]"),
        "a tombstone": ("transaction", None),
        "a long kind header with NUL": ("t\x00" * 40, wire(sku)),
        "no kind header": (None, wire(sku)),
    }


def test_poison_on_the_topic_is_rejected_and_what_follows_is_stored(pipeline):
    pipeline.start("worker", "processor")
    sku = seed_product(pipeline)
    wait_until(lambda: pipeline.scalar("SELECT count(*) FROM products"), what="the product")

    producer = KafkaProducer(bootstrap_servers=pipeline.kafka)
    poison = poison_messages(sku)
    for kind, value in poison.values():
        headers = [] if kind is None else [("kind", kind.encode())]
        producer.send(pipeline.topic, key=b"poison", value=value, headers=headers)
    producer.flush()
    producer.close()

    valid = post_valid(pipeline, sku, 50)
    pipeline.wait_stored(valid, timeout=30)
    rejected = wait_until(
        lambda: (
            rows
            if len(rows := pipeline.rows("SELECT * FROM rejected_transactions")) >= len(poison)
            else None
        ),
        timeout=30,
        what=f"{len(poison)} rejections",
    )
    assert len(rejected) == len(poison)
    sent = {value for _, value in poison.values()}
    assert {bytes(r["raw_payload"]) for r in rejected} == {v or b"" for v in sent}
    assert {r["reason"] for r in rejected} == {"malformed_message"}
    assert all(r["details"]["problem"] for r in rejected)
    # The id with a newline is refused, not stored with it.
    assert pipeline.scalar("SELECT count(*) FROM transactions WHERE transaction_id LIKE '%\n'") == 0
    assert pipeline.scalar("SELECT count(*) FROM transactions") == len(valid)
    pipeline.wait_idle()


def test_the_edge_refuses_what_the_worker_would_and_the_pipeline_goes_on(pipeline):
    pipeline.start("worker", "processor")
    sku = seed_product(pipeline)
    hostile = [
        {"transaction_id": "A" * 64 + "\n", "product_id": sku, "quantity": 1, "timestamp": NOW},
        {"transaction_id": "x\n", "product_id": sku, "quantity": 1, "timestamp": NOW},
        {
            "transaction_id": uid("t"),
            "product_id": sku,
            "quantity": 1,
            "timestamp": "9999-12-31T23:59:59-05:00",
        },
        {
            "transaction_id": uid("t"),
            "product_id": sku,
            "quantity": 1,
            "timestamp": NOW,
            "total_amount": "9" * 25,
        },
    ]
    for item in hostile:
        answer = pipeline.post("transactions", item)
        assert answer.status_code == 422, (item, answer.get_json())
    answer = pipeline.post("transactions/batch", {"transactions": hostile})
    assert answer.status_code == 422
    assert [r["index"] for r in answer.get_json()["rejected"]] == [0, 1, 2, 3]
    # One such item in a batch of good ones: the good ones are accepted and stored.
    good = post_valid(pipeline, sku, 5)
    mixed = [
        *hostile[2:3],
        {"transaction_id": uid("m"), "product_id": sku, "quantity": 1, "timestamp": NOW},
    ]
    answer = pipeline.post("transactions/batch", {"transactions": mixed})
    assert answer.status_code == 202
    assert answer.get_json()["accepted"] == 1
    assert [r["index"] for r in answer.get_json()["rejected"]] == [0]
    pipeline.wait_stored([*good, mixed[1]["transaction_id"]])


REFUSE = """
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'refused by the test: %', NEW.transaction_id; END $$;
"""


def test_a_message_the_database_refuses_is_isolated_and_the_rest_of_its_chunk_stored(pipeline):
    with pipeline.engine.begin() as conn:
        conn.execute(text(REFUSE))
        conn.execute(
            text(
                "CREATE TRIGGER refuse BEFORE INSERT ON transactions FOR EACH ROW"
                " WHEN (NEW.transaction_id LIKE 'refused-%') EXECUTE FUNCTION refuse()"
            )
        )
    pipeline.start("worker", "processor")
    sku = seed_product(pipeline)
    wait_until(lambda: pipeline.scalar("SELECT count(*) FROM products"), what="the product")
    items = [
        {
            "transaction_id": uid("refused" if i in (3, 40, 41) else "ok"),
            "product_id": sku,
            "quantity": 1,
            "timestamp": NOW,
        }
        for i in range(100)
    ]
    assert pipeline.post("transactions/batch", {"transactions": items}).status_code == 202
    refused = [i["transaction_id"] for i in items if i["transaction_id"].startswith("refused")]
    fine = [i["transaction_id"] for i in items if i["transaction_id"].startswith("ok")]
    pipeline.wait_stored(fine)
    rows = pipeline.wait_rejected(refused, 3)
    assert {r["transaction_id"] for r in rows} == set(refused)
    for row in rows:
        assert (row["reason"], row["stage"]) == ("storage_error", "storage")
        assert row["details"]["error"].startswith(f"refused by the test: {row['transaction_id']}")
        assert row["details"]["sqlstate"] == "P0001"
        assert orjson.loads(row["raw_payload"])["transaction_id"] == row["transaction_id"]
    pipeline.wait_idle()

    # Once the cause is fixed, the rejected ones are replayed and stored.
    with pipeline.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER refuse ON transactions"))
    answer = pipeline.post("rejected/replay", {"reason": "storage_error"}, headers=ADMIN_KEY)
    assert answer.status_code == 200 and len(answer.get_json()["replayed"]) == 3
    pipeline.wait_stored(fine + refused)


def test_a_chunk_that_always_fails_is_given_up_after_the_cap_and_its_messages_rejected(pipeline):
    # Every attempt to finish a chunk fails: nothing any chunk holds can be stored.
    with pipeline.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN RAISE EXCEPTION 'chunks are refused by the test'; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON ingest_chunks FOR EACH ROW"
                " WHEN (NEW.finished_at IS NOT NULL) EXECUTE FUNCTION refuse()"
            )
        )
    pipeline.start("worker", "processor")
    sku = seed_product(pipeline)
    doomed = post_valid(pipeline, sku, 20, prefix="doomed")
    rows = wait_until(
        lambda: (
            found
            if len(found := pipeline.rows("SELECT * FROM rejected_transactions")) >= 21
            else None
        ),
        timeout=60,
        what="the product and 20 transactions rejected as chunk_failed",
    )
    assert {r["reason"] for r in rows} == {"chunk_failed"}
    assert {r["stage"] for r in rows} == {"storage"}
    assert {r["transaction_id"] for r in rows} >= set(doomed)
    assert all("chunks are refused by the test" in r["details"]["error"] for r in rows)
    failed = pipeline.rows("SELECT * FROM ingest_chunks WHERE failed_at IS NOT NULL")
    assert failed and all(c["failures"] >= 2 for c in failed)
    assert all("chunks are refused by the test" in c["last_error"] for c in failed)
    assert pipeline.scalar("SELECT count(*) FROM transactions") == 0

    # The partitions moved on: once the cause is gone, new transactions are stored, and
    # the rejected ones are replayed.
    with pipeline.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER refuse ON ingest_chunks"))
    assert (
        pipeline.post(
            "products", {"product_id": sku, "name": "Cup", "category": "Kitchen", "price": "2.50"}
        ).status_code
        == 202
    )
    wait_until(lambda: pipeline.scalar("SELECT count(*) FROM products"), what="the product")
    later = post_valid(pipeline, sku, 10)
    pipeline.wait_stored(later)
    answer = pipeline.post("rejected/replay", {"reason": "chunk_failed"}, headers=ADMIN_KEY)
    assert answer.status_code == 200 and len(answer.get_json()["replayed"]) == len(rows)
    pipeline.wait_stored(doomed + later)
