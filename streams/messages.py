"""The wire format: the messages on the transactions topic (the collector writes them,
the processor reads their kind, the worker decodes them), and the chunk items in which
the processor hands them to the worker.

Each message's value is a JSON object; its `kind` header says whether it is a
`transaction` (key: transaction_id) or a `product` (key: product_id). Money travels as
a decimal string, never a float; times as ISO 8601 in UTC.

A chunk item is `[topic, partition, offset, kind, value in base64]`: JSON for Celery's
serializer, the bytes exactly as read, whatever they hold.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from db import rules
from db.models.sales import content_hash

KIND_HEADER = "kind"
TRANSACTION = "transaction"
PRODUCT = "product"


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(rules.CENT))


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


def kind_of(headers: list[tuple[str, bytes]] | None) -> str:
    """A record's kind header, as text (empty when missing; never raises)."""
    return dict(headers or []).get(KIND_HEADER, b"").decode("utf-8", "replace")


def chunk_item(topic: str, partition: int, offset: int, kind: str, value: bytes | None) -> list:
    return [topic, partition, offset, kind, base64.b64encode(value or b"").decode()]


@dataclass(slots=True)
class Message:
    """One Kafka message as the worker handles it: where it was read, its kind header,
    its bytes, and once decoded its checked fields or what was wrong with it."""

    topic: str
    partition: int
    offset: int
    kind: str
    raw: bytes
    body: dict[str, Any] | None = None
    problem: str | None = None
    content_hash: bytes = b""

    @classmethod
    def from_item(cls, item: list) -> Message:
        topic, partition, offset, kind, raw_b64 = item
        return cls(topic, partition, offset, kind, base64.b64decode(raw_b64))


def decode(message: Message) -> None:
    """Parses the message and applies the rules of `db/rules.py` (the collector's own), so
    that everything a column would refuse is refused here, before SQL; sets `problem`
    instead of raising."""
    try:
        body = orjson.loads(message.raw)
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        try:
            received = rules.instant(body.pop("received_at", None))
        except ValueError as exc:
            raise ValueError(f"received_at {exc}") from None
        if message.kind == TRANSACTION:
            checked = rules.transaction(body, received)
            message.content_hash = content_hash(
                checked | {"timestamp": checked["timestamp"].isoformat()}
            )
        elif message.kind == PRODUCT:
            checked = rules.product(body)
        else:
            raise ValueError(f"unknown kind header {message.kind!r}")
        checked["received_at"] = received
        message.body = checked
    except (ValueError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
        message.body = None
        message.problem = str(exc) or type(exc).__name__
