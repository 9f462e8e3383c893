"""The Grafana dashboards, checked without Grafana: every panel reads a provisioned data
source, every SQL panel runs on a real database and shows the Analytics API's figures
for the same days (a day is the same in both), and every Prometheus panel gets series
from the running stack's Prometheus."""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pytest
import requests
import yaml
from psycopg2.extras import execute_values
from sqlalchemy import text
from sqlalchemy.orm import Session

from config import PROJECT_ROOT
from db.reports.rollups import rollup
from db.session import make_engine
from tests.helpers import example_settings, prometheus_query, wait_until
from web.analytics.app import create_app

GRAFANA = PROJECT_ROOT / "monitoring" / "grafana"
DASHBOARDS = {path.stem: json.loads(path.read_text()) for path in GRAFANA.glob("dashboards/*.json")}
ZONE = "America/New_York"  # days begin at 04:00 or 05:00 UTC
# What Grafana's time picker sends: two instants; the panels show the days they touch.
TIME_FROM, TIME_TO = "2024-02-25T10:00:00Z", "2024-03-12T03:00:00Z"
FIRST_DAY, LAST_DAY = "2024-02-25", "2024-03-11"  # in New York


def insert_transactions(engine, rows: list[tuple]) -> None:
    """Rows of transactions as (id, product, quantity, unit price, list amount, total,
    occurred, received, partition, offset, content hash)."""
    with engine.begin() as conn:
        execute_values(
            conn.connection.cursor(),
            "INSERT INTO transactions (transaction_id, product_id, quantity, unit_price,"
            " list_amount, total_amount, occurred_at, received_at, kafka_partition,"
            " kafka_offset, content_hash) VALUES %s",
            rows,
        )


def panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p.get("targets")]


# What the Product variable holds when the checks run: two products, as Grafana renders a
# multi-value variable into SQL (each value quoted, comma-separated).
CHOSEN = ("d3", "d7")


def grafana_sql(sql: str) -> str:
    """The macros and the variable the panels use, expanded as Grafana's PostgreSQL data
    source does."""
    return (
        sql.replace("$__timeFrom()", f"'{TIME_FROM}'")
        .replace("$__timeTo()", f"'{TIME_TO}'")
        .replace("$product", ", ".join(f"'{p}'" for p in CHOSEN))
    )


def sql_of(dashboard: dict) -> list[str]:
    """Every SQL statement of a dashboard: its panels' and its variables'."""
    variables = [v["query"] for v in dashboard["templating"]["list"]]
    return variables + [t["rawSql"] for p in panels(dashboard) for t in p["targets"]]


def test_dashboards_are_provisioned_and_read_provisioned_data_sources():
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yml").read_text())
    types = {s["uid"]: s["type"] for s in sources["datasources"]}
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yml").read_text())
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    mount = f"./monitoring/grafana/dashboards:{provider['providers'][0]['options']['path']}:ro"
    assert mount in compose["services"]["grafana"]["volumes"]
    # One dashboard for each question: what sells, how the services do, where sales go.
    assert set(DASHBOARDS) == {"sales-by-product", "service-performance", "sales-trends"}
    assert len({d["uid"] for d in DASHBOARDS.values()}) == len(DASHBOARDS)
    for name, dashboard in DASHBOARDS.items():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in panels(dashboard):
            for target in panel["targets"]:
                source = target["datasource"]
                assert types[source["uid"]] == source["type"], (name, panel["title"])
                assert target.get("rawSql") or target.get("expr"), (name, panel["title"])
        for variable in dashboard["templating"]["list"]:
            assert types[variable["datasource"]["uid"]] == variable["datasource"]["type"]


