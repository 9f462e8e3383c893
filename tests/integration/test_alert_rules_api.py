"""The Notification Service's rules API on a migrated database: create, read, replace,
change and delete a rule; writes need an admin key; every bad rule is a 422 that names
its field; a webhook's secret is never shown again."""

from __future__ import annotations

import pytest

from tests.helpers import example_settings
from web.notifications.app import create_app

ADMIN = {"X-API-Key": example_settings().admin_api_keys[0]}
RULE = {
    "name": "Coffee is quiet",
    "kind": "low_sales",
    "scope": {"category": "Coffee"},
    "threshold": 100,
    "window_minutes": 60,
    "cooldown_minutes": 120,
    "enabled": True,
    "channels": [
        {"type": "telegram"},
        {"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s" * 32},
    ],
}


@pytest.fixture
def client(database_url):
    app = create_app(example_settings(database_url=database_url))
    return app.test_client()


def test_a_rule_is_created_read_replaced_changed_and_deleted(client):
    created = client.post("/api/v1/alert-rules", json=RULE, headers=ADMIN)
    assert created.status_code == 201, created.get_json()
    rule = created.get_json()
    assert {k: rule[k] for k in ("name", "kind", "scope", "threshold", "window_minutes")} == {
        k: RULE[k] for k in ("name", "kind", "scope", "threshold", "window_minutes")
    }
    assert rule["status"]["state"] == "ok"
    # The secret is kept for signing and never shown.
    assert rule["channels"][1] == {
        "type": "webhook",
        "url": "http://127.0.0.1:9/hook",
        "has_secret": True,
    }
    one = f"/api/v1/alert-rules/{rule['id']}"
    assert client.get(one).get_json() == rule
    assert [r["id"] for r in client.get("/api/v1/alert-rules").get_json()["items"]] == [rule["id"]]

    replaced = client.put(one, json=RULE | {"threshold": 250, "scope": {}}, headers=ADMIN)
    assert replaced.status_code == 200, replaced.get_json()
    assert (replaced.get_json()["threshold"], replaced.get_json()["scope"]) == (250, {})

    changed = client.patch(one, json={"enabled": False}, headers=ADMIN)
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["enabled"] is False
    assert changed.get_json()["threshold"] == 250  # the rest stays
    assert changed.get_json()["channels"][1]["has_secret"] is True

    assert client.delete(one, headers=ADMIN).status_code == 204
    missing = client.get(one)
    assert missing.status_code == 404
    assert "GET /api/v1/alert-rules" in missing.get_json()["message"]


def test_writes_need_an_admin_key(client):
    for method in ("post", "put", "patch", "delete"):
        path = "/api/v1/alert-rules" + ("" if method == "post" else "/1")
        answer = getattr(client, method)(path, json=RULE)
        assert answer.status_code == 401, method
        assert "X-API-Key" in answer.get_json()["message"]
    wrong = client.post("/api/v1/alert-rules", json=RULE, headers={"X-API-Key": "x" * 32})
    assert wrong.status_code == 401
    assert client.get("/api/v1/alert-rules").status_code == 200  # no analytics keys set


BAD_RULES = {
    "unknown kind": ({"kind": "sales_up"}, ["kind"]),
    "negative threshold": ({"threshold": -1}, ["threshold"]),
    "missing threshold": ({"threshold": None}, ["threshold"]),
    "drop_percent over 100": (
        {"kind": "sales_drop", "threshold": None, "drop_percent": 150},
        ["drop_percent"],
    ),
    "drop_percent below 0": (
        {"kind": "sales_drop", "threshold": None, "drop_percent": -5},
        ["drop_percent"],
    ),
    "unknown compare_to": (
        {"kind": "sales_drop", "threshold": None, "drop_percent": 30, "compare_to": "last_year"},
        ["compare_to"],
    ),
    "window under a minute": ({"window_minutes": 0}, ["window_minutes"]),
    "unknown channel type": ({"channels": [{"type": "pigeon"}]}, ["channels", "0", "type"]),
    "relative URL": (
        {"channels": [{"type": "webhook", "url": "/hook"}]},
        ["channels", "0", "url"],
    ),
    "ftp URL": (
        {"channels": [{"type": "webhook", "url": "ftp://127.0.0.1/hook"}]},
        ["channels", "0", "url"],
    ),
    "host not allowed": (
        {"channels": [{"type": "webhook", "url": "https://ops.example.com/hook"}]},
        ["channels", "0", "url"],
    ),
    "no channel": ({"channels": []}, ["channels"]),
    "both scopes": ({"scope": {"category": "Coffee", "product_id": "p1"}}, ["scope"]),
    "unknown field": ({"severity": "high"}, ["severity"]),
    "active hours on low_sales": ({"active_hours": "09:00-21:00"}, ["active_hours"]),
    "bad active hours": (
        {"kind": "no_sales", "threshold": None, "active_hours": "9-21"},
        ["active_hours"],
    ),
}


@pytest.mark.parametrize("case", BAD_RULES, ids=list(BAD_RULES))
def test_every_bad_rule_is_a_422_naming_its_field(client, case):
    change, path = BAD_RULES[case]
    body = {k: v for k, v in (RULE | change).items() if v is not None}
    answer = client.post("/api/v1/alert-rules", json=body, headers=ADMIN)
    assert answer.status_code == 422, answer.get_json()
    errors = answer.get_json()["errors"]["json"]
    for step in path:
        assert step in errors, (case, answer.get_json())
        errors = errors[step]
    assert client.get("/api/v1/alert-rules").get_json()["items"] == []  # nothing stored


def test_a_patch_that_breaks_the_rule_is_refused_and_changes_nothing(client):
    rule = client.post("/api/v1/alert-rules", json=RULE, headers=ADMIN).get_json()
    one = f"/api/v1/alert-rules/{rule['id']}"
    # A sales_drop needs drop_percent and has no threshold: the merged rule is checked.
    answer = client.patch(one, json={"kind": "sales_drop"}, headers=ADMIN)
    assert answer.status_code == 422, answer.get_json()
    assert "drop_percent" in answer.get_json()["message"] or "threshold" in str(
        answer.get_json()["errors"]
    )
    assert client.get(one).get_json() == rule


def test_the_service_answers_health_ready_and_documents_its_api(client):
    assert client.get("/health").get_json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200
    spec = client.get("/openapi.json").get_json()
    assert {"/api/v1/alert-rules", "/api/v1/alert-rules/{rule_id}",
            "/api/v1/alert-rules/{rule_id}/test", "/api/v1/alerts",
            "/api/v1/alerts/{alert_id}"} <= set(spec["paths"])  # fmt: skip
    assert client.get("/docs").status_code == 200
