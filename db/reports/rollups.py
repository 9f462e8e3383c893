"""Rolling transactions up into the report tables: per product, per category and over
all products, by UTC quarter-hour and hour and by day, month and year in REPORT_TIMEZONE
(the tables of `db/reports/tables.py`).

Exactly once, even with rows committed out of order: each run takes the rows stored by
database transactions whose id lies between the last run's horizon and the oldest
transaction still running now in this database. Every such transaction has ended,
so no row can still appear below the new horizon; the rows above it are read live by
the reports. Rollups and the new horizon are written in one transaction, and an
advisory lock keeps two runs from overlapping: running it twice changes nothing.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session
from tqdm import tqdm

from config import Settings, get_settings
from db.models.rollups import SALES_ROLLUP
from db.reports.periods import ceil_to, floor_to, local_midnight, next_period
from db.reports.tables import TABLES, tables_of

logger = logging.getLogger(__name__)

STATE = SALES_ROLLUP
# pg_advisory_xact_lock key: "rollup" in ASCII.
LOCK_KEY = 0x726F6C6C7570

# Each run first sums its transactions into a small staging table, per quarter of an
# hour (UTC), day (report zone) and product; every rollup table is filled from that.
_STAGE = """
    CREATE TEMP TABLE rollup_batch ON COMMIT DROP AS
    SELECT date_bin('15 minutes', occurred_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS quarter,
           (occurred_at AT TIME ZONE :tz)::date AS day, product_id,
           sum(total_amount) AS revenue, sum(list_amount) AS list_revenue,
           sum(quantity) AS quantity, count(*) AS transactions
    FROM transactions WHERE {where} GROUP BY 1, 2, 3
"""
_BUCKETS = {
    # bucket column: its expression over a staged row
    "quarter": "quarter",
    "hour": "date_bin('1 hour', quarter, TIMESTAMPTZ '2000-01-01 00:00:00+00')",
    "day": "day",
    "month": "date_trunc('month', day::timestamp)::date",
    "year": "date_trunc('year', day::timestamp)::date",
}
# table: (bucket column, what its rows are per)
_TARGETS = {table: (bucket, family) for (family, bucket), table in TABLES.items()}


def _stage(session: Session, where: str, params: dict) -> int:
    """Sums the transactions matching `where` into `rollup_batch`; returns how many."""
    session.execute(text("DROP TABLE IF EXISTS rollup_batch"))
    session.execute(text(_STAGE.format(where=where)), params)
    return int(
        session.execute(
            text("SELECT coalesce(sum(transactions), 0) FROM rollup_batch")
        ).scalar_one()
    )


def _apply(
    session: Session,
    tables,
    *,
    where: str = "TRUE",
    sign: int = 1,
    category: str = "g.category",
    categories: str = "rollup_categories",
    params: dict | None = None,
) -> None:
    """Adds (sign 1) or takes away (-1) the staged rows matching `where` in `tables`.
    A product's rows go to the category `category` of its row in `categories`."""
    for table in tables:
        column, per = _TARGETS[table]
        bucket = _BUCKETS[column]
        key, select, join = {
            "product": (f"{column}, product_id", f"{bucket}, b.product_id", ""),
            "category": (
                f"category, {column}",
                f"{category}, {bucket}",
                f"JOIN {categories} g USING (product_id)",
            ),
            "total": (column, bucket, ""),
        }[per]
        groups = "1" if per == "total" else "1, 2"
        session.execute(
            text(
                f"""
                INSERT INTO {table} AS r ({key}, revenue, list_revenue, quantity, transactions)
                SELECT {select}, {sign} * sum(b.revenue), {sign} * sum(b.list_revenue),
                       {sign} * sum(b.quantity), {sign} * sum(b.transactions)
                FROM rollup_batch b {join} WHERE {where}
                GROUP BY {groups} ORDER BY {groups}
                ON CONFLICT ({key}) DO UPDATE SET
                    revenue = r.revenue + EXCLUDED.revenue,
                    list_revenue = r.list_revenue + EXCLUDED.list_revenue,
                    quantity = r.quantity + EXCLUDED.quantity,
                    transactions = r.transactions + EXCLUDED.transactions
                """
            ),
            params or {},
        )


def _sync_categories(session: Session, below: int, timezone: str) -> int:
    """Moves the rolled-up sales (below `below`) of every product whose category changed
    to its new category, and records the category of products seen for the first time.
    Returns how many products moved."""
    session.execute(
        text(
            "CREATE TEMP TABLE rollup_moves ON COMMIT DROP AS"
            " SELECT g.product_id, g.category AS old, p.category AS new"
            " FROM rollup_categories g JOIN products p USING (product_id)"
            " WHERE g.category <> p.category"
        )
    )
    moved = session.execute(text("SELECT count(*) FROM rollup_moves")).scalar_one()
    if moved:
        _stage(
            session,
            "product_id IN (SELECT product_id FROM rollup_moves) AND ingest_xid < :below",
            {"below": below, "tz": timezone},
        )
        per_category = tables_of(family="category")
        _apply(session, per_category, sign=-1, category="g.old", categories="rollup_moves")
        _apply(session, per_category, category="g.new", categories="rollup_moves")
        session.execute(
            text(
                "UPDATE rollup_categories g SET category = m.new FROM rollup_moves m"
                " WHERE g.product_id = m.product_id"
            )
        )
    session.execute(text("DROP TABLE rollup_moves"))
    session.execute(
        text(
            "INSERT INTO rollup_categories (product_id, category)"
            " SELECT product_id, category FROM products ON CONFLICT (product_id) DO NOTHING"
        )
    )
    return moved


def _state(session: Session, timezone: str) -> int | None:
    """The current horizon, locked; None when another run holds the lock."""
    if not session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY}).scalar():
        return None
    session.execute(
        text(
            "INSERT INTO rollup_state (name, watermark, timezone, updated_at)"
            " VALUES (:name, 0, :tz, now()) ON CONFLICT (name) DO NOTHING"
        ),
        {"name": STATE, "tz": timezone},
    )
    watermark, stored_tz = session.execute(
        text("SELECT watermark, timezone FROM rollup_state WHERE name = :name FOR UPDATE"),
        {"name": STATE},
    ).one()
    if stored_tz != timezone or watermark < 0:
        # Days and months begin elsewhere now, or a horizon read an epoch back (before
        # widen_xid) rolled rows up twice: build the rollups again from the start.
        logger.warning(
            "rebuilding the rollups",
            extra={"timezone": timezone, "was": stored_tz, "watermark": watermark},
        )
        session.execute(text("TRUNCATE rollup_categories, " + ", ".join(_TARGETS)))
        watermark = 0
    return watermark


