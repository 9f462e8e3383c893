"""gunicorn settings of the Data Collector: `gunicorn -c web/ingestion/gunicorn_conf.py`.

With several workers, /metrics adds up all of them through prometheus_client's
multiprocess mode, whose folder must be set before prometheus_client is first
imported and must start empty: both happen here, in the master, before it forks.
"""

import os
import shutil
import tempfile

from config import get_settings

_settings = get_settings()
_metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR",
    os.path.join(tempfile.gettempdir(), f"salesflow-collector-{_settings.collector_port}"),
)
shutil.rmtree(_metrics_dir, ignore_errors=True)
os.makedirs(_metrics_dir)

from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics  # noqa: E402

from logs import configure_logging  # noqa: E402

wsgi_app = "web.ingestion.app:create_app()"
bind = f"{_settings.http_bind_host}:{_settings.collector_port}"
workers = _settings.collector_workers
worker_class = "gthread"
threads = 8
timeout = 60
graceful_timeout = 20
accesslog = None


def post_worker_init(worker):
    configure_logging("collector")


def child_exit(server, worker):
    GunicornInternalPrometheusMetrics.mark_process_dead_on_child_exit(worker.pid)
