"""The two checks the environment still set become alert rules: HIGH_VALUE_THRESHOLD
(above 0) a high_value_sale rule over all sales, REJECTION_BURST_THRESHOLD and its window
a rejections rule; both to Telegram, as the checks were. Transactions get an index on
stored_at, which the no_sales and high_value_sale rules read.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 13:30:00+00:00

"""

import math
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from config import get_settings

# revision identifiers, used by Alembic.
revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A high-value digest at most every quarter of an hour, listing the sales since the last.
HIGH_VALUE_MINUTES = 15
TELEGRAM = '[{"type": "telegram"}]'


def upgrade() -> None:
    op.create_index("ix_transactions_stored_at", "transactions", ["stored_at"])
    settings = get_settings()
    insert = sa.text(
        "INSERT INTO alert_rules (name, kind, threshold, window_minutes, cooldown_minutes,"
        " channels) VALUES (:name, :kind, :threshold, :window, :window, CAST(:channels AS jsonb))"
    )
    if settings.high_value_threshold:
        op.execute(
            insert.bindparams(
                name="High-value sales (HIGH_VALUE_THRESHOLD)",
                kind="high_value_sale",
                threshold=settings.high_value_threshold,
                window=HIGH_VALUE_MINUTES,
                channels=TELEGRAM,
            )
        )
    op.execute(
        insert.bindparams(
            name="Rejections (REJECTION_BURST_THRESHOLD)",
            kind="rejections",
            threshold=settings.rejection_burst_threshold,
            window=max(1, math.ceil(settings.rejection_burst_window_seconds / 60)),
            channels=TELEGRAM,
        )
    )


def downgrade() -> None:
    op.execute(
        "DELETE FROM alert_rules WHERE name IN"
        " ('High-value sales (HIGH_VALUE_THRESHOLD)', 'Rejections (REJECTION_BURST_THRESHOLD)')"
    )
    op.drop_index("ix_transactions_stored_at", "transactions")
