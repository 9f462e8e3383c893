"""Stored sales transactions and the ones refused on the way."""

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.rules import CENT
from db.types import CreatedAt, Identifier, Money, Price, Timestamp


def content_hash(body: dict[str, Any]) -> bytes:
    """What identifies a transaction's content: the fields the client sent, canonically.
    Stored as `Transaction.content_hash`: the same id with the same hash is a resend."""
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


class Transaction(Base):
    __tablename__ = "transactions"
    __table_args__ = (
        CheckConstraint("quantity BETWEEN 1 AND 1000000", name="quantity_in_range"),
        CheckConstraint("unit_price >= 0", name="unit_price_not_negative"),
        CheckConstraint("total_amount >= 0", name="total_amount_not_negative"),
        CheckConstraint(
            "list_amount = unit_price * quantity", name="list_amount_is_price_times_quantity"
        ),
        Index("ix_transactions_occurred_at", "occurred_at"),
        Index("ix_transactions_product_id_occurred_at", "product_id", "occurred_at"),
        Index("ix_transactions_ingest_xid", "ingest_xid"),
        Index("ix_transactions_stored_at", "stored_at"),
    )

    # Internal, monotonic at insert: lets jobs walk the table in order.
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # The client's idempotency key, end to end.
    transaction_id: Mapped[Identifier] = mapped_column(unique=True)
    product_id: Mapped[Identifier] = mapped_column(ForeignKey("products.product_id"))
    quantity: Mapped[int] = mapped_column(Integer)
    # The catalog price when the transaction was processed.
    unit_price: Mapped[Price]
    # unit_price * quantity.
    list_amount: Mapped[Money]
    # What the customer paid: the client's total_amount, or list_amount when it sent none.
    total_amount: Mapped[Money]
    discount_amount: Mapped[Decimal] = mapped_column(
        Numeric(20, 2), Computed("list_amount - total_amount", persisted=True)
    )
    # The sale's own time (the API's `timestamp`).
    occurred_at: Mapped[Timestamp]
    # When the collector accepted it, and when it was written here.
    received_at: Mapped[Timestamp]
    stored_at: Mapped[CreatedAt]
    kafka_partition: Mapped[int] = mapped_column(Integer)
    kafka_offset: Mapped[int] = mapped_column(BigInteger)
    # Its index among its record's items (0 for a record of one item).
    kafka_item: Mapped[int] = mapped_column(Integer, server_default="0")
    # The id of the database transaction that stored the row (pg_current_xact_id()). Every
    # row of a transaction older than the oldest one still running is final, so the
    # rollup job takes rows by this id, never missing one committed late.
    ingest_xid: Mapped[int] = mapped_column(
        BigInteger, server_default=text("(pg_current_xact_id())::text::bigint")
    )
    # SHA-256 of the fields the client sent: the same id again with the same hash is a
    # harmless resend, with another hash a conflict.
    content_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class RejectedTransaction(Base):
    """A message that could not become a transaction, kept whole so that it can be replayed."""

    __tablename__ = "rejected_transactions"
    __table_args__ = (
        CheckConstraint("stage IN ('processor', 'storage')", name="stage_known"),
        CheckConstraint("status IN ('open', 'replayed')", name="status_known"),
        # An item of a Kafka record is rejected once, however often its chunk is processed.
        UniqueConstraint(
            "kafka_topic",
            "kafka_partition",
            "kafka_offset",
            "kafka_item",
            name="uq_rejected_transactions_source",
        ),
        Index("ix_rejected_transactions_reason_rejected_at", "reason", "rejected_at"),
        Index("ix_rejected_transactions_transaction_id", "transaction_id"),
        Index(
            "ix_rejected_transactions_open", "rejected_at", postgresql_where=text("status = 'open'")
        ),
        # For the retention purge (tasks/upkeep.py).
        Index(
            "ix_rejected_transactions_replayed_at",
            "replayed_at",
            postgresql_where=text("status = 'replayed'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # As sent, when it could be read; it may not be a valid identifier.
    transaction_id: Mapped[str | None] = mapped_column(Text)
    # The record's bytes as they came off Kafka (may not even be valid JSON or UTF-8); for
    # an item of a format-2 record, the format-1 record it would have been.
    raw_payload: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    stage: Mapped[str] = mapped_column(String(32))
    # The message's kind header (transaction or product), needed to replay it.
    kind: Mapped[str] = mapped_column(String(32))
    kafka_topic: Mapped[str] = mapped_column(String(249))
    kafka_partition: Mapped[int] = mapped_column(Integer)
    kafka_offset: Mapped[int] = mapped_column(BigInteger)
    kafka_item: Mapped[int] = mapped_column(Integer, server_default="0")
    received_at: Mapped[Timestamp | None]
    rejected_at: Mapped[CreatedAt]
    status: Mapped[str] = mapped_column(String(16), server_default="open")
    replayed_at: Mapped[Timestamp | None]
