"""Ingestion bookkeeping: chunks handed to workers, parked transactions, content hashes,
and the outbox of events for Kafka.

No transaction can have been stored before this revision (the pipeline that stores
them arrives with it), so content_hash is added NOT NULL without a backfill.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 01:08:49.401902+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ingest_chunks",
        sa.Column("chunk_id", sa.Uuid(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stored", sa.Integer(), nullable=True),
        sa.Column("duplicates", sa.Integer(), nullable=True),
        sa.Column("rejected", sa.Integer(), nullable=True),
        sa.Column("parked", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("chunk_id", name=op.f("pk_ingest_chunks")),
    )
    op.create_table(
        "parked_transactions",
        sa.Column("transaction_id", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("message", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("content_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("kafka_topic", sa.String(length=249), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=False),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=False),
        sa.Column(
            "parked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("transaction_id", name=op.f("pk_parked_transactions")),
    )
    op.create_index(
        "ix_parked_transactions_expires_at", "parked_transactions", ["expires_at"], unique=False
    )
    op.create_index(
        "ix_parked_transactions_product_id", "parked_transactions", ["product_id"], unique=False
    )
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("topic", sa.String(length=249), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_events_event_id")),
    )
    op.create_index(
        "ix_outbox_events_unpublished",
        "outbox_events",
        ["id"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.add_column(
        "transactions", sa.Column("content_hash", sa.LargeBinary(length=32), nullable=False)
    )


def downgrade() -> None:
    op.drop_index(
        "ix_outbox_events_unpublished",
        table_name="outbox_events",
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_table("outbox_events")
    op.drop_column("transactions", "content_hash")
    op.drop_index("ix_parked_transactions_product_id", table_name="parked_transactions")
    op.drop_index("ix_parked_transactions_expires_at", table_name="parked_transactions")
    op.drop_table("parked_transactions")
    op.drop_table("ingest_chunks")
