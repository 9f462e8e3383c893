"""The alert checks (tasks/alerts.py) against the oracle: low_sales raises its event, valid
by the notification schema, with exactly the revenue and count the oracle sums from the
raw rows in the window, and stays quiet at the threshold and when switched off. The
history is rolled up first, so the check reads the rollups, as it does in service."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import jsonschema
import pytest

from config import PROJECT_ROOT
from tasks.alerts import low_sales
from tests.helpers import example_settings
from tests.integration.sales_history import REPORT_ZONE, oracle, sales_world


@pytest.fixture(scope="module")
def world(module_database_url):
    with sales_world(module_database_url) as w:
        w.rollup()
        yield w


def test_sales_below_the_threshold_raise_low_sales_with_the_exact_revenue(world):
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
