"""Alert rules benchmark: one evaluation of many rules (every kind; all sales, each
category, single products; several windows) over a generated history, against the
one-minute interval beat gives it, and the same evaluation of one rule. Prints a Markdown
table with the queries each evaluation ran.

    .venv/bin/python bench/alert_rules.py                       # 1,000 rules, 1M transactions
    .venv/bin/python bench/alert_rules.py --rules 5000 --transactions 10000000

The history goes into the analytics benchmark's database (<DATABASE>_bench), made once
and reused; the rules, their states and their alerts are removed again at the end.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, event, text

from bench.analytics import prepare
from config import get_settings
from tasks.alert_rules import evaluate

WINDOWS = (15, 60, 240, 1440)
INTERVAL_SECONDS = 60.0  # beat's schedule for maintenance.evaluate_alert_rules


def rules(count: int, products: list[str], categories: list[str]) -> list[dict]:
    """`count` rules cycling through the kinds, scopes and windows."""
    scopes = [{}] + [{"category": c} for c in categories] + [{"product_id": p} for p in products]
    kinds = [
        ("low_sales", {"threshold": "500.00"}),
        ("sales_drop", {"drop_percent": "30", "compare_to": "previous_window"}),
        ("sales_drop", {"drop_percent": "30", "compare_to": "same_window_last_week"}),
        ("high_value_sale", {"threshold": "900.00"}),
        ("no_sales", {}),
    ]
    made = []
    for i, ((kind, fields), scope, window) in enumerate(
        zip(itertools.cycle(kinds), itertools.cycle(scopes), itertools.cycle(WINDOWS))
    ):
        if i == count:
            break
        made.append(
            {
                "name": f"bench {i}",
                "kind": kind,
                "product_id": scope.get("product_id"),
                "category": scope.get("category"),
                "threshold": fields.get("threshold"),
                "drop_percent": fields.get("drop_percent"),
                "compare_to": fields.get("compare_to"),
                "window_minutes": window,
                "channels": json.dumps([{"type": "telegram"}]),
            }
        )
    return made


def clear(engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM outbox_events WHERE event_id LIKE 'alert:%'"))
        conn.execute(text("DELETE FROM alert_events"))
        conn.execute(text("DELETE FROM alert_rules"))


def run(engine, zone: str, count: int, repeat: int) -> dict:
    """Seconds and statements of `repeat` evaluations of `count` rules (states reset
    before each, so every one raises its alerts)."""
    with engine.connect() as conn:
        products = list(conn.execute(text("SELECT product_id FROM products ORDER BY 1")).scalars())
        categories = list(
            conn.execute(text("SELECT DISTINCT category FROM products ORDER BY 1")).scalars()
        )
    clear(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO alert_rules (name, kind, product_id, category, threshold,"
                " drop_percent, compare_to, window_minutes, cooldown_minutes, channels)"
                " VALUES (:name, :kind, :product_id, :category, :threshold, :drop_percent,"
                " :compare_to, :window_minutes, 60, CAST(:channels AS jsonb))"
            ),
            rules(count, products, categories),
        )
    statements = [0]

    def count_statement(*_):
        statements[-1] += 1

    seconds, raised = [], {}
    event.listen(engine, "before_cursor_execute", count_statement)
    try:
        for _ in range(repeat):
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM alert_states"))
            statements.append(0)
            started = time.perf_counter()
            raised = evaluate(engine, zone, "notifications", datetime.now(UTC))
            seconds.append(time.perf_counter() - started)
    finally:
        event.remove(engine, "before_cursor_execute", count_statement)
        clear(engine)
    return {
        "seconds": statistics.median(seconds),
        "statements": statements[-1],
        "alerts": raised["firing"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--categories", type=int, default=20)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    engine = create_engine(prepare(args))
    zone = get_settings().report_timezone
    one = run(engine, zone, 1, args.repeat)
    many = run(engine, zone, args.rules, args.repeat)
    engine.dispose()
    print(f"{args.transactions:,} transactions, {args.products:,} products, windows {WINDOWS} min")
    print()
    # Read through SQLAlchemy; the states, the history and the outbox are written with one
    # bulk statement each per 1,000 rows on top.
    print("| rules | evaluation (median) | queries | alerts raised | share of the interval |")
    print("|---:|---:|---:|---:|---:|")
    for count, figures in ((1, one), (args.rules, many)):
        print(
            f"| {count:,} | {figures['seconds'] * 1000:,.0f} ms | {figures['statements']} |"
            f" {figures['alerts']:,} | {figures['seconds'] / INTERVAL_SECONDS:.1%} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
