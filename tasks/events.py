"""Notification events (docs/events/notification.v1.schema.json), written to the outbox in
the caller's transaction; the processor's relay publishes them to Kafka."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg2.extras import Json, execute_values
from sqlalchemy.orm import Session

from config import get_settings

SCHEMA_VERSION = 1


def event(event_id: str, type_: str, severity: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id,
        "type": type_,
        "severity": severity,
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": data,
    }


def high_value_sale(row: dict[str, Any], threshold) -> dict[str, Any]:
    return event(
        f"high_value_sale:{row['transaction_id']}",
        "high_value_sale",
        "info",
        {
            "transaction_id": row["transaction_id"],
            "product_id": row["product_id"],
            "quantity": row["quantity"],
            "total_amount": str(row["total_amount"]),
            "threshold": str(threshold),
            "timestamp": row["timestamp"].isoformat(),
        },
    )


def add_to_outbox(session: Session, events: list[dict[str, Any]]) -> None:
    """Same event_id twice (a chunk run again) is written once."""
    if not events:
        return
    topic = get_settings().kafka_topic_notifications
    cursor = session.connection().connection.cursor()
    execute_values(
        cursor,
        "INSERT INTO outbox_events (event_id, topic, payload) VALUES %s"
        " ON CONFLICT (event_id) DO NOTHING",
        [(e["event_id"], topic, Json(e)) for e in events],
    )
