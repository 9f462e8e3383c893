"""Alert events of the rules (docs/events/notification.v2.schema.json): built here, and
written to the history (`alert_events`) and the outbox in the caller's transaction, by
the rules' evaluation and by the Notification Service's test messages alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg2.extras import Json, execute_values
from sqlalchemy import Connection

SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Check:
    """What a rule found in one evaluation."""

    holds: bool
    value: Decimal | None
    window: tuple[datetime, datetime]
    details: dict[str, Any]
    # Whether a reminder would say something new (a digest with no new sale would not).
    news: bool = True


def alert_event(rule, found: Check, state: str, at: datetime, *, reminder: bool) -> dict:
    """The event of a rule that started to hold (firing), still holds after its cooldown
    (firing, a reminder), stopped holding (resolved), or is tried out (test)."""
    start, end = found.window
    threshold = rule["drop_percent"] if rule["kind"] == "sales_drop" else rule["threshold"]
    label = "reminder" if reminder else state
    return {
        "schema_version": SCHEMA_VERSION,
        # One event per rule, state and minute: a second evaluation of the same minute
        # raises nothing new.
        "event_id": f"alert:{rule['id']}:{label}:{at.astimezone(UTC):%Y%m%dT%H%MZ}",
        "type": rule["kind"],
        "severity": "info" if state in ("resolved", "test") else "warning",
        "occurred_at": datetime.now(UTC).isoformat(),
        "state": state,
        "reminder": reminder,
        "rule": {"id": rule["id"], "name": rule["name"]},
        "scope": {k: rule[k] for k in ("product_id", "category") if rule[k] is not None},
        "value": None if found.value is None else f"{found.value:.2f}",
        "threshold": None if threshold is None else f"{threshold:.2f}",
        "window": {
            "start": start.astimezone(UTC).isoformat(),
            "end": end.astimezone(UTC).isoformat(),
            "minutes": rule["window_minutes"],
        },
        # Where it goes; a webhook's secret stays in the database.
        "channels": [{k: v for k, v in c.items() if k != "secret"} for c in rule["channels"]],
        "details": found.details,
    }


def record(conn: Connection, events: list[dict], topic: str) -> None:
    """The events into the history and the outbox; one already there is written once."""
    if not events:
        return
    cursor = conn.connection.cursor()
    execute_values(
        cursor,
        "INSERT INTO alert_events (event_id, rule_id, rule_name, kind, state, reminder,"
        " value, threshold, window_start, window_end, payload) VALUES %s"
        " ON CONFLICT (event_id) DO NOTHING",
        [
            (
                e["event_id"],
                e["rule"]["id"],
                e["rule"]["name"],
                e["type"],
                e["state"],
                e["reminder"],
                e["value"],
                e["threshold"],
                e["window"]["start"],
                e["window"]["end"],
                Json(e),
            )
            for e in events
        ],
        page_size=1000,
    )
    execute_values(
        cursor,
        "INSERT INTO outbox_events (event_id, topic, payload) VALUES %s"
        " ON CONFLICT (event_id) DO NOTHING",
        [(e["event_id"], topic, Json(e)) for e in events],
        page_size=1000,
    )
