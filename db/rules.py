"""What a stored transaction or product may hold: one definition, applied by the collector
at the edge (through marshmallow fields) and by the worker before any SQL, so that no
message the edge accepts, or anybody writes onto the topic, can fail in the database.

Each rule takes a value as it arrives (JSON types, or the wire format's strings) and
returns it normalised, or raises ValueError with a message that says how to fix it. No
rule raises anything else, whatever the input.

The bounds come from the columns (`db/types.py`): identifiers are String(64), prices
Numeric(12,2), amounts Numeric(20,2), and a rollup sum Numeric(38,2) holds 10^20 times
the largest possible total. Times must lie in TIME_RANGE, which
PostgreSQL, Python and every report zone can hold with any offset.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

IDENTIFIER_ALPHABET = "A-Za-z0-9._:-"
IDENTIFIER_MAX = 64
# Matched whole (fullmatch): a trailing newline is not part of an identifier.
IDENTIFIER = re.compile(f"[{IDENTIFIER_ALPHABET}]{{1,{IDENTIFIER_MAX}}}")
IDENTIFIER_HELP = f"must be 1 to {IDENTIFIER_MAX} characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'"

QUANTITY_MIN, QUANTITY_MAX = 1, 1_000_000
CENT = Decimal("0.01")
MAX_PRICE = Decimal("9999999999.99")  # Numeric(12, 2)
# Above price x quantity (9,999,999,999,990,000.00), within Numeric(20, 2): 16 digits.
MAX_AMOUNT = Decimal("9999999999999999.99")
NAME_MAX, CATEGORY_MAX = 200, 100

TIME_RANGE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
FUTURE_TOLERANCE = timedelta(minutes=5)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DECIMAL_STRING = re.compile(r"\d{1,30}(\.\d{1,30})?")
_MONEY_HELP = "a number or numeric string with at most 2 decimal places, e.g. 19.99"


def identifier(value: Any) -> str:
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise ValueError(IDENTIFIER_HELP)
    return value


def text(value: Any, max_length: int) -> str:
    """Printable text: no control characters (NUL breaks PostgreSQL), valid Unicode."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if not 1 <= len(value) <= max_length:
        raise ValueError(f"must be 1 to {max_length} characters long")
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters such as NUL or newline")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (it contains a lone surrogate)") from None
    if value.strip() != value:
        raise ValueError("must not start or end with white space")
    return value


def quantity(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number written without quotes or decimals")
    if not QUANTITY_MIN <= value <= QUANTITY_MAX:
        raise ValueError(f"must be between {QUANTITY_MIN} and {QUANTITY_MAX}")
    return value


def money(value: Any, maximum: Decimal) -> Decimal:
    """A non-negative amount with at most 2 decimal places, as a JSON number or string.

    JSON numbers arrive as floats; their shortest representation (`repr`) is exactly the
    digits the client wrote whenever those have 2 decimals or fewer, so nothing is rounded.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be {_MONEY_HELP}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"must be {_MONEY_HELP}")
        value = repr(value)
    elif isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        if value > maximum:
            raise ValueError(f"must be at most {maximum}")
        value = str(value)
    elif not _DECIMAL_STRING.fullmatch(value):
        raise ValueError(f"must be {_MONEY_HELP}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"must be {_MONEY_HELP}") from None
    if amount < 0:
        raise ValueError("must not be negative")
    if amount > maximum:
        raise ValueError(f"must be at most {maximum}")
    if amount != amount.quantize(CENT):
        raise ValueError(f"has more than 2 decimal places; send {_MONEY_HELP}")
    return amount.quantize(CENT)


def instant(value: Any, *, naive_means_utc: bool = True) -> datetime:
    """An ISO 8601 date and time inside TIME_RANGE, in UTC."""
    how = "an ISO 8601 date and time such as 2026-11-26T10:15:00Z"
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError(f"must be {how}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"must be {how}") from None
    if moment.tzinfo is None:
        if not naive_means_utc:
            raise ValueError(f"must carry an offset: {how}")
        moment = moment.replace(tzinfo=UTC)
    # Near the ends of the calendar an offset moves the instant out of what Python (and
    # the reports' zones) can hold; compare before converting.
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        moment = datetime.min.replace(tzinfo=UTC) if moment.year == 1 else TIME_RANGE[1]
    if moment < TIME_RANGE[0]:
        raise ValueError("must not be before 2000-01-01T00:00:00Z")
    if moment >= TIME_RANGE[1]:
        raise ValueError("must be before 2100-01-01T00:00:00Z")
    return moment


def sale_time(value: Any, received_at: datetime) -> datetime:
    """When the sale happened: an instant not more than 5 minutes after its reception."""
    moment = instant(value)
    if moment > received_at + FUTURE_TOLERANCE:
        raise ValueError("must not be more than 5 minutes in the future (check the clock)")
    return moment


TRANSACTION_FIELDS = ("transaction_id", "product_id", "quantity", "total_amount", "timestamp")
PRODUCT_FIELDS = ("product_id", "name", "category", "price")


def transaction(body: dict[str, Any], received_at: datetime) -> dict[str, Any]:
    """Every field of a transaction, checked; raises ValueError naming the field."""
    return _checked(
        body,
        {
            "transaction_id": identifier,
            "product_id": identifier,
            "quantity": quantity,
            "total_amount": lambda v: None if v is None else money(v, MAX_AMOUNT),
            "timestamp": lambda v: sale_time(v, received_at),
        },
        optional=("total_amount",),
    )


def product(body: dict[str, Any]) -> dict[str, Any]:
    return _checked(
        body,
        {
            "product_id": identifier,
            "name": lambda v: text(v, NAME_MAX),
            "category": lambda v: text(v, CATEGORY_MAX),
            "price": lambda v: money(v, MAX_PRICE),
        },
    )


def _checked(body: dict[str, Any], rules: dict, optional: tuple[str, ...] = ()) -> dict:
    unknown = sorted(set(body) - set(rules))
    if unknown:
        raise ValueError(f"unknown field {unknown[0][:64]!r}")
    checked = {}
    for name, rule in rules.items():
        if name not in body and name not in optional:
            raise ValueError(f"missing field {name!r}")
        try:
            checked[name] = rule(body.get(name))
        except ValueError as exc:
            raise ValueError(f"{name} {exc}") from None
    return checked
