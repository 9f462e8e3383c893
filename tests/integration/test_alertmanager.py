"""Prometheus's alerts reach someone: a real Alertmanager (Debian's) hands an alert to the
notifier's webhook, and the notifier sends it to the chat (a local server speaking
Telegram's Bot API) once when it fires and once when it is resolved."""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests

from config import PROJECT_ROOT
from tests.helpers import free_port, wait_until
from tests.integration.pipeline import Pipeline
from web.notifications.app import create_app


@pytest.fixture
def notifier(settings, admin_engine, migrated_template, tmp_path, telegram):
    p = Pipeline(
        settings, admin_engine, migrated_template, tmp_path,
        **telegram.settings,
    )  # fmt: skip
    p.start("notifier")
    wait_until(lambda: p.ready("notifier"), timeout=60, what="the notifier ready")
    yield p
    p.close()


@pytest.fixture
def alertmanager(notifier, tmp_path):
    """Alertmanager with the project's route, its webhook aimed at this test's notifier and
    its waits shortened to a second."""
    config = tmp_path / "alertmanager.yml"
    url = f"http://127.0.0.1:{notifier.health_ports['notifier']}/alertmanager"
    project = (PROJECT_ROOT / "monitoring/alertmanager/alertmanager.yml").read_text()
    assert "http://notifier:9103/alertmanager" in project
    config.write_text(
        project.replace("http://notifier:9103/alertmanager", url)
        .replace("group_wait: 10s", "group_wait: 1s")
        .replace("group_interval: 1m", "group_interval: 1s")
    )
    port = free_port()
    process = subprocess.Popen(
        ["prometheus-alertmanager", f"--config.file={config}",
         f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def answers():
        try:
            return requests.get(f"{base}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(answers, timeout=30, what="Alertmanager")
    yield base
    process.terminate()
    process.wait(timeout=30)


def post_alert(base: str, name: str, starts: datetime, ends: datetime) -> None:
    alert = {
        "labels": {"alertname": name, "severity": "critical", "service": "processor"},
        "annotations": {"summary": "A test alert", "description": "Nothing is wrong."},
        "startsAt": starts.isoformat(),
        "endsAt": ends.isoformat(),
    }
    reply = requests.post(f"{base}/api/v2/alerts", json=[alert], timeout=10)
    assert reply.status_code == 200, reply.text


def test_an_alert_reaches_the_chat_once_firing_then_resolved(alertmanager, notifier, telegram):
    name = f"TestAlert{uuid.uuid4().hex[:6]}"
    starts = datetime.now(UTC) - timedelta(seconds=5)
    post_alert(alertmanager, name, starts, datetime.now(UTC) + timedelta(hours=1))

    def texts():
        return [m["text"] for m in telegram.messages if name in m["text"]]

    wait_until(lambda: len(texts()) == 1, timeout=60, what="the firing message")
    assert texts()[0].startswith("🔴 Firing: " + name)
    # Alertmanager is told again (as Prometheus does every evaluation): nothing new is sent.
    post_alert(alertmanager, name, starts, datetime.now(UTC) + timedelta(hours=1))
    time.sleep(4)
    assert len(texts()) == 1
    post_alert(alertmanager, name, starts, datetime.now(UTC) - timedelta(seconds=1))
    wait_until(lambda: len(texts()) == 2, timeout=60, what="the resolved message")
    assert texts()[1].startswith("✅ Resolved: " + name)
    time.sleep(3)
    assert len(texts()) == 2
    logged = notifier.rows(
        "SELECT status FROM notification_log WHERE event_type = 'monitoring_alert'"
    )
    assert [r["status"] for r in logged] == ["sent", "sent"]
    # The Notification Service's history lists them beside the rules' alerts.
    history = create_app(notifier.settings).test_client().get("/api/v1/alerts").get_json()
    assert [(a["kind"], a["rule_name"], a["state"], a["rule_id"]) for a in history["items"]] == [
        ("monitoring_alert", name, "resolved", None),
        ("monitoring_alert", name, "firing", None),
    ]
    assert all(
        [(d["channel"], d["status"]) for d in a["deliveries"]] == [("telegram", "sent")]
        for a in history["items"]
    )


def test_the_webhook_refuses_what_is_not_a_notification(notifier):
    url = f"http://127.0.0.1:{notifier.health_ports['notifier']}/alertmanager"
    reply = requests.post(url, data=b"{not json", timeout=10)
    assert reply.status_code == 400
    assert "not JSON" in reply.json()["error"]
    assert requests.get(url, timeout=10).status_code == 405
