"""The sales history that the analytics, rollup and alert tests share, and the oracle
they are checked against: a plain computation in Python over the raw rows as inserted,
with Python's own time zones. `compare_everything` asks every analytics endpoint, in five
time zones and over whole and cut ranges, and compares each answer with the oracle's."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest
from psycopg2.extras import execute_values
from sqlalchemy import text
from sqlalchemy.orm import Session

from db.reports.rollups import rollup
from db.session import make_engine
from tests.helpers import example_settings
from web.analytics.app import create_app

# Rollup days begin in Berlin (with DST), unlike UTC's, so both rollup paths are checked.
REPORT_ZONE = "Europe/Berlin"
ZONES = ["UTC", "Europe/Moscow", "Europe/Berlin", "Asia/Kolkata", "America/New_York"]
PRODUCTS = {
    f"p{i}": (f"Product {i}", f"cat{i % 3}", Decimal(f"{3 + i * 7}.{i * 13 % 100:02d}"))
    for i in range(6)
}
# Moments around the edges that reports get wrong: 29 February, a year's end, Berlin's
# DST changes, a month's end seen from Moscow, 22:30 UTC (tomorrow in Moscow), India's
# half-hour offset.
EDGES = [
    datetime(2024, 2, 28, 23, 30, tzinfo=UTC),
    datetime(2024, 2, 29, 12, 0, tzinfo=UTC),
    datetime(2024, 2, 29, 22, 30, tzinfo=UTC),
    datetime(2024, 3, 1, 0, 15, tzinfo=UTC),
    datetime(2024, 12, 31, 21, 30, tzinfo=UTC),
    datetime(2024, 12, 31, 23, 59, tzinfo=UTC),
    datetime(2025, 1, 1, 0, 0, tzinfo=UTC),
    datetime(2025, 3, 30, 0, 30, tzinfo=UTC),
    datetime(2025, 3, 30, 1, 30, tzinfo=UTC),
    datetime(2025, 10, 26, 0, 30, tzinfo=UTC),
    datetime(2025, 10, 26, 1, 30, tzinfo=UTC),
    datetime(2025, 5, 31, 21, 30, tzinfo=UTC),
    datetime(2025, 6, 15, 18, 29, tzinfo=UTC),
    datetime(2025, 6, 15, 18, 31, tzinfo=UTC),
    # Around the ends of the compared range (2024-02-01 .. 2025-12-31, local).
    datetime(2024, 1, 31, 22, 30, tzinfo=UTC),
    datetime(2025, 12, 31, 20, 30, tzinfo=UTC),
    datetime(2025, 12, 31, 23, 30, tzinfo=UTC),
]


class World:
    """The test database, the raw rows as inserted, and the API over them."""

    def __init__(self, url: str):
        self.engine = make_engine(url)
        self.rows: list[tuple[datetime, str, Decimal, int]] = []
        self.client = create_app(
            example_settings(
                database_url=url, report_timezone=REPORT_ZONE, analytics_max_periods=5000
            )
        ).test_client()
        self.rng = random.Random(20261126)
        self.n = 0
        # Each product's category now: products may change category.
        self.categories = {pid: category for pid, (_, category, _) in PRODUCTS.items()}

    def make_rows(self, count: int, *, around: list[datetime]) -> list[tuple]:
        rows = []
        for _ in range(count):
            self.n += 1
            moment = self.rng.choice(around) + timedelta(minutes=self.rng.randint(-300, 300))
            product = self.rng.choice(list(PRODUCTS))
            quantity = self.rng.randint(1, 5)
            price = PRODUCTS[product][2]
            total = price * quantity - Decimal(self.rng.choice([0, 0, 1, 250])) / 100
            rows.append((f"t{self.n}", product, quantity, price, price * quantity, total, moment))
        return rows

    def insert(self, rows: list[tuple], conn=None, stored_at: datetime | None = None) -> None:
        """Rows received and stored at their sale's time, or stored at `stored_at`."""
        values = [
            (tid, pid, q, price, lst, total, ts, ts, stored_at or ts, 0, i,
             hashlib.sha256(tid.encode()).digest())
            for i, (tid, pid, q, price, lst, total, ts) in enumerate(rows)
        ]  # fmt: skip
        sql = (
            "INSERT INTO transactions (transaction_id, product_id, quantity, unit_price,"
            " list_amount, total_amount, occurred_at, received_at, stored_at,"
            " kafka_partition, kafka_offset, content_hash)"
            " VALUES %s"
        )
        if conn is None:
            with self.engine.begin() as c:
                execute_values(c.connection.cursor(), sql, values)
        else:
            execute_values(conn.cursor(), sql, values)
        self.rows += [(ts, pid, total, q) for _, pid, q, _, _, total, ts in rows]

    def rollup(self) -> dict:
        with Session(self.engine) as session, session.begin():
            return rollup(session, REPORT_ZONE)

    def get(self, path: str, **params) -> dict:
        answer = self.client.get(f"/api/v1/{path}", query_string=params)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()


