"""Publishes the outbox's events to Kafka (at least once; consumers deduplicate on event_id)."""

from __future__ import annotations

import logging

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError
from sqlalchemy import Engine, text

from streams.counts import PRODUCED

logger = logging.getLogger(__name__)


def relay_outbox(
    engine: Engine, producer: KafkaProducer, *, limit: int = 500, timeout: float = 10
) -> int:
    """Publishes up to `limit` unpublished events, then marks them published; returns how many.

    Rows are locked (SKIP LOCKED) while they are sent, so two relays never send the same
    batch; if Kafka fails, nothing is marked and the next run sends them again.
    """
    with engine.begin() as conn:
        rows = conn.execute(
            text(
                "SELECT id, topic, event_id, payload FROM outbox_events"
                " WHERE published_at IS NULL ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
            ),
            {"limit": limit},
        ).all()
        if not rows:
            return 0
        try:
            futures = [
                producer.send(topic, key=event_id.encode(), value=orjson.dumps(payload))
                for _, topic, event_id, payload in rows
            ]
            producer.flush(timeout=timeout)
            for future in futures:
                future.get(timeout=timeout)
        except KafkaError as exc:
            logger.warning("outbox relay: Kafka did not take the events: %r", exc)
            raise
        for _, topic, _, _ in rows:
            PRODUCED.labels(topic).inc()
        conn.execute(
            text("UPDATE outbox_events SET published_at = now() WHERE id = ANY(:ids)"),
            {"ids": [r[0] for r in rows]},
        )
    return len(rows)