def widen_xid(xid: int, xmax: int) -> int:
    """The 64-bit id (xid8) of a running transaction's 32-bit id, given `xmax`, the next
    xid8 when the snapshot was taken: the one nearest it. Running ids lie within 2^31 of
    it on either side; one that began after the snapshot is above it, not an epoch back
    (read as an epoch back, it once gave a horizon below zero, and the next run rolled
    every row up again)."""
    offset = (xid - xmax) % 2**32
    return xmax + (offset - 2**32 if offset >= 2**31 else offset)


def _horizon(session: Session) -> int:
    """Below this id every transaction that can write to this database has ended.

    Transaction ids are shared by all databases of the server, so the server-wide oldest
    one (pg_snapshot_xmin) would let a long load into another database hold the rollups
    back. With the right to see every session (pg_read_all_stats, which `make up` grants),
    only this database's sessions count.
    """
    row = session.execute(
        text(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,"
            " pg_snapshot_xmax(pg_current_snapshot())::text::bigint,"
            " pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')"
            " OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
        )
    ).one()
    xmin, xmax, sees_all = row
    if not sees_all:
        return xmin
    running = session.execute(
        text(
            "SELECT backend_xid::text::bigint FROM pg_stat_activity"
            " WHERE datname = current_database() AND backend_xid IS NOT NULL"
            " AND pid <> pg_backend_pid()"
        )
    ).scalars()
    return min([xmax, *(widen_xid(xid, xmax) for xid in running)])


def rollup(session: Session, timezone: str | None = None) -> dict:
    """One run, inside the caller's transaction (see the module's docstring); days and
    months in `timezone`, by default REPORT_TIMEZONE."""
    timezone = timezone or get_settings().report_timezone
    watermark = _state(session, timezone)
    if watermark is None:
        return {"skipped": True}
    # Never back: rows below the watermark are in the rollups already.
    horizon = max(_horizon(session), watermark)
    window = {"low": watermark, "high": horizon, "tz": timezone}
    # After the horizon: every product of a transaction below it is visible now.
    moved = _sync_categories(session, watermark, timezone)
    rows = _stage(session, "ingest_xid >= :low AND ingest_xid < :high", window)
    if rows:
        _apply(session, _TARGETS)
    session.execute(
        text(
            "UPDATE rollup_state SET watermark = :high, timezone = :tz, updated_at = now(),"
            " last_row_id = (SELECT coalesce(max(id), 0) FROM transactions) WHERE name = :name"
        ),
        window | {"name": STATE},
    )
    return {"rows": rows, "horizon": horizon, "products_moved": moved}


