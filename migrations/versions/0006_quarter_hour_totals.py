"""Quarter-hour totals over all products, for zones whose offset is not whole hours.

Filled from the transactions already rolled up (below the horizon), like the others.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 02:25:07.387782+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sales_quarter_hour_totals",
        sa.Column("quarter", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("list_revenue", sa.Numeric(precision=24, scale=2), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("transactions", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("quarter", name=op.f("pk_sales_quarter_hour_totals")),
    )

    op.execute(
        "INSERT INTO sales_quarter_hour_totals (quarter, revenue, list_revenue, quantity,"
        " transactions) SELECT date_bin('15 minutes', occurred_at,"
        " TIMESTAMPTZ '2000-01-01 00:00:00+00'), sum(total_amount), sum(list_amount),"
        " sum(quantity), count(*) FROM transactions"
        " WHERE ingest_xid < coalesce((SELECT watermark FROM rollup_state"
        " WHERE name = 'sales'), 0) GROUP BY 1"
    )


def downgrade() -> None:
    op.drop_table("sales_quarter_hour_totals")
