"""Storing chunks of Kafka messages: validate the business rules, compute the amounts,
write everything in one database transaction with bulk statements.

Beat's release_parked stores the parked transactions whose product has arrived since,
and rejects those whose window has passed.

Outcomes per transaction: stored; a harmless resend of a stored one (same id, same
content: counted once); parked until its product arrives; or rejected with a reason
(`duplicate_conflict`, `amount_above_list_price`, `malformed_message`,
`unknown_product`). Nothing is dropped silently, and running the same chunk twice
changes nothing: ids and Kafka offsets are unique keys.
"""

from __future__ import annotations

import csv
import io
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import psycopg2.errors
from psycopg2.extras import Json, execute_values
from sqlalchemy import text
from sqlalchemy.orm import Session

from config import get_settings
from db.broker import STORE_CHUNK
from db.rejections import Rejection, insert_rejections, printable
from db.session import default_engine, session_scope
from streams.messages import PRODUCT, TRANSACTION, Message, decode, items_of
from tasks.celery_app import app
from tasks.metrics import ACCEPTED_TO_STORED, PRODUCTS, REJECTIONS, TRANSACTIONS

logger = logging.getLogger(__name__)

# A paid total may exceed price x quantity by rounding, never by more.
AMOUNT_TOLERANCE = Decimal("0.01")


