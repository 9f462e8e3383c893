"""Telegram notifier: reads the notifications topic and sends each event to a Telegram chat
once.

Every event is recorded in `notification_log` under its `event_id` before it is sent, and
marked `sent`, `failed` (Telegram refused it for a reason retrying cannot fix: the reason
is kept) or `suppressed` (no bot configured, or below NOTIFY_MIN_SEVERITY); an event
delivered again by Kafka whose row is final is not sent again. Offsets are committed
once every event of a poll is final, so a notifier that dies re-reads what it had not
finished. Telegram's flood control (429 with `retry_after`) and its outages (5xx, no
connection) are waited out. A message that is not a valid event is recorded as failed,
with what is wrong.

    python -m consumers.notifier
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from decimal import Decimal
from typing import Any

import jsonschema
import requests
from kafka import KafkaConsumer
from prometheus_client import Counter, start_http_server
from psycopg2.extras import Json
from sqlalchemy import Engine, text

from config import PROJECT_ROOT, Settings, get_settings
from consumers.topics import client_options
from consumers.watchdog import Watchdog
from db.session import default_engine
from logs import configure_logging

logger = logging.getLogger(__name__)

SCHEMA = json.loads((PROJECT_ROOT / "docs/events/notification.v1.schema.json").read_text())
SEVERITIES = ("info", "warning", "critical")
ICONS = {"info": "🔵", "warning": "🟠", "critical": "🔴"}

EVENTS = Counter("notifier_events_total", "Events handled, by outcome", ["outcome"])
# Every series exists from the start (at 0), so that rates and alerts see its first change.
for _outcome in ("sent", "failed", "suppressed", "duplicate", "malformed"):
    EVENTS.labels(_outcome).inc(0)
RETRIES = Counter("notifier_telegram_retries_total", "Sends retried after 429, 5xx or no answer")


def money(value: str) -> str:
    return f"{Decimal(value):,.2f}"


def message(event: dict[str, Any]) -> str:
    """The text a person reads in the chat."""
    data, kind = event["data"], event["type"]
    head = f"{ICONS[event['severity']]} "
    if kind == "high_value_sale":
        return head + (
            f"High-value sale: {money(data['total_amount'])} (threshold "
            f"{money(data['threshold'])})\n{data['quantity']} x {data['product_id']}, "
            f"transaction {data['transaction_id']}, at {data['timestamp']}"
        )
    if kind == "rejection_burst":
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(data["by_reason"].items()) if n)
        return head + (
            f"Rejection burst: {data['rejected']} transactions rejected in "
            f"{data['window_seconds'] / 60:g} min (threshold {data['threshold']})\n{reasons}"
        )
    if kind == "low_sales":
        return head + (
            f"Low sales: revenue {money(data['revenue'])} from {data['transactions']} "
            f"transactions between {data['window_start']} and {data['window_end']} "
            f"(threshold {money(data['threshold'])})"
        )
    return head + f"{kind}: {json.dumps(data)}"


class Refused(Exception):
    """Telegram refused the message; sending it again would not help."""


class Notifier:
    def __init__(self, settings: Settings, engine: Engine):
        self.settings = settings
        self.engine = engine
        self.stopping = threading.Event()
        self.http = requests.Session()
        self.consumer = KafkaConsumer(
            settings.kafka_topic_notifications,
            **client_options(settings, "notifier"),
            group_id=settings.notifier_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=100,
            # Waiting out a long Telegram outage must not cost the group membership.
            max_poll_interval_ms=3_600_000,
        )
        self.watchdog = Watchdog(self.consumer, settings, settings.notifier_group)

    def stop(self, *_) -> None:
        self.stopping.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            batches = self.consumer.poll(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    self.handle(record)
            if batches and not self.stopping.is_set():
                self.consumer.commit()
                self.watchdog.read()  # after handling: waiting out Telegram is no stall
            self.watchdog.check(busy=False)
        self.consumer.close()

    # --- one event --------------------------------------------------------------------
    def handle(self, record) -> None:
        try:
            event = json.loads(record.value)
            jsonschema.validate(event, SCHEMA)
        except (ValueError, jsonschema.ValidationError) as exc:
            reason = getattr(exc, "message", str(exc))
            key = f"malformed:{record.topic}:{record.partition}:{record.offset}"
            raw = {"raw": record.value.decode("utf-8", "replace")}
            if self.record(key, "malformed", "warning", raw, status="failed", error=reason):
                EVENTS.labels("malformed").inc()
                logger.error("not a notification event", extra={"key": key, "reason": reason})
            return
        key = event["event_id"]
        self.record(key, event["type"], event["severity"], event)
        if self.status(key) != "pending":
            EVENTS.labels("duplicate").inc()
            return
        if not self.wanted(event):
            self.finish(key, "suppressed")
            EVENTS.labels("suppressed").inc()
            return
        try:
            if not self.send(message(event)):
                return  # stopping: not sent, read again after the restart
        except Refused as exc:
            self.finish(key, "failed", str(exc))
            EVENTS.labels("failed").inc()
            logger.error("telegram refused an alert", extra={"event_id": key, "reason": str(exc)})
            return
        self.finish(key, "sent")
        EVENTS.labels("sent").inc()
        logger.info("alert sent", extra={"event_id": key, "type": event["type"]})

    def wanted(self, event: dict) -> bool:
        minimum = SEVERITIES.index(self.settings.notify_min_severity)
        return bool(self.settings.telegram_bot_token) and (
            SEVERITIES.index(event["severity"]) >= minimum
        )

    def record(
        self,
        key: str,
        kind: str,
        severity: str,
        payload: dict,
        *,
        status: str = "pending",
        error: str | None = None,
    ) -> bool:
        """Logs the event unless its key is logged already; True when it is new."""
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    text(
                        "INSERT INTO notification_log (event_type, severity, dedup_key,"
                        " payload, status, last_error) VALUES (:kind, :severity, :key,"
                        " :payload, :status, :error) ON CONFLICT (dedup_key) DO NOTHING"
                        " RETURNING id"
                    ),
                    {
                        "kind": kind,
                        "severity": severity,
                        "key": key,
                        "payload": Json(payload),
                        "status": status,
                        "error": error,
                    },
                ).first()
                is not None
            )

    def status(self, key: str) -> str:
        with self.engine.connect() as conn:
            return conn.execute(
                text("SELECT status FROM notification_log WHERE dedup_key = :key"), {"key": key}
            ).scalar_one()

    def finish(self, key: str, status: str, error: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE notification_log SET status = :status, last_error = :error,"
                    " sent_at = CASE WHEN :status = 'sent' THEN now() END"
                    " WHERE dedup_key = :key"
                ),
                {"status": status, "error": error, "key": key},
            )

    # --- Telegram's Bot API -----------------------------------------------------------
    def send(self, text_: str) -> bool:
        """sendMessage until Telegram takes it (True) or the notifier stops (False);
        Refused when Telegram says no for good."""
        url = f"{self.settings.telegram_api_url}/bot{self.settings.telegram_bot_token}/sendMessage"
        body = {"chat_id": self.settings.telegram_chat_id, "text": text_}
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                answer = self.http.post(url, json=body, timeout=15)
                reply = answer.json()
            except (requests.RequestException, ValueError) as exc:
                wait, reason = backoff, f"no answer: {exc}"
            else:
                if reply.get("ok"):
                    return True
                reason = f"{reply.get('error_code')} {reply.get('description')}"
                if answer.status_code == 429:
                    wait = float(reply.get("parameters", {}).get("retry_after", backoff))
                elif answer.status_code >= 500:
                    wait = backoff
                else:
                    raise Refused(reason)
            RETRIES.inc()
            logger.warning("telegram did not take the alert yet", extra={"reason": reason})
            self.stopping.wait(wait)
            backoff = min(backoff * 2, 60.0)
        return False


def main() -> None:
    settings = get_settings()
    configure_logging("notifier")
    start_http_server(settings.notifier_metrics_port)
    notifier = Notifier(settings, default_engine())
    signal.signal(signal.SIGTERM, notifier.stop)
    signal.signal(signal.SIGINT, notifier.stop)
    if not settings.telegram_bot_token:
        logger.warning("TELEGRAM_BOT_TOKEN is not set: events are recorded as suppressed")
    notifier.run()


if __name__ == "__main__":
    main()
