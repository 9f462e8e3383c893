"""Rejected messages: why a message may be rejected, and the one way to record rejections,
which the database takes whatever the message held (NUL bytes, huge or odd values), so
that recording a poison message can never fail its chunk too."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from psycopg2.extras import Json, execute_values

REASONS = (
    "duplicate_conflict",  # the id was stored already with other content
    "amount_above_list_price",  # total_amount exceeds price x quantity
    "unknown_product",  # its product did not arrive in time
    "malformed_message",  # not a valid transaction or product
    "storage_error",  # the database refused it (its error is kept); the rest was stored
    "chunk_failed",  # its chunk failed PROCESSOR_CHUNK_MAX_ATTEMPTS times
)
# Longest text kept from a message inside a rejection's columns and details.
TEXT_LIMIT = 500
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(slots=True)
class Rejection:
    raw: bytes
    reason: str
    stage: str  # 'processor' (a rule refused it) or 'storage' (the database did)
    kind: str
    topic: str
    partition: int
    offset: int
    details: dict[str, Any] = field(default_factory=dict)
    received_at: Any = None
    item: int = 0  # its index in a format-2 record (0 for a record of one item)


def printable(value: str, limit: int = TEXT_LIMIT) -> str:
    """Text any column takes: control characters (NUL among them) written out, bounded."""
    value = value.encode("utf-8", "replace").decode("utf-8")
    value = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def storable(value: Any, depth: int = 0) -> Any:
    """A JSON value JSONB takes: strings made printable, containers bounded."""
    if isinstance(value, str):
        return printable(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if depth < 5 and isinstance(value, dict):
        return {printable(str(k), 64): storable(v, depth + 1) for k, v in list(value.items())[:50]}
    if depth < 5 and isinstance(value, list | tuple):
        return [storable(v, depth + 1) for v in value[:50]]
    return printable(str(value))


def claimed_id(raw: bytes) -> str | None:
    """The transaction id the message claims, kept when it can be looked up as one (the
    raw bytes hold it anyway)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    value = body.get("transaction_id") if isinstance(body, dict) else None
    if isinstance(value, str) and value == printable(value, 200):
        return value
    return None


def insert_rejections(cursor, rejections: list[Rejection]) -> None:
    """Records rejections once per item of a Kafka record (a chunk processed again changes
    nothing)."""
    if not rejections:
        return
    rows = [
        (
            claimed_id(r.raw),
            r.raw,
            r.reason,
            Json(storable(r.details)),
            r.stage,
            printable(r.kind, 32),
            r.topic,
            r.partition,
            r.offset,
            r.item,
            r.received_at if isinstance(r.received_at, datetime) else None,
        )
        for r in rejections
    ]
    execute_values(
        cursor,
        """
        INSERT INTO rejected_transactions (transaction_id, raw_payload, reason, details, stage,
            kind, kafka_topic, kafka_partition, kafka_offset, kafka_item, received_at)
        VALUES %s
        ON CONFLICT ON CONSTRAINT uq_rejected_transactions_source DO NOTHING
        """,
        rows,
        page_size=max(len(rows), 1),
    )
