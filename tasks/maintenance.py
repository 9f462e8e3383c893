"""Periodic jobs (Celery beat): parked transactions, the broker's table, the checks
that raise events (rejection bursts, low sales), and retention of bookkeeping rows."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Engine, delete, func, select, text

from config import Settings, get_settings
from db.models import NotificationLog, OutboxEvent, RejectedTransaction
from db.session import default_engine, session_scope
from tasks.celery_app import app
from tasks.events import add_to_outbox, event
from tasks.ingest import (
    Outcome,
    count_outcome,
    record_rejections,
    store_transactions,
    take_parked,
)
from web.analytics.periods import ReportRange
from web.analytics.queries import Filters, snapshot

logger = logging.getLogger(__name__)


@app.task(name="maintenance.release_parked")
def release_parked() -> dict:
    """Stores parked transactions whose product now exists; rejects expired ones as
    unknown_product. Safe to run concurrently (rows are taken with SKIP LOCKED)."""
    outcome = Outcome()
    now = datetime.now(UTC)
    with session_scope() as session:
        waiting = (
            session.execute(
                text(
                    "SELECT DISTINCT p.product_id FROM parked_transactions p"
                    " JOIN products USING (product_id)"
                )
            )
            .scalars()
            .all()
        )
        if waiting:
            store_transactions(
                session, take_parked(session, product_ids=list(waiting)), outcome, park_until=None
            )
        store_transactions(
            session, take_parked(session, expired_before=now), outcome, park_until=None
        )
        record_rejections(session, outcome)
    count_outcome(outcome)
    if outcome.stored or outcome.rejected:
        logger.info(
            "parked transactions released",
            extra={"stored": outcome.stored, "rejected": outcome.rejected},
        )
    return {"stored": outcome.stored, "rejected": outcome.rejected}


@app.task(name="maintenance.purge_broker")
def purge_broker() -> int:
    """Deletes broker messages already fetched by a worker (kombu never does).

    A fetched message is invisible for good, whatever became of its task; the processor
    re-sends unfinished chunks itself, so the row is of no further use.
    """
    with session_scope() as session:
        deleted = session.execute(text("DELETE FROM kombu_message WHERE visible = false")).rowcount
    if deleted:
        logger.info("purged fetched broker messages", extra={"deleted": deleted})
    return deleted


@app.task(name="maintenance.purge_chunks")
def purge_chunks() -> int:
    """Deletes chunk records older than an hour, and failed ones after 30 days.

    A processor deletes its own once their offsets are committed; one that was killed
    leaves its records behind (its messages were read again by its successor). A
    chunk still being retried and finished later simply writes its record again. A
    failed chunk's record stays longer: it says why its messages were rejected.
    """
    with session_scope() as session:
        deleted = session.execute(
            text(
                "DELETE FROM ingest_chunks WHERE created_at < now() - interval '1 hour'"
                " AND (failed_at IS NULL OR failed_at < now() - interval '30 days')"
            )
        ).rowcount
    if deleted:
        logger.info("purged stale chunk records", extra={"deleted": deleted})
    return deleted


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


# --- retention -----------------------------------------------------------------------
# Rows one DELETE removes at most, each batch in a transaction of its own: a backlog of
# millions is purged in short statements that hold their row locks briefly.
PURGE_BATCH_ROWS = 10_000

Purgeable = type[OutboxEvent] | type[NotificationLog] | type[RejectedTransaction]


def purge_in_batches(
    engine: Engine, model: Purgeable, expired: ColumnElement[bool], *, batch_rows: int
) -> int:
    """Deletes the rows of `model` that match `expired`, at most `batch_rows` per
    statement, until none is left; returns how many were deleted.

    Rows another transaction has locked (the notifier finishing one, say) are skipped,
    not waited for: the next run takes them.
    """
    deleted = 0
    while True:
        batch = (
            select(model.id)
            .where(expired)
            .limit(batch_rows)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        with engine.begin() as conn:
            count = conn.execute(delete(model).where(model.id.in_(batch))).rowcount
        deleted += count
        if count < batch_rows:
            return deleted


def older_than(days: int) -> ColumnElement:
    """The database's now() less `days`: one clock for every row, whatever the worker's."""
    return func.now() - timedelta(days=days)


def purge_published_outbox(
    engine: Engine, settings: Settings, *, batch_rows: int = PURGE_BATCH_ROWS
) -> int:
    """Outbox events published more than OUTBOX_RETENTION_DAYS ago; unpublished ones stay."""
    expired = OutboxEvent.published_at < older_than(settings.outbox_retention_days)
    return purge_in_batches(engine, OutboxEvent, expired, batch_rows=batch_rows)


def purge_final_notifications(
    engine: Engine, settings: Settings, *, batch_rows: int = PURGE_BATCH_ROWS
) -> int:
    """notification_log rows that are final (sent, suppressed, failed) and older than
    NOTIFICATION_LOG_RETENTION_DAYS; a pending row stays until the notifier finishes it."""
    expired = NotificationLog.status.in_(("sent", "suppressed", "failed")) & (
        NotificationLog.created_at < older_than(settings.notification_log_retention_days)
    )
    return purge_in_batches(engine, NotificationLog, expired, batch_rows=batch_rows)


def purge_replayed_rejections(
    engine: Engine, settings: Settings, *, batch_rows: int = PURGE_BATCH_ROWS
) -> int:
    """Rejected transactions replayed more than REJECTED_RETENTION_DAYS ago; open ones stay
    (they wait for someone to replay them)."""
    expired = (RejectedTransaction.status == "replayed") & (
        RejectedTransaction.replayed_at < older_than(settings.rejected_retention_days)
    )
    return purge_in_batches(engine, RejectedTransaction, expired, batch_rows=batch_rows)


def _purged(what: str, deleted: int) -> int:
    if deleted:
        logger.info("purged %s", what, extra={"deleted": deleted})
    return deleted


@app.task(name="maintenance.purge_outbox")
def purge_outbox() -> int:
    """Deletes published outbox events past their retention."""
    deleted = purge_published_outbox(default_engine(), get_settings())
    return _purged("published outbox events", deleted)


@app.task(name="maintenance.purge_notification_log")
def purge_notification_log() -> int:
    """Deletes final notification_log rows past their retention."""
    deleted = purge_final_notifications(default_engine(), get_settings())
    return _purged("final notification log rows", deleted)


@app.task(name="maintenance.purge_rejected")
def purge_rejected() -> int:
    """Deletes replayed rejected transactions past their retention."""
    deleted = purge_replayed_rejections(default_engine(), get_settings())
    return _purged("replayed rejected transactions", deleted)
