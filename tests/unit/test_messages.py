"""The wire format between collector and processor, and what makes two transactions "the same"."""

from datetime import UTC, datetime
from decimal import Decimal

import orjson

from db.models.sales import content_hash
from streams.messages import TRANSACTION, Message, decode, transaction_message

ITEM = {
    "transaction_id": "tx-1",
    "product_id": "sku-1",
    "quantity": 2,
    "total_amount": Decimal("19.90"),
    "timestamp": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
}


def decoded(item=ITEM, received=datetime(2026, 1, 2, 3, 5, tzinfo=UTC)) -> Message:
    out = transaction_message(item, received)
    message = Message("t", 0, 0, TRANSACTION, out.value)
    decode(message)
    return message


def test_money_travels_as_an_exact_string():
    out = transaction_message(ITEM, datetime.now(UTC))
    body = orjson.loads(out.value)
    assert body["total_amount"] == "19.90"
    assert out.key == b"tx-1"
    assert dict(out.headers)["kind"] == b"transaction"


def test_decoding_restores_the_values():
    message = decoded()
    assert message.problem is None
    assert message.body["total_amount"] == Decimal("19.90")
    assert message.body["timestamp"] == ITEM["timestamp"]


def test_the_same_content_received_twice_hashes_the_same():
    again = decoded(received=datetime(2026, 5, 5, tzinfo=UTC))
    assert decoded().content_hash == again.content_hash


def test_any_change_of_content_changes_the_hash():
    base = decoded().content_hash
    for change in (
        {"product_id": "sku-2"},
        {"quantity": 3},
        {"total_amount": Decimal("19.91")},
        {"total_amount": None},
        {"timestamp": datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)},
    ):
        assert decoded({**ITEM, **change}).content_hash != base, change


def test_hash_is_independent_of_how_the_amount_was_written():
    body = {
        "transaction_id": "a",
        "product_id": "b",
        "quantity": 1,
        "timestamp": "2026-01-01T00:00:00+00:00",
    }
    assert content_hash(body | {"total_amount": "5"}) == content_hash(
        body | {"total_amount": "5.00"}
    )


def test_malformed_messages_say_what_is_wrong():
    cases = {
        b"\xff\xfe": "",
        b"[1, 2]": "not a JSON object",
        b'{"received_at": "2026-01-01T00:00:00+00:00"}': "missing field 'transaction_id'",
    }
    for raw, expected in cases.items():
        message = Message("t", 0, 0, TRANSACTION, raw)
        decode(message)
        assert message.problem is not None and expected in message.problem
