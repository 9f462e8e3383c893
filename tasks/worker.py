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

from celery.signals import (  # noqa: E402
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    worker_init,
    worker_process_shutdown,
)
from prometheus_client import CollectorRegistry, multiprocess, start_http_server  # noqa: E402

from tasks.celery_app import app  # noqa: E402
from tasks.metrics import TASK_SECONDS, TASKS  # noqa: E402

__all__ = ["app"]
_started: dict[str, float] = {}


@worker_init.connect
def _serve_metrics(**_kwargs):
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(
        _settings.worker_metrics_port, addr=_settings.http_bind_host, registry=registry
    )


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


@task_failure.connect
def _task_failed(sender=None, **_kwargs):
    TASKS.labels(sender.name, "failed").inc()


@task_retry.connect
def _task_retried(sender=None, **_kwargs):
    TASKS.labels(sender.name, "retried").inc()