def due(session: Session, settings: Settings) -> bool:
    """A run is due ROLLUP_INTERVAL_SECONDS after the last one, or sooner once about
    ROLLUP_MAX_PENDING_ROWS transactions wait: reports read those live, so the fewer the
    faster they answer. (Ids are given at insert, so the count is an estimate.)"""
    row = session.execute(
        text(
            "SELECT extract(epoch FROM now() - updated_at),"
            " (SELECT coalesce(max(id), 0) FROM transactions) - last_row_id"
            " FROM rollup_state WHERE name = :name"
        ),
        {"name": STATE},
    ).first()
    if row is None:
        return True
    age, pending = row
    return age >= settings.rollup_interval_seconds or pending >= settings.rollup_max_pending_rows


def backfill(
    session: Session,
    first: date,
    last: date,
    *,
    timezone: str | None = None,
    progress: bool = False,
) -> int:
    """Recomputes from the raw rows the rollups of every month (report time zone) that the
    days first..last touch, and of the years those months are in; returns how many
    transactions those months hold. For repairs and imports: over correct rollups it
    changes nothing. Days and months in `timezone`, by default REPORT_TIMEZONE."""
    timezone = timezone or get_settings().report_timezone
    zone = ZoneInfo(timezone)
    watermark = _state(session, timezone)
    if watermark is None:
        raise RuntimeError("a rollup run holds the lock; try again in a moment")
    _sync_categories(session, watermark, timezone)
    total = 0
    months = [first.replace(day=1)]
    while next_period(months[-1], "month") <= last:
        months.append(next_period(months[-1], "month"))
    for month in tqdm(months, disable=not progress, unit="month"):
        following = next_period(month, "month")
        # UTC hours that hold any of the month's rows, whole.
        hours_from = floor_to(local_midnight(month, zone), timedelta(hours=1))
        hours_to = ceil_to(local_midnight(following, zone), timedelta(hours=1))
        params = {
            "month": month,
            "following": following,
            "hours_from": hours_from,
            "hours_to": hours_to,
            "high": watermark,
            "tz": timezone,
        }
        _stage(
            session,
            "ingest_xid < :high AND occurred_at >= :hours_from AND occurred_at < :hours_to",
            params,
        )
        spans = {
            "quarter": "quarter >= :hours_from AND quarter < :hours_to",
            "hour": "hour >= :hours_from AND hour < :hours_to",
            "day": "day >= :month AND day < :following",
            "month": "month = :month",
        }
        for column, span in spans.items():
            tables = tables_of(bucket=column)
            for table in tables:
                session.execute(text(f"DELETE FROM {table} WHERE {span}"), params)
            by_time = column in ("hour", "quarter")
            where = "TRUE" if by_time else "b.day >= :month AND b.day < :following"
            _apply(session, tables, where=where, params=params)
        total += session.execute(
            text(
                "SELECT coalesce(sum(transactions), 0) FROM rollup_batch WHERE day >= :month"
                " AND day < :following"
            ),
            params,
        ).scalar_one()
    # A year is the sum of its months.
    years = sorted({month.replace(month=1) for month in months})
    for per in ("product", "category", "total"):
        yearly, monthly = TABLES[per, "year"], TABLES[per, "month"]
        key = {"product": ", product_id", "category": ", category", "total": ""}[per]
        session.execute(text(f"DELETE FROM {yearly} WHERE year = ANY(:years)"), {"years": years})
        session.execute(
            text(
                f"INSERT INTO {yearly} (year{key}, revenue, list_revenue, quantity, transactions)"
                f" SELECT date_trunc('year', month::timestamp)::date{key}, sum(revenue),"
                f" sum(list_revenue), sum(quantity), sum(transactions) FROM {monthly}"
                f" WHERE date_trunc('year', month::timestamp)::date = ANY(:years)"
                f" GROUP BY 1{', 2' if key else ''}"
            ),
            {"years": years},
        )
    return int(total)
