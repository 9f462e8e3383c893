"""The format of the messages on the transactions topic, shared by the collector that
writes them and the processor that reads them.

Each message's value is a JSON object; its `kind` header says whether it is a
`transaction` (key: transaction_id) or a `product` (key: product_id). Money travels as
a decimal string, never a float; times as ISO 8601 in UTC.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

KIND_HEADER = "kind"
TRANSACTION = "transaction"
PRODUCT = "product"
CENT = Decimal("0.01")


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(CENT))


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class Outgoing:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def transaction_message(item: dict[str, Any], received_at: datetime) -> Outgoing:
    body = {
        "transaction_id": item["transaction_id"],
        "product_id": item["product_id"],
        "quantity": item["quantity"],
        "total_amount": _money(item.get("total_amount")),
        "timestamp": _time(item["timestamp"]),
        "received_at": _time(received_at),
    }
    return Outgoing(
        item["transaction_id"].encode(), orjson.dumps(body), [(KIND_HEADER, TRANSACTION.encode())]
    )


def product_message(item: dict[str, Any], received_at: datetime) -> Outgoing:
    body = {
        "product_id": item["product_id"],
        "name": item["name"],
        "category": item["category"],
        "price": _money(item["price"]),
        "received_at": _time(received_at),
    }
    return Outgoing(
        item["product_id"].encode(), orjson.dumps(body), [(KIND_HEADER, PRODUCT.encode())]
    )


def content_hash(body: dict[str, Any]) -> bytes:
    """What identifies a transaction's content: the fields the client sent, canonically."""
    total = body.get("total_amount")
    canonical = "\x1f".join(
        [
            body["transaction_id"],
            body["product_id"],
            str(int(body["quantity"])),
            "" if total is None else str(Decimal(total).quantize(CENT)),
            datetime.fromisoformat(body["timestamp"]).astimezone(UTC).isoformat(),
        ]
    )
    return hashlib.sha256(canonical.encode()).digest()
