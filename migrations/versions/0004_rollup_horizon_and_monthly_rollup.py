"""Rollup horizon (transactions.ingest_xid) and the monthly rollup.

Existing rows take the id of this migration's transaction, so the next rollup run
includes them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 02:00:31.552467+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sales_monthly",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("list_revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "transactions >= 0 AND quantity >= 0", name=op.f("ck_sales_monthly_counts_not_negative")
        ),
        sa.PrimaryKeyConstraint("month", "product_id", name=op.f("pk_sales_monthly")),
    )
    op.create_index(
        "ix_sales_monthly_product_id_month", "sales_monthly", ["product_id", "month"], unique=False
    )
    op.add_column(
        "transactions",
        sa.Column(
            "ingest_xid",
            sa.BigInteger(),
            server_default=sa.text("(pg_current_xact_id())::text::bigint"),
            nullable=False,
        ),
    )
    op.create_index("ix_transactions_ingest_xid", "transactions", ["ingest_xid"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_transactions_ingest_xid", table_name="transactions")
    op.drop_column("transactions", "ingest_xid")
    op.drop_index("ix_sales_monthly_product_id_month", table_name="sales_monthly")
    op.drop_table("sales_monthly")
