"""What the notifier takes from the notifications topic: any bytes either become an event
that fits notification_log or a Malformed saying why; texts it stores or logs are ones
PostgreSQL holds, bounded, without the bot token."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.consumer.fetcher import ConsumerRecord

from consumers.notifier import (
    RAW_KEPT,
    REASON_KEPT,
    SCHEMA,
    TELEGRAM_MAX_TEXT,
    Malformed,
    malformed_key,
    message,
    parse_event,
    raw_text,
    retry_after,
    storable,
)
from db.models import NotificationLog
from tests.fake_telegram import TOKEN
from tests.helpers import v1_event as event

COLUMNS = NotificationLog.__table__.columns


def high_value_sale(**data) -> dict:
    return event(
        "high_value_sale:t-1",
        "high_value_sale",
        "critical",
        {
            "transaction_id": "t-1",
            "product_id": "sku-1",
            "quantity": 2,
            "total_amount": "12000.00",
            "threshold": "10000",
            "timestamp": "2026-11-26T10:30:00+00:00",
        }
        | data,
    )


def record(topic: str, partition: int, offset: int) -> ConsumerRecord:
    return ConsumerRecord(topic, partition, None, offset, 0, 0, None, b"", [], None, 0, 2, -1)


def test_every_field_from_a_message_fits_its_column():
    props = SCHEMA["properties"]
    assert props["event_id"]["maxLength"] <= COLUMNS["dedup_key"].type.length
    assert max(map(len, props["type"]["enum"] + ["malformed"])) <= COLUMNS["event_type"].type.length
    assert max(map(len, props["severity"]["enum"])) <= COLUMNS["severity"].type.length
    # The longest topic name Kafka allows, the largest partition and offset.
    key = malformed_key(record("t" * 249, 2**31 - 1, 2**63 - 1))
    assert len(key) <= COLUMNS["dedup_key"].type.length


def test_a_valid_event_is_read():
    alert = high_value_sale()
    assert parse_event(json.dumps(alert).encode()) == alert


# Any JSON value, text with NUL and lone surrogates included, and numbers out of range.
TEXT = st.text(st.one_of(st.characters(), st.sampled_from("\x00\ud800\udfff")), max_size=20)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=30,
)
FIELDS = st.sampled_from(["event_id", "type", "severity", "occurred_at", "data", "extra"])
MUTATED = st.builds(
    lambda changes: json.dumps(high_value_sale() | changes).encode(),
    st.dictionaries(FIELDS, JSON, max_size=3),
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=200), MUTATED, JSON.map(lambda v: json.dumps(v).encode())))
def test_any_bytes_are_an_event_the_database_holds_or_malformed(value):
    try:
        parsed = parse_event(value)
    except Malformed as error:
        assert str(error)  # says what is wrong
        return
    stored = json.dumps(parsed)  # what goes into the JSONB column
    assert "\\u0000" not in stored and "NaN" not in stored and "Infinity" not in stored
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(parsed, ensure_ascii=False))
    assert len(parsed["event_id"]) <= COLUMNS["dedup_key"].type.length


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3 * RAW_KEPT))
def test_raw_text_is_storable_and_bounded(value):
    text = raw_text(value)
    assert "\x00" not in text and len(text) <= RAW_KEPT
    text.encode("utf-8")  # no lone surrogate
    readable = value.decode("utf-8", "replace")
    if len(value) <= RAW_KEPT // 4 and "\x00" not in readable and "\ufffd" not in readable:
        assert text == readable  # text the database holds is kept as it came


@given(st.text(st.one_of(st.characters(), st.sampled_from("\x00\ud800")), max_size=3000))
def test_stored_reasons_hold_no_nul_surrogate_or_token(text):
    reason = storable(f"{text} /bot{TOKEN}/sendMessage {text}", secrets=(TOKEN,))
    assert "\x00" not in reason and len(reason) <= REASON_KEPT
    reason.encode("utf-8")
    assert TOKEN.split(":")[1] not in reason


def test_a_long_reason_keeps_its_tail():
    with_long_id = json.dumps(high_value_sale() | {"event_id": "x" * 10_000}).encode()
    try:
        parse_event(with_long_id)
    except Malformed as error:
        reason = storable(str(error))
    assert len(reason) <= REASON_KEPT and reason.endswith("is too long")


def test_a_message_fits_telegram():
    text = message(high_value_sale(product_id="p" * 10_000))
    assert text.startswith("🔴 High-value sale: 12,000.00") and len(text) <= TELEGRAM_MAX_TEXT


def test_flood_control_answers_of_any_shape_give_a_wait():
    assert retry_after({"parameters": {"retry_after": 7}}, 1.0) == 7.0
    for odd in (
        {},
        {"parameters": None},
        {"parameters": {"retry_after": "soon"}},
        {"parameters": 3},
    ):
        assert retry_after(odd, 1.5) == 1.5
