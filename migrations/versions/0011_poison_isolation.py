"""Poison isolation: a message the database refuses is rejected at stage `storage`, and a
chunk that keeps failing ends in a recorded `failed` state instead of being sent for ever.

- `rejected_transactions.stage` may be `storage`: the worker isolates a message the
  database refused (with the database's error) and stores the rest of its chunk.
- `ingest_chunks` counts the attempts workers started and the ones that failed, keeps
  the last error, and `failed_at` marks a chunk given up after
  PROCESSOR_CHUNK_MAX_ATTEMPTS (its messages are then rejected).

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


def downgrade() -> None:
    op.drop_column("ingest_chunks", "failed_at")
    op.drop_column("ingest_chunks", "last_error")
    op.drop_column("ingest_chunks", "failures")
    op.drop_column("ingest_chunks", "attempts")
    op.execute("DELETE FROM rejected_transactions WHERE stage = 'storage'")
    op.drop_constraint(STAGE, "rejected_transactions", type_="check")
    op.create_check_constraint(STAGE, "rejected_transactions", "stage IN ('consumer', 'processor')")
