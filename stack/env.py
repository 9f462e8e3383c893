"""Prints, as shell assignments, what the local stack needs from the project's settings.

The servers' ports, credentials and folders come from the same settings every
service reads (`config.py`, `.env`), so they cannot disagree.
"""

import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config import PROJECT_ROOT, STATE_DIR, get_settings
from db.broker import QUEUES


def main() -> None:
    settings = get_settings()
    db = settings.database
    kafka_port = settings.kafka_bootstrap_servers[0].rpartition(":")[2]
    values = {
        "STACK_ROOT": PROJECT_ROOT,
        "STACK_LOCAL": STATE_DIR,
        "LOG_DIR": settings.log_dir,
        "PGHOST": db.host,
        "PGPORT": db.port or 5432,
        "PGUSER_APP": db.username,
        "PGPASSWORD_APP": db.password or "",
        "PGDATABASE_APP": db.database,
        "PGUSER_GRAFANA": settings.grafana_db_user,
        "PGPASSWORD_GRAFANA": settings.grafana_db_password,
        # Set by stack/lib.sh; here so that a running process manager that lacks it restarts.
        "ALLOW_EXAMPLE_KEYS": str(settings.allow_example_keys).lower(),
        "KAFKA_PORT": kafka_port,
        "KAFKA_CONTROLLER_PORT": settings.kafka_controller_port,
        "KAFKA_HEAP": settings.kafka_heap,
        "PROMETHEUS_PORT": settings.prometheus_port,
        "ALERTMANAGER_PORT": settings.alertmanager_port,
        "POSTGRES_EXPORTER_PORT": settings.postgres_exporter_port,
        "KAFKA_METRICS_PORT": settings.kafka_metrics_port,
        "PROCESS_EXPORTER_PORT": settings.process_exporter_port,
        # The exporter reads the statistics as the application's role (pg_read_all_stats).
        "POSTGRES_EXPORTER_DSN": settings.database.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        + "?sslmode=disable",
        "PROCESSOR_METRICS_PORT": settings.processor_metrics_port,
        "WORKER_METRICS_PORT": settings.worker_metrics_port,
        "NOTIFIER_METRICS_PORT": settings.notifier_metrics_port,
        "BEAT_METRICS_PORT": settings.beat_metrics_port,
        "COLLECTOR_PORT": settings.collector_port,
        "ANALYTICS_PORT": settings.analytics_port,
        "NOTIFICATIONS_PORT": settings.notifications_port,
        # The queues the worker listens on: every queue of the app.
        "WORKER_QUEUES": ",".join(QUEUES),
    }
    for name, value in values.items():
        print(f"export {name}={shlex.quote(str(value))}")


if __name__ == "__main__":
    main()