@pytest.fixture(scope="module")
def sales_db(module_database_url):
    """Sales around the range's ends, a month's end and the DST change, spread over the
    weeks before (the trends' first periods compare with them), and today; some rolled up,
    some not yet."""
    url = module_database_url
    engine = make_engine(url)
    rng = random.Random(3)
    products = [(f"d{i}", f"Product {i}", f"cat{i % 3}", Decimal(f"{5 + i}.25")) for i in range(25)]
    moments = [
        datetime(2024, 2, 25, 4, 30, tzinfo=UTC),  # 24 February in New York
        datetime(2024, 2, 29, 23, 50, tzinfo=UTC),
        datetime(2024, 3, 1, 5, 10, tzinfo=UTC),
        datetime(2024, 3, 10, 6, 59, tzinfo=UTC),  # the DST change
        datetime(2024, 3, 12, 3, 59, tzinfo=UTC),  # still 11 March in New York
    ]
    spread = (datetime(2024, 1, 20, tzinfo=UTC), datetime(2024, 3, 12, 4, tzinfo=UTC))
    zone = ZoneInfo(ZONE)
    midnight = datetime.combine(datetime.now(zone).date(), datetime.min.time(), zone)
    today = (midnight, max(datetime.now(UTC), midnight + timedelta(minutes=1)))

    def moment() -> datetime:
        pick = rng.random()
        if pick < 0.4:
            return rng.choice(moments) + timedelta(minutes=rng.randint(-90, 90))
        first, last = spread if pick < 0.9 else today
        return first + (last - first) * rng.random()

    def insert(count: int, start: int) -> None:
        rows = []
        for n in range(start, start + count):
            pid, _, _, price = rng.choice(products)
            quantity = rng.randint(1, 4)
            amount, at = price * quantity, moment()
            rows.append((f"g{n}", pid, quantity, price, amount, amount, at, at, 0, n, bytes(32)))
        insert_transactions(engine, rows)

    with engine.begin() as conn:
        execute_values(
            conn.connection.cursor(),
            "INSERT INTO products (product_id, name, category, price, received_at) VALUES %s",
            [(*p, datetime.now(UTC)) for p in products],
        )
    insert(1500, 0)
    with Session(engine) as session, session.begin():
        assert rollup(session, ZONE)["rows"] == 1500
    insert(400, 1500)  # stored after the last rollup run
    yield engine, url
    engine.dispose()


class Api:
    """The Analytics API over the test database: what each panel must show."""

    def __init__(self, url: str):
        app = create_app(example_settings(database_url=url, report_timezone=ZONE))
        self.client = app.test_client()

    def get(self, path: str, **params) -> dict:
        params = {"from": FIRST_DAY, "to": LAST_DAY} | params
        answer = self.client.get(f"/api/v1/{path}", query_string=params)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()

    def items(self, path: str, *columns: str, **params) -> list[tuple]:
        return [tuple(i[c] for c in columns) for i in self.get(path, **params)["items"]]

    def totals(self, **params) -> list[tuple]:
        summary = self.get("analytics/summary", **params)
        return [tuple(summary[k] for k in ("revenue", "transactions", "avg_purchase_value"))]


PRODUCT_COLUMNS = (
    "product_id",
    "name",
    "category",
    "revenue",
    "transactions",
    "quantity",
    "avg_purchase_value",
)
TREND_COLUMNS = ("period", "revenue", "transactions", "change_abs", "change_pct")


def number(value):
    return float(value) if isinstance(value, Decimal | int) else value


def moving_average(api: Api) -> list[tuple]:
    """The mean of each day's revenue and the six days' before it, from the API's days
    (zeros included), rounded to the cent half away from zero."""
    first = date.fromisoformat(FIRST_DAY)
    days = api.items(
        "analytics/sales",
        "period",
        "revenue",
        granularity="day",
        **{"from": (first - timedelta(days=6)).isoformat()},
    )
    revenue = [Decimal(str(r)) for _, r in days]
    return [
        (
            period,
            float(revenue[i]),
            float((sum(revenue[i - 6 : i + 1]) / 7).quantize(Decimal("0.01"), ROUND_HALF_UP)),
        )
        for i, (period, _) in enumerate(days)
        if i >= 6
    ]


