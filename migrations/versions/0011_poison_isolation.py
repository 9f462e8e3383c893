"""Poison isolation: a message the database refuses is rejected at stage `storage`, and a
chunk that keeps failing ends in a recorded `failed` state instead of being sent for ever.

- `rejected_transactions.stage` may be `storage`: the worker isolates a message the
  database refused (with the database's error) and stores the rest of its chunk.
- `ingest_chunks` counts the attempts workers started and the ones that failed, keeps
  the last error, and `failed_at` marks a chunk given up after
  PROCESSOR_CHUNK_MAX_ATTEMPTS (its messages are then rejected).
- Rollup sums (`revenue`, `list_revenue` of every rollup table) widen from
  Numeric(24,2) to Numeric(38,2): a bucket held a million of the largest totals the
  rules accept, and one more would have failed every rollup run; now 10^20. The two
  report views read those columns, so they are dropped and made again from their own
  definitions (PostgreSQL widens the columns without rewriting the tables).
- Partial indexes for the retention purges: replayed rejections by `replayed_at`,
  published outbox events by `published_at`.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 21:55:00+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAGE = "ck_rejected_transactions_stage_known"
VIEWS = ("sales_by_day", "sales_by_day_and_product")


def _rollup_sums(precision_from: int, precision_to: int) -> None:
    conn = op.get_bind()
    views = conn.execute(
        sa.text(
            "SELECT viewname, definition FROM pg_views"
            " WHERE schemaname = current_schema() AND viewname = ANY(:views)"
        ),
        {"views": list(VIEWS)},
    ).all()
    for name, _ in views:
        op.execute(f'DROP VIEW "{name}"')
    columns = conn.execute(
        sa.text(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c"
            " JOIN information_schema.tables t USING (table_schema, table_name)"
            " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
            " AND c.column_name IN ('revenue', 'list_revenue')"
            " AND c.numeric_precision = :precision"
        ),
        {"precision": precision_from},
    ).all()
    for table, column in columns:
        op.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE numeric({precision_to}, 2)')
    for name, definition in views:
        op.execute(f'CREATE VIEW "{name}" AS {definition}')


def upgrade() -> None:
    op.drop_constraint(STAGE, "rejected_transactions", type_="check")
    op.create_check_constraint(
        STAGE, "rejected_transactions", "stage IN ('consumer', 'processor', 'storage')"
    )
    op.add_column(
        "ingest_chunks",
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "ingest_chunks",
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("ingest_chunks", sa.Column("last_error", sa.Text(), nullable=True))
    op.add_column(
        "ingest_chunks", sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True)
    )
    _rollup_sums(24, 38)
    op.create_index(
        "ix_rejected_transactions_replayed_at",
        "rejected_transactions",
        ["replayed_at"],
        postgresql_where=sa.text("status = 'replayed'"),
    )
    op.create_index(
        "ix_outbox_events_published_at",
        "outbox_events",
        ["published_at"],
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_events_published_at", table_name="outbox_events")
    op.drop_index("ix_rejected_transactions_replayed_at", table_name="rejected_transactions")
    _rollup_sums(38, 24)
    op.drop_column("ingest_chunks", "failed_at")
    op.drop_column("ingest_chunks", "last_error")
    op.drop_column("ingest_chunks", "failures")
    op.drop_column("ingest_chunks", "attempts")
    op.execute("DELETE FROM rejected_transactions WHERE stage = 'storage'")
    op.drop_constraint(STAGE, "rejected_transactions", type_="check")
    op.create_check_constraint(STAGE, "rejected_transactions", "stage IN ('consumer', 'processor')")
