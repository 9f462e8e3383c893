"""The business alert check set by the environment (beat's periodic job): rejection_burst,
REJECTION_BURST_THRESHOLD rejections within the window, raised in the outbox once per
window however often it runs; the notifier delivers it. The alert rules of the
Notification Service (tasks/alert_rules.py) are evaluated beside it; the low-sales
settings seed one of those rules.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import text

from config import get_settings
from db.session import session_scope
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
