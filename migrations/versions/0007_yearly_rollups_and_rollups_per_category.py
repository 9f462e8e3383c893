"""Yearly rollups, and rollups per category for reports filtered by one.

Filled from the rollups already there and, for quarter-hours, from the transactions
already rolled up (below the horizon); each product's sales count under its current
category, which `rollup_categories` records.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 03:26:16.175047+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rollup_categories",
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_rollup_categories")),
    )
    op.create_table(
        "sales_daily_by_category",
        sa.Column("category", sa.String(length=100), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("list_revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("category", "day", name=op.f("pk_sales_daily_by_category")),
    )
    op.create_table(
        "sales_hourly_by_category",
        sa.Column("category", sa.String(length=100), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("list_revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("category", "hour", name=op.f("pk_sales_hourly_by_category")),
    )
    op.create_table(
        "sales_monthly_by_category",
        sa.Column("category", sa.String(length=100), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("list_revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("category", "month", name=op.f("pk_sales_monthly_by_category")),
    )
    op.create_table(
        "sales_quarter_hour_by_category",
        sa.Column("category", sa.String(length=100), nullable=False),
        sa.Column("quarter", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("list_revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "category", "quarter", name=op.f("pk_sales_quarter_hour_by_category")
        ),
    )
    op.create_table(
        "sales_yearly",
        sa.Column("year", sa.Date(), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("list_revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "transactions >= 0 AND quantity >= 0", name=op.f("ck_sales_yearly_counts_not_negative")
        ),
        sa.PrimaryKeyConstraint("year", "product_id", name=op.f("pk_sales_yearly")),
    )
    op.create_index(
        "ix_sales_yearly_product_id_year", "sales_yearly", ["product_id", "year"], unique=False
    )
    op.create_table(
        "sales_yearly_by_category",
        sa.Column("category", sa.String(length=100), nullable=False),
        sa.Column("year", sa.Date(), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("list_revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("category", "year", name=op.f("pk_sales_yearly_by_category")),
    )
    op.create_table(
        "sales_yearly_totals",
        sa.Column("year", sa.Date(), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("list_revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("year", name=op.f("pk_sales_yearly_totals")),
    )

    op.execute(
        "INSERT INTO rollup_categories (product_id, category)"
        " SELECT product_id, category FROM products"
    )
    figures = "sum(revenue), sum(list_revenue), sum(quantity), sum(transactions)"
    columns = "revenue, list_revenue, quantity, transactions"
    for table, column in (("hourly", "hour"), ("daily", "day"), ("monthly", "month")):
        op.execute(
            f"INSERT INTO sales_{table}_by_category (category, {column}, {columns})"
            f" SELECT c.category, r.{column}, {figures} FROM sales_{table} r"
            f" JOIN rollup_categories c USING (product_id) GROUP BY 1, 2"
        )
    op.execute(
        f"INSERT INTO sales_quarter_hour_by_category (category, quarter, {columns})"
        " SELECT c.category, date_bin('15 minutes', t.occurred_at,"
        " TIMESTAMPTZ '2000-01-01 00:00:00+00'), sum(t.total_amount), sum(t.list_amount),"
        " sum(t.quantity), count(*) FROM transactions t"
        " JOIN rollup_categories c USING (product_id)"
        " WHERE t.ingest_xid < coalesce((SELECT watermark FROM rollup_state"
        " WHERE name = 'sales'), 0) GROUP BY 1, 2"
    )
    op.execute(
        f"INSERT INTO sales_yearly (year, product_id, {columns})"
        f" SELECT date_trunc('year', month)::date, product_id, {figures}"
        " FROM sales_monthly GROUP BY 1, 2"
    )
    op.execute(
        f"INSERT INTO sales_yearly_totals (year, {columns})"
        f" SELECT date_trunc('year', month)::date, {figures} FROM sales_monthly_totals"
        " GROUP BY 1"
    )
    op.execute(
        f"INSERT INTO sales_yearly_by_category (category, year, {columns})"
        f" SELECT category, date_trunc('year', month)::date, {figures}"
        " FROM sales_monthly_by_category GROUP BY 1, 2"
    )


def downgrade() -> None:
    op.drop_table("sales_yearly_totals")
    op.drop_table("sales_yearly_by_category")
    op.drop_index("ix_sales_yearly_product_id_year", table_name="sales_yearly")
    op.drop_table("sales_yearly")
    op.drop_table("sales_quarter_hour_by_category")
    op.drop_table("sales_monthly_by_category")
    op.drop_table("sales_hourly_by_category")
    op.drop_table("sales_daily_by_category")
    op.drop_table("rollup_categories")
