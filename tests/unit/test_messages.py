"""The wire format between collector and processor, and what makes two transactions "the same"."""

from datetime import UTC, datetime
from decimal import Decimal

import orjson

from db.models.sales import content_hash
from streams.messages import (
    PRODUCT,
    RECORD_MAX_BYTES,
    TRANSACTION,
    Message,
    batch_records,
    chunk_item,
    decode,
    format_of,
    items_in,
    items_of,
    single_record,
)
from streams.replay import key_of

ITEM = {
    "transaction_id": "tx-1",
    "product_id": "sku-1",
    "quantity": 2,
    "total_amount": Decimal("19.90"),
    "timestamp": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
}


def decoded(item=ITEM, received=datetime(2026, 1, 2, 3, 5, tzinfo=UTC)) -> Message:
    out = single_record(TRANSACTION, item, received)
    message = Message("t", 0, 0, TRANSACTION, out.value)
    decode(message)
    return message


def test_money_travels_as_an_exact_string():
    out = single_record(TRANSACTION, ITEM, datetime.now(UTC))
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


RECEIVED = datetime(2026, 1, 2, 3, 5, tzinfo=UTC)


def read_back(out, offset: int = 7) -> list[Message]:
    """A record as the worker gets it: through the processor's chunk item."""
    record = Message.from_item(chunk_item("t", 1, offset, out.headers, out.value))
    items = items_of(record)
    for item in items:
        decode(item)
    return items


def test_a_batch_record_carries_its_items_in_order_and_says_how_many():
    items = [ITEM | {"transaction_id": f"tx-{n}"} for n in range(5)]
    (out,) = batch_records(TRANSACTION, items, RECEIVED, partition=2)
    assert out.partition == 2 and out.key is None
    assert format_of(out.headers) == 2 and items_in(out.headers) == 5
    read = read_back(out)
    assert [m.body["transaction_id"] for m in read] == [f"tx-{n}" for n in range(5)]
    assert [m.item for m in read] == list(range(5))
    assert {m.offset for m in read} == {7}
    assert all(m.body["received_at"] == RECEIVED and m.problem is None for m in read)


def test_an_item_of_a_batch_is_the_same_transaction_as_a_single_record_of_it():
    (batch,) = batch_records(TRANSACTION, [ITEM], RECEIVED)
    (item,) = read_back(batch)
    (single,) = read_back(single_record(TRANSACTION, ITEM, RECEIVED))
    assert item.body == single.body and item.content_hash == single.content_hash
    # Kept for a rejection or a replay: exactly the single record it would have been.
    assert item.payload() == single_record(TRANSACTION, ITEM, RECEIVED).value


def test_batch_records_stay_under_the_record_limit_and_lose_no_item():
    big = {"product_id": "p", "name": "\u2603" * 200, "category": "c" * 100, "price": Decimal("1")}
    items = [big | {"product_id": f"p-{n}"} for n in range(1500)]
    records = batch_records(PRODUCT, items, RECEIVED)
    assert len(records) > 1
    assert all(len(r.value) <= RECORD_MAX_BYTES for r in records)
    assert sum(items_in(r.headers) for r in records) == 1500
    read = [m.body["product_id"] for r in records for m in read_back(r)]
    assert read == [f"p-{n}" for n in range(1500)]


def test_a_bad_item_is_named_by_its_index_and_the_others_are_read():
    (out,) = batch_records(TRANSACTION, [ITEM, ITEM], RECEIVED)
    value = orjson.loads(out.value)
    value["items"].insert(1, {"transaction_id": "x"})
    value["items"].append(17)
    read = read_back(type(out)(None, orjson.dumps(value), out.headers))
    assert [m.problem is None for m in read] == [True, False, True, False]
    assert "missing field" in read[1].problem and read[3].problem == "item 3 is not a JSON object"
    assert orjson.loads(read[1].payload()) == {
        "transaction_id": "x",
        "received_at": value["received_at"],
    }
    assert read[3].payload() == b"17"


def test_a_batch_record_whose_envelope_is_broken_is_one_malformed_item_kept_whole():
    headers = [("kind", b"transaction"), ("format", b"2"), ("items", b"3")]
    for raw, expected in {
        b"\xff not json": "",
        b"[]": "must be",
        b'{"items": [], "received_at": "2026-01-01T00:00:00Z"}': "non-empty list",
        b'{"items": [{}], "received_at": "soon"}': "received_at",
        b'{"items": [{}], "received_at": "2026-01-01T00:00:00Z", "x": 1}': "must be",
    }.items():
        (only,) = read_back(type(single_record(TRANSACTION, ITEM, RECEIVED))(None, raw, headers))
        assert only.problem is not None and expected in only.problem, raw
        assert only.payload() == raw and only.item == 0


def test_headers_that_lie_only_size_chunks():
    assert items_in([("format", b"2"), ("items", b"-4")]) == 1
    assert items_in([("format", b"2"), ("items", b"\xff")]) == 1
    assert items_in([("format", b"2"), ("items", b"9" * 40)]) == 100_000
    assert items_in([("items", b"50")]) == 1  # a format-1 record holds one item
    assert format_of([("format", b"3")]) == 1


def test_chunks_sent_before_format_2_are_still_read():
    old = ["t", 0, 3, "transaction", "eyJhIjoxfQ=="]
    message = Message.from_item(old)
    assert (message.format, message.raw) == (1, b'{"a":1}')


def test_a_replayed_record_is_keyed_as_the_collector_keyed_it():
    received = datetime(2026, 1, 2, 3, 5, tzinfo=UTC)
    product = {
        "product_id": "sku-1",
        "name": "Cup",
        "category": "Kitchen",
        "price": Decimal("2.50"),
    }
    for kind, item in ((TRANSACTION, ITEM), (PRODUCT, product)):
        written = single_record(kind, item, received)
        assert key_of(kind, written.value) == written.key
    for unreadable in (b"\xff not json", b"[1, 2]", b'{"transaction_id": 7}', b"{}"):
        assert key_of(TRANSACTION, unreadable) is None
