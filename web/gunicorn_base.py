"""What the APIs' gunicorn settings share (see web/*/gunicorn_conf.py).

With several workers, /metrics adds up all of them through prometheus_client's
multiprocess mode, whose folder must be set before prometheus_client is first imported
and must start empty: both happen here, in the master, before it forks.
"""

import gc
import logging
import os
import shutil
import tempfile

from config import get_settings
from logs import configure_logging


def gunicorn_settings(service: str, app: str, port: int, workers: int) -> dict:
    metrics_dir = os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR",
        os.path.join(tempfile.gettempdir(), f"salesflow-{service}-{port}"),
    )
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir)
    from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

    def post_worker_init(worker):
        configure_logging(service)
        logging.getLogger(service).info("worker started", extra={"pid": worker.pid})
        # What the app built at start-up lives as long as the worker: keeping it out of
        # the collector's scans spares each request the pauses of full collections.
        gc.freeze()

    def child_exit(server, worker):
        GunicornInternalPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)

    return {
        "wsgi_app": app,
        "bind": f"{get_settings().http_bind_host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": 8,
        "timeout": 60,
        "graceful_timeout": 20,
        "accesslog": None,
        "post_worker_init": post_worker_init,
        "child_exit": child_exit,
    }