def per_day(api: Api, key: str, values) -> list[tuple]:
    """(day, key, revenue) for each value of the filter, as the API's day series has them."""
    rows = []
    for value in values:
        for period, revenue in api.items(
            "analytics/sales", "period", "revenue", granularity="day", **{key: value}
        ):
            rows.append((period, value, revenue))
    return sorted(rows)


def expected_panels(api: Api) -> dict[str, dict[str, list[tuple]]]:
    today = datetime.now(ZoneInfo(ZONE)).date().isoformat()
    day = {"from": today, "to": today}
    products = api.items("analytics/products", *PRODUCT_COLUMNS, limit=20)
    trends = {
        g: api.items("analytics/trends", *TREND_COLUMNS, granularity=g)
        for g in ("day", "week", "month")
    }
    sales = api.get("analytics/sales", granularity="day")["items"]
    categories = api.items("analytics/categories", "category", "revenue")
    by_product = {
        "Revenue today": api.totals(**day),
        "Today's sales by product": api.items(
            "analytics/products", *PRODUCT_COLUMNS, limit=50, **day
        ),
        "Top products": products,
        "Revenue per day of the chosen products": per_day(api, "product_id", CHOSEN),
        "Revenue by category": categories,
        "Revenue per day by category": per_day(api, "category", sorted(c for c, _ in categories)),
    }
    by_product["Transactions today"] = by_product["Average purchase value today"] = by_product[
        "Revenue today"
    ]
    trend = {
        "Revenue": api.totals(),
        "Revenue per day and its 7-day moving average": moving_average(api),
        "Day-over-day change (%)": [(p, pct) for p, *_, pct in trends["day"]],
        "Transactions per day": [(i["period"], i["transactions"]) for i in sales],
        "Daily trend": trends["day"],
        "Weekly trend": trends["week"],
        "Monthly trend": trends["month"],
        "Average purchase value per day": [
            (i["period"], i["avg_purchase_value"] or 0) for i in sales
        ],
    }
    trend["Transactions"] = trend["Average purchase value"] = trend["Revenue"]
    return {"sales-by-product": by_product, "sales-trends": trend}


def shown(conn, panel: dict) -> list[tuple]:
    """The rows of a panel's query; a time series' instants as the days they begin."""
    rows = conn.execute(text(grafana_sql(panel["targets"][0]["rawSql"]))).all()
    if panel["targets"][0]["format"] == "time_series":
        zone = ZoneInfo(ZONE)
        return sorted(
            (moment.astimezone(zone).date().isoformat(), metric, number(value))
            for moment, metric, value in rows
        )
    return [tuple(map(number, row)) for row in rows]


@pytest.mark.parametrize("name", ["sales-by-product", "sales-trends"])
def test_every_sales_panel_shows_the_api_figures_for_the_same_days(sales_db, name):
    engine, url = sales_db
    expected = expected_panels(Api(url))[name]
    checked = set()
    with engine.connect() as conn:
        for panel in panels(DASHBOARDS[name]):
            want = [tuple(map(number, row)) for row in expected[panel["title"]]]
            assert want, f"{panel['title']}: the test data leave it empty"
            assert shown(conn, panel) == want, panel["title"]
            checked.add(panel["title"])
    assert checked == set(expected)


def test_the_product_variable_lists_every_product_by_name(sales_db):
    engine, _ = sales_db
    (query,) = [v["query"] for v in DASHBOARDS["sales-by-product"]["templating"]["list"]]
    with engine.connect() as conn:
        values = dict(conn.execute(text(query)).all())
        names = dict(conn.execute(text("SELECT product_id, name FROM products")).all())
    assert values == {pid: f"{name} ({pid})" for pid, name in names.items()}
    assert set(CHOSEN) <= set(values)


