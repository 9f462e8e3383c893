"""Alert rules (written over the Notification Service's API), the state of each rule
(ok or firing) and every alert event the rules raised: the history."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.types import CreatedAt, Identifier, Timestamp

KINDS = ("low_sales", "sales_drop", "high_value_sale", "no_sales", "rejections")
COMPARE_TO = ("previous_window", "same_window_yesterday", "same_window_last_week")
STATES = ("ok", "firing")
# What an event in the history says happened.
EVENT_STATES = ("firing", "resolved", "test")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class AlertRule(Base):
    __tablename__ = "alert_rules"
    __table_args__ = (
        CheckConstraint(_one_of("kind", KINDS), name="kind_known"),
        CheckConstraint(
            "compare_to IS NULL OR " + _one_of("compare_to", COMPARE_TO), name="compare_to_known"
        ),
        CheckConstraint("product_id IS NULL OR category IS NULL", name="one_scope"),
        CheckConstraint("threshold IS NULL OR threshold >= 0", name="threshold_not_negative"),
        CheckConstraint(
            "drop_percent IS NULL OR drop_percent BETWEEN 0 AND 100", name="drop_percent_in_range"
        ),
        CheckConstraint("window_minutes >= 1", name="window_at_least_a_minute"),
        CheckConstraint("cooldown_minutes >= 0", name="cooldown_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    # The scope: both empty is every sale; at most one is set.
    product_id: Mapped[Identifier | None]
    category: Mapped[str | None] = mapped_column(String(100))
    threshold: Mapped[Decimal | None] = mapped_column(Numeric(38, 2))
    drop_percent: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    compare_to: Mapped[str | None] = mapped_column(String(32))
    window_minutes: Mapped[int] = mapped_column(Integer)
    cooldown_minutes: Mapped[int] = mapped_column(Integer)
    # "HH:MM-HH:MM" in the report zone (no_sales only); empty: all day.
    active_hours: Mapped[str | None] = mapped_column(String(11))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # [{"type": "telegram", "chat_id": ...}, {"type": "webhook", "url": ..., "secret": ...}]
    channels: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]


class AlertState(Base):
    """Where each rule stands; a rule without a row is ok."""

    __tablename__ = "alert_states"
    __table_args__ = (CheckConstraint(_one_of("state", STATES), name="state_known"),)

    rule_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("alert_rules.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(String(16))
    # Since when it is in this state, and when its last event was raised (the cooldown).
    since: Mapped[Timestamp]
    last_event_at: Mapped[Timestamp]
    evaluated_at: Mapped[Timestamp]


class AlertEvent(Base):
    """An alert a rule raised (firing, a reminder, resolved), as it was sent out."""

    __tablename__ = "alert_events"
    __table_args__ = (
        CheckConstraint(_one_of("state", EVENT_STATES), name="state_known"),
        Index("ix_alert_events_rule_id_id", "rule_id", "id"),
        Index("ix_alert_events_occurred_at", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # The notification event's id: alert:<id>.
    event_id: Mapped[str] = mapped_column(String(200), unique=True)
    # Kept when the rule is deleted: the history stays.
    rule_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("alert_rules.id", ondelete="SET NULL")
    )
    rule_name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    reminder: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # What was observed: revenue, a count, or a drop in percent (by kind).
    value: Mapped[Decimal | None] = mapped_column(Numeric(38, 2))
    threshold: Mapped[Decimal | None] = mapped_column(Numeric(38, 2))
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The whole event, as published to the notifications topic.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    occurred_at: Mapped[CreatedAt]