@dataclass
class Outcome:
    stored: int = 0
    duplicates: int = 0
    parked: int = 0
    rejected: int = 0
    products: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    # Seconds from the collector's acceptance to the insert, one per stored transaction.
    latencies: list[float] = field(default_factory=list)

    def reject(
        self, m: Message, reason: str, details: dict | None = None, stage: str = "processor"
    ) -> None:
        self.rejected += 1
        self.rejections.append(
            Rejection(
                m.payload(),
                reason,
                stage,
                m.kind,
                m.topic,
                m.partition,
                m.offset,
                details or {},
                received_at=(m.body or {}).get("received_at"),
                item=m.item,
            )
        )

    def add(self, other: Outcome) -> None:
        for name in ("stored", "duplicates", "parked", "rejected", "products"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejections += other.rejections


def upsert_products(session: Session, messages: list[Message]) -> list[str]:
    """Latest version wins, by the time the collector received it."""
    latest: dict[str, dict] = {}
    for m in messages:
        body = m.body
        current = latest.get(body["product_id"])
        if current is None or current["received_at"] <= body["received_at"]:
            latest[body["product_id"]] = body
    if not latest:
        return []
    rows = [
        (b["product_id"], b["name"], b["category"], b["price"], b["received_at"])
        for b in sorted(latest.values(), key=lambda b: b["product_id"])
    ]
    cursor = session.connection().connection.cursor()
    execute_values(
        cursor,
        """
        INSERT INTO products (product_id, name, category, price, received_at)
        VALUES %s
        ON CONFLICT (product_id) DO UPDATE SET
            name = EXCLUDED.name, category = EXCLUDED.category, price = EXCLUDED.price,
            received_at = EXCLUDED.received_at, updated_at = now()
        WHERE products.received_at <= EXCLUDED.received_at
        """,
        rows,
    )
    return list(latest)


def store_transactions(
    session: Session, messages: list[Message], outcome: Outcome, *, park_until: datetime | None
) -> None:
    """Stores valid transactions; parks (or, with park_until=None, rejects) unknown products."""
    # Within the chunk: the first of a repeated id wins, like in the table.
    first: dict[str, Message] = {}
    for m in messages:
        seen = first.get(m.body["transaction_id"])
        if seen is None:
            first[m.body["transaction_id"]] = m
        elif seen.content_hash == m.content_hash:
            outcome.duplicates += 1
        else:
            outcome.reject(
                m,
                "duplicate_conflict",
                {"conflicts_with_offset": seen.offset, "conflicts_with_item": seen.item},
            )
    candidates = _drop_known(session, list(first.values()), outcome)

    product_ids = sorted({m.body["product_id"] for m in candidates})
    prices = dict(
        session.execute(
            text("SELECT product_id, price FROM products WHERE product_id = ANY(:ids)"),
            {"ids": product_ids},
        ).all()
    )
    rows, to_park = [], []
    for m in candidates:
        b = m.body
        price = prices.get(b["product_id"])
        if price is None:
            to_park.append(m)
            continue
        list_amount = price * b["quantity"]
        total = list_amount if b["total_amount"] is None else b["total_amount"]
        if total > list_amount + AMOUNT_TOLERANCE:
            outcome.reject(
                m,
                "amount_above_list_price",
                {
                    "total_amount": str(total),
                    "list_amount": str(list_amount),
                    "unit_price": str(price),
                },
            )
            continue
        rows.append(
            (
                b["transaction_id"],
                b["product_id"],
                b["quantity"],
                price,
                list_amount,
                total,
                b["timestamp"],
                b["received_at"],
                m.partition,
                m.offset,
                m.item,
                m.content_hash,
            )
        )

    if to_park and park_until is not None:
        _park(session, to_park, park_until)
        outcome.parked += len(to_park)
    else:
        for m in to_park:
            outcome.reject(m, "unknown_product", {"product_id": m.body["product_id"]})

    if rows:
        inserted = _insert_transactions(session.connection().connection.cursor(), rows)
        stored = {r[0] for r in inserted}
        outcome.stored += len(stored)
        outcome.latencies.extend(r[1] for r in inserted)
        # Stored meanwhile by a concurrent run of the same or another chunk.
        raced = [first[r[0]] for r in rows if r[0] not in stored]
        _drop_known(session, raced, outcome)


# The chunk's rows arrive here by COPY (parsed by the server, not quoted row by row in
# Python), then go into the table in one statement. Emptied before each use: a savepoint
# that isolates poison leaves the rows of the halves before it.
INCOMING = """
    CREATE TEMP TABLE IF NOT EXISTS incoming_transactions (
        transaction_id text, product_id text, quantity integer, unit_price numeric,
        list_amount numeric, total_amount numeric, occurred_at timestamptz,
        received_at timestamptz, kafka_partition integer, kafka_offset bigint,
        kafka_item integer, content_hash bytea
    ) ON COMMIT DELETE ROWS;
    DELETE FROM incoming_transactions
"""
COLUMNS = (
    "transaction_id, product_id, quantity, unit_price, list_amount, total_amount,"
    " occurred_at, received_at, kafka_partition, kafka_offset, kafka_item, content_hash"
)


def _insert_transactions(cursor, rows: list[tuple]) -> list[tuple]:
    """Inserts the rows (in COLUMNS' order) that are not stored yet; returns, for each
    one inserted, its id and the seconds since the collector accepted it."""
    buffer = io.StringIO()
    # bytea in hex; the rest by str(), text quoted (an unquoted empty field is NULL).
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC)
    writer.writerows((*r[:-1], "\\x" + r[-1].hex()) for r in rows)
    buffer.seek(0)
    cursor.execute(INCOMING)
    cursor.copy_expert(f"COPY incoming_transactions ({COLUMNS}) FROM STDIN (FORMAT csv)", buffer)
    cursor.execute(
        f"INSERT INTO transactions ({COLUMNS}) SELECT {COLUMNS} FROM incoming_transactions"
        " ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id,"
        " extract(epoch FROM clock_timestamp() - received_at)::float8"
    )
    return cursor.fetchall()


def _drop_known(session: Session, messages: list[Message], outcome: Outcome) -> list[Message]:
    """Drops ids already stored or parked: same content is a duplicate, else a conflict."""
    if not messages:
        return []
    known = dict(
        session.execute(
            text(
                "SELECT transaction_id, content_hash FROM transactions"
                " WHERE transaction_id = ANY(:ids)"
                " UNION ALL "
                "SELECT transaction_id, content_hash FROM parked_transactions"
                " WHERE transaction_id = ANY(:ids)"
            ),
            {"ids": [m.body["transaction_id"] for m in messages]},
        ).all()
    )
    fresh = []
    for m in messages:
        existing = known.get(m.body["transaction_id"])
        if existing is None:
            fresh.append(m)
        elif bytes(existing) == m.content_hash:
            outcome.duplicates += 1
        else:
            outcome.reject(m, "duplicate_conflict", {"reason": "another transaction has this id"})
    return fresh


