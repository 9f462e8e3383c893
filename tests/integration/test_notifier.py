"""The notifier, a real process on real Kafka and PostgreSQL, against a local server that
speaks Telegram's Bot API: each event reaches the chat once, flood control and outages
are waited out, refusals and malformed messages are recorded, nothing is dropped."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kafka import KafkaProducer
from sqlalchemy import text

from tasks.events import event
from tests.fake_telegram import CHAT_ID, TOKEN, FakeTelegram, chat_not_found, flood_control, outage
from tests.helpers import wait_until
from tests.integration.pipeline import Pipeline


@pytest.fixture
def telegram():
    fake = FakeTelegram()
    yield fake
    fake.close()


@pytest.fixture
def notifier(settings, admin_engine, migrated_template, tmp_path, telegram):
    p = Pipeline(
        settings,
        admin_engine,
        migrated_template,
        tmp_path,
        telegram_bot_token=TOKEN,
        telegram_chat_id=CHAT_ID,
        telegram_api_url=telegram.url,
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
