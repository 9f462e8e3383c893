"""Business alert checks (beat's periodic jobs): each raises an event in the outbox when
its condition holds, once per window however often it runs; the notifier delivers it.

- rejection_burst: REJECTION_BURST_THRESHOLD rejections within the window;
- low_sales: revenue in the last LOW_SALES_WINDOW_MINUTES below LOW_SALES_THRESHOLD, the
  reports' exact figure (rollups plus the rows not yet rolled up).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text

from config import Settings, get_settings
from db.reports.periods import ReportRange
from db.reports.queries import Filters, snapshot
from db.session import default_engine, session_scope
from tasks.celery_app import app
from tasks.events import add_to_outbox, event

logger = logging.getLogger(__name__)


@app.task(name="maintenance.check_rejection_burst")
def check_rejection_burst() -> int:
    """Raises one rejection_burst event per window when rejections reach the threshold."""
    settings = get_settings()
    window = settings.rejection_burst_window_seconds
    now = datetime.now(UTC)
    with session_scope() as session:
        by_reason = dict(
            session.execute(
                text(
                    "SELECT reason, count(*) FROM rejected_transactions"
                    " WHERE rejected_at > now() - make_interval(secs => :window) GROUP BY reason"
                ),
                {"window": window},
            ).all()
        )
        rejected = sum(by_reason.values())
        if rejected >= settings.rejection_burst_threshold:
            # One event per window-long bucket of time, however often this runs.
            bucket = int(now.timestamp() // window)
            add_to_outbox(
                session,
                [
                    event(
                        f"rejection_burst:{bucket}",
                        "rejection_burst",
                        "warning",
                        {
                            "window_seconds": window,
                            "window_end": now.isoformat(),
                            "rejected": rejected,
                            "threshold": settings.rejection_burst_threshold,
                            "by_reason": by_reason,
                        },
                    )
                ],
            )
    return rejected


def low_sales(engine: Engine, settings: Settings, now: datetime) -> dict | None:
    """The low_sales event for the window that ends `now`, or None when its revenue is at
    or above LOW_SALES_THRESHOLD (or the check is off). The revenue is the reports' exact
    figure: rollups plus the rows not yet rolled up."""
    threshold = settings.low_sales_threshold
    if not threshold:
        return None
    window = timedelta(minutes=settings.low_sales_window_minutes)
    start = now - window
    with snapshot(engine, settings.report_timezone) as reports:
        sales = reports.totals(ReportRange(start, now, ZoneInfo("UTC")), Filters())
    if sales["revenue"] >= threshold:
        return None
    # One event per window-long bucket of time, however often this runs.
    bucket = int(now.timestamp() // window.total_seconds())
    return event(
        f"low_sales:{bucket}",
        "low_sales",
        "warning",
        {
            "window_start": start.isoformat(),
            "window_end": now.isoformat(),
            "revenue": f"{sales['revenue']:.2f}",
            "transactions": sales["transactions"],
            "threshold": str(threshold),
        },
    )


@app.task(name="maintenance.check_low_sales")
def check_low_sales() -> bool:
    """Raises low_sales when the last window's revenue is below the threshold."""
    found = low_sales(default_engine(), get_settings(), datetime.now(UTC))
    if found:
        with session_scope() as session:
            add_to_outbox(session, [found])
        logger.warning("sales below the threshold", extra=found["data"])
    return found is not None
