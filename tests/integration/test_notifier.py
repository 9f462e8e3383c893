"""The notifier, a real process on real Kafka and PostgreSQL, against a local server that
speaks Telegram's Bot API: each event reaches the chat once, flood control and outages
are waited out, refusals and malformed messages are recorded, nothing is dropped."""

from __future__ import annotations

import json
import time
import uuid

import psutil
import pytest
import requests
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import make_url, text

from streams.topics import admin_client
from tests.fake_telegram import CHAT_ID, TOKEN, chat_not_found, flood_control, outage
from tests.helpers import free_port, wait_until
from tests.helpers import v1_event as event
from tests.integration.pipeline import Pipeline
from tests.tcp_proxy import TcpProxy


@pytest.fixture
def notifier(settings, admin_engine, migrated_template, tmp_path, telegram):
    p = Pipeline(
        settings,
        admin_engine,
        migrated_template,
        tmp_path,
        **telegram.settings,
        notify_min_severity="warning",
    )
    yield p
    p.close()


def low_sales(bucket: int) -> dict:
    return event(
        f"low_sales:{bucket}",
        "low_sales",
        "warning",
        {
            "window_start": "2026-11-26T10:00:00+00:00",
            "window_end": "2026-11-26T11:00:00+00:00",
            "revenue": "1234.50",
            "transactions": 17,
            "threshold": "5000",
        },
    )


def publish(pipeline: Pipeline, *messages: dict | bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=pipeline.kafka, acks="all")
    for message in messages:
        if isinstance(message, dict):
            producer.send(
                pipeline.notifications_topic,
                key=message["event_id"].encode(),
                value=json.dumps(message).encode(),
            )
        else:
            producer.send(pipeline.notifications_topic, value=message)
    producer.flush()
    producer.close()


def log(pipeline: Pipeline) -> dict[str, tuple]:
    with pipeline.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT dedup_key, status, last_error, sent_at FROM notification_log")
        ).all()
    return {key: tuple(rest) for key, *rest in rows}


def test_each_event_reaches_the_chat_once_and_nothing_is_dropped(notifier, telegram):
    bucket = uuid.uuid4().int % 10**9
    first, refused, again = low_sales(bucket), low_sales(bucket + 1), low_sales(bucket + 2)
    info = event(
        "high_value_sale:t-1",
        "high_value_sale",
        "info",
        {
            "transaction_id": "t-1",
            "product_id": "sku-1",
            "quantity": 2,
            "total_amount": "12000.00",
            "threshold": "10000",
            "timestamp": "2026-11-26T10:30:00+00:00",
        },
    )
    # Flood control, then an outage, before the first message goes through.
    telegram.script = [flood_control(2), outage()]
    publish(notifier, first, first, b"not json", info)
    notifier.start("notifier")
    wait_until(lambda: len(telegram.messages) == 1, timeout=60, what="the first message")
    telegram.script = [chat_not_found()]  # for the next event
    publish(notifier, refused, again, first)
    wait_until(lambda: len(telegram.messages) == 2, timeout=60, what="the second message")
    wait_until(lambda: len(log(notifier)) == 5, timeout=30, what="every event logged")

    times = [t for t, status, _ in telegram.requests]
    statuses = [status for _, status, _ in telegram.requests]
    assert statuses == [429, 502, 200, 400, 200]
    assert times[1] - times[0] >= 2, "retry_after was not honoured"
    assert [m["chat_id"] for m in telegram.messages] == [CHAT_ID, CHAT_ID]
    text_ = telegram.messages[0]["text"]
    assert "Low sales" in text_ and "1,234.50" in text_ and "5,000.00" in text_

    entries = log(notifier)
    assert entries[first["event_id"]][0] == "sent" and entries[first["event_id"]][2]
    assert entries[again["event_id"]][0] == "sent"
    assert entries[refused["event_id"]][:2] == ("failed", "400 Bad Request: chat not found")
    assert entries[info["event_id"]][0] == "suppressed"  # below NOTIFY_MIN_SEVERITY
    malformed = [k for k in entries if k.startswith("malformed:")]
    assert len(malformed) == 1 and entries[malformed[0]][0] == "failed"

    # Restarted, it reads nothing again that it already finished.
    notifier.stop("notifier")
    notifier.start("notifier")
    time.sleep(8)
    assert len(telegram.messages) == 2 and len(telegram.requests) == 5


