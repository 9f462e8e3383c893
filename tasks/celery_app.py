"""The Celery application: broker on PostgreSQL (kombu's SQLAlchemy transport; queue
names in db/broker.py), the beat schedule, and a task base class that logs and times
every task.

The transport's known limits, and how the system lives with them:
- a fetched message is marked invisible and never redelivered if the worker dies: the
  processor tracks every chunk in `ingest_chunks` and hands unfinished ones on again;
- consumed rows are never deleted: `maintenance.purge_broker` deletes them;
- no fanout, so no Celery events or remote control: tasks report through Prometheus
  and their logs instead;
- the worker polls an empty queue every `polling_interval` (1 s by default): set lower
  here on the class, since passing it as a transport option crashes kombu 5.7.
"""

from __future__ import annotations

import logging
import sys
import time

from celery import Celery, Task
from celery.signals import after_setup_logger
from kombu.transport import sqlalchemy as kombu_sqlalchemy

from config import get_settings
from db.broker import INGEST_QUEUE, MAINTENANCE_QUEUE

logger = logging.getLogger(__name__)

BROKER_POLLING_INTERVAL = 0.05

kombu_sqlalchemy.Transport.polling_interval = BROKER_POLLING_INTERVAL


class LoggedTask(Task):
    """Logs each run's start, end and duration with the task's id."""

    def __call__(self, *args, **kwargs):
        started = time.monotonic()
        extra = {"task": self.name, "task_id": self.request.id}
        try:
            result = super().__call__(*args, **kwargs)
        except Exception:
            logger.exception("task failed", extra=extra)
            raise
        logger.info("task done", extra=extra | {"seconds": round(time.monotonic() - started, 4)})
        return result


def create_celery() -> Celery:
    settings = get_settings()
    app = Celery("salesflow", task_cls=LoggedTask)
    app.conf.update(
        broker_url=settings.celery_broker_url,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=INGEST_QUEUE,
        # A task's name is what its broker messages and beat's entries carry: it stays
        # when the code moves (upkeep and alert checks are still `maintenance.*`).
        task_routes={
            "maintenance.*": {"queue": MAINTENANCE_QUEUE},
            "rollups.*": {"queue": MAINTENANCE_QUEUE},
        },
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.worker_concurrency,
        worker_hijack_root_logger=False,
        timezone="UTC",
        # tasks/beat.py: reconnects after a broker outage, serves /ready and /metrics.
        beat_scheduler="tasks.beat:Scheduler",
        beat_schedule={
            # tasks/ingest.py: store parked transactions whose product has arrived,
            # reject those whose window has passed.
            "release-parked-transactions": {
                "task": "maintenance.release_parked",
                "schedule": 2.0,
            },
            # tasks/upkeep.py: delete broker messages that workers have fetched.
            "purge-broker": {"task": "maintenance.purge_broker", "schedule": 60.0},
            # tasks/upkeep.py: delete chunk records left by killed processors.
            "purge-chunks": {"task": "maintenance.purge_chunks", "schedule": 600.0},
            # tasks/rollups.py: roll newly stored transactions up into the report tables
            # every ROLLUP_INTERVAL_SECONDS, or sooner when many wait (asked every 5 s).
            "rollup-sales": {
                "task": "rollups.rollup_sales",
                "schedule": min(5.0, settings.rollup_interval_seconds),
            },
            # tasks/alert_rules.py: evaluate every enabled alert rule (the Notification
            # Service's); its events go through the outbox.
            "evaluate-alert-rules": {
                "task": "maintenance.evaluate_alert_rules",
                "schedule": 60.0,
            },
            # tasks/upkeep.py: delete outbox events published OUTBOX_RETENTION_DAYS ago.
            "purge-outbox": {"task": "maintenance.purge_outbox", "schedule": 3600.0},
            # tasks/upkeep.py: delete final notification_log rows older than
            # NOTIFICATION_LOG_RETENTION_DAYS (pending ones stay).
            "purge-notification-log": {
                "task": "maintenance.purge_notification_log",
                "schedule": 3600.0,
            },
            # tasks/upkeep.py: delete alerts raised NOTIFICATION_LOG_RETENTION_DAYS ago
            # from the history (alert_events).
            "purge-alert-history": {
                "task": "maintenance.purge_alert_history",
                "schedule": 3600.0,
            },
            # tasks/upkeep.py: delete rejections replayed REJECTED_RETENTION_DAYS ago
            # (open ones stay).
            "purge-rejected": {"task": "maintenance.purge_rejected", "schedule": 3600.0},
        },
        include=[
            "tasks.ingest",
            "tasks.rollups",
            "tasks.upkeep",
            "tasks.alert_rules",
        ],
    )
    return app


app = create_celery()


@after_setup_logger.connect
def _use_service_logging(logger=None, **kwargs):
    from logs import configure_logging

    configure_logging("beat" if "beat" in sys.argv else "worker")
