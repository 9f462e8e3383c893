"""Alertmanager's webhook notifications become notification events that the event schema
accepts: the same alert repeated keeps its id, its resolution gets another; a body that is
not such a notification is refused with what is wrong."""

import json

import jsonschema
import pytest

from consumers.alertmanager import Invalid, events
from consumers.notifier import SCHEMA, message


def notification(status="firing", **alert) -> bytes:
    one = {
        "status": status,
        "labels": {
            "alertname": "ProcessorBacklogFull",
            "severity": "warning",
            "service": "processor",
        },
        "annotations": {"summary": "The processor is full", "description": "Add workers."},
        "startsAt": "2026-12-02T05:00:00.000Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-02T05:09:00Z",
        "fingerprint": "a1b2c3d4e5f60718",
    } | alert
    return json.dumps({"version": "4", "status": status, "alerts": [one]}).encode()


def test_an_alert_is_a_valid_event_once_firing_and_once_resolved():
    firing, again = events(notification()), events(notification())
    resolved = events(notification("resolved"))
    for event in (*firing, *resolved):
        jsonschema.validate(event, SCHEMA)
    assert firing[0]["event_id"] == again[0]["event_id"]  # a repeat is the same event
    assert resolved[0]["event_id"] != firing[0]["event_id"]
    assert firing[0]["severity"] == "warning"
    assert "Firing: ProcessorBacklogFull (processor)" in message(firing[0])
    assert "Add workers." in message(firing[0])
    assert message(resolved[0]).startswith("✅ Resolved: ProcessorBacklogFull")


def test_an_unknown_severity_is_sent_as_a_warning():
    labels = {"alertname": "X", "severity": "page"}
    assert events(notification(labels=labels))[0]["severity"] == "warning"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{", "not JSON"),
        (b"[]", "'alerts' list"),
        (notification(status="pending"), "status"),
        (notification(labels={"severity": "info"}), "alertname"),
        (notification(startsAt="yesterday"), "startsAt"),
        (notification(fingerprint=""), "fingerprint"),
    ],
)
def test_what_is_not_a_notification_is_refused_with_the_reason(body, says):
    with pytest.raises(Invalid, match=says):
        events(body)
