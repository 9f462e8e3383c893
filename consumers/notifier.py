"""Telegram notifier: reads the notifications topic and sends each event to a Telegram chat
once.

Every event is recorded in `notification_log` under its `event_id` before it is sent, and
marked `sent`, `failed` (Telegram refused it for a reason retrying cannot fix: the reason
is kept) or `suppressed` (no bot configured, or below NOTIFY_MIN_SEVERITY); an event
delivered again by Kafka whose row is final is not sent again. Offsets are committed
once every event of a poll is final, so a notifier that dies re-reads what it had not
finished. Telegram's flood control (429 with `retry_after`) and its outages (5xx, no
connection) are waited out, and so is the database when it is away.

A message it cannot handle never stops it: a tombstone, bytes that are not UTF-8 JSON,
nesting too deep, text PostgreSQL cannot store (NUL, lone surrogates), a value of the
wrong type or size, or anything the database refuses to store. Such a message is recorded
as failed under `malformed:<topic>:<partition>:<offset>` with what is wrong and the raw
message in a form the database holds, and the notifier goes on to the next one. The bot
token never appears in what it logs or stores.

    python -m consumers.notifier
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlencode

import jsonschema
import requests
from kafka import KafkaConsumer, KafkaProducer
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from prometheus_client import Counter, Histogram
from psycopg2.extras import Json
from sqlalchemy import Connection, Engine, exc, text

import health
from config import PROJECT_ROOT, Settings, get_settings
from consumers import alertmanager
from consumers.watchdog import Watchdog
from db import webhooks
from db.session import default_engine
from logs import configure_logging, redact
from streams import commits, counts, topics
from streams.topics import client_options

logger = logging.getLogger(__name__)

# Version 1: the checks set by the environment and Alertmanager's alerts; version 2: the
# alerts of rules, delivered to each of their channels.
SCHEMAS = {
    version: json.loads(
        (PROJECT_ROOT / f"docs/events/notification.v{version}.schema.json").read_text()
    )
    for version in (1, 2)
}
SCHEMA = SCHEMAS[1]
VALIDATORS = {version: jsonschema.Draft202012Validator(s) for version, s in SCHEMAS.items()}
SEVERITIES = ("info", "warning", "critical")
ICONS = {"info": "🔵", "warning": "🟠", "critical": "🔴"}

# Events are a few hundred bytes and three levels deep; these bounds leave ample room
# and keep a hostile message from costing memory, stack or a huge row.
MAX_EVENT_BYTES = 64 * 1024
MAX_DEPTH = 32
# Most characters kept of a malformed message's raw text, and of a reason.
RAW_KEPT = 8192
REASON_KEPT = 1000
# Telegram takes 4096 characters in one message; a margin for how it counts emoji.
TELEGRAM_MAX_TEXT = 4000

EVENTS = Counter("notifier_events_total", "Events handled, by outcome", ["outcome"])
# Every series exists from the start (at 0), so that rates and alerts see its first change.
for _outcome in ("sent", "failed", "suppressed", "duplicate", "malformed"):
    EVENTS.labels(_outcome).inc(0)
DELIVERY_SECONDS = Histogram(
    "notifier_delivery_seconds",
    "From reading an event to Telegram's answer, retries included, for sent events",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RETRIES = Counter("notifier_telegram_retries_total", "Sends retried after 429, 5xx or no answer")
WEBHOOK_RETRIES = Counter(
    "notifier_webhook_retries_total", "Webhook posts retried after 429, 5xx or no answer"
)
# Posts of one event to one webhook before it is given up (failed, with the reason), and
# the longest wait between two.
WEBHOOK_ATTEMPTS = 6
WEBHOOK_MAX_BACKOFF = 30.0

T = TypeVar("T")


# --- what a message may be ------------------------------------------------------------
class Malformed(ValueError):
    """The message is not a notification event the notifier can record; says why."""


def shorten(text_: str, limit: int) -> str:
    """At most `limit` characters, keeping the head and the tail (where a validation
    message says what is wrong)."""
    if len(text_) <= limit:
        return text_
    tail = limit // 4
    return f"{text_[: limit - tail - 5]} […] {text_[-tail:]}"


def storable(text_: str, limit: int = REASON_KEPT, secrets: tuple[str, ...] = ()) -> str:
    """Text PostgreSQL can hold: no NUL, no lone surrogate (both escaped), no bot token,
    at most `limit` characters."""
    text_ = text_.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    return shorten(redact(text_, secrets), limit)


def _finite(number: str) -> float:
    value = float(number)
    if not math.isfinite(value):
        raise ValueError(f"number {number} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _check_storable(value: Any) -> None:
    """Raises Malformed for nesting deeper than MAX_DEPTH, or text PostgreSQL cannot store
    (JSONB refuses \\u0000 and lone surrogates). Iterative: depth is what it guards."""
    stack: list[tuple[Any, str, int]] = [(value, "$", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Malformed(f"nested more than {MAX_DEPTH} levels deep (at {shorten(path, 200)})")
        if isinstance(item, dict):
            texts = [(key, f"{path} (a key)") for key in item]
            stack.extend((child, f"{path}.{key}", depth + 1) for key, child in item.items())
        elif isinstance(item, list):
            texts = []
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
        else:
            texts = [(item, path)] if isinstance(item, str) else []
        for text_, where in texts:
            problem = _text_problem(text_)
            if problem:
                raise Malformed(f"{storable(where, 200)} contains {problem}")


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "a NUL character (\\u0000), which cannot be stored"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "a lone surrogate (\\ud800-\\udfff), which is not Unicode text"
    return None


def parse_event(value: bytes | None) -> dict[str, Any]:
    """The notification event in a Kafka message's value; Malformed says what is wrong."""
    if value is None:
        raise Malformed("a tombstone (the message has no value); expected a JSON event")
    if len(value) > MAX_EVENT_BYTES:
        raise Malformed(f"{len(value)} bytes, more than the {MAX_EVENT_BYTES} an event may have")
    try:
        decoded = value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Malformed(f"not UTF-8 text: {error}") from None
    try:
        event = json.loads(decoded, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise Malformed("not a JSON event: nested too deeply to read") from None
    except ValueError as error:
        raise Malformed(f"not valid JSON: {error}") from None
    _check_storable(event)
    version = event.get("schema_version") if isinstance(event, dict) else None
    version = version if version in VALIDATORS and not isinstance(version, bool) else 1
    error = jsonschema.exceptions.best_match(VALIDATORS[version].iter_errors(event))
    if error is not None:
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        raise Malformed(f"not a notification event (schema v{version}): {where}: {error.message}")
    return event


# --- what a person reads ---------------------------------------------------------------
def money(value: str) -> str:
    return f"{Decimal(value):,.2f}"


KIND_TITLES = {
    "low_sales": "Low sales",
    "sales_drop": "Sales drop",
    "high_value_sale": "High-value sales",
    "no_sales": "No sales",
    "rejections": "Rejected transactions",
}


def _observed(event: dict[str, Any]) -> str:
    """The value against the threshold, in words, by kind."""
    kind, value, threshold = event["type"], event["value"], event["threshold"]
    details = event["details"]
    if kind == "low_sales":
        return (
            f"revenue {money(value)} from {details['transactions']} transactions"
            f" (threshold {money(threshold)})"
        )
    if kind == "sales_drop":
        compared = details["compared_window"]
        drop = "no revenue to compare with" if value is None else f"down {value}%"
        return (
            f"revenue {money(details['revenue'])}, {drop} against"
            f" {money(details['compared_revenue'])} ({details['compare_to'].replace('_', ' ')},"
            f" {compared['start']} to {compared['end']}; threshold {threshold}%)"
        )
    if kind == "high_value_sale":
        more = event["reminder"] or event["state"] == "resolved"
        lines = [
            f"{Decimal(value):.0f} {'more ' if more else ''}sales at or above {money(threshold)}"
            + (" since the last alert" if more else "")
        ]
        lines += [
            f"  {money(s['total_amount'])}: {s['quantity']} x {s['product_id']}"
            f" ({s['transaction_id']}, {s['occurred_at']})"
            for s in details.get("sales", [])
        ]
        return "\n".join(lines)
    if kind == "no_sales":
        if value is None:
            return f"outside the active hours {details.get('active_hours')}"
        return f"{Decimal(value):.0f} transactions stored"
    return f"{Decimal(value):.0f} rejected (threshold {Decimal(threshold):.0f})"


DASHBOARDS = {"sales_drop": "sales-trends", "rejections": "service-performance"}


def links(event: dict[str, Any], analytics_url: str, grafana_url: str) -> list[str]:
    """The report over the alert's window and scope, and its dashboard, where set."""
    found = []
    if analytics_url:
        query = {"from": event["window"]["start"], "to": event["window"]["end"]} | event["scope"]
        found.append(f"Report: {analytics_url}/api/v1/analytics/summary?{urlencode(query)}")
    if grafana_url:
        found.append(
            f"Dashboard: {grafana_url}/d/{DASHBOARDS.get(event['type'], 'sales-by-product')}"
        )
    return found


def rule_message(event: dict[str, Any], more: list[str] = ()) -> str:
    """A rule's alert in plain words: what happened, where, the value against the
    threshold, and the window, then `more` lines (links). Sent as plain text: nothing in
    it is read as markup."""
    state = event["state"]
    title = KIND_TITLES[event["type"]]
    scope = event["scope"]
    where = (
        f"product {scope['product_id']}"
        if "product_id" in scope
        else f"category {scope['category']}"
        if "category" in scope
        else "all sales"
    )
    window = event["window"]
    if state == "test":
        head = f"🧪 Test of the rule “{event['rule']['name']}” ({title}, {where})"
        return shorten(f"{head}: its channels work.", TELEGRAM_MAX_TEXT)
    if state == "resolved":
        head = f"✅ Resolved: {title}, {where}"
    else:
        head = f"{ICONS[event['severity']]} {'Still firing' if event['reminder'] else 'Firing'}:"
        head += f" {title}, {where}"
    body = (
        f"{head}\nRule “{event['rule']['name']}”: {_observed(event)}\n"
        f"in the {window['minutes']} min from {window['start']} to {window['end']}"
    )
    return shorten("\n".join([body, *more]), TELEGRAM_MAX_TEXT)


def message(event: dict[str, Any], more: list[str] = ()) -> str:
    """The text a person reads in the chat (cut to Telegram's limit)."""
    if event["schema_version"] == 2:
        return rule_message(event, more)
    data, kind = event["data"], event["type"]
    head = f"{ICONS[event['severity']]} "
    if kind == "high_value_sale":
        body = (
            f"High-value sale: {money(data['total_amount'])} (threshold "
            f"{money(data['threshold'])})\n{data['quantity']} x {data['product_id']}, "
            f"transaction {data['transaction_id']}, at {data['timestamp']}"
        )
    elif kind == "rejection_burst":
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(data["by_reason"].items()) if n)
        body = (
            f"Rejection burst: {data['rejected']} transactions rejected in "
            f"{data['window_seconds'] / 60:g} min (threshold {data['threshold']})\n{reasons}"
        )
    elif kind == "low_sales":
        body = (
            f"Low sales: revenue {money(data['revenue'])} from {data['transactions']} "
            f"transactions between {data['window_start']} and {data['window_end']} "
            f"(threshold {money(data['threshold'])})"
        )
    elif kind == "monitoring_alert":
        if data["status"] == "resolved":
            head = "✅ "
        state = "Resolved" if data["status"] == "resolved" else "Firing"
        body = f"{state}: {data['alertname']}"
        service = data["labels"].get("service") or data["labels"].get("job")
        if service:
            body += f" ({service})"
        body += "".join(f"\n{data[k]}" for k in ("summary", "description") if data.get(k))
        body += f"\nsince {data['starts_at']}"
    else:
        body = f"{kind}: {json.dumps(data)}"
    return shorten(head + body, TELEGRAM_MAX_TEXT)


