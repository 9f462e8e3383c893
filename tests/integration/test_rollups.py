"""The rollup job (db/reports/rollups.py) against the oracle: after each run every
analytics endpoint still equals a plain computation over the raw rows, with late rows, a
row committed after a later one, concurrent runs counting each row once, a product moving
to another category, a backfill repairing damaged rollups (and changing nothing else),
and when a run is due. The tests share one database and run in order: the first run
finds the 400 rows of a fresh history, and each later test counts what it adds."""

from __future__ import annotations

import threading
from datetime import date
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from db.reports.rollups import backfill, due
from db.reports.tables import TABLES
from tests.helpers import example_settings
from tests.integration.sales_history import (
    EDGES,
    REPORT_ZONE,
    World,
    compare_everything,
    sales_world,
)


@pytest.fixture(scope="module")
def world(module_database_url):
    with sales_world(module_database_url) as w:
        yield w


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
    with world.engine.connect() as conn:
        return {
            table: sorted(
                tuple(row)
                for row in conn.execute(text(f"SELECT * FROM {table} WHERE transactions <> 0"))
            )
            for table in TABLES.values()
        }


def test_backfill_repairs_damaged_rollups_and_changes_nothing_else(world):
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


def watermark(world) -> int:
    with world.engine.connect() as conn:
        return conn.execute(text("SELECT watermark FROM rollup_state")).scalar_one()


def set_watermark(world, value: int) -> None:
    with world.engine.begin() as conn:
        conn.execute(text("UPDATE rollup_state SET watermark = :w"), {"w": value})


def test_the_watermark_never_moves_back(world):
    world.rollup()
    before = watermark(world)
    with world.engine.connect() as conn:
        ahead = conn.execute(text("SELECT pg_current_xact_id()::text::bigint")).scalar() + 10**6
    set_watermark(world, ahead)
    world.insert(world.make_rows(5, around=EDGES))
    assert world.rollup()["rows"] == 0
    assert watermark(world) == ahead
    set_watermark(world, before)
    assert world.rollup()["rows"] == 5
    compare_everything(world)


def test_a_watermark_below_zero_rebuilds_the_rollups(world):
    """A horizon once read an epoch back (a transaction that began during the read) set
    the watermark below zero, and the next run rolled every row up a second time. Such a
    state is rebuilt from the raw rows."""
    world.rollup()
    set_watermark(world, -4294965953)
    assert world.rollup()["rows"] == len(world.rows)
    assert watermark(world) > 0
    compare_everything(world)
