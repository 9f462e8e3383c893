"""Upkeep of the broker and the bookkeeping tables (beat's periodic jobs): fetched broker
messages, stale chunk records, and the retention of outbox events, notification log rows
and replayed rejections.

Task names keep the `maintenance.` prefix: they are what the broker's messages and beat
carry, and they route to the maintenance queue.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import ColumnElement, Engine, delete, func, select, text

from config import Settings, get_settings
from db.models import AlertEvent, NotificationLog, OutboxEvent, RejectedTransaction
from db.session import default_engine, session_scope
from tasks.celery_app import app

logger = logging.getLogger(__name__)


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


# Rows one DELETE removes at most, each batch in a transaction of its own: a backlog of
# millions is purged in short statements that hold their row locks briefly.
PURGE_BATCH_ROWS = 10_000

Purgeable = type[OutboxEvent] | type[NotificationLog] | type[RejectedTransaction] | type[AlertEvent]


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


def purge_expired_alerts(
    engine: Engine, settings: Settings, *, batch_rows: int = PURGE_BATCH_ROWS
) -> int:
    """Alerts raised more than NOTIFICATION_LOG_RETENTION_DAYS ago: the history lasts as
    long as the log of their deliveries."""
    expired = AlertEvent.occurred_at < older_than(settings.notification_log_retention_days)
    return purge_in_batches(engine, AlertEvent, expired, batch_rows=batch_rows)


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


@app.task(name="maintenance.purge_alert_history")
def purge_alert_history() -> int:
    """Deletes alerts in the history past their retention."""
    deleted = purge_expired_alerts(default_engine(), get_settings())
    return _purged("alerts in the history", deleted)


@app.task(name="maintenance.purge_rejected")
def purge_rejected() -> int:
    """Deletes replayed rejected transactions past their retention."""
    deleted = purge_replayed_rejections(default_engine(), get_settings())
    return _purged("replayed rejected transactions", deleted)
