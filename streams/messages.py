"""The wire format: the records on the transactions topic (the collector writes them,
the processor reads their headers, the worker decodes them), and the chunk items in
which the processor hands them to the worker.

A record's `kind` header says whether it holds transactions or products. Money travels
as a decimal string, never a float; times as ISO 8601 in UTC. Two formats, both read:

- **format 1** (no `format` header): one item, `{...the item's fields, "received_at"}`,
  keyed by its id (transaction_id or product_id). The single-item endpoints and replay
  write it.
- **format 2** (`format: 2`, and `items: N`): the items of one request that share a
  partition, `{"received_at": ..., "items": [{...}, ...]}`, at most RECORD_MAX_BYTES. Each
  item goes to the partition a format-1 record keyed by its id would go to, so a product's
  versions and an id's resends keep their order whatever the format. An item is addressed
  by its record's topic, partition and offset and its index in `items`; a rejected one is
  kept as the format-1 record it would have been, to be replayed alone.

A chunk item is `[topic, partition, offset, kind, value in base64, format]`: JSON for
Celery's serializer, the bytes exactly as read, whatever they hold (chunks sent before
format 2 have no sixth element).
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
FORMAT_HEADER = "format"
ITEMS_HEADER = "items"
TRANSACTION = "transaction"
PRODUCT = "product"
BATCH_FORMAT = 2
# Under the broker's and the producer's default limit of 1 MB per record, whatever the
# items hold (a product may take 2 KB of escaped JSON).
RECORD_MAX_BYTES = 512 * 1024


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(rules.CENT))


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A record to write; `partition` None lets the producer's partitioner choose by key."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int | None = None


def transaction_fields(item: dict[str, Any]) -> dict[str, Any]:
    """A validated transaction as the wire carries it."""
    return {
        "transaction_id": item["transaction_id"],
        "product_id": item["product_id"],
        "quantity": item["quantity"],
        "total_amount": _money(item.get("total_amount")),
        "timestamp": _time(item["timestamp"]),
    }


def product_fields(item: dict[str, Any]) -> dict[str, Any]:
    """A validated product as the wire carries it."""
    return {
        "product_id": item["product_id"],
        "name": item["name"],
        "category": item["category"],
        "price": _money(item["price"]),
    }


FIELDS = {TRANSACTION: transaction_fields, PRODUCT: product_fields}
KEY = {TRANSACTION: "transaction_id", PRODUCT: "product_id"}


def single_record(kind: str, item: dict[str, Any], received_at: datetime) -> Outgoing:
    """Format 1: one item."""
    body = FIELDS[kind](item) | {"received_at": _time(received_at)}
    return Outgoing(item[KEY[kind]].encode(), orjson.dumps(body), [(KIND_HEADER, kind.encode())])


def batch_records(
    kind: str, items: list[dict[str, Any]], received_at: datetime, partition: int | None = None
) -> list[Outgoing]:
    """Format 2: the items (of one partition), in their order, in as few records as
    RECORD_MAX_BYTES allows."""
    head = b'{"received_at":' + orjson.dumps(_time(received_at)) + b',"items":['
    records: list[Outgoing] = []
    parts: list[bytes] = []
    size = len(head)

    def close() -> None:
        headers = [
            (KIND_HEADER, kind.encode()),
            (FORMAT_HEADER, str(BATCH_FORMAT).encode()),
            (ITEMS_HEADER, str(len(parts)).encode()),
        ]
        records.append(Outgoing(None, head + b",".join(parts) + b"]}", headers, partition))

    to_wire = FIELDS[kind]
    for item in items:
        part = orjson.dumps(to_wire(item))
        if parts and size + len(part) + 3 > RECORD_MAX_BYTES:
            close()
            parts, size = [], len(head)
        parts.append(part)
        size += len(part) + 1
    if parts:
        close()
    return records


def _header(headers: list[tuple[str, bytes]] | None, name: str) -> str:
    for key, value in headers or ():
        if key == name:
            return (value or b"").decode("utf-8", "replace")
    return ""


def kind_of(headers: list[tuple[str, bytes]] | None) -> str:
    """A record's kind header, as text (empty when missing; never raises)."""
    return _header(headers, KIND_HEADER)


