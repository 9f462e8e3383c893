"""What a person reads of a rule's alert (event v2): what happened, where, the value
against the threshold and the window, in words, for every kind and state; links to the
report and the dashboard when their addresses are set; and a v2 event that the schema
refuses is Malformed, naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest

from consumers.notifier import TELEGRAM_MAX_TEXT, Malformed, links, message, parse_event
from db.alert_events import Check, alert_event

AT = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
WINDOW = (datetime(2026, 12, 3, 9, 0, tzinfo=UTC), AT)


def rule(**fields) -> dict:
    base = {"id": 7, "name": "Coffee is quiet", "kind": "low_sales", "product_id": None,
            "category": "Coffee", "threshold": Decimal("100"), "drop_percent": None,
            "window_minutes": 60, "channels": [{"type": "telegram"}]}  # fmt: skip
    return base | fields


def alert(found: Check, state: str = "firing", reminder: bool = False, **fields) -> dict:
    event = alert_event(rule(**fields), found, state, AT, reminder=reminder)
    return parse_event(json.dumps(event).encode())  # valid by the v2 schema


def test_low_sales_says_what_where_how_much_and_when():
    text = message(alert(Check(True, Decimal("42.5"), WINDOW, {"transactions": 3})))
    assert text.splitlines() == [
        "🟠 Firing: Low sales, category Coffee",
        "Rule “Coffee is quiet”: revenue 42.50 from 3 transactions (threshold 100.00)",
        "in the 60 min from 2026-12-03T09:00:00+00:00 to 2026-12-03T10:00:00+00:00",
    ]
    reminder = message(alert(Check(True, Decimal(1), WINDOW, {"transactions": 1}), reminder=True))
    assert reminder.startswith("🟠 Still firing: Low sales")
    resolved = message(alert(Check(False, Decimal(150), WINDOW, {"transactions": 9}), "resolved"))
    assert resolved.startswith("✅ Resolved: Low sales, category Coffee")
    assert "revenue 150.00 from 9 transactions (threshold 100.00)" in resolved


def test_every_kind_reads_in_words():
    drop = alert(
        Check(True, Decimal("36.5"), WINDOW, {
            "revenue": "63.50", "compare_to": "same_window_yesterday",
            "compared_window": {"start": "2026-12-02T09:00:00+00:00",
                                "end": "2026-12-02T10:00:00+00:00"},
            "compared_revenue": "100.00"}),
        kind="sales_drop", threshold=None, drop_percent=Decimal(30), product_id="p1", category=None,
    )  # fmt: skip
    assert "Sales drop, product p1" in message(drop)
    assert "revenue 63.50, down 36.50% against 100.00 (same window yesterday" in message(drop)
    assert "threshold 30.00%" in message(drop)
    sales = [{"transaction_id": "t9", "product_id": "p1", "quantity": 2,
              "total_amount": "25000.00", "occurred_at": "2026-12-03T09:30:00+00:00"}]  # fmt: skip
    high = alert(Check(True, Decimal(1), WINDOW, {"sales": sales}), kind="high_value_sale",
                 threshold=Decimal(10000), category=None)  # fmt: skip
    assert "High-value sales, all sales" in message(high)
    assert "1 sales at or above 10,000.00" in message(high)
    assert "25,000.00: 2 x p1 (t9, 2026-12-03T09:30:00+00:00)" in message(high)
    for state, reminder in (("firing", True), ("resolved", False)):
        found = Check(state == "firing", Decimal(1), WINDOW, {"sales": sales})
        later = alert(found, state, reminder, kind="high_value_sale", threshold=Decimal(10000),
                      category=None)  # fmt: skip
        assert "1 more sales at or above 10,000.00 since the last alert" in message(later)
    quiet_stored = alert(Check(True, Decimal(0), WINDOW, {"active_hours": None,
                                                          "inside_active_hours": True}),
                         kind="no_sales", threshold=None)  # fmt: skip
    assert "0 transactions stored" in message(quiet_stored)
    quiet = alert(Check(True, Decimal(0), WINDOW, {"active_hours": "09:00-21:00",
                                                   "inside_active_hours": True}),
                  kind="no_sales", threshold=None)  # fmt: skip
    assert "No sales, category Coffee" in message(quiet) and "0 transactions" in message(quiet)
    rejected = alert(Check(True, Decimal(12), WINDOW, {}), kind="rejections", category=None,
                     threshold=Decimal(10))  # fmt: skip
    assert "12 rejected (threshold 10)" in message(rejected)
    test = alert(Check(False, None, (AT, AT), {"test": True}), "test")
    assert message(test).startswith("🧪 Test of the rule “Coffee is quiet”")


def test_links_lead_to_the_report_of_the_window_and_scope_and_to_the_dashboard():
    event = alert(Check(True, Decimal(1), WINDOW, {"transactions": 1}))
    report, dashboard = links(event, "https://sales.example.com", "https://grafana.example.com")
    url = urlsplit(report.removeprefix("Report: "))
    assert url.path == "/api/v1/analytics/summary"
    assert parse_qs(url.query) == {
        "from": ["2026-12-03T09:00:00+00:00"],
        "to": ["2026-12-03T10:00:00+00:00"],
        "category": ["Coffee"],
    }
    assert dashboard == "Dashboard: https://grafana.example.com/d/sales-by-product"
    assert links(event, "", "") == []
    text = message(event, [report, dashboard])
    assert text.endswith(dashboard) and report in text


def test_a_long_rule_name_is_cut_to_telegrams_limit():
    event = alert(Check(True, Decimal(1), WINDOW, {"transactions": 1}), name="x" * 200)
    many = [f"Report: https://sales.example.com/{'y' * 1000}"] * 5
    assert len(message(event, many)) <= TELEGRAM_MAX_TEXT


@pytest.mark.parametrize(
    "change, where",
    [
        ({"state": "exploded"}, "$.state"),
        ({"value": "12.5"}, "$.value"),
        ({"scope": {"category": "a", "product_id": "b"}}, "$.scope"),
        ({"rule": {"id": 0, "name": "r"}}, "$.rule.id"),
    ],
)
def test_a_v2_event_the_schema_refuses_is_malformed_naming_the_field(change, where):
    event = alert(Check(True, Decimal(1), WINDOW, {"transactions": 1})) | change
    with pytest.raises(Malformed, match=r"schema v2\): " + where.replace("$", r"\$")):
        parse_event(json.dumps(event).encode())
