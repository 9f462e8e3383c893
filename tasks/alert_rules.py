"""Evaluating the alert rules (beat, every minute): each enabled rule is checked against
the reports' exact figures (rollups plus the rows not yet rolled up), and a rule that
starts to hold raises one `firing` event, a reminder after its cooldown while it keeps
holding, and one `resolved` event when it stops. Each event is written to the history
(`alert_events`) and the outbox in the same transaction as the rule's new state.

The figures are read per window, not per rule: every rule over the same window (and
every scope, since one query answers for all products and one for all categories) shares
three report queries, so a thousand rules cost as many queries as they have distinct
windows. no_sales and high_value_sale go by when rows were stored, not when they were
sold: a stalled pipeline is silence even while old sales trickle in, and a late sale is
news when it arrives.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from psycopg2.extras import execute_values
from sqlalchemy import Connection, Engine, text

from config import get_settings
from db import alert_events
from db.alert_events import Check, alert_event
from db.reports.periods import ReportRange
from db.reports.queries import Filters, Reports, snapshot
from db.session import default_engine
from tasks.celery_app import app

logger = logging.getLogger(__name__)

# One evaluation at a time (beat's and one asked for by hand would raise events twice).
LOCK = 0x5A1E5A1E
HUNDRED = Decimal(100)
CENT = Decimal("0.01")
# The largest sales a high_value_sale digest lists (it counts all of them).
DIGEST_SALES = 10
SHIFTS = {
    "previous_window": None,  # the window just before
    "same_window_yesterday": timedelta(days=1),
    "same_window_last_week": timedelta(days=7),
}


class Figures:
    """The reports' figures per window, each window read once."""

    def __init__(
        self,
        reports: Reports,
        conn: Connection,
        zone: ZoneInfo,
        high_value_floor: tuple[datetime, Decimal] | None = None,
    ):
        self.reports = reports
        self.conn = conn
        self.zone = zone
        self._sales: dict[tuple[datetime, datetime], dict] = {}
        self._rejections: dict[datetime, int] = {}
        self._stored: dict[tuple[datetime, datetime], list] = {}
        self._high: list | None = None
        # (earliest start, lowest threshold) of the high_value_sale rules.
        self.high_value_floor = high_value_floor

    def sales(self, start: datetime, end: datetime, rule) -> dict:
        """Revenue and transactions of the rule's scope in [start, end)."""
        if (start, end) not in self._sales:
            report = ReportRange(start, end, ZoneInfo("UTC"))
            self._sales[start, end] = {
                "total": self.reports.totals(report, Filters()),
                "product": {r["product_id"]: r for r in self.reports.by_product(report, Filters())},
                "category": {r["category"]: r for r in self.reports.by_category(report, Filters())},
            }
        found = self._sales[start, end]
        if rule["product_id"] is not None:
            row = found["product"].get(rule["product_id"])
        elif rule["category"] is not None:
            row = found["category"].get(rule["category"])
        else:
            row = found["total"]
        # No row: no sales in the scope, which is zero (and fires low_sales).
        return row or {"revenue": Decimal(0), "transactions": 0}

    def rejections(self, start: datetime) -> int:
        if start not in self._rejections:
            self._rejections[start] = self.conn.execute(
                text("SELECT count(*) FROM rejected_transactions WHERE rejected_at >= :start"),
                {"start": start},
            ).scalar_one()
        return self._rejections[start]

    def stored(self, start: datetime, end: datetime, rule) -> int:
        """Transactions of the rule's scope stored in [start, end): by when they were
        written, not when they were sold (no_sales is the pipeline-stalled signal)."""
        if (start, end) not in self._stored:
            self._stored[start, end] = self.conn.execute(
                text(
                    "SELECT t.product_id, p.category, count(*) AS n FROM transactions t"
                    " JOIN products p USING (product_id)"
                    " WHERE t.stored_at >= :start AND t.stored_at < :end"
                    " GROUP BY t.product_id, p.category"
                ),
                {"start": start, "end": end},
            ).all()
        return sum(r.n for r in self._stored[start, end] if _in_scope(rule, r))

    def high_value_sales(self, start: datetime, end: datetime, rule) -> list:
        """The rule's sales at or above its threshold stored in [start, end), largest
        first. One query for every high_value_sale rule: from the earliest start any of
        them asks for, at the lowest threshold (`high_value_floor`)."""
        if self._high is None:
            since, minimum = self.high_value_floor
            self._high = self.conn.execute(
                text(
                    "SELECT t.transaction_id, t.product_id, p.category, t.quantity,"
                    " t.total_amount, t.occurred_at, t.stored_at FROM transactions t"
                    " JOIN products p USING (product_id)"
                    " WHERE t.stored_at >= :since AND t.stored_at < :end"
                    " AND t.total_amount >= :minimum ORDER BY t.total_amount DESC, t.id"
                ),
                {"since": since, "end": end, "minimum": minimum},
            ).all()
        return [
            s
            for s in self._high
            if start <= s.stored_at < end
            and s.total_amount >= rule["threshold"]
            and _in_scope(rule, s)
        ]


