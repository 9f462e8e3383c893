"""Evaluating alert rules (tasks/alert_rules.py) on a real database against an oracle
summed from the raw rows: each kind fires on data that makes it hold and resolves when it
stops; no sales count as zero; the cooldown holds back repeats and the reminder comes
after it; sales_drop against each compare_to; the high-value digest; a rule changed over
REST takes effect at the next evaluation; every event is valid by the v2 schema and lands
in the history and the outbox; the history API lists what was raised."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import jsonschema
import pytest
from sqlalchemy import text

from config import PROJECT_ROOT
from tasks.alert_rules import evaluate
from tests.helpers import example_settings
from tests.integration.sales_history import PRODUCTS, REPORT_ZONE, oracle, sales_world
from web.notifications.app import create_app

SCHEMA = json.loads((PROJECT_ROOT / "docs/events/notification.v2.schema.json").read_text())
TOPIC = "notifications"
ADMIN = {"X-API-Key": example_settings().admin_api_keys[0]}
# Far from the shared history's rows (2024-2025): these tests' windows hold only theirs.
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def world(database_url):
    with sales_world(database_url) as w:
        w.api = create_app(
            example_settings(database_url=database_url, report_timezone=REPORT_ZONE)
        ).test_client()
        yield w


def sale(world, product: str, at: datetime, total: str, quantity: int = 1, stored_at=None) -> None:
    """A sale made at `at`, stored then (or at `stored_at`)."""
    world.n += 1
    price = PRODUCTS[product][2]
    row = (f"a{world.n}", product, quantity, price, price * quantity, Decimal(total), at)
    world.insert([row], stored_at=stored_at)


def rule(world, **fields) -> int:
    body = {"name": f"rule {fields['kind']}", "window_minutes": 60, "cooldown_minutes": 30}
    answer = world.api.post("/api/v1/alert-rules", json=body | fields, headers=ADMIN)
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["id"]


def run(world, at: datetime) -> list[dict]:
    """One evaluation at `at`; the events it raised, each checked against the schema and
    found in the history and the outbox."""
    with world.engine.connect() as conn:
        last = conn.execute(text("SELECT coalesce(max(id), 0) FROM outbox_events")).scalar()
    evaluate(world.engine, REPORT_ZONE, TOPIC, at)
    with world.engine.connect() as conn:
        events = [
            row.payload
            for row in conn.execute(
                text("SELECT payload FROM outbox_events WHERE id > :last ORDER BY id"),
                {"last": last},
            )
        ]
        history = set(conn.execute(text("SELECT event_id FROM alert_events")).scalars())
    for event in events:
        jsonschema.validate(event, SCHEMA)
        assert event["event_id"] in history
    return events


def by_rule(events: list[dict]) -> dict[int, dict]:
    found = {e["rule"]["id"]: e for e in events}
    assert len(found) == len(events), "one event per rule and evaluation"
    return found


def revenue(world, start, end, **scope) -> Decimal:
    groups = oracle(world, start, end, lambda *_: 1, **scope)
    return groups[1][0] if groups else Decimal(0)


def test_low_sales_fires_reminds_after_the_cooldown_and_resolves(world):
    for minutes, product, total in ((50, "p1", "40.00"), (40, "p1", "25.50"), (20, "p0", "7.25")):
        sale(world, product, NOW - timedelta(minutes=minutes), total)
    world.rollup()  # part of the figures from rollups, part from the rows above them
    sale(world, "p0", NOW - timedelta(minutes=15), "3.10")
    window = (NOW - timedelta(hours=1), NOW)
    everything = revenue(world, *window)
    p0 = revenue(world, *window, product="p0")
    quiet = rule(world, kind="low_sales", threshold=str(everything + Decimal("0.01")))
    # cat2 (p2, p5) sold nothing: zero, below any threshold above it.
    empty = rule(world, kind="low_sales", threshold=1, scope={"category": "cat2"})
    at_threshold = rule(world, kind="low_sales", threshold=str(p0), scope={"product_id": "p0"})

    first = by_rule(run(world, NOW))
    assert set(first) == {quiet, empty}, at_threshold
    assert (first[quiet]["state"], first[quiet]["reminder"]) == ("firing", False)
    assert first[quiet]["value"] == f"{everything:.2f}"
    assert first[quiet]["details"]["transactions"] == 4
    assert first[empty]["value"] == "0.00"
    assert first[empty]["scope"] == {"category": "cat2"}
    assert first[quiet]["window"] == {
        "start": window[0].isoformat(),
        "end": window[1].isoformat(),
        "minutes": 60,
    }

    # Still holding, inside the cooldown: nothing; a second run of the same minute neither.
    assert run(world, NOW) == []
    assert run(world, NOW + timedelta(minutes=29)) == []
    reminders = by_rule(run(world, NOW + timedelta(minutes=30)))
    assert set(reminders) == {quiet, empty}
    assert all(e["state"] == "firing" and e["reminder"] for e in reminders.values())

    sale(world, "p5", NOW + timedelta(minutes=31), "2.00")
    resolved = by_rule(run(world, NOW + timedelta(minutes=32)))
    assert set(resolved) == {empty}
    assert (resolved[empty]["state"], resolved[empty]["value"]) == ("resolved", "2.00")
    with world.engine.connect() as conn:
        states = dict(conn.execute(text("SELECT rule_id, state FROM alert_states")).all())
    assert states == {quiet: "firing", empty: "ok", at_threshold: "ok"}


@pytest.mark.parametrize(
    "compare_to, shift",
    [
        ("previous_window", timedelta(hours=1)),
        ("same_window_yesterday", timedelta(days=1)),
        ("same_window_last_week", timedelta(days=7)),
    ],
)
def test_sales_drop_compares_with_each_window(world, compare_to, shift):
    window = (NOW - timedelta(hours=1), NOW)
    before = (window[0] - shift, window[1] - shift)
    for minutes, total in ((55, "120.00"), (30, "80.40")):
        sale(world, "p3", before[1] - timedelta(minutes=minutes), total)
    sale(world, "p3", NOW - timedelta(minutes=10), "61.00")
    sale(world, "p4", NOW - timedelta(minutes=10), "500.00")  # another product: not counted
    now_revenue = revenue(world, *window, product="p3")
    then = revenue(world, *before, product="p3")
    drop = ((then - now_revenue) * 100 / then).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert 60 < drop < 70
    scope = {"product_id": "p3"}
    fires = rule(world, kind="sales_drop", drop_percent=60, compare_to=compare_to, scope=scope)
    rule(world, kind="sales_drop", drop_percent=70, compare_to=compare_to, scope=scope)

    events = by_rule(run(world, NOW))
    assert set(events) == {fires}
    event = events[fires]
    assert (event["value"], event["threshold"]) == (f"{drop:.2f}", "60.00")
    assert event["details"]["compared_revenue"] == f"{then:.2f}"
    assert event["details"]["compared_window"] == {
        "start": before[0].isoformat(),
        "end": before[1].isoformat(),
    }


def test_a_window_to_compare_with_that_sold_nothing_is_no_drop(world):
    sale(world, "p3", NOW - timedelta(minutes=10), "5.00")
    rule(world, kind="sales_drop", drop_percent=0, scope={"product_id": "p3"})
    rule(world, kind="sales_drop", drop_percent=0, scope={"product_id": "p4"})
    assert run(world, NOW) == []


def test_high_value_sales_come_as_one_digest_per_window(world):
    big = ["15000.00", "12000.50", "10000.00", "25000.00"]
    for i, total in enumerate(big):
        sale(world, "p1", NOW - timedelta(minutes=5 + i), total)
    sale(world, "p1", NOW - timedelta(minutes=3), "9999.99")
    sale(world, "p2", NOW - timedelta(minutes=3), "50000.00")  # cat2: outside the scope
    digest = rule(world, kind="high_value_sale", threshold=10000, scope={"category": "cat1"})

    events = by_rule(run(world, NOW))
    assert set(events) == {digest}
    listed = [s["total_amount"] for s in events[digest]["details"]["sales"]]
    assert listed == sorted(big, key=Decimal, reverse=True)
    assert events[digest]["value"] == "4.00"
    # More of them inside the cooldown: no message per sale.
    sale(world, "p1", NOW + timedelta(minutes=1), "30000.00")
    sale(world, "p1", NOW + timedelta(minutes=20), "11000.00")
    assert run(world, NOW + timedelta(minutes=2)) == []
    # After it, the reminder lists those two, not the four already listed.
    (reminder,) = run(world, NOW + timedelta(minutes=30))
    assert reminder["reminder"] and reminder["value"] == "2.00"
    assert [s["total_amount"] for s in reminder["details"]["sales"]] == ["30000.00", "11000.00"]
    # Still in the window but nothing new: no reminder with nothing to say.
    assert run(world, NOW + timedelta(minutes=61)) == []
    # A window without any: resolved.
    (resolved,) = run(world, NOW + timedelta(minutes=81))
    assert resolved["state"] == "resolved" and resolved["value"] == "0.00"


def test_a_high_value_sale_in_a_cooldown_longer_than_the_window_is_listed_on_resolving(world):
    digest = rule(world, kind="high_value_sale", threshold=10000, window_minutes=5)
    sale(world, "p4", NOW - timedelta(minutes=2), "10000.00")
    assert [e["value"] for e in run(world, NOW)] == ["1.00"]
    sale(world, "p4", NOW + timedelta(minutes=3), "10500.00")
    assert run(world, NOW + timedelta(minutes=4)) == []  # in the cooldown
    # Out of the window before the cooldown ends: the resolved event lists it.
    (resolved,) = run(world, NOW + timedelta(minutes=9))
    assert (resolved["rule"]["id"], resolved["state"], resolved["value"]) == (
        digest,
        "resolved",
        "1.00",
    )
    assert [s["total_amount"] for s in resolved["details"]["sales"]] == ["10500.00"]


def test_a_high_value_sale_stored_late_is_listed_by_when_it_was_stored(world):
    """A sale of last week that arrives now is news now: digests go by stored_at."""
    sale(world, "p1", NOW - timedelta(days=7), "20000.00", stored_at=NOW - timedelta(minutes=2))
    digest = rule(world, kind="high_value_sale", threshold=10000)
    (event,) = run(world, NOW)
    assert event["rule"]["id"] == digest and event["value"] == "1.00"


def test_no_sales_fires_only_inside_its_active_hours(world):
    # 12:00 UTC is 14:00 in Berlin (summer time).
    sale(world, "p0", NOW - timedelta(minutes=45), "3.00")
    inside = rule(world, kind="no_sales", window_minutes=30, active_hours="09:00-21:00")
    rule(world, kind="no_sales", window_minutes=30, active_hours="21:00-09:00")
    rule(world, kind="no_sales", window_minutes=60)  # the sale at 11:15 is in its window
    events = by_rule(run(world, NOW))
    assert set(events) == {inside}
    assert events[inside]["value"] == "0.00"


def test_no_sales_counts_what_was_stored_not_when_it_was_sold(world):
    """The pipeline-stalled signal: a backlog of old sales stored now is not silence,
    and sales of the window stored nowhere yet are."""
    sale(world, "p0", NOW - timedelta(days=3), "3.00", stored_at=NOW - timedelta(minutes=5))
    sale(world, "p2", NOW - timedelta(minutes=5), "3.00", stored_at=NOW + timedelta(hours=1))
    rule(world, kind="no_sales", window_minutes=30, scope={"category": "cat0"})
    silent = rule(world, kind="no_sales", window_minutes=30, scope={"product_id": "p2"})
    assert set(by_rule(run(world, NOW))) == {silent}


def test_rejections_above_the_threshold_fire(world):
    now = datetime.now(UTC)
    with world.engine.begin() as conn:
        already = conn.execute(text("SELECT count(*) FROM rejected_transactions")).scalar()
        for i in range(4 - already):
            conn.execute(
                text(
                    "INSERT INTO rejected_transactions (transaction_id, raw_payload, reason,"
                    " stage, kind, kafka_topic, kafka_partition, kafka_offset) VALUES"
                    " (:tid, 'x', 'invalid_fields', 'processor', 'transaction', 't', 0, :n)"
                ),
                {"tid": f"r{i}", "n": 100 + i},
            )
    fires = rule(world, kind="rejections", threshold=3, window_minutes=5)
    rule(world, kind="rejections", threshold=4, window_minutes=5)  # more than, not as many
    events = by_rule(run(world, now))
    assert set(events) == {fires}
    assert events[fires]["value"] == "4.00"


def test_a_rule_changed_over_rest_takes_effect_at_the_next_evaluation(world):
    sale(world, "p0", NOW - timedelta(minutes=30), "10.00")
    changed = rule(world, kind="low_sales", threshold=5, scope={"product_id": "p0"})
    assert run(world, NOW) == []
    answer = world.api.patch(
        f"/api/v1/alert-rules/{changed}", json={"threshold": 11}, headers=ADMIN
    )
    assert answer.status_code == 200, answer.get_json()
    assert set(by_rule(run(world, NOW + timedelta(minutes=1)))) == {changed}
    assert world.api.get(f"/api/v1/alert-rules/{changed}").get_json()["status"]["state"] == "firing"
    # Disabled: not evaluated (and no resolved event either).
    world.api.patch(f"/api/v1/alert-rules/{changed}", json={"enabled": False}, headers=ADMIN)
    assert run(world, NOW + timedelta(minutes=2)) == []


def test_the_history_lists_what_was_raised_filtered_and_paged(world):
    quiet = rule(world, kind="low_sales", threshold=1, cooldown_minutes=1)
    other = rule(world, kind="no_sales", window_minutes=10)
    for minute in range(3):
        run(world, NOW + timedelta(minutes=minute))
    tested = world.api.post(f"/api/v1/alert-rules/{other}/test", headers=ADMIN)
    assert tested.status_code == 202, tested.get_json()
    assert tested.get_json()["channels"] == 1

    everything = world.api.get("/api/v1/alerts").get_json()
    # quiet: firing, then a reminder each minute; other: firing (a cooldown of 30 min),
    # then its test. Newest first; within one evaluation, in the order of the rules.
    assert [(a["rule_id"], a["state"], a["reminder"]) for a in everything["items"]] == [
        (other, "test", False),
        (quiet, "firing", True),
        (quiet, "firing", True),
        (other, "firing", False),
        (quiet, "firing", False),
    ]
    assert everything["next"] is None
    assert all(a["deliveries"] == [] for a in everything["items"])  # none delivered yet

    page = world.api.get("/api/v1/alerts", query_string={"rule": quiet, "limit": 2})
    first = page.get_json()
    assert len(first["items"]) == 2 and first["next"] == first["items"][-1]["id"]
    rest = world.api.get(
        "/api/v1/alerts", query_string={"rule": quiet, "limit": 2, "before": first["next"]}
    ).get_json()
    by_rule_id = world.api.get("/api/v1/alerts", query_string={"rule_id": quiet}).get_json()
    assert by_rule_id["items"] == first["items"] + rest["items"]
    both = world.api.get("/api/v1/alerts", query_string={"rule": quiet, "rule_id": other})
    assert both.status_code == 422 and "rule" in both.get_json()["errors"]["query"]
    assert [a["rule_id"] for a in first["items"] + rest["items"]] == [quiet] * 3
    assert rest["next"] is None
    only_tests = world.api.get("/api/v1/alerts", query_string={"state": "test"}).get_json()
    assert [a["event_id"] for a in only_tests["items"]] == [tested.get_json()["event_id"]]
    one = world.api.get(f"/api/v1/alerts/{rest['items'][-1]['id']}").get_json()
    assert (one["state"], one["reminder"], one["payload"]["rule"]["id"]) == ("firing", False, quiet)
    assert world.api.get("/api/v1/alerts/999999").status_code == 404
    bad = world.api.get("/api/v1/alerts", query_string={"state": "exploded"})
    assert bad.status_code == 422
    # Any offset ISO 8601 allows, though PostgreSQL takes up to 15:59; no UTC time: 422.
    far_east = world.api.get("/api/v1/alerts", query_string={"from": "2000-01-01T00:00:00+16:00"})
    assert len(far_east.get_json()["items"]) == len(everything["items"])
    too_early = world.api.get("/api/v1/alerts", query_string={"to": "0001-01-01T00:00:00+05:00"})
    assert too_early.status_code == 422 and "to" in too_early.get_json()["errors"]["query"]


def test_low_sales_reads_the_exact_revenue_across_rollups_and_raw_rows(world):
    """Over the shared history, rolled up in Berlin's days: a window that crosses 29
    February's rows, read partly from rollups and partly from the rows at its edges."""
    world.rollup()
    now = datetime(2024, 2, 29, 23, 7, tzinfo=UTC)
    start = now - timedelta(minutes=150)
    expected, transactions, _ = oracle(world, start, now, lambda *_: 1)[1]
    assert transactions > 0
    below = rule(world, kind="low_sales", threshold=str(expected + Decimal("0.01")),
                 window_minutes=150)  # fmt: skip
    rule(world, kind="low_sales", threshold=str(expected), window_minutes=150)  # not below
    events = by_rule(run(world, now))
    assert set(events) == {below}
    assert events[below]["value"] == f"{expected:.2f}"
    assert events[below]["details"]["transactions"] == transactions