# --- notification_log ------------------------------------------------------------------
class Stopping(Exception):
    """The notifier was told to stop while it waited for the database."""


class Unstorable(Exception):
    """The database refused a row for its content (not because it is away)."""


# SQLSTATE classes of a database that is away or busy, not of bad data: connection (08),
# insufficient resources (53), operator intervention such as a restart (57), system
# error (58), transaction rollback such as a deadlock (40).
UNAVAILABLE_CLASSES = ("08", "53", "57", "58", "40")


def database_unavailable(error: Exception) -> bool:
    if isinstance(error, exc.TimeoutError):  # no connection free in the pool
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    code = getattr(error.orig, "pgcode", None)
    return isinstance(error, exc.OperationalError | exc.InterfaceError) and (
        code is None or code[:2] in UNAVAILABLE_CLASSES
    )


class Ledger:
    """The notifier's rows in notification_log. While the database is away every call
    waits and tries again (an event is never skipped for it); a row the database refuses
    for its content raises Unstorable."""

    def __init__(self, engine: Engine, stopping: threading.Event, secrets: tuple[str, ...]):
        self.engine = engine
        self.stopping = stopping
        self.secrets = secrets

    def _run(self, work: Callable[[Connection], T]) -> T:
        backoff = 0.5
        while True:
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except (exc.DBAPIError, exc.TimeoutError) as error:
                if not database_unavailable(error):
                    raise Unstorable(self.reason(error)) from error
                logger.warning(
                    "the database is unavailable; trying again",
                    extra={"reason": self.reason(error), "retry_in": backoff},
                )
            except ValueError as error:  # psycopg2 refuses NUL in text before sending
                raise Unstorable(self.reason(error)) from error
            if self.stopping.wait(backoff):
                raise Stopping
            backoff = min(backoff * 2, 30.0)

    def reason(self, error: BaseException) -> str:
        """What went wrong, fit to store and log."""
        detail = getattr(error, "orig", None) or error
        return storable(f"{type(detail).__name__}: {detail}".strip(), secrets=self.secrets)

    def record(
        self,
        key: str,
        kind: str,
        severity: str,
        payload: dict,
        *,
        status: str = "pending",
        error: str | None = None,
        event_id: str | None = None,
        channel: str | None = None,
    ) -> bool:
        """Logs the event (for one channel) unless its key is logged already; True when
        it is new."""
        query = text(
            "INSERT INTO notification_log (event_type, severity, dedup_key, payload, status,"
            " last_error, event_id, channel) VALUES (:kind, :severity, :key, :payload, :status,"
            " :error, :event_id, :channel) ON CONFLICT (dedup_key) DO NOTHING RETURNING id"
        )
        params = {
            "kind": kind,
            "severity": severity,
            "key": key,
            "payload": Json(payload),
            "status": status,
            "error": error,
            "event_id": event_id,
            "channel": channel,
        }
        return self._run(lambda conn: conn.execute(query, params).first() is not None)

    def record_monitoring_alert(self, event: dict) -> None:
        """Prometheus's alert (through Alertmanager) into the alert history beside the
        rules' alerts, once: GET /api/v1/alerts lists both."""
        data = event["data"]
        ended = data["status"] == "resolved" and data.get("ends_at")
        query = text(
            "INSERT INTO alert_events (event_id, rule_name, kind, state, window_start,"
            " window_end, payload) VALUES (:id, :name, 'monitoring_alert', :state,"
            " CAST(:start AS timestamptz), CAST(:end AS timestamptz), :payload)"
            " ON CONFLICT (event_id) DO NOTHING"
        )
        params = {
            "id": event["event_id"],
            "name": data["alertname"][:200],
            "state": data["status"],
            "start": data["starts_at"],
            "end": data["ends_at"] if ended else event["occurred_at"],
            "payload": Json(event),
        }
        self._run(lambda conn: conn.execute(query, params))

    def webhook_secret(self, rule_id: int, url: str) -> str | None:
        """The secret of the rule's webhook at `url` (it never travels in the event)."""
        query = text(
            "SELECT c->>'secret' FROM alert_rules, jsonb_array_elements(channels) c"
            " WHERE id = :id AND c->>'type' = 'webhook' AND c->>'url' = :url LIMIT 1"
        )
        return self._run(lambda conn: conn.execute(query, {"id": rule_id, "url": url}).scalar())

    def status(self, key: str) -> str:
        query = text("SELECT status FROM notification_log WHERE dedup_key = :key")
        return self._run(lambda conn: conn.execute(query, {"key": key}).scalar_one())

    def finish(self, key: str, status: str, error: str | None = None, *, tried: bool) -> None:
        query = text(
            "UPDATE notification_log SET status = :status, last_error = :error,"
            " attempts = attempts + :tried, sent_at = CASE WHEN :status = 'sent' THEN now() END"
            " WHERE dedup_key = :key"
        )
        params = {"status": status, "error": error, "key": key, "tried": int(tried)}
        self._run(lambda conn: conn.execute(query, params))

    def fail_pending(self, key: str, reason: str) -> bool:
        """Marks the event failed if it is still pending; False when it is not."""
        query = text(
            "UPDATE notification_log SET status = 'failed', last_error = :reason"
            " WHERE dedup_key = :key AND status = 'pending'"
        )
        params = {"reason": reason, "key": key}
        return self._run(lambda conn: conn.execute(query, params).rowcount > 0)

    def attempt_failed(self, key: str, reason: str) -> None:
        """A send that will be tried again: counted, and why it failed kept meanwhile."""
        query = text(
            "UPDATE notification_log SET attempts = attempts + 1, last_error = :reason"
            " WHERE dedup_key = :key"
        )
        self._run(lambda conn: conn.execute(query, {"reason": reason, "key": key}))