def _park(session: Session, messages: list[Message], until: datetime) -> None:
    rows = [
        (
            m.body["transaction_id"],
            m.body["product_id"],
            Json(orjson.loads(m.payload())),
            m.content_hash,
            m.topic,
            m.partition,
            m.offset,
            m.item,
            until,
        )
        for m in messages
    ]
    cursor = session.connection().connection.cursor()
    execute_values(
        cursor,
        """
        INSERT INTO parked_transactions (transaction_id, product_id, message, content_hash,
            kafka_topic, kafka_partition, kafka_offset, kafka_item, expires_at)
        VALUES %s ON CONFLICT (transaction_id) DO NOTHING
        """,
        rows,
    )


def record_rejections(session: Session, outcome: Outcome) -> None:
    insert_rejections(session.connection().connection.cursor(), outcome.rejections)


def process_messages(session: Session, messages: list[Message], now: datetime) -> Outcome:
    """Everything a chunk does, inside the caller's database transaction."""
    outcome = Outcome()
    for m in messages:
        decode(m)
        if m.problem:
            outcome.reject(m, "malformed_message", {"problem": m.problem})
    good = [m for m in messages if not m.problem]
    products = [m for m in good if m.kind == PRODUCT]
    released = []
    if products:
        arrived = upsert_products(session, products)
        outcome.products = len(arrived)
        released = take_parked(session, product_ids=arrived)
    window = timedelta(seconds=get_settings().unknown_product_window_seconds)
    store_transactions(
        session, [m for m in good if m.kind == TRANSACTION], outcome, park_until=now + window
    )
    if released:
        store_transactions(session, released, outcome, park_until=None)
    record_rejections(session, outcome)
    return outcome


def take_parked(
    session: Session,
    *,
    product_ids: list[str] | None = None,
    expired_before: datetime | None = None,
) -> list[Message]:
    """Removes and returns parked transactions (of these products, or expired ones)."""
    where = "product_id = ANY(:ids)" if product_ids is not None else "expires_at < :before"
    rows = session.execute(
        text(
            f"""
            DELETE FROM parked_transactions WHERE transaction_id IN (
                SELECT transaction_id FROM parked_transactions WHERE {where}
                ORDER BY transaction_id FOR UPDATE SKIP LOCKED LIMIT 10000)
            RETURNING message, kafka_topic, kafka_partition, kafka_offset, kafka_item
            """
        ),
        {"ids": product_ids, "before": expired_before},
    ).all()
    messages = []
    for body, topic, partition, offset, item in rows:
        m = Message(topic, partition, offset, TRANSACTION, orjson.dumps(body), item=item)
        decode(m)
        messages.append(m)
    return messages


def count_outcome(outcome: Outcome) -> None:
    """Metrics, once the outcome is committed."""
    for name in ("stored", "duplicates", "parked"):
        TRANSACTIONS.labels(name.removesuffix("s")).inc(getattr(outcome, name))
    TRANSACTIONS.labels("rejected").inc(outcome.rejected)
    for rejection in outcome.rejections:
        REJECTIONS.labels(rejection.reason).inc()
    PRODUCTS.inc(outcome.products)
    for seconds in outcome.latencies:
        ACCEPTED_TO_STORED.observe(seconds)


# Errors that say the database is busy or gone, not that the messages are wrong: the
# chunk fails whole and is tried again.
TRANSIENT = (
    psycopg2.errors.QueryCanceled,
    psycopg2.errors.DeadlockDetected,
    psycopg2.errors.SerializationFailure,
    psycopg2.errors.LockNotAvailable,
    psycopg2.errors.AdminShutdown,
    psycopg2.errors.CannotConnectNow,
)


def database_error(exc: BaseException) -> dict[str, str]:
    """The database's own words (and SQLSTATE) for a rejection's details."""
    orig = getattr(exc, "orig", None) or exc
    error = (getattr(orig, "pgerror", None) or str(orig) or type(orig).__name__).strip()
    details = {"error": printable(error.removeprefix("ERROR:").strip())}
    if getattr(orig, "pgcode", None):
        details["sqlstate"] = orig.pgcode
    return details


