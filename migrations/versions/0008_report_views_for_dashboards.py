"""Views with the reports' figures per day, for dashboards and direct SQL.

`report_day(t)` is the day an instant falls on in the rollups' time zone (REPORT_TIMEZONE,
as recorded by the rollup job); `sales_by_day` and `sales_by_day_and_product` hold the
exact figures of every such day: the daily rollups plus the rows stored since the last
rollup run, as the API computes them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 03:50:00.000000+00:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The rows stored since the last rollup run, on their day in the rollups' zone.
TAIL = """
    SELECT (t.occurred_at AT TIME ZONE s.timezone)::date AS day, {key}
           t.total_amount AS revenue, 1 AS transactions, t.quantity
    FROM rollup_state s JOIN transactions t ON t.ingest_xid >= s.watermark
    WHERE s.name = 'sales'
"""
FIGURES = """
    sum(revenue) AS revenue, sum(transactions) AS transactions, sum(quantity) AS quantity,
    round(sum(revenue) / nullif(sum(transactions), 0), 2) AS avg_purchase_value
"""


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION report_day(moment timestamptz) RETURNS date
        LANGUAGE sql STABLE AS $$
            SELECT (moment AT TIME ZONE timezone)::date FROM rollup_state WHERE name = 'sales'
        $$
        """
    )
    op.execute(
        f"""
        CREATE VIEW sales_by_day AS
        SELECT day, {FIGURES} FROM (
            SELECT day, revenue, transactions, quantity FROM sales_daily_totals
            UNION ALL {TAIL.format(key="")}
        ) f GROUP BY day
        """
    )
    op.execute(
        f"""
        CREATE VIEW sales_by_day_and_product AS
        SELECT day, product_id, {FIGURES} FROM (
            SELECT day, product_id, revenue, transactions, quantity FROM sales_daily
            UNION ALL {TAIL.format(key="t.product_id,")}
        ) f GROUP BY day, product_id
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW sales_by_day_and_product")
    op.execute("DROP VIEW sales_by_day")
    op.execute("DROP FUNCTION report_day(timestamptz)")
