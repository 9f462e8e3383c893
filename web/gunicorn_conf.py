"""gunicorn settings shared by the APIs (worker count from the settings)."""

from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

from config import get_settings
from logs import configure_logging

_settings = get_settings()
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
