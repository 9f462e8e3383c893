"""Every analytics endpoint against an oracle: a plain computation in Python over the raw
rows, with Python's own time zones. Checked before the rollup job ran, after it, with
late rows and rows committed out of order arriving between runs."""

from __future__ import annotations

import hashlib
import itertools
import random
import threading
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest
from psycopg2.extras import execute_values
from sqlalchemy import text

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

    def insert(self, rows: list[tuple], conn=None) -> None:
        values = [
            (tid, pid, q, price, lst, total, ts, ts, 0, i, hashlib.sha256(tid.encode()).digest())
            for i, (tid, pid, q, price, lst, total, ts) in enumerate(rows)
        ]
        sql = (
            "INSERT INTO transactions (transaction_id, product_id, quantity, unit_price,"
            " list_amount, total_amount, occurred_at, received_at, kafka_partition,"
            " kafka_offset, content_hash)"
            " VALUES %s"
        )
        if conn is None:
            with self.engine.begin() as c:
                execute_values(c.connection.cursor(), sql, values)
        else:
            execute_values(conn.cursor(), sql, values)
        self.rows += [(ts, pid, total, q) for _, pid, q, _, _, total, ts in rows]

    def rollup(self) -> dict:
        from sqlalchemy.orm import Session

        with Session(self.engine) as session, session.begin():
            return rollup(session, REPORT_ZONE)

    def get(self, path: str, **params) -> dict:
        answer = self.client.get(f"/api/v1/{path}", query_string=params)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()


@pytest.fixture(scope="module")
def world(module_database_url):
    w = World(module_database_url)
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
    yield w
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


def test_reports_equal_the_raw_rows_before_any_rollup(world):
    compare_everything(world)


def test_reports_equal_the_raw_rows_after_the_rollup_and_with_late_rows(world):
    assert world.rollup()["rows"] == 400
    compare_everything(world)
    # Late rows: sales in periods rolled up long ago, stored after the run.
    world.insert(world.make_rows(150, around=EDGES[:6]))
    compare_everything(world)
    world.rollup()
    assert world.rollup()["rows"] == 0  # a second run finds nothing new
    compare_everything(world)


def test_a_row_committed_after_a_later_one_is_not_missed(world):
    """T1 inserts first but commits last; the rollup that runs in between must not skip it."""
    early = world.engine.raw_connection()
    try:
        world.insert(world.make_rows(5, around=EDGES[6:8]), conn=early)  # not committed yet
        world.insert(world.make_rows(5, around=EDGES[6:8]))  # committed
        world.rollup()
        early.commit()
    finally:
        early.close()
    compare_everything(world)
    world.rollup()
    compare_everything(world)


