"""Rolling transactions up into the report tables (`sales_hourly` by UTC hour,
`sales_daily` and `sales_monthly` by day and month in REPORT_TIMEZONE).

Exactly once, even with rows committed out of order: each run takes the rows stored by
database transactions whose id lies between the last run's horizon and the oldest
transaction still running now in this database. Every such transaction has ended,
so no row can still appear below the new horizon; the rows above it are read live by
the reports. Rollups and the new horizon are written in one transaction, and an
advisory lock keeps two runs from overlapping: running it twice changes nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session
from tqdm import tqdm

from config import get_settings
from db.models.rollups import SALES_ROLLUP
from db.session import session_scope
from tasks.celery_app import app
from tasks.metrics import ROLLUP_LAST_RUN, ROLLUP_ROWS, ROLLUP_SECONDS

logger = logging.getLogger(__name__)

STATE = SALES_ROLLUP
# pg_advisory_xact_lock key: "rollup" in ASCII.
LOCK_KEY = 0x726F6C6C7570

_BUCKETS = {
    # bucket column: its expression over a transaction row
    "quarter": "date_bin('15 minutes', occurred_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')",
    "hour": "date_trunc('hour', occurred_at)",
    "day": "(occurred_at AT TIME ZONE :tz)::date",
    "month": "date_trunc('month', occurred_at AT TIME ZONE :tz)::date",
}
# table: (bucket column, per product?)
_TARGETS = {
    "sales_hourly": ("hour", True),
    "sales_daily": ("day", True),
    "sales_monthly": ("month", True),
    "sales_quarter_hour_totals": ("quarter", False),
    "sales_hourly_totals": ("hour", False),
    "sales_daily_totals": ("day", False),
    "sales_monthly_totals": ("month", False),
}


def _insert(session: Session, table: str, where: str, params: dict) -> None:
    """Adds the transactions matching `where` to one rollup table."""
    column, per_product = _TARGETS[table]
    key = f"{column}, product_id" if per_product else column
    select = f"{_BUCKETS[column]}, product_id" if per_product else _BUCKETS[column]
    groups = "1, 2" if per_product else "1"
    session.execute(
        text(
            f"""
            INSERT INTO {table} AS r ({key}, revenue, list_revenue, quantity, transactions)
            SELECT {select}, sum(total_amount), sum(list_amount), sum(quantity), count(*)
            FROM transactions WHERE {where}
            GROUP BY {groups} ORDER BY {groups}
            ON CONFLICT ({key}) DO UPDATE SET
                revenue = r.revenue + EXCLUDED.revenue,
                list_revenue = r.list_revenue + EXCLUDED.list_revenue,
                quantity = r.quantity + EXCLUDED.quantity,
                transactions = r.transactions + EXCLUDED.transactions
            """
        ),
        params,
    )


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
    if stored_tz != timezone:
        # Days and months begin elsewhere now: build the rollups again from the start.
        logger.warning("report time zone changed from %s to %s: rebuilding", stored_tz, timezone)
        session.execute(text("TRUNCATE " + ", ".join(_TARGETS)))
        watermark = 0
    return watermark


def _widen(xid: int, xmax: int) -> int:
    """The 64-bit id (xid8) of a running transaction's 32-bit id, given the next xid8."""
    epoch, low = divmod(xmax, 2**32)
    return (epoch if xid <= low else epoch - 1) * 2**32 + xid


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
    return min([xmax, *(_widen(xid, xmax) for xid in running)])


def rollup(session: Session, timezone: str | None = None) -> dict:
    """One run, inside the caller's transaction (see the module's docstring); days and
    months in `timezone`, by default REPORT_TIMEZONE."""
    timezone = timezone or get_settings().report_timezone
    watermark = _state(session, timezone)
    if watermark is None:
        return {"skipped": True}
    horizon = _horizon(session)
    window = {"low": watermark, "high": horizon, "tz": timezone}
    rows = session.execute(
        text("SELECT count(*) FROM transactions WHERE ingest_xid >= :low AND ingest_xid < :high"),
        window,
    ).scalar_one()
    if rows:
        for table in _TARGETS:
            _insert(session, table, "ingest_xid >= :low AND ingest_xid < :high", window)
    session.execute(
        text(
            "UPDATE rollup_state SET watermark = :high, timezone = :tz, updated_at = now()"
            " WHERE name = :name"
        ),
        window | {"name": STATE},
    )
    return {"rows": rows, "horizon": horizon}


@app.task(name="rollups.rollup_sales")
def rollup_sales() -> dict:
    with ROLLUP_SECONDS.time(), session_scope() as session:
        result = rollup(session)
    ROLLUP_ROWS.inc(result.get("rows", 0))
    ROLLUP_LAST_RUN.set_to_current_time()
    if result.get("rows"):
        logger.info("rolled up transactions", extra=result)
    return result


def _month_starts(first: date, last: date) -> list[date]:
    months, month = [], first.replace(day=1)
    while month <= last:
        months.append(month)
        month = (month + timedelta(days=32)).replace(day=1)
    return months


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), zone).astimezone(UTC)


def backfill(session: Session, first: date, last: date, *, progress: bool = False) -> int:
    """Recomputes from the raw rows the rollups of every month (report time zone) that the
    days first..last touch; returns how many transactions those months hold. For repairs
    and imports: over correct rollups it changes nothing."""
    timezone = get_settings().report_timezone
    zone = ZoneInfo(timezone)
    watermark = _state(session, timezone)
    if watermark is None:
        raise RuntimeError("a rollup run holds the lock; try again in a moment")
    total = 0
    for month in tqdm(_month_starts(first, last), disable=not progress, unit="month"):
        following = (month + timedelta(days=32)).replace(day=1)
        start, end = _local_midnight(month, zone), _local_midnight(following, zone)
        # UTC hours that hold any of the month's rows, whole.
        hours_from = start.replace(minute=0, second=0, microsecond=0)
        hours_to = (
            end if end == end.replace(minute=0) else end.replace(minute=0) + timedelta(hours=1)
        )
        params = {
            "month": month,
            "following": following,
            "start": start,
            "end": end,
            "hours_from": hours_from,
            "hours_to": hours_to,
            "high": watermark,
            "tz": timezone,
        }
        month_rows = "ingest_xid < :high AND occurred_at >= :start AND occurred_at < :end"
        hour_rows = "ingest_xid < :high AND occurred_at >= :hours_from AND occurred_at < :hours_to"
        for table, (column, _) in _TARGETS.items():
            span = {
                "quarter": "quarter >= :hours_from AND quarter < :hours_to",
                "hour": "hour >= :hours_from AND hour < :hours_to",
                "day": "day >= :month AND day < :following",
                "month": "month = :month",
            }[column]
            session.execute(text(f"DELETE FROM {table} WHERE {span}"), params)
            by_time = column in ("hour", "quarter")
            _insert(session, table, hour_rows if by_time else month_rows, params)
        total += session.execute(
            text(f"SELECT count(*) FROM transactions WHERE {month_rows}"), params
        ).scalar_one()
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the sales rollup now, or rebuild a range.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="roll up what has been stored since the last run")
    again = sub.add_parser("backfill", help="recompute the months that a range of days touches")
    again.add_argument("--from", dest="first", type=date.fromisoformat, required=True)
    again.add_argument("--to", dest="last", type=date.fromisoformat, required=True)
    args = parser.parse_args(argv)
    with session_scope() as session:
        if args.command == "run":
            print(rollup(session))
        else:
            if args.last < args.first:
                parser.error("--to is before --from")
            count = backfill(session, args.first, args.last, progress=True)
            print(f"rebuilt the rollups of {count} transactions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
