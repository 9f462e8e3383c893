"""Rollup totals over all products (hourly, daily, monthly), for unfiltered reports.

Filled from the per-product rollups, so they agree with them from the start.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 02:20:56.086582+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sales_daily_totals",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("list_revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_sales_daily_totals")),
    )
    op.create_table(
        "sales_hourly_totals",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("list_revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("hour", name=op.f("pk_sales_hourly_totals")),
    )
    op.create_table(
        "sales_monthly_totals",
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("list_revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("month", name=op.f("pk_sales_monthly_totals")),
    )

    for table, column in (("hourly", "hour"), ("daily", "day"), ("monthly", "month")):
        op.execute(
            f"INSERT INTO sales_{table}_totals ({column}, revenue, list_revenue, quantity,"
            f" transactions) SELECT {column}, sum(revenue), sum(list_revenue), sum(quantity),"
            f" sum(transactions) FROM sales_{table} GROUP BY {column}"
        )


def downgrade() -> None:
    op.drop_table("sales_monthly_totals")
    op.drop_table("sales_hourly_totals")
    op.drop_table("sales_daily_totals")
