"""Every endpoint of the Analytics API (web/analytics/) against the oracle: a plain
computation in Python over the raw rows, with Python's own time zones (sales_history.py),
before any rollup ran and after the admin refresh rolled up; CSV against JSON; refused
parameters (422 saying what to change), API keys, the product catalog. The rollup job's
own runs are checked in test_rollups.py, the alert checks in test_alerts.py."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.helpers import example_settings
from tests.integration.sales_history import EDGES, PRODUCTS, compare_everything, sales_world
from web.analytics.app import create_app


@pytest.fixture(scope="module")
def world(module_database_url):
    with sales_world(module_database_url) as w:
        yield w


@pytest.fixture
def rolled_up(world):
    """Every row stored so far rolled up, so that a test can count the rows it adds."""
    world.rollup()


def test_reports_equal_the_raw_rows_before_any_rollup(world):
    compare_everything(world)


@pytest.mark.usefixtures("rolled_up")
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