def _in_scope(rule, row) -> bool:
    return rule["product_id"] in (None, row.product_id) and rule["category"] in (
        None,
        row.category,
    )


def in_active_hours(active_hours: str | None, moment: datetime, zone: ZoneInfo) -> bool:
    """Whether `moment` falls inside "HH:MM-HH:MM" in the zone (over midnight when the
    end comes first); no hours: always."""
    if not active_hours:
        return True
    first, last = (time.fromisoformat(part) for part in active_hours.split("-"))
    now = moment.astimezone(zone).time()
    return first <= now < last if first < last else now >= first or now < last


def check(rule, figures: Figures, end: datetime, listed_since: datetime | None = None) -> Check:
    """Whether the rule holds in the window that ends at `end`. A high_value_sale rule's
    digest lists the sales stored since `listed_since` (its last event, while it fires),
    so that each sale is in one digest however long the rule keeps holding."""
    window = timedelta(minutes=rule["window_minutes"])
    start = end - window
    kind = rule["kind"]
    if kind == "low_sales":
        sales = figures.sales(start, end, rule)
        return Check(
            sales["revenue"] < rule["threshold"],
            sales["revenue"],
            (start, end),
            {"transactions": sales["transactions"]},
        )
    if kind == "sales_drop":
        shift = SHIFTS[rule["compare_to"]] or window
        now, before = (
            figures.sales(start, end, rule),
            figures.sales(start - shift, end - shift, rule),
        )
        reference = before["revenue"]
        drop = (
            ((reference - now["revenue"]) * HUNDRED / reference).quantize(CENT, ROUND_HALF_UP)
            if reference > 0
            else None
        )
        return Check(
            drop is not None and drop >= rule["drop_percent"],
            drop,
            (start, end),
            {
                "revenue": _text(now["revenue"]),
                "compare_to": rule["compare_to"],
                "compared_window": {"start": _iso(start - shift), "end": _iso(end - shift)},
                "compared_revenue": _text(reference),
            },
        )
    if kind == "no_sales":
        active = in_active_hours(rule["active_hours"], end, figures.zone)
        stored = figures.stored(start, end, rule) if active else None
        return Check(
            active and stored == 0,
            None if stored is None else Decimal(stored),
            (start, end),
            {"active_hours": rule["active_hours"], "inside_active_hours": active},
        )
    if kind == "rejections":
        rejected = figures.rejections(start)
        return Check(rejected > rule["threshold"], Decimal(rejected), (start, end), {})
    if kind == "high_value_sale":
        # Holds while the window has such sales; lists those not listed before.
        new = figures.high_value_sales(listed_since or start, end, rule)
        digest = [
            {
                "transaction_id": s.transaction_id,
                "product_id": s.product_id,
                "quantity": s.quantity,
                "total_amount": _text(s.total_amount),
                "occurred_at": _iso(s.occurred_at),
            }
            for s in new[:DIGEST_SALES]
        ]
        in_window = bool(figures.high_value_sales(start, end, rule))
        return Check(in_window, Decimal(len(new)), (start, end), {"sales": digest}, news=bool(new))
    raise ValueError(f"unknown rule kind {kind!r}")


