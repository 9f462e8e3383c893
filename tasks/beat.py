"""Celery beat's scheduler (`beat_scheduler` in tasks/celery_app.py): it recovers from a
broker that went away, and it serves /ready and /metrics on BEAT_METRICS_PORT.

Beat is the one process of which exactly one runs, so its /metrics also reads what
belongs to no single service, on each scrape: the broker's queue depth
(`celery_queue_length{queue}`, visible rows of kombu_message) and the Kafka consumer lag
of the processor's and the notifier's groups (streams/lag.py).

Ready means: the scheduler ticked within the last minute (it ticks at least every two
seconds, the shortest period of the schedule) and its last send to the broker worked.
"""

from __future__ import annotations

import contextlib
import time

from celery.beat import PersistentScheduler, SchedulingError
from celery.signals import beat_init
from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

import health
from config import get_settings
from db.broker import broker_engine, queue_depths
from streams.lag import LagCollector

# Beat's own registry: the task modules it loads declare the worker's metrics, which
# would otherwise show up here as series that never move.
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
TICKS = Counter("beat_ticks_total", "Turns of beat's scheduling loop", registry=REGISTRY)
LAST_TICK = Gauge(
    "beat_last_tick_timestamp_seconds", "When beat's loop last turned", registry=REGISTRY
)
SENT = Counter(
    "beat_sent_total",
    "Periodic tasks sent to the broker, by outcome",
    ["outcome"],
    registry=REGISTRY,
)
for _outcome in ("sent", "failed"):
    SENT.labels(_outcome).inc(0)

HEARTBEAT = health.Heartbeat(max_age=60)
_last_send = {"ok": True, "error": ""}


class Scheduler(PersistentScheduler):
    """After PostgreSQL restarted, beat's cached producer stayed bound to a closed channel,
    and every send failed with 'channel disconnected' for as long as beat ran: no rollups,
    no checks. A failed send drops the producer and its connection; the next send makes
    new ones."""

    def tick(self, *args, **kwargs):
        interval = super().tick(*args, **kwargs)
        HEARTBEAT.beat()
        TICKS.inc()
        LAST_TICK.set(time.time())
        return interval

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        try:
            result = super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        except SchedulingError as exc:
            SENT.labels("failed").inc()
            _last_send.update(ok=False, error=type(exc.__cause__ or exc).__name__)
            self._drop_connection()
            raise
        SENT.labels("sent").inc()
        _last_send.update(ok=True, error="")
        return result

    def _drop_connection(self) -> None:
        self.__dict__.pop("producer", None)
        connection = self.__dict__.pop("connection", None)
        if connection is not None:
            with contextlib.suppress(Exception):  # it is broken already
                connection.release()


def ready() -> tuple[bool, dict]:
    turning, loop = HEARTBEAT.check()
    broker = "ok" if _last_send["ok"] else f"last send failed: {_last_send['error']}"
    return turning and _last_send["ok"], {"loop": loop, "broker": broker}


class QueueDepthCollector(Collector):
    def __init__(self):
        self.engine = broker_engine("beat")

    def collect(self):
        family = GaugeMetricFamily(
            "celery_queue_length", "Broker messages no worker has fetched yet", labels=["queue"]
        )
        try:
            with self.engine.connect() as conn:
                depths = queue_depths(conn)
        except Exception:  # the database is away: no series rather than wrong ones
            return
        for queue, depth in sorted(depths.items()):
            family.add_metric([queue], depth)
        yield family


@beat_init.connect
def _serve(**_kwargs):
    settings = get_settings()
    REGISTRY.register(QueueDepthCollector())
    REGISTRY.register(LagCollector(settings, [settings.processor_group, settings.notifier_group]))
    health.serve(settings.beat_metrics_port, settings.http_bind_host, ready, REGISTRY)
