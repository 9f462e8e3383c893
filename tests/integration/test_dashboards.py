"""The Grafana dashboards, checked without Grafana: every panel reads a provisioned data
source, every SQL panel runs on a real database and shows the Analytics API's figures
for the same days (a day is the same in both), and every Prometheus panel gets series
from the running stack's Prometheus."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests
import yaml
from psycopg2.extras import execute_values
from sqlalchemy import text
from sqlalchemy.orm import Session

from config import PROJECT_ROOT
from db.reports.rollups import rollup
from db.session import make_engine
from tests.helpers import example_settings, wait_until
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


def grafana_sql(sql: str) -> str:
    """The macros the panels use, expanded as Grafana's PostgreSQL data source does."""
    return sql.replace("$__timeFrom()", f"'{TIME_FROM}'").replace("$__timeTo()", f"'{TIME_TO}'")


def test_dashboards_are_provisioned_and_read_provisioned_data_sources():
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yml").read_text())
    types = {s["uid"]: s["type"] for s in sources["datasources"]}
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yml").read_text())
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    mount = f"./monitoring/grafana/dashboards:{provider['providers'][0]['options']['path']}:ro"
    assert mount in compose["services"]["grafana"]["volumes"]
    assert set(DASHBOARDS) == {"sales", "pipeline"}
    assert len({d["uid"] for d in DASHBOARDS.values()}) == len(DASHBOARDS)
    for name, dashboard in DASHBOARDS.items():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in panels(dashboard):
            for target in panel["targets"]:
                source = target["datasource"]
                assert types[source["uid"]] == source["type"], (name, panel["title"])
                assert target.get("rawSql") or target.get("expr"), (name, panel["title"])


@pytest.fixture(scope="module")
def sales_db(module_database_url):
    """Sales around the range's ends and a month's end, some rolled up, some not yet."""
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

    def insert(count: int, start: int) -> None:
        rows = []
        for n in range(start, start + count):
            pid, _, _, price = rng.choice(products)
            quantity = rng.randint(1, 4)
            moment = rng.choice(moments) + timedelta(minutes=rng.randint(-90, 90))
            amount = price * quantity
            rows.append(
                (f"g{n}", pid, quantity, price, amount, amount, moment, moment, 0, n, bytes(32))
            )
        insert_transactions(engine, rows)

    with engine.begin() as conn:
        execute_values(
            conn.connection.cursor(),
            "INSERT INTO products (product_id, name, category, price, received_at) VALUES %s",
            [(*p, datetime.now(UTC)) for p in products],
        )
    insert(600, 0)
    with Session(engine) as session, session.begin():
        assert rollup(session, ZONE)["rows"] == 600
    insert(150, 600)  # stored after the last rollup run
    yield engine, url
    engine.dispose()


def api_answers(url: str) -> dict:
    client = create_app(example_settings(database_url=url, report_timezone=ZONE)).test_client()
    days = {"from": FIRST_DAY, "to": LAST_DAY}

    def get(path, **params):
        answer = client.get(f"/api/v1/{path}", query_string=days | params)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()

    return {
        "summary": get("analytics/summary"),
        "day": get("analytics/sales", granularity="day")["items"],
        "month": get("analytics/sales", granularity="month")["items"],
        "categories": get("analytics/categories")["items"],
        "products": get("analytics/products", limit=20)["items"],
    }


PRODUCT_COLUMNS = (
    "product_id",
    "name",
    "category",
    "revenue",
    "transactions",
    "quantity",
    "avg_purchase_value",
)


def number(value):
    return None if value is None else float(value)


def test_every_sales_panel_shows_the_api_figures_for_the_same_days(sales_db):
    engine, url = sales_db
    api = api_answers(url)
    assert api["summary"]["transactions"] > 0 and len(api["day"]) == 16

    def by_period(items, column):
        return [(i["period"], i[column] or 0) for i in items]

    expected = {
        "Revenue": [[api["summary"][k] for k in ("revenue", "transactions", "avg_purchase_value")]],
        "Revenue per day": by_period(api["day"], "revenue"),
        "Transactions per day": by_period(api["day"], "transactions"),
        "Average purchase value per day": by_period(api["day"], "avg_purchase_value"),
        "Revenue per month": by_period(api["month"], "revenue"),
        "Revenue by category": [(i["category"], i["revenue"]) for i in api["categories"]],
        "Top products": [tuple(i[k] for k in PRODUCT_COLUMNS) for i in api["products"]],
    }
    expected["Transactions"] = expected["Average purchase value"] = expected["Revenue"]
    checked = set()
    with engine.connect() as conn:
        for panel in panels(DASHBOARDS["sales"]):
            rows = conn.execute(text(grafana_sql(panel["targets"][0]["rawSql"]))).all()
            got = [
                tuple(number(v) if isinstance(v, Decimal | int) else v for v in row) for row in rows
            ]
            want = [
                tuple(number(v) if isinstance(v, int) else v for v in row)
                for row in map(tuple, expected[panel["title"]])
            ]
            assert got == want, panel["title"]
            checked.add(panel["title"])
    assert checked == set(expected)


def test_every_pipeline_panel_gets_series_from_prometheus(settings):
    # Requests of both APIs, so that their request series exist.
    for port in (settings.collector_port, settings.analytics_port):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=10)
    requests.get(f"http://127.0.0.1:{settings.analytics_port}/api/v1/analytics/summary", timeout=10)
    base = f"http://127.0.0.1:{settings.prometheus_port}/api/v1/query"
    for panel in panels(DASHBOARDS["pipeline"]):
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "1m")

            def series(expr=expr):
                answer = requests.get(base, params={"query": expr}, timeout=10).json()
                assert answer["status"] == "success", (expr, answer)
                return answer["data"]["result"]

            wait_until(series, timeout=120, interval=5, what=f"series for {expr}")
