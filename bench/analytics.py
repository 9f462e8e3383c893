"""Analytics benchmark: p50/p95 of every endpoint over a large generated history, next to
the same figures computed directly from the raw rows, and the time of one rollup run
after a minute of 5,000 transactions per second. Prints a Markdown table.

    make bench                      # 10 million transactions, 1,000 products, two years
    .venv/bin/python bench/analytics.py --transactions 1000000 --requests 20

The data goes into a database of its own (<DATABASE>_bench on the same server), made
once and reused by later runs.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from bench.generate import generate
from config import PROJECT_ROOT, get_settings
from db.reports.periods import resolve
from db.reports.rollups import rollup
from web.analytics.app import create_app


def prepare(args) -> str:
    settings = get_settings()
    name = f"{settings.database.database}_bench"
    url = settings.database.set(database=name).render_as_string(hide_password=False)
    admin = create_engine(settings.database.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        ).first():
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = url
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")
    engine = create_engine(url)
    with engine.connect() as conn:
        have = conn.execute(text("SELECT count(*) FROM transactions")).scalar()
    if have < args.transactions:
        print(f"generating {args.transactions - have} transactions (once)...", file=sys.stderr)
        generate(
            engine,
            products=args.products,
            transactions=args.transactions - have,
            days=args.days,
            categories=args.categories,
            seed=have + 1,
        )
    with Session(engine) as session, session.begin():
        rollup(session)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()
    return url


def timed(call, repeat: int) -> list[float]:
    call()  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20)[18] if len(times) >= 2 else times[0]


RAW = {
    "summary": "SELECT sum(total_amount), count(*), sum(quantity) FROM transactions"
    " WHERE occurred_at >= :s AND occurred_at < :e",
    "sales": "SELECT (occurred_at AT TIME ZONE :tz)::date, sum(total_amount), count(*)"
    " FROM transactions WHERE occurred_at >= :s AND occurred_at < :e GROUP BY 1",
    "products": "SELECT product_id, sum(total_amount), count(*), sum(quantity) FROM transactions"
    " WHERE occurred_at >= :s AND occurred_at < :e GROUP BY 1 ORDER BY 2 DESC LIMIT 20",
    "categories": "SELECT p.category, sum(t.total_amount) FROM transactions t JOIN products p"
    " USING (product_id) WHERE occurred_at >= :s AND occurred_at < :e GROUP BY 1",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=10_000_000)
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--categories", type=int, default=20)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    url = prepare(args)
    settings = get_settings()
    client = create_app(settings.model_copy(update={"database_url": url})).test_client()
    gc.freeze()  # as each gunicorn worker does once the app is loaded
    engine = create_engine(url)
    with engine.connect() as conn:
        product, category = conn.execute(
            text("SELECT product_id, category FROM products ORDER BY product_id LIMIT 1")
        ).one()
    today = datetime.now(UTC).date()
    ranges = {
        "30 days": (today - timedelta(days=29), today),
        f"{args.days} days": (today - timedelta(days=args.days - 1), today),
    }
    endpoints = [
        ("summary", "analytics/summary", {}),
        ("daily", "reports/daily", {}),
        ("sales", "analytics/sales", {"granularity": "day"}),
        ("sales", "analytics/sales", {"granularity": "month"}),
        ("trends", "analytics/trends", {"granularity": "week"}),
        ("products", "analytics/products", {"limit": 20}),
        ("categories", "analytics/categories", {}),
        # Filtered by one category, and by one product.
        ("summary", "analytics/summary", {"category": category}),
        ("sales", "analytics/sales", {"granularity": "day", "category": category}),
        ("trends", "analytics/trends", {"granularity": "week", "category": category}),
        ("sales", "analytics/sales", {"granularity": "day", "product_id": product}),
        ("products", "analytics/products", {"limit": 20, "category": category}),
    ]
    zones = [settings.report_timezone, "Europe/Moscow", "Asia/Kolkata"]
    print("| endpoint | range | tz | p50 ms | p95 ms | raw SQL p50 ms | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for tz in zones:
        for range_name, (first, last) in ranges.items():
            for kind, path, extra in endpoints:
                params = {"from": first.isoformat(), "to": last.isoformat(), "tz": tz} | extra
                if kind == "daily":  # one day, the last: once per zone
                    if range_name != "30 days":
                        continue
                    params = {"date": last.isoformat(), "tz": tz}

                def call(path=path, params=params):
                    answer = client.get(f"/api/v1/{path}", query_string=params)
                    assert answer.status_code == 200, answer.get_json()

                repeat = (
                    args.requests if tz == settings.report_timezone else max(5, args.requests // 4)
                )
                times = timed(call, repeat)
                raw_ms = ""
                ratio = ""
                if kind in RAW and set(extra) <= {"granularity", "limit"}:
                    span = resolve(first, last, ZoneInfo(tz))  # the range the API reads
                    s, e = span.start, span.end
                    with engine.connect() as conn:
                        raw = timed(
                            lambda conn=conn, kind=kind, s=s, e=e, tz=tz: conn.execute(
                                text(RAW[kind]), {"s": s, "e": e, "tz": tz}
                            ).all(),
                            3,
                        )
                    raw_ms = f"{statistics.median(raw):.1f}"
                    ratio = f"{statistics.median(raw) / statistics.median(times):.0f}x"
                label = path.split("/")[-1] + (
                    f" ({extra['granularity']})" if "granularity" in extra else ""
                )
                if "category" in extra:
                    label += ", one category"
                if "product_id" in extra:
                    label += ", one product"
                print(
                    f"| {label} | {range_name} | {tz} | {statistics.median(times):.1f} | "
                    f"{p95(times):.1f} | {raw_ms} | {ratio} |"
                )

    # A minute of 5,000 transactions per second, stored in two steps (10 s, then 50 s):
    # until the next rollup run, every report that covers today reads them live.
    first, last = ranges["30 days"]
    month = {"from": first.isoformat(), "to": last.isoformat()}
    print()
    waiting = 0
    for seconds in (10, 50):
        waiting += 5_000 * seconds
        generate(
            engine,
            products=args.products,
            transactions=5_000 * seconds,
            days=1,
            categories=args.categories,
            seed=int(time.time()) + seconds,
            progress=False,
        )
        tail = {
            name: timed(lambda path=path: client.get(f"/api/v1/{path}", query_string=month), 10)
            for name, path in (("summary", "analytics/summary"), ("products", "analytics/products"))
        }
        print(
            f"30 days, {waiting:,} rows not yet rolled up: "
            + ", ".join(f"{name} p50 {statistics.median(t):.1f} ms" for name, t in tail.items())
        )
    with Session(engine) as session, session.begin():
        started = time.perf_counter()
        result = rollup(session)
        seconds = time.perf_counter() - started
    print(f"rollup run after a minute at 5,000/s: {result['rows']:,} rows in {seconds:.2f} s")
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