# --- poison messages ------------------------------------------------------------------
def send_raw(pipeline: Pipeline, values: list[bytes | None]) -> list[int]:
    """Writes each value as it is (None: a tombstone); their offsets."""
    producer = KafkaProducer(bootstrap_servers=pipeline.kafka, acks="all")
    futures = [producer.send(pipeline.notifications_topic, key=b"poison", value=v) for v in values]
    offsets = [future.get(timeout=30).offset for future in futures]
    producer.close()
    return offsets


def poison_messages() -> dict[str, tuple[bytes | None, str]]:
    """Each kind of message the notifier cannot use, and what its recorded reason says."""
    base = low_sales(1)

    def changed(**fields) -> bytes:
        return json.dumps(base | fields).encode()

    return {
        "tombstone": (None, "tombstone"),
        "invalid JSON": (b'{"event_id": "low_sales:', "not valid JSON"),
        "5,000-deep nesting": (b'{"data": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too"),
        "NUL in data": (
            changed(data=base["data"] | {"note": "a\u0000b"}),
            "$.data.note contains a NUL",
        ),
        "NUL in event_id": (changed(event_id="low_sales:\u0000"), "$.event_id contains a NUL"),
        "lone surrogate": (changed(event_id="low_sales:\ud800"), "lone surrogate"),
        "severity a number": (changed(severity=3), "$.severity: 3 is not one of"),
        "event_id a number": (changed(event_id=12345), "$.event_id: 12345 is not of type"),
        "event_id 10,000 long": (changed(event_id="x" * 10_000), "is too long"),
        "data not an object": (changed(data=["x"]), "$.data: ['x'] is not of type 'object'"),
        "type unknown": (changed(type="x" * 100), "$.type"),
        "not UTF-8": (b'{"event_id": "\xff\xfe"}', "not UTF-8"),
        "NaN": (changed(data=base["data"] | {"transactions": float("nan")}), "NaN"),
        "huge": (changed(data=base["data"] | {"note": "x" * 300_000}), "more than the 65536"),
    }


def metrics_of(process) -> dict[str, float]:
    """The notifier's /metrics, found on the port the process listens on."""
    listening = [
        c.laddr.port
        for c in psutil.Process(process.pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    ]
    assert len(listening) == 1, listening
    body = requests.get(f"http://127.0.0.1:{listening[0]}/metrics", timeout=10).text
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def test_poison_messages_are_recorded_as_failed_and_never_stop_the_notifier(notifier, telegram):
    bucket = uuid.uuid4().int % 10**9
    notifier.start("notifier")
    process = notifier.processes["notifier"]
    publish(notifier, low_sales(bucket))
    wait_until(lambda: len(telegram.messages) == 1, timeout=60, what="the warm-up alert")

    poison = poison_messages()
    offsets = send_raw(notifier, [value for value, _ in poison.values()])
    after = low_sales(bucket + 1)
    published = time.monotonic()
    publish(notifier, after)
    wait_until(lambda: len(telegram.messages) == 2, timeout=30, what="the alert after the poison")
    assert time.monotonic() - published < 10, "the alert after the poison came late"
    assert "1,234.50" in telegram.messages[1]["text"]

    rows = {
        r["dedup_key"]: r
        for r in notifier.rows(
            "SELECT dedup_key, event_type, status, last_error, payload, attempts"
            " FROM notification_log WHERE dedup_key LIKE 'malformed:%'"
        )
    }
    assert len(rows) == len(poison)
    for (name, (value, reason)), offset in zip(poison.items(), offsets, strict=True):
        row = rows[f"malformed:{notifier.notifications_topic}:0:{offset}"]
        assert (row["event_type"], row["status"]) == ("malformed", "failed"), name
        assert reason in row["last_error"], (name, row["last_error"])
        assert len(row["last_error"]) <= 1000, name
        raw = row["payload"]["raw"]
        assert row["payload"]["bytes"] == len(value or b""), name
        if value is None:
            assert raw is None
        else:  # the message as it came, escaped where the database could not hold it
            assert len(raw) <= 8192, name
            expected = value.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
            assert raw == expected or len(expected) > 8192, name

    # The same process all along, which counted each one and committed past them.
    assert process.poll() is None and notifier.processes["notifier"] is process
    metrics = metrics_of(process)
    assert metrics["notifier_events_total[('outcome', 'malformed')]"] == len(poison)
    assert metrics["notifier_events_total[('outcome', 'sent')]"] == 2
    wait_until(lambda: committed(notifier) == offsets[-1] + 2, timeout=10, what="the commit")


def committed(pipeline: Pipeline) -> int | None:
    admin = admin_client(pipeline.settings)
    try:
        group = pipeline.settings.notifier_group
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return next((o.offset for tp, o in offsets.items() if tp.partition == 0), None)


# --- the bot token --------------------------------------------------------------------
@pytest.mark.parametrize("telegram_down", ["refusing connections", "answering 502"])
def test_the_bot_token_appears_in_no_log_and_no_row(
    settings, admin_engine, migrated_template, tmp_path, telegram, telegram_down
):
    if telegram_down == "answering 502":
        url = telegram.url
        telegram.script = [outage()] * 1000
    else:
        url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    pipeline = Pipeline(
        settings,
        admin_engine,
        migrated_template,
        tmp_path,
        telegram_bot_token=TOKEN,
        telegram_chat_id=CHAT_ID,
        telegram_api_url=url,
        log_level="DEBUG",
    )
    try:
        alert = low_sales(uuid.uuid4().int % 10**9)
        pipeline.start("notifier")
        publish(pipeline, alert)

        def attempts() -> int:
            return pipeline.scalar(
                "SELECT attempts FROM notification_log WHERE dedup_key = :key",
                key=alert["event_id"],
            )

        wait_until(lambda: (attempts() or 0) >= 3, timeout=60, what="three tries to send")
        pipeline.stop("notifier")
        # Every file the notifier wrote: its log (and any rotated one), stdout and stderr.
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        written = {p.name: p.read_text(errors="replace") for p in files}
        stored = pipeline.scalar("SELECT string_agg(t::text, ' ') FROM notification_log t")
        last_error = pipeline.scalar(
            "SELECT last_error FROM notification_log WHERE dedup_key = :key", key=alert["event_id"]
        )
    finally:
        pipeline.close()

    secret = TOKEN.split(":", 1)[1]
    assert {"notifier.log", "notifier.out"} <= set(written)
    for name, content in written.items():
        assert secret not in content, name
    assert secret not in stored
    log = written["notifier.log"]
    assert log.count("telegram did not take the alert yet") >= 3
    assert '"level": "DEBUG"' in log  # the test ran at DEBUG
    if telegram_down == "answering 502":
        assert last_error == "502 Bad Gateway"
        assert len(telegram.requests) >= 3
    else:  # requests names the URL it could not reach: there, and only redacted
        assert "Connection refused" in last_error and "/bot<redacted>/sendMessage" in last_error
        assert "/bot<redacted>/sendMessage" in log


# --- the database away ----------------------------------------------------------------
def test_the_notifier_waits_for_the_database_and_skips_nothing(
    settings, admin_engine, migrated_template, tmp_path, telegram
):
    proxy = TcpProxy(settings.database.host, settings.database.port or 5432)
    pipeline = Pipeline(
        settings,
        admin_engine,
        migrated_template,
        tmp_path,
        **telegram.settings,
    )
    # The notifier reaches PostgreSQL through the relay; the test reads it directly.
    pipeline.env["DATABASE_URL"] = (
        make_url(pipeline.database_url)
        .set(host="127.0.0.1", port=proxy.port)
        .render_as_string(hide_password=False)
    )
    try:
        bucket = uuid.uuid4().int % 10**9
        first, *during = low_sales(bucket), low_sales(bucket + 1), low_sales(bucket + 2)
        pipeline.start("notifier")
        process = pipeline.processes["notifier"]
        publish(pipeline, first)
        wait_until(lambda: len(telegram.messages) == 1, timeout=60, what="the first alert")

        proxy.cut()
        publish(pipeline, *during)
        log = tmp_path / "logs" / "notifier.log"
        wait_until(
            lambda: log.read_text().count("the database is unavailable") >= 3,
            timeout=30,
            what="the notifier to find the database away",
        )
        # Nothing it could not record was sent, or skipped.
        assert len(telegram.messages) == 1

        proxy.restore()
        wait_until(lambda: len(telegram.messages) == 3, timeout=60, what="the alerts held back")
        statuses = {
            r["dedup_key"]: r["status"]
            for r in pipeline.rows("SELECT dedup_key, status FROM notification_log")
        }
        assert statuses == {e["event_id"]: "sent" for e in (first, *during)}
        assert process.poll() is None and pipeline.processes["notifier"] is process
        time.sleep(3)
        assert len(telegram.messages) == 3  # each once
    finally:
        pipeline.close()
        proxy.close()
