"""POST -> Kafka -> processor -> Celery worker (PostgreSQL broker) -> rows, on real servers.

Expected values come from the request itself (price x quantity computed here), never
from the code under test.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import jsonschema
import pytest
from kafka import KafkaConsumer, KafkaProducer

from config import PROJECT_ROOT
from tests.helpers import wait_until
from tests.integration.pipeline import ADMIN_KEY, Pipeline
from web.notifications.app import create_app as create_notifications_app

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def pipeline(settings, admin_engine, migrated_template, tmp_path_factory):
    p = Pipeline(
        settings,
        admin_engine,
        migrated_template,
        tmp_path_factory.mktemp("pipeline"),
    )
    p.start("worker", "beat", "processor")
    p.wait_ready("worker", "beat", "processor")
    yield p
    p.close()


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def product(pipeline, price: str, product_id: str | None = None) -> str:
    product_id = product_id or uid("sku")
    answer = pipeline.post(
        "products", {"product_id": product_id, "name": "Cup", "category": "Kitchen", "price": price}
    )
    assert answer.status_code == 202, answer.get_json()
    return product_id


def tx(product_id: str, quantity: int = 1, total=None, **extra) -> dict:
    body = {
        "transaction_id": uid("tx"),
        "product_id": product_id,
        "quantity": quantity,
        "timestamp": NOW.isoformat(),
    } | extra
    if total is not None:
        body["total_amount"] = total
    return body


def test_a_posted_transaction_is_stored_with_its_amounts(pipeline):
    sku = product(pipeline, "12.50")
    plain, discounted = tx(sku, 3), tx(sku, 3, total="30.00")
    for body in (plain, discounted):
        answer = pipeline.post("transactions", body)
        assert answer.status_code == 202 and answer.get_json() == {"accepted": 1}
    rows = pipeline.wait_stored([plain["transaction_id"], discounted["transaction_id"]])
    price, quantity = Decimal("12.50"), 3
    row = rows[plain["transaction_id"]]
    assert (row["unit_price"], row["list_amount"], row["total_amount"], row["discount_amount"]) == (
        price,
        price * quantity,
        price * quantity,
        Decimal("0.00"),
    )
    row = rows[discounted["transaction_id"]]
    assert row["total_amount"] == Decimal("30.00")
    assert row["discount_amount"] == price * quantity - Decimal("30.00")
    assert row["occurred_at"] == NOW
    assert row["received_at"] <= row["stored_at"]


def test_a_batch_stores_the_valid_items_and_lists_the_invalid(pipeline):
    sku = product(pipeline, "2.00")
    items = [tx(sku), tx(sku, quantity=0), tx(sku), tx(sku, total="1.234"), tx(sku)]
    answer = pipeline.post("transactions/batch", {"transactions": items})
    assert answer.status_code == 202
    body = answer.get_json()
    assert body["accepted"] == 3
    assert [r["index"] for r in body["rejected"]] == [1, 3]
    assert "quantity" in body["rejected"][0]["errors"]
    assert "total_amount" in body["rejected"][1]["errors"]
    valid_ids = [items[i]["transaction_id"] for i in (0, 2, 4)]
    pipeline.wait_stored(valid_ids)
    pipeline.wait_idle()
    invalid_ids = [items[i]["transaction_id"] for i in (1, 3)]
    assert pipeline.stored(invalid_ids) == {} and pipeline.rejected(invalid_ids) == []


def test_a_batch_with_nothing_valid_is_refused(pipeline):
    answer = pipeline.post("transactions/batch", {"transactions": [{"quantity": 1}]})
    assert answer.status_code == 422
    assert answer.get_json()["accepted"] == 0


def test_batch_size_limit(pipeline):
    limit = pipeline.settings.collector_batch_max_items
    answer = pipeline.post("transactions/batch", {"transactions": [{}] * (limit + 1)})
    assert answer.status_code == 413
    assert f"at most {limit}" in answer.get_json()["message"]


def test_the_same_transaction_twice_is_stored_and_counted_once(pipeline):
    sku = product(pipeline, "5.00")
    body = tx(sku, 2)
    for _ in range(3):
        assert pipeline.post("transactions", body).status_code == 202
    # And twice inside one batch.
    assert pipeline.post("transactions/batch", {"transactions": [body, body]}).status_code == 202
    pipeline.wait_stored([body["transaction_id"]])
    pipeline.wait_idle()
    assert (
        pipeline.scalar(
            "SELECT count(*) FROM transactions WHERE transaction_id = :id",
            id=body["transaction_id"],
        )
        == 1
    )
    assert pipeline.rejected([body["transaction_id"]]) == []


def test_the_same_id_with_other_content_is_a_conflict_and_the_first_row_stays(pipeline):
    sku = product(pipeline, "5.00")
    first = tx(sku, 2)
    assert pipeline.post("transactions", first).status_code == 202
    pipeline.wait_stored([first["transaction_id"]])
    assert pipeline.post("transactions", first | {"quantity": 3}).status_code == 202
    rejection = pipeline.wait_rejected([first["transaction_id"]], 1)[0]
    assert rejection["reason"] == "duplicate_conflict"
    assert rejection["stage"] == "processor"
    assert json.loads(bytes(rejection["raw_payload"]))["quantity"] == 3
    assert pipeline.stored([first["transaction_id"]])[first["transaction_id"]]["quantity"] == 2


def test_a_total_above_the_list_price_is_rejected(pipeline):
    sku = product(pipeline, "10.00")
    over, rounding = tx(sku, 2, total="20.02"), tx(sku, 2, total="20.01")
    for body in (over, rounding):
        assert pipeline.post("transactions", body).status_code == 202
    pipeline.wait_stored([rounding["transaction_id"]])
    rejection = pipeline.wait_rejected([over["transaction_id"]], 1)[0]
    assert rejection["reason"] == "amount_above_list_price"
    assert rejection["details"]["list_amount"] == "20.00"


def test_a_transaction_waits_for_a_product_that_arrives_later(pipeline):
    sku = uid("late-sku")
    body = tx(sku, 4)
    assert pipeline.post("transactions", body).status_code == 202
    wait_until(
        lambda: pipeline.scalar(
            "SELECT count(*) FROM parked_transactions WHERE transaction_id = :id",
            id=body["transaction_id"],
        ),
        what="the transaction to be parked",
    )
    product(pipeline, "3.00", sku)
    row = pipeline.wait_stored([body["transaction_id"]])[body["transaction_id"]]
    assert row["total_amount"] == Decimal("12.00")
    assert pipeline.rejected([body["transaction_id"]]) == []


def test_a_product_that_never_arrives_means_unknown_product_then_replay_stores_it(pipeline):
    sku = uid("ghost-sku")
    body = tx(sku, 1)
    assert pipeline.post("transactions", body).status_code == 202
    # UNKNOWN_PRODUCT_WINDOW_SECONDS is 4 in this pipeline.
    rejection = pipeline.wait_rejected([body["transaction_id"]], 1, timeout=30)[0]
    assert rejection["reason"] == "unknown_product"
    assert rejection["details"] == {"product_id": sku}
    assert pipeline.stored([body["transaction_id"]]) == {}

    listed = pipeline.client.get("/api/v1/rejected?reason=unknown_product", headers=ADMIN_KEY)
    assert rejection["id"] in [item["id"] for item in listed.get_json()["items"]]

    product(pipeline, "7.25", sku)
    answer = pipeline.post("rejected/replay", {"ids": [rejection["id"]]}, headers=ADMIN_KEY)
    assert answer.status_code == 200 and answer.get_json() == {"replayed": [rejection["id"]]}
    row = pipeline.wait_stored([body["transaction_id"]])[body["transaction_id"]]
    assert row["total_amount"] == Decimal("7.25")
    status = pipeline.scalar(
        "SELECT status FROM rejected_transactions WHERE id = :id", id=rejection["id"]
    )
    assert status == "replayed"


def test_a_message_that_is_not_a_transaction_is_rejected_with_its_bytes(pipeline):
    raw = b"\xff\xfe not json at all"
    producer = KafkaProducer(bootstrap_servers=pipeline.kafka, acks="all")
    producer.send(pipeline.topic, value=raw, headers=[("kind", b"transaction")]).get(timeout=10)
    producer.close()

    def found():
        return pipeline.rows(
            "SELECT * FROM rejected_transactions WHERE raw_payload = :raw", raw=raw
        )

    rejection = wait_until(found, what="the malformed message's rejection")[0]
    assert rejection["reason"] == "malformed_message"
    assert rejection["transaction_id"] is None


SCHEMAS = {
    v: json.loads((PROJECT_ROOT / f"docs/events/notification.v{v}.schema.json").read_text())
    for v in (1, 2)
}


def events_until(pipeline, found, timeout_ms: int = 30_000) -> dict[str, dict]:
    """Reads the notifications topic from the start, checking every event against the
    schema, until `found(event)`; returns the events by id, the found one last."""
    consumer = KafkaConsumer(
        pipeline.notifications_topic,
        bootstrap_servers=pipeline.kafka,
        auto_offset_reset="earliest",
        group_id=uid("test-notifications"),
        consumer_timeout_ms=timeout_ms,
    )
    events = {}
    for record in consumer:
        event = json.loads(record.value)
        jsonschema.validate(event, SCHEMAS[event["schema_version"]])
        assert record.key.decode() == event["event_id"]
        events[event["event_id"]] = event
        if found(event):
            break
    consumer.close()
    assert events and found(list(events.values())[-1]), "the event did not come"
    return events


def test_the_newest_version_of_a_product_wins(pipeline):
    sku = product(pipeline, "1.00")
    product(pipeline, "2.00", sku)
    tx_body = tx(sku, 1)

    def price():
        return pipeline.scalar("SELECT price FROM products WHERE product_id = :id", id=sku)

    wait_until(lambda: price() == Decimal("2.00"), what="the second version")
    assert pipeline.post("transactions", tx_body).status_code == 202
    row = pipeline.wait_stored([tx_body["transaction_id"]])[tx_body["transaction_id"]]
    assert row["unit_price"] == Decimal("2.00")


def test_rules_written_over_rest_raise_their_alerts_through_beat_and_the_outbox(pipeline):
    """Low sales, a high-value digest and a rejections rule, each written over REST:
    beat evaluates them within a minute and the processor's relay publishes their
    events. A high-value sale raises no event of its own: the digest lists it."""
    api = create_notifications_app(pipeline.settings).test_client()
    sku = product(pipeline, "600.00")
    big, small = tx(sku, 2), tx(sku, 1)  # 1200.00 >= 1000; 600.00 is below
    over = [tx(sku, 1, total="700.00") for _ in range(3)]  # above the list price
    for body in (big, small):
        assert pipeline.post("transactions", body).status_code == 202
    assert pipeline.post("transactions/batch", {"transactions": over}).status_code == 202
    pipeline.wait_stored([big["transaction_id"], small["transaction_id"]])
    pipeline.wait_rejected([b["transaction_id"] for b in over], 3)

    rules = {}
    for body in (
        {"kind": "low_sales", "threshold": 1_000_000_000},
        {"kind": "high_value_sale", "threshold": 1000, "scope": {"product_id": sku}},
        {"kind": "rejections", "threshold": 2},
    ):
        answer = api.post(
            "/api/v1/alert-rules",
            json={"name": f"Pipeline {body['kind']}", "window_minutes": 5} | body,
            headers=ADMIN_KEY,
        )
        assert answer.status_code == 201, answer.get_json()
        rules[answer.get_json()["id"]] = body["kind"]

    fired: dict[int, dict] = {}

    def all_fired(event) -> bool:
        if event.get("rule", {}).get("id") in rules:
            fired[event["rule"]["id"]] = event
        return len(fired) == len(rules)

    events = events_until(pipeline, all_fired, 90_000)
    by_kind = {rules[rule_id]: e for rule_id, e in fired.items()}
    assert {e["state"] for e in by_kind.values()} == {"firing"}
    low = by_kind["low_sales"]
    assert low["threshold"] == "1000000000.00" and Decimal(low["value"]) < Decimal("1000000000")
    digest = by_kind["high_value_sale"]
    assert digest["value"] == "1.00"
    assert [s["transaction_id"] for s in digest["details"]["sales"]] == [big["transaction_id"]]
    assert digest["details"]["sales"][0]["total_amount"] == "1200.00"
    assert Decimal(by_kind["rejections"]["value"]) >= 3
    assert not [e for e in events.values() if e["schema_version"] == 1], "a per-sale event"
