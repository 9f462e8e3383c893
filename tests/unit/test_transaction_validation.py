"""Every validation rule of the Data Collector at its boundary, with its message."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from db import rules
from web.ingestion.schemas import ProductSchema, TransactionSchema

VALID = {
    "transaction_id": "tx-1",
    "product_id": "sku-1",
    "quantity": 1,
    "total_amount": "10.00",
    "timestamp": "2026-01-01T00:00:00Z",
}


def load(**changes):
    return TransactionSchema().load({**VALID, **changes})


def error(**changes) -> dict:
    with pytest.raises(ValidationError) as info:
        load(**changes)
    return info.value.messages


@pytest.mark.parametrize(
    "value",
    ["a", "A" * 64, "Az09._:-", "2026:store-7.till_2"],
    ids=["1", "64", "alphabet", "mixed"],
)
def test_identifier_accepts(value):
    assert load(transaction_id=value, product_id=value)["transaction_id"] == value


@pytest.mark.parametrize(
    "value",
    ["", "A" * 65, "a b", "a/b", "é", "a\x00b", "\ud800", 12],
    ids=["empty", "65", "space", "slash", "accent", "nul", "surrogate", "number"],
)
def test_identifier_refuses(value):
    messages = error(transaction_id=value)["transaction_id"]
    assert any("1 to 64 characters" in m or "Not a valid string" in m for m in messages)


@pytest.mark.parametrize("value", [1, 1_000_000])
def test_quantity_bounds_accepted(value):
    assert load(quantity=value)["quantity"] == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "between 1 and 1000000"),
        (1_000_001, "between 1 and 1000000"),
        (-1, "between 1 and 1000000"),
        (True, "whole number"),
        (2.0, "whole number"),
        ("2", "whole number"),
    ],
)
def test_quantity_refused(value, message):
    assert message in error(quantity=value)["quantity"][0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0.00"),
        ("0", "0.00"),
        (19.99, "19.99"),
        ("19.99", "19.99"),
        (12.3, "12.30"),
        ("12.300", "12.30"),
        (0.1, "0.10"),
        (None, None),
    ],
)
def test_amount_is_exact(value, expected):
    amount = load(total_amount=value)["total_amount"]
    assert amount == (None if expected is None else Decimal(expected))


def test_amount_may_be_left_out():
    item = dict(VALID)
    del item["total_amount"]
    assert TransactionSchema().load(item)["total_amount"] is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-0.01, "must not be negative"),
        ("-1", "at most 2 decimal places"),
        (12.345, "more than 2 decimal places"),
        ("0.001", "more than 2 decimal places"),
        ("NaN", "at most 2 decimal places"),
        ("1e3", "at most 2 decimal places"),
        (" 12", "at most 2 decimal places"),
        (True, "at most 2 decimal places"),
        ("ten", "at most 2 decimal places"),
    ],
)
def test_amount_refused(value, message):
    assert message in error(total_amount=value)["total_amount"][0]


def test_timestamp_without_offset_means_utc():
    moment = load(timestamp="2026-03-01T12:30:00")["timestamp"]
    assert moment == datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def test_timestamp_with_offset_is_converted_to_utc():
    moment = load(timestamp="2026-03-01T02:30:00+03:00")["timestamp"]
    assert moment == datetime(2026, 2, 28, 23, 30, tzinfo=UTC)


def test_timestamp_bounds():
    assert load(timestamp="2000-01-01T00:00:00Z")["timestamp"].year == 2000
    assert "before 2000-01-01" in error(timestamp="1999-12-31T23:59:59Z")["timestamp"][0]
    soon = datetime.now(UTC) + timedelta(minutes=4)
    assert load(timestamp=soon.isoformat())["timestamp"] == soon
    later = datetime.now(UTC) + timedelta(minutes=6)
    assert "5 minutes in the future" in error(timestamp=later.isoformat())["timestamp"][0]
    assert "ISO 8601" in error(timestamp="yesterday")["timestamp"][0]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("9999-12-31T23:59:59-05:00", "before 2100-01-01"),
        ("9999-12-31T23:59:59+05:00", "before 2100-01-01"),
        ("0001-01-01T00:00:00+05:00", "before 2000-01-01"),
        ("0001-01-01T00:00:00-05:00", "before 2000-01-01"),
        ("2100-01-01T00:00:00Z", "before 2100-01-01"),
    ],
)
def test_timestamps_at_the_ends_of_the_calendar_are_refused_not_overflowed(value, message):
    assert message in error(timestamp=value)["timestamp"][0]


@pytest.mark.parametrize("value", ["x\n", "A" * 64 + "\n", "\nx", "x\r\n", "x\x00"])
def test_identifiers_are_matched_whole(value):
    value = value.encode().decode("unicode_escape")
    assert "transaction_id" in error(transaction_id=value)
    assert "product_id" in error(product_id=value)


def test_unknown_and_missing_fields():
    messages = error(colour="red")
    assert messages == {"colour": ["Unknown field."]}
    with pytest.raises(ValidationError) as info:
        TransactionSchema().load({"transaction_id": "x"})
    assert set(info.value.messages) == {"product_id", "quantity", "timestamp"}


PRODUCT = {"product_id": "sku-1", "name": "Cup", "category": "Kitchen", "price": "9.99"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "1 to 200 characters"),
        ("name", "x" * 201, "1 to 200 characters"),
        ("category", "x" * 101, "1 to 100 characters"),
        ("name", "Cup\x00", "control characters"),
        ("name", "Cup\n", "control characters"),
        ("name", "Cup \ud800", "lone surrogate"),
        ("name", " Cup", "white space"),
        ("price", "-1", "at most 2 decimal places"),
        ("price", "10000000000.00", "at most 9999999999.99"),
    ],
)
def test_product_refused(field, value, message):
    with pytest.raises(ValidationError) as info:
        ProductSchema().load({**PRODUCT, field: value})
    assert message in info.value.messages[field][0]


def test_product_accepted_at_its_bounds():
    item = ProductSchema().load(
        {**PRODUCT, "name": "x" * 200, "category": "y" * 100, "price": "9999999999.99"}
    )
    assert item["price"] == Decimal("9999999999.99")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(sorted(VALID)), value=JSON_VALUES)
def test_any_json_value_in_any_field_is_accepted_or_refused_with_a_message(field, value):
    """No value, however odd, makes validation raise anything but a field's message."""
    try:
        load(**{field: value})
    except ValidationError as exc:
        assert all(isinstance(m, str) and m for m in exc.messages[field])


