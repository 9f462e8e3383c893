"""Rejection stages: only those that are written. `consumer` was allowed from the first
revision and never written by any version (the processor hands everything on, and its
give-ups are stage `storage`); a rejection is now either `processor` (a rule refused the
message) or `storage` (the database did, or the chunk was given up).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 01:30:00+00:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAGE = "ck_rejected_transactions_stage_known"


def upgrade() -> None:
    # None are expected; a row written by hand is kept under the stage that checks rules.
    op.execute("UPDATE rejected_transactions SET stage = 'processor' WHERE stage = 'consumer'")
    op.drop_constraint(STAGE, "rejected_transactions", type_="check")
    op.create_check_constraint(STAGE, "rejected_transactions", "stage IN ('processor', 'storage')")


def downgrade() -> None:
    op.drop_constraint(STAGE, "rejected_transactions", type_="check")
    op.create_check_constraint(
        STAGE, "rejected_transactions", "stage IN ('consumer', 'processor', 'storage')"
    )
