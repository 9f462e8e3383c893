"""Alertmanager's webhook, received by the notifier (POST /alertmanager on its metrics
port): each alert becomes a `monitoring_alert` event on the notifications topic, so
Prometheus's alerts reach Telegram by the same path as the business alerts, with the
same ledger (each event once) and the same severity filter.

An event's id is the alert's fingerprint, its status and the time it started firing:
Alertmanager repeating a notification gives the same id (sent once), and the alert's
resolution a new one (a "resolved" message). The answer is 200 only once Kafka has the
events; otherwise 503, and Alertmanager sends the notification again.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from streams import counts
from streams.counts import PRODUCED

logger = logging.getLogger(__name__)

SEVERITIES = ("info", "warning", "critical")
MAX_TEXT = 2000


class Invalid(ValueError):
    """The body is not an Alertmanager webhook notification."""


def _text(value: Any, field: str, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise Invalid(f"{field} must be a string")
    if required and not value:
        raise Invalid(f"{field} must not be empty")
    return value[:MAX_TEXT]


def events(body: bytes) -> list[dict]:
    """The notification events of one webhook notification (version 4 of its format)."""
    try:
        notification = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"the body is not JSON: {exc}") from None
    if not isinstance(notification, dict) or not isinstance(notification.get("alerts"), list):
        raise Invalid("expected an object with an 'alerts' list (Alertmanager's webhook)")
    found = []
    for index, alert in enumerate(notification["alerts"]):
        where = f"alerts[{index}]"
        if not isinstance(alert, dict):
            raise Invalid(f"{where} must be an object")
        labels = alert.get("labels") or {}
        annotations = alert.get("annotations") or {}
        if not isinstance(labels, dict) or not isinstance(annotations, dict):
            raise Invalid(f"{where}: labels and annotations must be objects")
        status = alert.get("status")
        if status not in ("firing", "resolved"):
            raise Invalid(f"{where}.status must be 'firing' or 'resolved'")
        starts_at = _text(alert.get("startsAt"), f"{where}.startsAt")
        try:
            datetime.fromisoformat(starts_at.replace("Z", "+00:00"))
        except ValueError:
            raise Invalid(f"{where}.startsAt must be an RFC 3339 time") from None
        fingerprint = _text(alert.get("fingerprint"), f"{where}.fingerprint")
        severity = labels.get("severity") if labels.get("severity") in SEVERITIES else "warning"
        found.append(
            {
                "schema_version": 1,
                "event_id": f"alertmanager:{fingerprint[:64]}:{status}:{starts_at[:40]}",
                "type": "monitoring_alert",
                "severity": severity,
                "occurred_at": datetime.now(UTC).isoformat(),
                "data": {
                    "alertname": _text(labels.get("alertname"), f"{where}.labels.alertname"),
                    "status": status,
                    "summary": _text(
                        annotations.get("summary"), f"{where}.annotations.summary", False
                    ),
                    "description": _text(
                        annotations.get("description"), f"{where}.annotations.description", False
                    ),
                    "starts_at": starts_at,
                    "ends_at": _text(alert.get("endsAt"), f"{where}.endsAt", False),
                    "labels": {str(k)[:200]: str(v)[:MAX_TEXT] for k, v in labels.items()},
                },
            }
        )
    return found


class Receiver:
    """The POST handler: events onto the notifications topic, acknowledged by Kafka."""

    def __init__(self, producer: KafkaProducer, topic: str, timeout: float = 10):
        self.producer = producer
        self.topic = topic
        counts.declare(produces=(topic,))
        self.timeout = timeout

    def __call__(self, body: bytes) -> tuple[int, dict]:
        try:
            found = events(body)
        except Invalid as exc:
            return 400, {"error": str(exc)}
        try:
            futures = [
                self.producer.send(
                    self.topic, key=e["event_id"].encode(), value=json.dumps(e).encode()
                )
                for e in found
            ]
            for future in futures:
                future.get(timeout=self.timeout)
        except KafkaError as exc:
            logger.warning(
                "alerts not published; Alertmanager will retry", extra={"error": str(exc)}
            )
            return 503, {"error": "Kafka did not take the alerts; send them again"}
        PRODUCED.labels(self.topic).inc(len(found))
        return 200, {"published": len(found)}