def short_load(settings) -> None:
    """A product and a batch of its sales through the running stack's collector, and
    requests of the three APIs: every series the panels read then exists."""
    collector = f"http://127.0.0.1:{settings.collector_port}/api/v1"
    key = {"X-API-Key": settings.ingest_api_keys[0]}
    sku = f"dash-{uuid.uuid4().hex[:8]}"
    product = {"product_id": sku, "name": "Dashboard cup", "category": "Kitchen", "price": "4.50"}
    assert requests.post(f"{collector}/products", json=product, headers=key, timeout=10).ok
    now = datetime.now(UTC).isoformat()
    sales = [
        {"transaction_id": f"{sku}-{n}", "product_id": sku, "quantity": 1, "timestamp": now}
        for n in range(20)
    ]
    batch = {"transactions": sales}
    answer = requests.post(f"{collector}/transactions/batch", json=batch, headers=key, timeout=10)
    assert answer.status_code == 202, answer.text
    for port in (settings.collector_port, settings.analytics_port, settings.notifications_port):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=10)
    requests.get(f"http://127.0.0.1:{settings.analytics_port}/api/v1/analytics/summary", timeout=10)
    requests.get(f"http://127.0.0.1:{settings.notifications_port}/api/v1/alert-rules", timeout=10)


def test_every_performance_panel_gets_series_from_prometheus(settings):
    short_load(settings)
    base = f"http://127.0.0.1:{settings.prometheus_port}"
    for panel in panels(DASHBOARDS["service-performance"]):
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "1m")
            wait_until(
                lambda e=expr: prometheus_query(base, e),
                timeout=120,
                interval=5,
                what=f"series for {expr}",
            )


# Backticked names of the metric families table that are not metrics (a table's name).
NOT_METRICS = {"kombu_message"}


def listed_families() -> list[tuple[str, str, list[str]]]:
    """(job, family pattern, labels) for each family docs/monitoring.md lists: a `*` or
    a `{a,b}` in the name stands for several families, `{label,…}` after it for labels."""
    page = (PROJECT_ROOT / "docs/monitoring.md").read_text()
    table = page[page.index("### Metric families") : page.index("## Grafana")]
    listed = []
    for row in table.splitlines():
        if not row.startswith("| ") or row.startswith("| Job"):
            continue
        jobs, families = row[2:].split(" | ", 1)
        for token in re.findall(r"`([^`]+)`", families):
            shape = re.fullmatch(r"([a-z][a-z0-9_{},*]*?)(?:\{([a-z_,]+)\})?", token)
            if not shape or "_" not in token or token in NOT_METRICS:
                continue
            name, labels = shape.groups()
            pattern = re.sub(r"\{([a-z0-9_,]+)\}", lambda m: f"({m[1].replace(',', '|')})", name)
            pattern = pattern.replace("*", ".*") + "(_bucket|_count|_sum)?"
            for job in jobs.split(", "):
                listed.append((job, pattern, labels.split(",") if labels else []))
    return listed


def test_every_metric_family_the_monitoring_page_lists_is_in_prometheus(settings):
    """With its labels, for every job the page gives it, after a short load."""
    listed = listed_families()
    assert len(listed) > 60 and {job for job, _, _ in listed} >= {"kafka", "processes", "beat"}
    short_load(settings)
    base = f"http://127.0.0.1:{settings.prometheus_port}"

    def found(job: str, pattern: str, labels: list[str]) -> bool:
        by = ", ".join(labels)
        result = prometheus_query(base, f'count by ({by}) ({{__name__=~"{pattern}", job="{job}"}})')
        return any(all(r["metric"].get(k) for k in labels) for r in result)

    # Counters of things that happen under load may take a scrape or two to appear.
    deadline = time.monotonic() + 120
    while (absent := [f for f in listed if not found(*f)]) and time.monotonic() < deadline:
        time.sleep(5)
    assert not absent, absent
