"""A rule's alert delivered by the notifier, a real process on real Kafka and PostgreSQL,
to each of its channels once: Telegram (the local Bot API, in the rule's own chat) and a
webhook that answers 500 and then 200 (one delivery, signed with the channel's secret),
across a notifier killed with SIGKILL while the webhook was down; the history shows each
delivery's outcome, and a message says in words what happened."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaProducer
from sqlalchemy import text

from tasks.alert_rules import evaluate
from tests.helpers import example_settings, wait_until
from tests.integration.pipeline import Pipeline
from tests.webhook_receiver import WebhookReceiver
from web.notifications.app import create_app

ADMIN = {"X-API-Key": example_settings().admin_api_keys[0]}
OTHER_CHAT = "-1009876543210"
SECRET = "a-webhook-secret-of-32-characters"


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def pipeline(settings, admin_engine, migrated_template, tmp_path, telegram):
    p = Pipeline(
        settings,
        admin_engine,
        migrated_template,
        tmp_path,
        **telegram.settings,
    )
    yield p
    p.close()


def relay(pipeline: Pipeline) -> list[dict]:
    """The outbox's events onto the topic, as the processor's relay sends them."""
    with pipeline.engine.connect() as conn:
        events = list(conn.execute(text("SELECT payload FROM outbox_events ORDER BY id")).scalars())
    producer = KafkaProducer(bootstrap_servers=pipeline.kafka, acks="all")
    for e in events:
        producer.send(
            pipeline.notifications_topic, key=e["event_id"].encode(), value=json.dumps(e).encode()
        )
    producer.flush()
    producer.close()
    return events


def deliveries(pipeline: Pipeline) -> dict[str, tuple]:
    with pipeline.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT channel, status, attempts, event_id FROM notification_log")
        ).all()
    return {channel: (status, attempts, event_id) for channel, status, attempts, event_id in rows}


def test_an_alert_reaches_each_channel_once_across_a_killed_notifier(pipeline, telegram, webhook):
    telegram.chats.add(OTHER_CHAT)
    api = create_app(pipeline.settings).test_client()
    answer = api.post(
        "/api/v1/alert-rules",
        json={
            "name": "Coffee is quiet",
            "kind": "low_sales",
            "scope": {"category": "Coffee"},
            "threshold": 100,
            "window_minutes": 60,
            "channels": [
                {"type": "telegram", "chat_id": OTHER_CHAT},
                {"type": "webhook", "url": webhook.url, "secret": SECRET},
            ],
        },
        headers=ADMIN,
    )
    assert answer.status_code == 201, answer.get_json()
    now = datetime.now(UTC)
    evaluate(pipeline.engine, "UTC", pipeline.notifications_topic, now)
    (event,) = relay(pipeline)

    webhook.script = [500] * 50  # down until told otherwise
    pipeline.start("notifier")
    # Both posts made and counted (the count follows each answer): the kill then falls in
    # the backoff, not between a post and its count.
    wait_until(
        lambda: (
            len(webhook.requests) >= 2 and deliveries(pipeline).get("webhook", ("", 0, ""))[1] >= 2
        ),
        timeout=60,
        what="the webhook tried twice",
    )
    assert len(telegram.messages) == 1
    pipeline.kill("notifier")  # while the webhook delivery is pending
    assert deliveries(pipeline)["webhook"][0] == "pending"
    tries = len(webhook.requests)

    webhook.script = [500]  # once more, then it takes it
    relay(pipeline)  # the same event again, as after a relay that died before marking it
    pipeline.start("notifier")
    wait_until(lambda: webhook.delivered, timeout=60, what="the webhook delivery")
    wait_until(
        lambda: {s for s, *_ in deliveries(pipeline).values()} == {"sent"},
        timeout=30,
        what="both deliveries final",
    )
    assert len(webhook.delivered) == 1 and len(webhook.requests) == tries + 2
    assert len(telegram.messages) == 1, "Telegram got the alert again"

    # Telegram: the rule's chat, in words.
    (message,) = telegram.messages
    assert message["chat_id"] == OTHER_CHAT
    for words in ("Firing", "Low sales", "category Coffee", "Coffee is quiet", "0.00", "100.00",
                  "60 min"):  # fmt: skip
        assert words in message["text"], (words, message["text"])
    # The webhook: the event itself, signed with the channel's secret.
    _, headers, body = webhook.requests[-1]
    assert json.loads(body) == event
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Signature-SHA256"] == expected
    assert headers["X-Event-Id"] == event["event_id"]
    assert SECRET.encode() not in body

    found = deliveries(pipeline)
    assert found["webhook"][1] == tries + 2  # every post counted
    assert {e for *_, e in found.values()} == {event["event_id"]}
    (alert,) = api.get("/api/v1/alerts").get_json()["items"]
    assert {(d["channel"], d["status"]) for d in alert["deliveries"]} == {
        ("telegram", "sent"),
        ("webhook", "sent"),
    }


def test_a_webhook_that_refuses_is_failed_with_its_reason_and_resolved_follows(
    pipeline, telegram, webhook
):
    api = create_app(pipeline.settings).test_client()
    rule = api.post(
        "/api/v1/alert-rules",
        json={
            "name": "Nothing sells",
            "kind": "no_sales",
            "window_minutes": 5,
            "channels": [{"type": "webhook", "url": webhook.url}],
        },
        headers=ADMIN,
    ).get_json()
    now = datetime.now(UTC)
    evaluate(pipeline.engine, "UTC", pipeline.notifications_topic, now)
    with pipeline.engine.begin() as conn:  # a sale arrives: the rule stops holding
        conn.execute(
            text(
                "INSERT INTO products (product_id, name, category, price, received_at)"
                " VALUES ('p1', 'P', 'C', 1, now())"
            )
        )
        conn.execute(
            text(
                "INSERT INTO transactions (transaction_id, product_id, quantity, unit_price,"
                " list_amount, total_amount, occurred_at, received_at, kafka_partition,"
                " kafka_offset, content_hash) VALUES ('t1', 'p1', 1, 1, 1, 1, :at, :at, 0, 0,"
                " 'x')"
            ),
            {"at": now},
        )
    evaluate(pipeline.engine, "UTC", pipeline.notifications_topic, now + timedelta(minutes=1))
    webhook.script = [410]
    firing, resolved = relay(pipeline)
    assert (firing["state"], resolved["state"]) == ("firing", "resolved")
    pipeline.start("notifier")
    wait_until(lambda: len(webhook.requests) == 2, timeout=60, what="both events posted")
    wait_until(
        lambda: len([r for r in rows(pipeline) if r[1] != "pending"]) == 2,
        timeout=30,
        what="both final",
    )
    outcome = {key.split("#")[0]: (status, error) for key, status, error in rows(pipeline)}
    assert outcome[firing["event_id"]][0] == "failed"
    assert "HTTP 410" in outcome[firing["event_id"]][1]
    assert outcome[resolved["event_id"]] == ("sent", None)
    assert json.loads(webhook.delivered[0])["rule"]["id"] == rule["id"]


def rows(pipeline: Pipeline) -> list[tuple]:
    with pipeline.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text("SELECT dedup_key, status, last_error FROM notification_log")
            )
        ]


def test_a_webhook_host_no_longer_allowed_is_not_posted_to(
    settings, admin_engine, migrated_template, tmp_path, webhook
):
    p = Pipeline(settings, admin_engine, migrated_template, tmp_path,
                 notify_webhook_allowed_hosts=["ops.example.com"])  # fmt: skip
    try:
        # Written while loopback was allowed; the notifier runs with another list.
        allowed_then = p.settings.model_copy(update={"notify_webhook_allowed_hosts": ["127.0.0.1"]})
        api = create_app(allowed_then).test_client()
        body = {"name": "Quiet", "kind": "no_sales", "window_minutes": 5,
                "channels": [{"type": "webhook", "url": webhook.url}]}  # fmt: skip
        assert api.post("/api/v1/alert-rules", json=body, headers=ADMIN).status_code == 201
        evaluate(p.engine, "UTC", p.notifications_topic, datetime.now(UTC))
        relay(p)
        p.start("notifier")
        wait_until(lambda: rows(p) and rows(p)[0][1] != "pending", timeout=60, what="final")
        ((_, status, error),) = rows(p)
        assert status == "failed"
        assert "127.0.0.1 is not allowed" in error and "NOTIFY_WEBHOOK_ALLOWED_HOSTS" in error
        assert webhook.requests == []
    finally:
        p.close()