def _answers(session: Session) -> bool:
    try:
        session.execute(text("SELECT 1"))
        return True
    except Exception:  # any failure means the connection is unusable
        return False


def process_isolating(session: Session, messages: list[Message], now: datetime) -> Outcome:
    """process_messages, with poison isolated: when the database refuses part of a chunk,
    that part is halved (each half in a savepoint) until each message it refuses is alone;
    those are rejected at stage `storage` with the database's error, and the rest is
    stored. A chunk with one such message costs about twice its normal work."""
    try:
        with session.begin_nested():
            return process_messages(session, messages, now)
    except Exception as exc:
        # A connection that still answers after the savepoint's rollback means the data
        # was refused (whatever the error's class: an index row too large is an
        # OperationalError too); one that does not means the chunk is tried again later.
        if isinstance(getattr(exc, "orig", exc), TRANSIENT) or not _answers(session):
            raise
        if len(messages) == 1:
            refused = database_error(exc)
            logger.warning(
                "message refused by the database; rejected",
                extra={"offset": messages[0].offset, **refused},
            )
            outcome = Outcome()
            outcome.reject(messages[0], "storage_error", refused, stage="storage")
            record_rejections(session, outcome)
            return outcome
        half = len(messages) // 2
        outcome = process_isolating(session, messages[:half], now)
        outcome.add(process_isolating(session, messages[half:], now))
        return outcome


def _note_attempt(chunk_id: uuid.UUID, *, error: BaseException | None = None) -> None:
    """Counts an attempt on the chunk's row (or its failure, with the error), in a
    transaction of its own: the processor gives a chunk up after
    PROCESSOR_CHUNK_MAX_ATTEMPTS, and re-sends a failed one without waiting for the
    timeout. Best effort: losing a count to a crash is harmless."""
    sql = (
        "UPDATE ingest_chunks SET attempts = attempts + 1 WHERE chunk_id = :id"
        if error is None
        else "UPDATE ingest_chunks SET failures = failures + 1, last_error = :error"
        " WHERE chunk_id = :id"
    )
    try:
        with default_engine().begin() as conn:
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            conn.execute(
                text(sql),
                {"id": chunk_id, "error": error and database_error(error)["error"]},
            )
    except Exception:  # the database may be what failed
        logger.warning("could not count the chunk's attempt", exc_info=True)


@app.task(name=STORE_CHUNK)
def store_chunk(chunk_id: str, items: list[list]) -> dict:
    """Stores one chunk and marks it finished, in one database transaction."""
    messages = [m for item in items for m in items_of(Message.from_item(item))]
    chunk = uuid.UUID(chunk_id)
    _note_attempt(chunk)
    try:
        with session_scope() as session:
            outcome = process_isolating(session, messages, datetime.now(UTC))
            session.execute(
                text(
                    # An upsert: the row may have been purged as stale while this chunk
                    # waited, and its processor still needs to see it finished.
                    "INSERT INTO ingest_chunks AS c (chunk_id, messages, finished_at, stored,"
                    " duplicates, rejected, parked)"
                    " VALUES (:chunk_id, :messages, now(), :stored, :duplicates, :rejected,"
                    " :parked)"
                    " ON CONFLICT (chunk_id) DO UPDATE SET finished_at = now(),"
                    " stored = EXCLUDED.stored, duplicates = EXCLUDED.duplicates,"
                    " rejected = EXCLUDED.rejected, parked = EXCLUDED.parked"
                ),
                {
                    "chunk_id": chunk,
                    "messages": len(items),
                    "stored": outcome.stored,
                    "duplicates": outcome.duplicates,
                    "rejected": outcome.rejected,
                    "parked": outcome.parked,
                },
            )
    except Exception as exc:
        _note_attempt(chunk, error=exc)
        raise
    count_outcome(outcome)
    logger.info(
        "chunk stored",
        extra={
            "chunk_id": chunk_id,
            "records": len(items),
            "items": len(messages),
            "stored": outcome.stored,
            "duplicates": outcome.duplicates,
            "rejected": outcome.rejected,
            "parked": outcome.parked,
        },
    )
    return {"stored": outcome.stored, "rejected": outcome.rejected}


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