@settings(max_examples=300, deadline=None)
@given(body=st.dictionaries(st.sampled_from([*VALID, "received_at", "x"]), JSON_VALUES))
def test_the_worker_rules_refuse_with_value_error_only(body):
    received = datetime.now(UTC)
    try:
        rules.transaction(body, received)
    except ValueError as exc:
        assert str(exc)


def outcome(check, body):
    try:
        return check(body)
    except (ValueError, ValidationError):
        return "refused"


@settings(max_examples=500, deadline=None)
@given(
    field=st.sampled_from([*VALID, "name", "category", "price", "x"]),
    value=JSON_VALUES
    | st.sampled_from(["", " a", "a\n", "1e3", "0.001", "2026-01-01T00:00", 5, 2.5, "a" * 201]),
    drop=st.booleans(),
)
def test_a_batch_items_rules_and_the_schema_agree_on_every_item(field, value, drop):
    """The collector checks batch items by the rules directly and falls back to the
    schema for its messages: both must take, and normalise, exactly the same items."""
    body = {k: v for k, v in ({**VALID, field: value}).items() if not (drop and k == field)}
    now = datetime.now(UTC)
    direct = outcome(lambda b: rules.transaction(b, now), body)
    assert direct == outcome(TransactionSchema().load, body)
    product = {"product_id": "p", "name": "n", "category": "c", "price": "1"}
    product = {k: v for k, v in (product | {field: value}).items() if not (drop and k == field)}
    assert outcome(rules.product, product) == outcome(ProductSchema().load, product)
