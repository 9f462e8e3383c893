"""The processor: reads the transactions topic (group `processor`, manual commits) and
hands the records to Celery workers in chunks of at most PROCESSOR_CHUNK_SIZE items (a
format-2 record's `items` header says how many it carries; a record is never split).

Kafka stays the source of truth until rows are stored. Every chunk is recorded in
`ingest_chunks` before its task is sent; the worker marks it finished in the same
database transaction that stores its rows. Offsets are committed, per partition, only
up to the last message of the longest run of finished chunks. A chunk not finished
within PROCESSOR_CHUNK_TIMEOUT_SECONDS (its worker died, or the broker lost the task)
is sent again; storing is idempotent, so a slow first attempt does no harm. On a
rebalance, chunks in flight for partitions that went to another member are forgotten:
it reads those messages again from the committed offsets, and they are stored once.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import kombu.exceptions
import sqlalchemy.exc
from celery import Celery
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import text

import health
from config import Settings, get_settings
from consumers.outbox_relay import relay_outbox
from consumers.watchdog import Watchdog
from db.broker import INGEST_QUEUE, STORE_CHUNK
from db.rejections import Rejection, insert_rejections
from db.session import default_engine
from logs import configure_logging
from streams import commits, counts, topics
from streams.messages import Message, chunk_item, items_in, items_of
from streams.topics import client_options

logger = logging.getLogger(__name__)

CHUNKS_SENT = Counter("processor_chunks_sent_total", "Chunks handed to workers", ["attempt"])
# Every series exists from the start (at 0), so that rates and alerts see its first change.
for _attempt in ("first", "again"):
    CHUNKS_SENT.labels(_attempt).inc(0)
MESSAGES = Counter("processor_messages_total", "Messages read from Kafka")
FAILED = Counter(
    "processor_chunks_failed_total",
    "Chunks given up after PROCESSOR_CHUNK_MAX_ATTEMPTS; their messages were rejected",
)
FAILED.inc(0)
COMMITTED = Counter("processor_messages_committed_total", "Messages whose offsets were committed")
INFLIGHT = Gauge("processor_inflight_chunks", "Chunks handed out and not yet stored")
HANDOFF_SECONDS = Histogram(
    "processor_handoff_seconds",
    "From a poll that returned records to their chunk's task being sent to the workers",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
)
MAX_INFLIGHT = Gauge(
    "processor_max_inflight_chunks",
    "PROCESSOR_MAX_INFLIGHT_CHUNKS: chunks in flight at which reading pauses",
)
EVENTS = Counter("processor_events_published_total", "Outbox events published to Kafka")
RELAY_INTERVAL = 1.0
# A chunk no worker has started this long after it was sent, and whose task is not in the
# broker's queue, is lost.
LOST_AFTER = 3.0
# PostgreSQL not answering: the chunks' records and Celery's broker both live there.
DATABASE_ERRORS = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    kombu.exceptions.OperationalError,
)


def records_for_chunk(records: list, limit: int) -> tuple[int, int]:
    """How many of the first records make a chunk, and the items they hold: as many
    records as hold at most `limit` items (by their `items` header), and at least one."""
    total = 0
    for count, record in enumerate(records):
        items = items_in(record.headers)
        if count and total + items > limit:
            return count, total
        total += items
    return len(records), total


@dataclass
class Chunk:
    chunk_id: uuid.UUID
    items: list[list]
    last_offsets: dict[TopicPartition, int]
    sent_at: float = 0.0
    attempts: int = 0
    finished: bool = False
    # Failures the workers reported (ingest_chunks.failures) that were answered already.
    failures_seen: int = 0
    # Attempts workers started (ingest_chunks.attempts), last seen and when last sent.
    starts_seen: int = 0
    starts_at_send: int = 0
    # Sending failed (the broker's database did not answer): send as soon as it does.
    unsent: bool = False


@dataclass
class Tracker:
    """Chunks in flight and, per partition, their order, to know what may be committed."""

    chunks: dict[uuid.UUID, Chunk] = field(default_factory=dict)
    order: dict[TopicPartition, deque[uuid.UUID]] = field(default_factory=dict)

    def add(self, chunk: Chunk) -> None:
        self.chunks[chunk.chunk_id] = chunk
        for tp in chunk.last_offsets:
            self.order.setdefault(tp, deque()).append(chunk.chunk_id)

    def committable(self) -> tuple[dict[TopicPartition, OffsetAndMetadata], list[Chunk]]:
        """Pops the finished prefix of each partition: the offsets to commit, and the
        chunks that no partition waits on any more."""
        offsets = {}
        for tp, queue in self.order.items():
            while queue and self.chunks[queue[0]].finished:
                chunk = self.chunks[queue.popleft()]
                offsets[tp] = OffsetAndMetadata(chunk.last_offsets[tp] + 1, "", -1)
        waited_on = {cid for queue in self.order.values() for cid in queue}
        done = [c for cid, c in self.chunks.items() if c.finished and cid not in waited_on]
        for chunk in done:
            del self.chunks[chunk.chunk_id]
        return offsets, done

    def forget(self, partitions: set[TopicPartition]) -> None:
        """After a rebalance: the new owner reads these partitions from the committed offsets."""
        for tp in partitions:
            self.order.pop(tp, None)
        for chunk_id in list(self.chunks):
            if not any(chunk_id in q for q in self.order.values()):
                del self.chunks[chunk_id]


class Processor:
    def __init__(self, settings: Settings):
        self.settings = settings
        # Sends only, by the task's name: none of the worker's code is loaded here.
        self.broker = Celery(
            "processor",
            broker=settings.celery_broker_url,
            broker_connection_retry_on_startup=True,
            set_as_current=False,
        )
        self.engine = default_engine()
        self.tracker = Tracker()
        self.running = True
        MAX_INFLIGHT.set(settings.processor_max_inflight_chunks)
        # What /ready reports (health.py): the loop's last turn and the group's state.
        self.heartbeat = health.Heartbeat(max_age=30)
        self.settled = False
        self.consumer = KafkaConsumer(
            **client_options(settings, "processor"),
            group_id=settings.processor_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.processor_chunk_size,
            fetch_max_bytes=64 * 1024 * 1024,
            max_poll_interval_ms=300_000,
            # Notice new partitions (and a topic that appears late) within half a minute.
            metadata_max_age_ms=30_000,
        )
        topics.subscribe(self.consumer, settings.kafka_topic_transactions, _Rebalance(self))
        self.watchdog = Watchdog(self.consumer, settings, settings.processor_group)
        self.producer = KafkaProducer(
            **client_options(settings, "processor-outbox"),
            acks="all",
            linger_ms=5,
        )
        self.last_relay = 0.0
        # It reads transactions; its outbox relay writes the notifications topic.
        counts.declare(
            produces=(settings.kafka_topic_notifications,),
            consumes=(settings.kafka_topic_transactions,),
        )
        # Records read from Kafka not in a chunk yet: waiting for room among the chunks in
        # flight, or for the database to record their chunk.
        self.backlog: list = []
        self.records_per_poll = settings.processor_chunk_size
        self.database_down_since: float | None = None
        # When the database last came back (chunks started before then are sent again).
        self.database_back_at = 0.0

    # --- the loop -------------------------------------------------------------------
    def run(self) -> None:
        logger.info("processor started", extra={"topic": self.settings.kafka_topic_transactions})
        while self.running:
            try:
                self._step()
            except DATABASE_ERRORS as exc:
                self._wait_for_database(exc)
        self._drain()

    def _step(self) -> None:
        began = time.monotonic()
        self._flow_control()
        batch = self.consumer.poll(timeout_ms=100, max_records=self.records_per_poll)
        polled = time.monotonic()
        counts.consumed(batch)
        records = [r for rs in batch.values() for r in rs]
        if records:
            MESSAGES.inc(len(records))
            self.watchdog.read()
            # (Paused partitions fetch nothing, but a rebalance resumes what it assigns.)
            self.backlog.extend(records)
        room = self.settings.processor_max_inflight_chunks - len(self.tracker.chunks)
        while self.backlog and room > 0:
            room -= 1
            count, items = records_for_chunk(self.backlog, self.settings.processor_chunk_size)
            self._send(self._new_chunk(self.backlog[:count]))
            # The next poll asks for about as many records as fill a chunk, so that a poll
            # of format-2 records does not bring many chunks' worth.
            self.records_per_poll = max(1, self.settings.processor_chunk_size * count // items)
            del self.backlog[:count]
            HANDOFF_SECONDS.observe(time.monotonic() - polled)
        self._check_chunks()
        self._relay()
        if self.database_down_since is not None:
            logger.info(
                "database answers again",
                extra={"seconds": round(time.monotonic() - self.database_down_since, 1)},
            )
            self.database_down_since = None
            self.database_back_at = began
        self.watchdog.check(busy=bool(self.tracker.chunks or self.backlog), settled=self.settled)
        self.heartbeat.beat()

    def ready(self) -> tuple[bool, dict]:
        """Ready while the loop turns, the group has settled and PostgreSQL answers."""
        turning, loop = self.heartbeat.check()
        database = "down" if self.database_down_since is not None else "ok"
        group = "settled" if self.settled else "rebalancing"
        ok = turning and self.settled and database == "ok"
        return ok, {"loop": loop, "group": group, "database": database}

    def _wait_for_database(self, exc: Exception) -> None:
        """PostgreSQL (the chunks' records and Celery's broker) does not answer: read
        nothing more, keep the group membership by polling, and try again in a second.
        Records already read wait in the backlog; chunks whose task could not be sent are
        sent as soon as the database answers."""
        if self.database_down_since is None:
            self.database_down_since = time.monotonic()
            logger.warning("database unavailable; waiting for it", extra={"error": str(exc)})
        self.consumer.pause(*self.consumer.assignment())
        self.consumer.poll(timeout_ms=1000)

    def _relay(self) -> None:
        if time.monotonic() - self.last_relay < RELAY_INTERVAL:
            return
        self.last_relay = time.monotonic()
        # On a Kafka error (logged by the relay) the events stay in the outbox for the next run.
        with contextlib.suppress(KafkaError):
            EVENTS.inc(relay_outbox(self.engine, self.producer))

    def _new_chunk(self, records) -> Chunk:
        last: dict[TopicPartition, int] = {}
        items = []
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            last[tp] = max(last.get(tp, -1), r.offset)
            items.append(chunk_item(r.topic, r.partition, r.offset, r.headers, r.value))
        chunk = Chunk(uuid.uuid4(), items, last)
        with self.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO ingest_chunks (chunk_id, messages) VALUES (:id, :n)"),
                {"id": chunk.chunk_id, "n": len(items)},
            )
        self.tracker.add(chunk)
        return chunk

    def _send(self, chunk: Chunk) -> None:
        chunk.unsent = True
        # The task id names the chunk and the attempt, so that its broker message can be
        # found (see _lost).
        self.broker.send_task(
            STORE_CHUNK,
            args=[str(chunk.chunk_id), chunk.items],
            task_id=f"{chunk.chunk_id}.{chunk.attempts + 1}",
            queue=INGEST_QUEUE,
        )
        chunk.unsent = False
        chunk.attempts += 1
        chunk.sent_at = time.monotonic()
        chunk.starts_at_send = chunk.starts_seen
        CHUNKS_SENT.labels("first" if chunk.attempts == 1 else "again").inc()

    def _lost(self, suspects: list[Chunk]) -> set[uuid.UUID]:
        """Of chunks no worker started since they were sent, those whose task is not
        waiting in the broker either: lost (seen when PostgreSQL restarted under a
        worker that had fetched the task), to be sent again at once."""
        if not suspects:
            return set()
        with self.engine.begin() as conn:
            waiting = set(
                conn.execute(
                    text(
                        "SELECT t.id FROM unnest(CAST(:ids AS text[])) AS t(id) WHERE EXISTS ("
                        " SELECT 1 FROM kombu_message m JOIN kombu_queue q ON q.id = m.queue_id"
                        " WHERE q.name = :queue AND m.visible"
                        " AND position(t.id IN m.payload) > 0)"
                    ),
                    {
                        "ids": [f"{c.chunk_id}.{c.attempts}" for c in suspects],
                        "queue": INGEST_QUEUE,
                    },
                ).scalars()
            )
        return {c.chunk_id for c in suspects if f"{c.chunk_id}.{c.attempts}" not in waiting}

    def _check_chunks(self) -> None:
        """Finished chunks may be committed. A chunk whose task could not be sent, or was
        lost, is sent (again) at once, and so is one started before the database last went
        away; one a worker failed after a short backoff; one started and not finished
        after the timeout; and one failed or started
        PROCESSOR_CHUNK_MAX_ATTEMPTS times is given up."""
        pending = [c for c in self.tracker.chunks.values() if not c.finished]
        if pending:
            with self.engine.begin() as conn:
                state = {
                    row.chunk_id: row
                    for row in conn.execute(
                        text(
                            "SELECT chunk_id, finished_at IS NOT NULL AS finished, attempts,"
                            " failures, last_error FROM ingest_chunks"
                            " WHERE chunk_id = ANY(:ids)"
                        ),
                        {"ids": [c.chunk_id for c in pending]},
                    )
                }
            timeout = self.settings.processor_chunk_timeout_seconds
            cap = self.settings.processor_chunk_max_attempts
            now = time.monotonic()
            for chunk in pending:
                if (row := state.get(chunk.chunk_id)) is not None:
                    chunk.starts_seen = row.attempts
            lost = self._lost(
                [
                    c
                    for c in pending
                    if not c.unsent
                    and c.starts_seen <= c.starts_at_send
                    and now - c.sent_at > LOST_AFTER
                    and not getattr(state.get(c.chunk_id), "finished", False)
                ]
            )
            for chunk in pending:
                row = state.get(chunk.chunk_id)
                if row is not None and row.finished:
                    chunk.finished = True
                    continue
                attempts, failures = (row.attempts, row.failures) if row else (0, 0)
                waited = now - chunk.sent_at
                if chunk.unsent:
                    self._send(chunk)
                elif chunk.chunk_id in lost:
                    logger.warning(
                        "chunk's task lost (neither started nor waiting); sending it again",
                        extra={"chunk_id": str(chunk.chunk_id), "attempts": chunk.attempts},
                    )
                    self._send(chunk)
                elif failures >= cap or (attempts >= cap and waited > timeout):
                    self._give_up(chunk, attempts, row.last_error if row else None)
                elif (
                    chunk.sent_at < self.database_back_at
                    and chunk.starts_seen > chunk.starts_at_send
                ):
                    # Started before the database went away: its worker's transaction died
                    # with the connection, and the failure may not have been recorded.
                    logger.warning(
                        "chunk started before the database went away; sending it again",
                        extra={"chunk_id": str(chunk.chunk_id), "attempts": chunk.attempts},
                    )
                    self._send(chunk)
                elif failures > chunk.failures_seen:
                    if waited > min(2.0 ** (failures - 1), timeout):
                        logger.warning(
                            "chunk failed in a worker; sending it again",
                            extra={"chunk_id": str(chunk.chunk_id), "error": row.last_error},
                        )
                        chunk.failures_seen = failures
                        self._send(chunk)
                elif waited > timeout:
                    logger.warning(
                        "chunk not stored in time; sending it again",
                        extra={"chunk_id": str(chunk.chunk_id), "attempts": chunk.attempts},
                    )
                    self._send(chunk)
        self._commit()
        INFLIGHT.set(len(self.tracker.chunks))

    def _give_up(self, chunk: Chunk, attempts: int, error: str | None) -> None:
        """Records the chunk as failed and rejects each of its messages as chunk_failed
        (raw bytes kept, replayable), so that the partitions move on past it."""
        error = error or f"a worker started it {attempts} times and never finished it"
        details = {"chunk_id": str(chunk.chunk_id), "attempts": attempts, "error": error}
        messages = [m for item in chunk.items for m in items_of(Message.from_item(item))]
        rejections = [
            Rejection(
                m.payload(),
                "chunk_failed",
                "storage",
                m.kind,
                m.topic,
                m.partition,
                m.offset,
                details,
                item=m.item,
            )
            for m in messages
        ]
        with self.engine.begin() as conn:
            insert_rejections(conn.connection.cursor(), rejections)
            conn.execute(
                text(
                    "UPDATE ingest_chunks SET failed_at = now(),"
                    " last_error = coalesce(last_error, :error) WHERE chunk_id = :id"
                ),
                {"id": chunk.chunk_id, "error": error},
            )
        chunk.finished = True
        FAILED.inc()
        logger.error(
            "chunk given up; its messages were rejected as chunk_failed",
            extra={"chunk_id": str(chunk.chunk_id), "messages": len(chunk.items), **details},
        )

    def _commit(self) -> None:
        offsets, done = self.tracker.committable()
        if offsets:
            commits.commit(self.consumer, offsets)
        if done:
            COMMITTED.inc(sum(len(c.items) for c in done))
            with self.engine.begin() as conn:
                # A failed chunk's row stays, as its record (purged by beat later).
                conn.execute(
                    text(
                        "DELETE FROM ingest_chunks WHERE chunk_id = ANY(:ids) AND failed_at IS NULL"
                    ),
                    {"ids": [c.chunk_id for c in done]},
                )

    def _flow_control(self) -> None:
        """Stops fetching while too many chunks are in flight; polling goes on (heartbeats)."""
        assigned = self.consumer.assignment()
        full = len(self.tracker.chunks) >= self.settings.processor_max_inflight_chunks
        if full or self.backlog:
            self.consumer.pause(*assigned)
        else:
            self.consumer.resume(*assigned)

    def _drain(self) -> None:
        """On shutdown: commit what finishes within a while; the rest is read again later."""
        logger.info("processor stopping: waiting for chunks in flight")
        deadline = time.monotonic() + self.settings.processor_chunk_timeout_seconds
        self.consumer.pause(*self.consumer.assignment())
        while self.tracker.chunks and time.monotonic() < deadline:
            # Polling keeps the membership alive; nothing is fetched while paused.
            self.consumer.poll(timeout_ms=100)
            self._check_chunks()
        self.consumer.close(autocommit=False)
        self.producer.close(timeout=10)

    def stop(self, *_args) -> None:
        self.running = False


class _Rebalance(ConsumerRebalanceListener):
    """Runs on kafka-python's IO thread, where nothing may block (no commit, no database)."""

    def __init__(self, processor: Processor):
        self.processor = processor

    def on_partitions_revoked(self, revoked):
        # Nothing to do yet: partitions handed straight back keep their chunks in flight.
        self.processor.settled = False
        logger.info(
            "partitions revoked", extra={"partitions": sorted(tp.partition for tp in revoked)}
        )

    def on_partitions_assigned(self, assigned):
        # Chunks of partitions now owned by another member are forgotten: it reads those
        # messages again from the committed offsets, and they are stored once.
        tracker = self.processor.tracker
        tracker.forget(set(tracker.order) - set(assigned))
        self.processor.settled = True
        logger.info(
            "partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)}
        )


def main() -> None:
    settings = get_settings()
    configure_logging("processor")
    processor = Processor(settings)
    health.serve(settings.processor_metrics_port, settings.http_bind_host, processor.ready)
    signal.signal(signal.SIGTERM, processor.stop)
    signal.signal(signal.SIGINT, processor.stop)
    processor.run()


if __name__ == "__main__":
    main()
