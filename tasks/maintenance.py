"""Periodic upkeep (Celery beat): parked transactions and the broker's table."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import text

from db.session import session_scope
from tasks.celery_app import app
from tasks.ingest import Outcome, record_rejections, store_transactions, take_parked

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
