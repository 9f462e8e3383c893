"""The rollup state records the highest transaction id at its last run, so that a run
can be started early when many rows wait.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 03:58:32.124285+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "rollup_state",
        sa.Column("last_row_id", sa.BigInteger(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("rollup_state", "last_row_id")
