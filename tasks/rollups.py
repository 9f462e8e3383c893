"""The rollup job, as beat's task and as a command:

    python -m tasks.rollups run
    python -m tasks.rollups backfill --from 2026-01-01 --to 2026-03-31

What a run does, and why it counts every transaction exactly once: db/reports/rollups.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date

from config import get_settings
from db.reports.rollups import backfill, due, rollup
from db.session import session_scope
from tasks.celery_app import app
from tasks.metrics import ROLLUP_LAST_RUN, ROLLUP_ROWS, ROLLUP_SECONDS

logger = logging.getLogger(__name__)


@app.task(name="rollups.rollup_sales")
def rollup_sales() -> dict:
    with session_scope() as session:
        if not due(session, get_settings()):
            return {"skipped": "not due"}
    with ROLLUP_SECONDS.time(), session_scope() as session:
        result = rollup(session)
    ROLLUP_ROWS.inc(result.get("rows", 0))
    ROLLUP_LAST_RUN.set_to_current_time()
    if result.get("rows"):
        logger.info("rolled up transactions", extra=result)
    return result


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
