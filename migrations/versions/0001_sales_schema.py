"""Sales schema: catalog, transactions, rejections, rollups, notification log.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 01:04:01.990466+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("dedup_key", sa.String(length=200), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed', 'suppressed')",
            name=op.f("ck_notification_log_status_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_log")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_notification_log_dedup_key")),
    )
    op.create_index(
        "ix_notification_log_event_type_created_at",
        "notification_log",
        ["event_type", "created_at"],
        unique=False,
    )
    op.create_table(
        "products",
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=False),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("price >= 0", name=op.f("ck_products_price_not_negative")),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_products")),
    )
    op.create_index(
        "ix_products_category_product_id", "products", ["category", "product_id"], unique=False
    )
    op.create_table(
        "rejected_transactions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("transaction_id", sa.Text(), nullable=True),
        sa.Column("raw_payload", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("kafka_topic", sa.String(length=249), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=False),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "rejected_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "stage IN ('consumer', 'processor')", name=op.f("ck_rejected_transactions_stage_known")
        ),
        sa.CheckConstraint(
            "status IN ('open', 'replayed')", name=op.f("ck_rejected_transactions_status_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_transactions")),
        sa.UniqueConstraint(
            "kafka_topic", "kafka_partition", "kafka_offset", name="uq_rejected_transactions_source"
        ),
    )
    op.create_index(
        "ix_rejected_transactions_open",
        "rejected_transactions",
        ["rejected_at"],
        unique=False,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index(
        "ix_rejected_transactions_reason_rejected_at",
        "rejected_transactions",
        ["reason", "rejected_at"],
        unique=False,
    )
    op.create_index(
        "ix_rejected_transactions_transaction_id",
        "rejected_transactions",
        ["transaction_id"],
        unique=False,
    )
    op.create_table(
        "rollup_state",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("watermark", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rollup_state")),
    )
    op.create_table(
        "sales_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("list_revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "transactions >= 0 AND quantity >= 0", name=op.f("ck_sales_daily_counts_not_negative")
        ),
        sa.PrimaryKeyConstraint("day", "product_id", name=op.f("pk_sales_daily")),
    )
    op.create_index(
        "ix_sales_daily_product_id_day", "sales_daily", ["product_id", "day"], unique=False
    )
    op.create_table(
        "sales_hourly",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("list_revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "transactions >= 0 AND quantity >= 0", name=op.f("ck_sales_hourly_counts_not_negative")
        ),
        sa.PrimaryKeyConstraint("hour", "product_id", name=op.f("pk_sales_hourly")),
    )
    op.create_index(
        "ix_sales_hourly_product_id_hour", "sales_hourly", ["product_id", "hour"], unique=False
    )
    op.create_table(
        "transactions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("transaction_id", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("list_amount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column("total_amount", sa.Numeric(precision=20, scale=2), nullable=False),
        sa.Column(
            "discount_amount",
            sa.Numeric(precision=20, scale=2),
            sa.Computed("list_amount - total_amount", persisted=True),
            nullable=False,
        ),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "stored_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("kafka_partition", sa.Integer(), nullable=False),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "list_amount = unit_price * quantity",
            name=op.f("ck_transactions_list_amount_is_price_times_quantity"),
        ),
        sa.CheckConstraint(
            "quantity BETWEEN 1 AND 1000000", name=op.f("ck_transactions_quantity_in_range")
        ),
        sa.CheckConstraint(
            "total_amount >= 0", name=op.f("ck_transactions_total_amount_not_negative")
        ),
        sa.CheckConstraint("unit_price >= 0", name=op.f("ck_transactions_unit_price_not_negative")),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.product_id"],
            name=op.f("fk_transactions_product_id_products"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_transactions_transaction_id")),
    )
    op.create_index("ix_transactions_occurred_at", "transactions", ["occurred_at"], unique=False)
    op.create_index(
        "ix_transactions_product_id_occurred_at",
        "transactions",
        ["product_id", "occurred_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_transactions_product_id_occurred_at", table_name="transactions")
    op.drop_index("ix_transactions_occurred_at", table_name="transactions")
    op.drop_table("transactions")
    op.drop_index("ix_sales_hourly_product_id_hour", table_name="sales_hourly")
    op.drop_table("sales_hourly")
    op.drop_index("ix_sales_daily_product_id_day", table_name="sales_daily")
    op.drop_table("sales_daily")
    op.drop_table("rollup_state")
    op.drop_index("ix_rejected_transactions_transaction_id", table_name="rejected_transactions")
    op.drop_index("ix_rejected_transactions_reason_rejected_at", table_name="rejected_transactions")
    op.drop_index(
        "ix_rejected_transactions_open",
        table_name="rejected_transactions",
        postgresql_where=sa.text("status = 'open'"),
    )
    op.drop_table("rejected_transactions")
    op.drop_index("ix_products_category_product_id", table_name="products")
    op.drop_table("products")
    op.drop_index("ix_notification_log_event_type_created_at", table_name="notification_log")
    op.drop_table("notification_log")