@contextlib.contextmanager
def sales_world(url: str) -> Iterator[World]:
    """A World over the database at `url`: the products, a refused transaction (which must
    count nowhere) and 400 rows around EDGES, none rolled up yet. The test modules share
    one per module (`world`, module-scoped over `module_database_url`)."""
    w = World(url)
    with w.engine.begin() as conn:
        execute_values(
            conn.connection.cursor(),
            "INSERT INTO products (product_id, name, category, price, received_at) VALUES %s",
            [(pid, n, c, p, datetime.now(UTC)) for pid, (n, c, p) in PRODUCTS.items()],
        )
        # Refused and waiting transactions must not count anywhere.
        conn.execute(
            text(
                "INSERT INTO rejected_transactions (transaction_id, raw_payload, reason, stage,"
                " kind, kafka_topic, kafka_partition, kafka_offset) VALUES"
                " ('t1', 'x', 'duplicate_conflict', 'processor', 'transaction', 't', 0, 1)"
            )
        )
    w.insert(w.make_rows(400, around=EDGES))
    try:
        yield w
    finally:
        w.engine.dispose()


# --- the oracle ----------------------------------------------------------------------
def bounds(first: date, last: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    return (
        datetime(first.year, first.month, first.day, tzinfo=zone),
        datetime(last.year, last.month, last.day, tzinfo=zone) + timedelta(days=1),
    )


def period_label(moment: datetime, granularity: str, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    if granularity == "hour":
        return local.replace(minute=0, second=0, microsecond=0).isoformat()
    if granularity == "day":
        return local.date().isoformat()
    if granularity == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if granularity == "month":
        return local.strftime("%Y-%m")
    return local.strftime("%Y")


def oracle(world: World, start: datetime, end: datetime, key, product=None, category=None):
    groups: dict = defaultdict(lambda: [Decimal(0), 0, 0])
    for ts, pid, total, quantity in world.rows:
        if not start <= ts < end:
            continue
        if (product and pid != product) or (category and world.categories[pid] != category):
            continue
        g = groups[key(ts, pid)]
        g[0] += total
        g[1] += 1
        g[2] += quantity
    return groups


def figures(group) -> dict:
    revenue, transactions, quantity = group
    avg = (
        (revenue / transactions).quantize(Decimal("0.01"), ROUND_HALF_UP) if transactions else None
    )
    return {
        "revenue": float(revenue),
        "transactions": transactions,
        "quantity": quantity,
        "avg_purchase_value": None if avg is None else float(avg),
    }


# Whole months, and months cut at both ends (some of whose days are read by subtraction).
RANGES = [(date(2024, 2, 1), date(2025, 12, 31)), (date(2024, 2, 5), date(2025, 5, 30))]


def compare_everything(world: World) -> None:
    for (first, last), tz in itertools.product(RANGES, ZONES):
        zone = ZoneInfo(tz)
        start, end = bounds(first, last, zone)
        args = {"from": first.isoformat(), "to": last.isoformat(), "tz": tz}

        total = oracle(world, start, end, lambda ts, pid: "all")["all"]
        assert {k: world.get("analytics/summary", **args)[k] for k in figures(total)} == figures(
            total
        ), tz
        cat = oracle(world, start, end, lambda ts, pid: "all", category="cat1")["all"]
        got = world.get("analytics/summary", **args, category="cat1")
        assert {k: got[k] for k in figures(cat)} == figures(cat), tz

        for granularity, filters in itertools.product(
            ("day", "week", "month", "year"),
            ({}, {"category": "cat1"}, {"category": "cat2"}, {"product_id": "p2"}),
        ):
            expected = oracle(
                world,
                start,
                end,
                lambda ts, pid, g=granularity, z=zone: period_label(ts, g, z),
                product=filters.get("product_id"),
                category=filters.get("category"),
            )
            items = world.get("analytics/sales", **args, **filters, granularity=granularity)[
                "items"
            ]
            got = {
                i["period"]: {k: i[k] for k in figures(expected.get(i["period"], [0, 0, 0]))}
                for i in items
            }
            assert {p: v for p, v in got.items() if v["transactions"]} == {
                p: figures(g) for p, g in expected.items()
            }, (tz, granularity, filters)
            assert len(items) == len(set(got)), "each period once"

        # Hours, and a datetime range with half-hour edges, over the busiest days.
        h_start = datetime(2025, 3, 29, 22, 30, tzinfo=UTC)
        h_end = datetime(2025, 3, 31, 1, 30, tzinfo=UTC)
        for filters in ({}, {"category": "cat1"}):
            expected = oracle(
                world,
                h_start,
                h_end,
                lambda ts, pid, z=zone: period_label(ts, "hour", z),
                category=filters.get("category"),
            )
            items = world.get(
                "analytics/sales",
                **{"from": h_start.isoformat(), "to": h_end.isoformat(), "tz": tz},
                **filters,
                granularity="hour",
            )["items"]
            assert {
                i["period"]: figures([Decimal(str(i["revenue"])), i["transactions"], i["quantity"]])
                for i in items
                if i["transactions"]
            } == {p: figures(g) for p, g in expected.items()}, (tz, filters)

        by_product = oracle(world, start, end, lambda ts, pid: pid)
        items = world.get("analytics/products", **args, limit=100)["items"]
        assert {
            i["product_id"]: {k: i[k] for k in figures(by_product[i["product_id"]])} for i in items
        } == {pid: figures(g) for pid, g in by_product.items()}, tz
        # Best first, ties by id; `limit` and `order_by` pick the top N.
        for key, index in (("revenue", 0), ("transactions", 1), ("quantity", 2)):
            ranked = sorted(by_product, key=lambda pid, i=index: (-by_product[pid][i], pid))
            top = world.get("analytics/products", **args, order_by=key, limit=3)["items"]
            assert [i["product_id"] for i in top] == ranked[:3], (tz, key)
        grand = sum(g[0] for g in by_product.values())
        for item in items:
            assert item["revenue_share"] == pytest.approx(
                float(by_product[item["product_id"]][0] / grand), abs=1e-6
            )
            assert (item["name"], item["category"]) == (
                PRODUCTS[item["product_id"]][0],
                world.categories[item["product_id"]],
            )

        by_category = oracle(world, start, end, lambda ts, pid: world.categories[pid])
        items = world.get("analytics/categories", **args)["items"]
        assert {
            i["category"]: {k: i[k] for k in figures(by_category[i["category"]])} for i in items
        } == {c: figures(g) for c, g in by_category.items()}, tz

        # The day report of 29 February, against the 28th.
        day_start, day_end = bounds(date(2024, 2, 29), date(2024, 2, 29), zone)
        before = oracle(world, day_start - timedelta(days=1), day_start, lambda ts, pid: "all")[
            "all"
        ]
        today = oracle(world, day_start, day_end, lambda ts, pid: "all")["all"]
        report = world.get("reports/daily", date="2024-02-29", tz=tz)
        assert report["totals"] == figures(today) and report["previous_day"] == figures(before), tz
        assert report["change_abs"] == float(today[0] - before[0])
        day_products = oracle(world, day_start, day_end, lambda ts, pid: pid)
        best = sorted(day_products, key=lambda pid: (-day_products[pid][0], pid))[:2]
        top = world.get("reports/daily", date="2024-02-29", tz=tz, limit=2)["products"]
        assert [i["product_id"] for i in top] == best, tz