def test_concurrent_rollup_runs_count_each_row_once(world):
    world.insert(world.make_rows(50, around=EDGES))
    results = []
    threads = [threading.Thread(target=lambda: results.append(world.rollup())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.get("rows", 0) for r in results) == 50
    compare_everything(world)


def test_a_product_that_changes_category_moves_its_sales(world):
    """Reports follow the product's category now, before the next rollup run moves its
    rolled-up sales and after."""
    world.insert(world.make_rows(20, around=EDGES))
    world.rollup()
    with world.engine.begin() as conn:
        conn.execute(text("UPDATE products SET category = 'cat1' WHERE product_id = 'p5'"))
    world.categories["p5"] = "cat1"
    compare_everything(world)
    assert world.rollup()["products_moved"] == 1
    compare_everything(world)
    assert world.rollup()["products_moved"] == 0


def rollup_tables(world: World) -> dict:
    from db.reports.tables import TABLES

    with world.engine.connect() as conn:
        return {
            table: sorted(
                tuple(row)
                for row in conn.execute(text(f"SELECT * FROM {table} WHERE transactions <> 0"))
            )
            for table in TABLES.values()
        }


def test_backfill_repairs_damaged_rollups_and_changes_nothing_else(world):
    from sqlalchemy.orm import Session

    from db.reports.rollups import backfill

    world.rollup()
    before = rollup_tables(world)
    assert all(before.values()), "every rollup table has rows"
    with world.engine.begin() as conn:
        # Damage inside the repaired range (2024 and 2025, Berlin).
        for table, inside in (
            ("sales_yearly", "year = '2025-01-01'"),
            ("sales_daily_by_category", "day BETWEEN '2024-02-01' AND '2024-03-31'"),
            ("sales_quarter_hour_totals", "quarter BETWEEN '2025-03-01' AND '2025-04-01'"),
        ):
            conn.execute(
                text(
                    f"DELETE FROM {table} WHERE ctid IN"
                    f" (SELECT ctid FROM {table} WHERE {inside} LIMIT 3)"
                )
            )
        conn.execute(
            text(
                "UPDATE sales_hourly SET revenue = revenue + 1 WHERE hour >= '2024-06-01'"
                " AND hour < '2025-06-01'"
            )
        )
    assert rollup_tables(world) != before
    with Session(world.engine) as session, session.begin():
        count = backfill(session, date(2024, 1, 1), date(2025, 12, 31), timezone=REPORT_ZONE)
    assert count == sum(
        1 for ts, *_ in world.rows if ts.astimezone(ZoneInfo(REPORT_ZONE)).year in (2024, 2025)
    )
    assert rollup_tables(world) == before
    compare_everything(world)


def test_a_run_is_due_after_the_interval_or_when_many_rows_wait(world):
    from sqlalchemy.orm import Session

    from db.reports.rollups import due

    settings = example_settings(rollup_interval_seconds=60, rollup_max_pending_rows=30)

    def is_due() -> bool:
        with Session(world.engine) as session:
            return due(session, settings)

    world.rollup()
    assert not is_due()
    world.insert(world.make_rows(29, around=EDGES))
    assert not is_due()
    world.insert(world.make_rows(1, around=EDGES))
    assert is_due()
    world.rollup()
    assert not is_due()
    with world.engine.begin() as conn:
        conn.execute(text("UPDATE rollup_state SET updated_at = now() - interval '61 seconds'"))
    assert is_due()
    world.rollup()
    compare_everything(world)


def test_sales_below_the_threshold_raise_low_sales_with_the_exact_revenue(world):
    import json

    import jsonschema

    from config import PROJECT_ROOT
    from tasks.alerts import low_sales

    schema = json.loads((PROJECT_ROOT / "docs/events/notification.v1.schema.json").read_text())
    now = datetime(2024, 2, 29, 23, 7, tzinfo=UTC)
    revenue, transactions, _ = oracle(world, now - timedelta(minutes=150), now, lambda *_: 1)[1]
    assert transactions > 0

    def check(threshold):
        settings = example_settings(
            report_timezone=REPORT_ZONE,
            low_sales_window_minutes=150,
            low_sales_threshold=threshold,
        )
        return low_sales(world.engine, settings, now)

    found = check(revenue + Decimal("0.01"))
    jsonschema.validate(found, schema)
    assert found["type"] == "low_sales"
    assert (found["data"]["revenue"], found["data"]["transactions"]) == (
        f"{revenue:.2f}",
        transactions,
    )
    assert check(revenue) is None  # at the threshold: not below it
    assert check(0) is None  # the check is off


def test_the_admin_refresh_rolls_up_now(world):
    world.insert(world.make_rows(7, around=EDGES))
    admin = {"X-API-Key": example_settings().admin_api_keys[0]}
    assert world.client.post("/api/v1/admin/rollups/refresh").status_code == 401
    answer = world.client.post("/api/v1/admin/rollups/refresh", headers=admin)
    assert answer.status_code == 200 and answer.get_json()["rows"] == 7
    compare_everything(world)


def test_csv_matches_json(world):
    args = {"from": "2024-02-01", "to": "2025-12-31", "tz": "Europe/Berlin"}
    for path, extra in (
        ("analytics/sales", {"granularity": "month"}),
        ("analytics/products", {}),
        ("analytics/categories", {}),
        ("analytics/trends", {"granularity": "month"}),
    ):
        items = world.get(path, **args, **extra)["items"]
        answer = world.client.get(
            f"/api/v1/{path}", query_string=args | extra, headers={"Accept": "text/csv"}
        )
        assert answer.mimetype == "text/csv"
        lines = answer.get_data(as_text=True).splitlines()
        assert set(lines[0].split(",")) == set(items[0])
        assert len(lines) == len(items) + 1
        for line, item in zip(lines[1:], items, strict=True):
            cells = dict(zip(lines[0].split(","), line.split(","), strict=True))
            assert Decimal(cells["revenue"]) == Decimal(str(item["revenue"])).quantize(
                Decimal("0.01")
            )
            assert int(cells["transactions"]) == item["transactions"]


@pytest.mark.parametrize(
    ("path", "params", "field", "words"),
    [
        ("analytics/summary", {"tz": "Mars/Olympus"}, "tz", "IANA"),
        ("analytics/summary", {"from": "2025-02-01", "to": "2025-01-01"}, "from", "before"),
        ("analytics/summary", {"from": "yesterday"}, "from", "YYYY-MM-DD"),
        ("analytics/sales", {"granularity": "minute"}, "granularity", "hour, day, week"),
        (
            "analytics/sales",
            {"granularity": "hour", "from": "2020-01-01", "to": "2025-12-31"},
            "granularity",
            "shorter range",
        ),
        ("analytics/trends", {"granularity": "year"}, "granularity", "day, week, month"),
        ("analytics/products", {"limit": 0}, "limit", "between 1 and"),
        ("analytics/products", {"limit": 100_000}, "limit", "between 1 and"),
        ("analytics/products", {"order_by": "price"}, "order_by", "revenue, quantity"),
        ("analytics/sales", {"format": "xml"}, "format", "json"),
        ("reports/daily", {"limit": 0}, "limit", "between 1 and"),
    ],
)
def test_bad_parameters_are_422_saying_what_to_change(world, path, params, field, words):
    answer = world.client.get(f"/api/v1/{path}", query_string=params)
    body = answer.get_json()
    assert answer.status_code == 422, body
    assert field in body["errors"]["query"]
    assert words in " ".join(body["errors"]["query"][field])


def test_reads_need_a_key_once_keys_are_configured(world):
    url = world.engine.url.render_as_string(hide_password=False)
    locked = create_app(
        example_settings(database_url=url, analytics_api_keys=["analytics-key-0123456789"])
    ).test_client()
    assert locked.get("/api/v1/analytics/summary").status_code == 401
    answer = locked.get(
        "/api/v1/analytics/summary", headers={"X-API-Key": "analytics-key-0123456789"}
    )
    assert answer.status_code == 200


def test_catalog_pages_and_a_missing_product(world):
    page = world.get("products", per_page=4, page=2)
    assert page["total"] == len(PRODUCTS) and [i["product_id"] for i in page["items"]] == [
        "p4",
        "p5",
    ]
    assert world.get("products/p3")["category"] == world.categories["p3"]
    missing = world.client.get("/api/v1/products/nope")
    assert missing.status_code == 404 and "nope" in missing.get_json()["message"]
