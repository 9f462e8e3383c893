"""Alert rules, their state and the history of the alerts they raised; the notification
log learns which event and channel each delivery is for. With LOW_SALES_THRESHOLD above 0,
the low-sales check it turned on becomes the first rule.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 08:30:00+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from config import get_settings

# revision identifiers, used by Alembic.
revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = "'low_sales', 'sales_drop', 'high_value_sale', 'no_sales', 'rejections'"
COMPARE_TO = "'previous_window', 'same_window_yesterday', 'same_window_last_week'"


def upgrade() -> None:
    now = sa.text("now()")
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=True),
        sa.Column("category", sa.String(100), nullable=True),
        sa.Column("threshold", sa.Numeric(38, 2), nullable=True),
        sa.Column("drop_percent", sa.Numeric(5, 2), nullable=True),
        sa.Column("compare_to", sa.String(32), nullable=True),
        sa.Column("window_minutes", sa.Integer(), nullable=False),
        sa.Column("cooldown_minutes", sa.Integer(), nullable=False),
        sa.Column("active_hours", sa.String(11), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("channels", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.CheckConstraint(f"kind IN ({KINDS})", name=op.f("ck_alert_rules_kind_known")),
        sa.CheckConstraint(
            f"compare_to IS NULL OR compare_to IN ({COMPARE_TO})",
            name=op.f("ck_alert_rules_compare_to_known"),
        ),
        sa.CheckConstraint(
            "product_id IS NULL OR category IS NULL", name=op.f("ck_alert_rules_one_scope")
        ),
        sa.CheckConstraint(
            "threshold IS NULL OR threshold >= 0",
            name=op.f("ck_alert_rules_threshold_not_negative"),
        ),
        sa.CheckConstraint(
            "drop_percent IS NULL OR drop_percent BETWEEN 0 AND 100",
            name=op.f("ck_alert_rules_drop_percent_in_range"),
        ),
        sa.CheckConstraint(
            "window_minutes >= 1", name=op.f("ck_alert_rules_window_at_least_a_minute")
        ),
        sa.CheckConstraint(
            "cooldown_minutes >= 0", name=op.f("ck_alert_rules_cooldown_not_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rules")),
    )
    op.create_table(
        "alert_states",
        sa.Column("rule_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('ok', 'firing')", name=op.f("ck_alert_states_state_known")),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["alert_rules.id"],
            name=op.f("fk_alert_states_rule_id_alert_rules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("rule_id", name=op.f("pk_alert_states")),
    )
    op.create_table(
        "alert_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("rule_id", sa.BigInteger(), nullable=True),
        sa.Column("rule_name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reminder", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("value", sa.Numeric(38, 2), nullable=True),
        sa.Column("threshold", sa.Numeric(38, 2), nullable=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), server_default=now, nullable=False),
        sa.CheckConstraint(
            "state IN ('firing', 'resolved', 'test')", name=op.f("ck_alert_events_state_known")
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["alert_rules.id"],
            name=op.f("fk_alert_events_rule_id_alert_rules"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_alert_events_event_id")),
    )
    op.create_index("ix_alert_events_rule_id_id", "alert_events", ["rule_id", "id"])
    op.create_index("ix_alert_events_occurred_at", "alert_events", ["occurred_at"])
    # A rule's event is delivered once per channel: a row for each, under the event's id.
    op.add_column("notification_log", sa.Column("event_id", sa.String(200), nullable=True))
    op.add_column("notification_log", sa.Column("channel", sa.String(64), nullable=True))
    op.create_index("ix_notification_log_event_id", "notification_log", ["event_id"])
    seed_low_sales_rule()


def seed_low_sales_rule() -> None:
    """The low-sales check that LOW_SALES_THRESHOLD turned on (revenue of the last
    LOW_SALES_WINDOW_MINUTES below it, once per window, to Telegram) becomes a rule."""
    settings = get_settings()
    if not settings.low_sales_threshold:
        return
    window = settings.low_sales_window_minutes
    op.execute(
        sa.text(
            "INSERT INTO alert_rules (name, kind, threshold, window_minutes, cooldown_minutes,"
            " channels) VALUES (:name, 'low_sales', :threshold, :window, :window,"
            ' \'[{"type": "telegram"}]\')'
        ).bindparams(
            name="Low sales (LOW_SALES_THRESHOLD)",
            threshold=settings.low_sales_threshold,
            window=window,
        )
    )


def downgrade() -> None:
    op.drop_index("ix_notification_log_event_id", "notification_log")
    op.drop_column("notification_log", "channel")
    op.drop_column("notification_log", "event_id")
    op.drop_table("alert_events")
    op.drop_table("alert_states")
    op.drop_table("alert_rules")