def format_of(headers: list[tuple[str, bytes]] | None) -> int:
    """A record's format: 2 when its header says so, else 1 (never raises)."""
    return BATCH_FORMAT if _header(headers, FORMAT_HEADER) == str(BATCH_FORMAT) else 1


def items_in(headers: list[tuple[str, bytes]] | None) -> int:
    """How many items a record says it carries (1 for format 1 or a header that lies
    about it: it only sizes chunks)."""
    if format_of(headers) != BATCH_FORMAT:
        return 1
    count = _header(headers, ITEMS_HEADER)
    return max(1, min(int(count), 100_000)) if count.isdigit() else 1


def chunk_item(
    topic: str, partition: int, offset: int, headers: list[tuple[str, bytes]] | None, value
) -> list:
    return [
        topic,
        partition,
        offset,
        kind_of(headers),
        base64.b64encode(value or b"").decode(),
        format_of(headers),
    ]


@dataclass(slots=True)
class Message:
    """One item as the worker handles it: where it was read (its record's place and its
    index there), its kind, its bytes (or, out of a format-2 record, its parsed value and
    the record's reception time), and once decoded its checked fields or what was wrong."""

    topic: str
    partition: int
    offset: int
    kind: str
    raw: bytes
    item: int = 0
    format: int = 1
    # An item out of a format-2 record: its parsed value, and the record's reception time.
    in_batch: bool = False
    source: Any = None
    received_at: datetime | None = None
    body: dict[str, Any] | None = None
    problem: str | None = None
    content_hash: bytes = b""

    @classmethod
    def from_item(cls, item: list) -> Message:
        topic, partition, offset, kind, raw_b64, *rest = item
        return cls(
            topic, partition, offset, kind, base64.b64decode(raw_b64), format=rest[0] if rest else 1
        )

    def payload(self) -> bytes:
        """The bytes to keep for a rejection or a replay: the record's own, or for an item
        of a format-2 record the format-1 record it would have been."""
        if not self.in_batch:
            return self.raw
        if isinstance(self.source, dict):
            return orjson.dumps(self.source | {"received_at": _time(self.received_at)})
        return orjson.dumps(self.source)


def _reception(value: Any) -> datetime:
    """A record's received_at, by the rules; its ValueError names the field."""
    try:
        return rules.instant(value)
    except ValueError as exc:
        raise ValueError(f"received_at {exc}") from None


def items_of(record: Message) -> list[Message]:
    """A record's items, each a Message of its own. A format-1 record is its own item; a
    format-2 record whose envelope cannot be read is one malformed item (its bytes kept
    whole), since none of its items can be told apart."""
    if record.format != BATCH_FORMAT:
        return [record]
    try:
        envelope = orjson.loads(record.raw)
        if not isinstance(envelope, dict) or set(envelope) != {"received_at", "items"}:
            raise ValueError('a format 2 record must be {"received_at": ..., "items": [...]}')
        if not isinstance(envelope["items"], list) or not envelope["items"]:
            raise ValueError("a format 2 record's items must be a non-empty list")
        received = _reception(envelope["received_at"])
    except (ValueError, TypeError) as exc:
        record.problem = str(exc) or type(exc).__name__
        return [record]
    return [
        Message(
            record.topic,
            record.partition,
            record.offset,
            record.kind,
            b"",
            item=index,
            format=BATCH_FORMAT,
            in_batch=True,
            source=value,
            received_at=received,
        )
        for index, value in enumerate(envelope["items"])
    ]


def decode(message: Message) -> None:
    """Parses the item and applies the rules of `db/rules.py` (the collector's own), so
    that everything a column would refuse is refused here, before SQL; sets `problem`
    instead of raising (and keeps one items_of set)."""
    if message.problem:
        return
    try:
        if not message.in_batch:
            body = orjson.loads(message.raw)
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
            received = _reception(body.pop("received_at", None))
        else:
            body, received = message.source, message.received_at
            if not isinstance(body, dict):
                raise ValueError(f"item {message.item} is not a JSON object")
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
