"""The Celery worker's entry point (`celery -A tasks.worker worker`): the app, plus /metrics.

Prefork children run the tasks, so their metrics go through prometheus_client's
multiprocess mode. Its folder has to be chosen before prometheus_client is first
imported, and must start empty: both happen here, at the top.
"""

import os
import shutil
import tempfile
import time

from config import get_settings

_settings = get_settings()
METRICS_DIR = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    os.path.join(tempfile.gettempdir(), f"salesflow-worker-{_settings.worker_metrics_port}"),
)
shutil.rmtree(METRICS_DIR, ignore_errors=True)
os.makedirs(METRICS_DIR)

from celery.bootsteps import RUN  # noqa: E402
from celery.signals import (  # noqa: E402
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    worker_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutting_down,
)
from prometheus_client import CollectorRegistry, multiprocess  # noqa: E402

import health  # noqa: E402
from db.broker import broker_engine  # noqa: E402
from tasks import metrics  # noqa: E402
from tasks.celery_app import app  # noqa: E402
from tasks.metrics import TASK_LAST_SUCCESS, TASK_SECONDS, TASKS  # noqa: E402

__all__ = ["app"]
_started: dict[str, float] = {}


# The worker's consumer (set when it has started) and an engine on the broker's database.
_state: dict = {}


@worker_init.connect
def _serve_metrics(**_kwargs):
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    # CPU and memory of this main process and its pool, summed.
    registry.register(health.ServiceProcesses(os.getpid))
    # Every task's series exist from the start (at 0), so that rates and alerts see a
    # first failure.
    app.loader.import_default_modules()
    for name in app.tasks:
        if not name.startswith("celery."):
            for outcome in ("succeeded", "failed", "retried"):
                TASKS.labels(name, outcome).inc(0)
    metrics.ROLLUP_INTERVAL.set(_settings.rollup_interval_seconds)
    metrics.REJECTION_BURST_THRESHOLD.set(_settings.rejection_burst_threshold)
    metrics.REJECTION_BURST_WINDOW.set(_settings.rejection_burst_window_seconds)
    _state["broker"] = broker_engine("worker")
    health.serve(_settings.worker_metrics_port, _settings.http_bind_host, ready, registry)


@worker_ready.connect
def _consumer_started(sender=None, **_kwargs):
    _state["consumer"] = sender


@worker_shutting_down.connect
def _consumer_stopping(**_kwargs):
    _state.pop("consumer", None)


def ready() -> tuple[bool, dict]:
    """Ready while the consumer runs, the pool has live processes and the broker answers:
    then a task sent now is taken."""
    consumer = _state.get("consumer")
    running = consumer is not None and consumer.blueprint.state == RUN
    processes = consumer.pool.num_processes if running else 0
    broker = health.database(_state["broker"])
    checks = {
        "consumer": "running" if running else "not running",
        "processes": processes,
        "broker": broker,
    }
    return running and processes > 0 and broker == "ok", checks


@worker_process_shutdown.connect
def _forget_child(**_kwargs):
    multiprocess.mark_process_dead(os.getpid())


@task_prerun.connect
def _task_started(task_id=None, **_kwargs):
    _started[task_id] = time.monotonic()


@task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **_kwargs):
    started = _started.pop(task_id, None)
    if started is not None:
        TASK_SECONDS.labels(task.name).observe(time.monotonic() - started)
    if state == "SUCCESS":
        TASKS.labels(task.name, "succeeded").inc()
        TASK_LAST_SUCCESS.labels(task.name).set(time.time())


@task_failure.connect
def _task_failed(sender=None, **_kwargs):
    TASKS.labels(sender.name, "failed").inc()


@task_retry.connect
def _task_retried(sender=None, **_kwargs):
    TASKS.labels(sender.name, "retried").inc()
