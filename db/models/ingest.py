"""Bookkeeping of the ingestion pipeline: chunks handed to workers, transactions waiting
for their product."""

import uuid
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, Text, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.types import CreatedAt, Identifier, Timestamp


class IngestChunk(Base):
    """One chunk of Kafka messages handed to a worker.

    The worker sets `finished_at` in the same database transaction that stores the
    chunk's rows, so a finished chunk is durably stored and its offsets may be
    committed; one that stays unfinished is handed on again.
    """

    __tablename__ = "ingest_chunks"

    chunk_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    messages: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[CreatedAt]
    finished_at: Mapped[Timestamp | None]
    # Attempts workers started, those that ended in an error and the last error, and
    # when the processor gave the chunk up (its messages are then rejected, never dropped).
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    failures: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    failed_at: Mapped[Timestamp | None]
    stored: Mapped[int | None] = mapped_column(Integer)
    duplicates: Mapped[int | None] = mapped_column(Integer)
    rejected: Mapped[int | None] = mapped_column(Integer)
    parked: Mapped[int | None] = mapped_column(Integer)


class ParkedTransaction(Base):
    """A valid transaction whose product is not in the catalog yet.

    It is stored as soon as its product arrives, and rejected as `unknown_product`
    once `expires_at` passes without it.
    """

    __tablename__ = "parked_transactions"
    __table_args__ = (
        Index("ix_parked_transactions_product_id", "product_id"),
        Index("ix_parked_transactions_expires_at", "expires_at"),
    )

    transaction_id: Mapped[Identifier] = mapped_column(primary_key=True)
    product_id: Mapped[Identifier]
    # The message as the processor read it, to be stored or rejected later.
    message: Mapped[dict[str, Any]] = mapped_column(JSONB)
    content_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    kafka_topic: Mapped[str] = mapped_column(String(249))
    kafka_partition: Mapped[int] = mapped_column(Integer)
    kafka_offset: Mapped[int] = mapped_column(BigInteger)
    kafka_item: Mapped[int] = mapped_column(Integer, server_default="0")
    parked_at: Mapped[CreatedAt]
    expires_at: Mapped[Timestamp]