def _high_value_floor(
    rules, listed_since: dict[int, datetime], end: datetime
) -> tuple[datetime, Decimal] | None:
    """The earliest time and the lowest threshold any high_value_sale rule reads (its
    window, or its sales since its last alert): one query then serves them all."""
    starts, thresholds = [], []
    for rule in rules:
        if rule["kind"] == "high_value_sale":
            start = end - timedelta(minutes=rule["window_minutes"])
            starts.append(min(start, listed_since.get(rule["id"], start)))
            thresholds.append(rule["threshold"])
    return (min(starts), min(thresholds)) if starts else None


def _text(value: Decimal) -> str:
    return f"{value:.2f}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def evaluate(engine: Engine, report_timezone: str, topic: str, now: datetime) -> dict[str, int]:
    """Evaluates every enabled rule at `now` (windows end at its minute); returns how
    many rules were evaluated and how many events of each state were raised."""
    end = now.astimezone(UTC).replace(second=0, microsecond=0)
    raised = {"rules": 0, "firing": 0, "reminders": 0, "resolved": 0}
    with engine.begin() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": LOCK}).scalar():
            logger.info("another evaluation of the alert rules is running")
            return raised | {"skipped": 1}
        rules = (
            conn.execute(text("SELECT * FROM alert_rules WHERE enabled ORDER BY id"))
            .mappings()
            .all()
        )
        states = {
            row.rule_id: row for row in conn.execute(text("SELECT * FROM alert_states")).all()
        }
        zone = ZoneInfo(report_timezone)
        with snapshot(engine, report_timezone) as reports:
            listed_since = {
                r["id"]: states[r["id"]].last_event_at
                for r in rules
                if r["id"] in states and states[r["id"]].state == "firing"
            }
            figures = Figures(
                reports, reports.conn, zone, _high_value_floor(rules, listed_since, end)
            )
            checks = [
                (rule, check(rule, figures, end, listed_since.get(rule["id"]))) for rule in rules
            ]
        events, new_states = [], []
        for rule, found in checks:
            state = states.get(rule["id"])
            firing = state is not None and state.state == "firing"
            since = state.since if state else end
            last_event_at = state.last_event_at if state else end
            if found.holds and not firing:
                events.append(alert_event(rule, found, "firing", end, reminder=False))
                since = last_event_at = end
                raised["firing"] += 1
            elif (
                found.holds
                and found.news
                and end - last_event_at >= timedelta(minutes=rule["cooldown_minutes"])
            ):
                events.append(alert_event(rule, found, "firing", end, reminder=True))
                last_event_at = end
                raised["reminders"] += 1
            elif firing and not found.holds:
                events.append(alert_event(rule, found, "resolved", end, reminder=False))
                since = last_event_at = end
                raised["resolved"] += 1
            new_states.append(
                (rule["id"], "firing" if found.holds else "ok", since, last_event_at, end)
            )
        raised["rules"] = len(rules)
        cursor = conn.connection.cursor()
        execute_values(
            cursor,
            "INSERT INTO alert_states (rule_id, state, since, last_event_at, evaluated_at)"
            " VALUES %s ON CONFLICT (rule_id) DO UPDATE SET state = excluded.state,"
            " since = excluded.since, last_event_at = excluded.last_event_at,"
            " evaluated_at = excluded.evaluated_at",
            new_states,
            page_size=1000,
        )
        alert_events.record(conn, events, topic)
    for e in events:
        logger.warning(
            "alert raised",
            extra={"event_id": e["event_id"], "state": e["state"], "rule": e["rule"]["name"]},
        )
    return raised


@app.task(name="maintenance.evaluate_alert_rules")
def evaluate_alert_rules() -> dict[str, int]:
    """Evaluates every enabled alert rule now."""
    settings = get_settings()
    return evaluate(
        default_engine(),
        settings.report_timezone,
        settings.kafka_topic_notifications,
        datetime.now(UTC),
    )