def malformed_key(record) -> str:
    # A topic name may have 249 characters; dedup_key has 200.
    return f"malformed:{record.topic[:150]}:{record.partition}:{record.offset}"


def raw_text(value: bytes | None) -> str | None:
    """A message's bytes as text the database holds: bytes that are not UTF-8 as \\xNN,
    NUL as \\x00, cut to RAW_KEPT characters."""
    if value is None:
        return None
    return shorten(value.decode("utf-8", "backslashreplace").replace("\x00", "\\x00"), RAW_KEPT)


# --- Telegram's Bot API -----------------------------------------------------------------
class Refused(Exception):
    """Telegram refused the message; sending it again would not help."""


def retry_after(reply: dict, default: float) -> float:
    """Seconds flood control asks to wait (`parameters.retry_after`), else `default`."""
    parameters = reply.get("parameters")
    seconds = parameters.get("retry_after") if isinstance(parameters, dict) else None
    return float(seconds) if isinstance(seconds, int | float) and seconds >= 0 else default


class Notifier:
    def __init__(self, settings: Settings, engine: Engine):
        self.settings = settings
        self.secrets = (settings.telegram_bot_token,) if settings.telegram_bot_token else ()
        self.stopping = threading.Event()
        self.ledger = Ledger(engine, self.stopping, self.secrets)
        self.http = requests.Session()
        self.consumer = KafkaConsumer(
            **client_options(settings, "notifier"),
            group_id=settings.notifier_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=100,
            # Waiting out a long Telegram or database outage must not cost the membership.
            max_poll_interval_ms=3_600_000,
        )
        self.settled = False
        topics.subscribe(self.consumer, settings.kafka_topic_notifications, _Rebalance(self))
        counts.declare(consumes=(settings.kafka_topic_notifications,))
        self.watchdog = Watchdog(self.consumer, settings, settings.notifier_group)
        # A delivery may wait out a Telegram outage for minutes: the loop is stale then.
        self.heartbeat = health.Heartbeat(max_age=120)

    def ready(self) -> tuple[bool, dict]:
        """Ready while the poll loop turns and the group has settled."""
        turning, loop = self.heartbeat.check()
        return turning and self.settled, {
            "loop": loop,
            "group": "settled" if self.settled else "rebalancing",
        }

    def stop(self, *_) -> None:
        self.stopping.set()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                batches = self.consumer.poll(timeout_ms=1000)
                counts.consumed(batches)
                for records in batches.values():
                    for record in records:
                        self.handle(record)
                if batches and not self.stopping.is_set():
                    commits.commit(self.consumer)
                    self.watchdog.read()  # after handling: waiting out an outage is no stall
                self.watchdog.check(busy=False, settled=self.settled)
                self.heartbeat.beat()
        except Stopping:
            pass  # nothing is committed past what was finished: read again after a restart
        self.consumer.close()

    # --- one message ------------------------------------------------------------------
    def handle(self, record) -> None:
        """Never raises for the message's sake: whatever about it cannot be handled is
        recorded as failed, and the next message comes."""
        try:
            event = parse_event(record.value)
        except Malformed as error:
            self.reject(record, storable(str(error), secrets=self.secrets))
            return
        try:
            self.deliver(event)
        except Stopping:
            raise
        except Unstorable as error:
            self.reject(record, f"the database refused the event: {error}")
        except Exception as error:  # a bug must not stop the alerts behind it
            logger.exception("could not handle an event", extra={"event_id": event["event_id"]})
            self.reject(record, f"could not be handled: {self.ledger.reason(error)}")

    def reject(self, record, reason: str) -> None:
        key = malformed_key(record)
        payload = {"raw": raw_text(record.value), "bytes": len(record.value or b"")}
        if self.ledger.record(key, "malformed", "warning", payload, status="failed", error=reason):
            EVENTS.labels("malformed").inc()
            logger.error("not a notification event", extra={"key": key, "reason": reason})

    def deliver(self, event: dict[str, Any]) -> None:
        """A rule's event (v2) to each of its channels, each once; any other to Telegram."""
        if event["schema_version"] != 2:
            if event["type"] == "monitoring_alert":
                self.ledger.record_monitoring_alert(event)
            self.deliver_to(event, event["event_id"], {"type": "telegram"})
            return
        for index, channel in enumerate(event["channels"]):
            self.deliver_to(event, f"{event['event_id'][:190]}#{index}", channel)

    def deliver_to(self, event: dict[str, Any], key: str, channel: dict) -> None:
        kind = channel["type"]
        self.ledger.record(
            key, event["type"], event["severity"], event, event_id=event["event_id"], channel=kind
        )
        if self.ledger.status(key) != "pending":
            EVENTS.labels("duplicate").inc()
            return
        if not self.wanted(event, kind):
            self.ledger.finish(key, "suppressed", tried=False)
            EVENTS.labels("suppressed").inc()
            return
        began = time.monotonic()
        try:
            if kind == "webhook":
                done = self.post_webhook(key, channel, event)
            else:
                more = (
                    links(
                        event, self.settings.analytics_public_url, self.settings.grafana_public_url
                    )
                    if event["schema_version"] == 2
                    else []
                )
                done = self.send(key, message(event, more), channel.get("chat_id"))
            if not done:
                return  # stopping: not sent, read again after the restart
        except (Stopping, Unstorable):
            raise
        except Refused as error:
            reason = str(error)
            self.ledger.finish(key, "failed", reason, tried=True)
            EVENTS.labels("failed").inc()
            logger.error(f"{kind} refused an alert", extra={"event_id": key, "reason": reason})
            return
        except Exception as error:  # a bug must not stop the alerts behind it
            logger.exception("could not deliver an event", extra={"event_id": key})
            if self.ledger.fail_pending(key, f"could not be handled: {self.ledger.reason(error)}"):
                EVENTS.labels("failed").inc()
            return
        self.ledger.finish(key, "sent", tried=True)
        DELIVERY_SECONDS.observe(time.monotonic() - began)
        EVENTS.labels("sent").inc()
        logger.info("alert sent", extra={"event_id": key, "type": event["type"], "channel": kind})

    def wanted(self, event: dict, channel: str) -> bool:
        """At or above NOTIFY_MIN_SEVERITY, and for Telegram, a bot to send with."""
        minimum = SEVERITIES.index(self.settings.notify_min_severity)
        if SEVERITIES.index(event["severity"]) < minimum:
            return False
        return channel == "webhook" or bool(self.settings.telegram_bot_token)

    def post_webhook(self, key: str, channel: dict, event: dict[str, Any]) -> bool:
        """POSTs the event as JSON until the webhook takes it with a 2xx (True) or the
        notifier stops (False); Refused on any other 4xx, or after WEBHOOK_ATTEMPTS."""
        try:
            webhooks.check_url(channel["url"], self.settings.notify_webhook_allowed_hosts)
        except ValueError as error:
            raise Refused(f"not posted: {error}") from None
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Event-Id": event["event_id"]}
        secret = self.ledger.webhook_secret(event["rule"]["id"], channel["url"])
        if secret:
            signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Signature-SHA256"] = signature
        secrets = (*self.secrets, secret) if secret else self.secrets
        backoff = 1.0
        for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
            try:
                answer = self.http.post(
                    channel["url"], data=body, headers=headers, timeout=10, allow_redirects=False
                )
            except requests.RequestException as error:
                reason = storable(f"no answer: {error}", secrets=secrets)
            else:
                if 200 <= answer.status_code < 300:
                    return True
                reason = storable(
                    f"HTTP {answer.status_code}: {answer.text[:300]}", secrets=secrets
                )
                if answer.status_code < 500 and answer.status_code != 429:
                    raise Refused(reason)
            if attempt == WEBHOOK_ATTEMPTS:
                raise Refused(f"given up after {attempt} attempts; the last: {reason}")
            WEBHOOK_RETRIES.inc()
            self.ledger.attempt_failed(key, reason)
            logger.warning(
                "the webhook did not take the alert yet",
                extra={"event_id": key, "reason": reason, "retry_in": backoff},
            )
            if self.stopping.wait(backoff):
                return False
            backoff = min(backoff * 2, WEBHOOK_MAX_BACKOFF)
        return False

    def send(self, key: str, text_: str, chat_id: str | None = None) -> bool:
        """sendMessage (to the rule's chat, else TELEGRAM_CHAT_ID) until Telegram takes it
        (True) or the notifier stops (False); Refused when Telegram says no for good."""
        url = f"{self.settings.telegram_api_url}/bot{self.settings.telegram_bot_token}/sendMessage"
        body = {"chat_id": chat_id or self.settings.telegram_chat_id, "text": text_}
        backoff = 1.0
        while not self.stopping.is_set():
            wait = backoff
            logger.debug("calling sendMessage", extra={"event_id": key})
            try:
                answer = self.http.post(url, json=body, timeout=15)
                reply = answer.json()
                if not isinstance(reply, dict):
                    raise ValueError(f"HTTP {answer.status_code} with a body that is no reply")
            except (requests.RequestException, ValueError) as error:
                # requests puts the URL, token and all, into its messages.
                reason = storable(f"no answer: {error}", secrets=self.secrets)
            else:
                if reply.get("ok"):
                    return True
                reason = storable(
                    f"{reply.get('error_code')} {reply.get('description')}", secrets=self.secrets
                )
                if answer.status_code == 429:
                    wait = retry_after(reply, backoff)
                elif answer.status_code < 500:
                    raise Refused(reason)
            RETRIES.inc()
            self.ledger.attempt_failed(key, reason)
            logger.warning(
                "telegram did not take the alert yet",
                extra={"event_id": key, "reason": reason, "retry_in": wait},
            )
            self.stopping.wait(wait)
            backoff = min(backoff * 2, 60.0)
        return False


class _Rebalance(ConsumerRebalanceListener):
    """Tells /ready whether the group has settled (kafka-python's IO thread: no blocking)."""

    def __init__(self, notifier: Notifier):
        self.notifier = notifier

    def on_partitions_revoked(self, revoked):
        self.notifier.settled = False

    def on_partitions_assigned(self, assigned):
        self.notifier.settled = True


def main() -> None:
    settings = get_settings()
    configure_logging("notifier")
    notifier = Notifier(settings, default_engine())
    # Alertmanager's webhook: Prometheus's alerts onto the notifications topic.
    producer = KafkaProducer(**client_options(settings, "notifier-alertmanager"), acks="all")
    receiver = alertmanager.Receiver(producer, settings.kafka_topic_notifications)
    health.serve(
        settings.notifier_metrics_port,
        settings.http_bind_host,
        notifier.ready,
        post={"/alertmanager": receiver},
    )
    signal.signal(signal.SIGTERM, notifier.stop)
    signal.signal(signal.SIGINT, notifier.stop)
    if not settings.telegram_bot_token:
        logger.warning("TELEGRAM_BOT_TOKEN is not set: events are recorded as suppressed")
    notifier.run()


if __name__ == "__main__":
    main()
