"""A whole ingestion pipeline of its own for a test: its database, its topics and consumer
group, and real processor, Celery worker and beat processes; the collector runs in-process
(Flask's test client) against the same Kafka."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import Engine, text

import health
from config import PROJECT_ROOT, Settings
from db.broker import QUEUES
from db.session import make_engine
from streams.topics import admin_client
from tests.conftest import create_database, drop_database
from tests.helpers import example_settings, free_port, service_environment, wait_until
from web.ingestion.app import create_app

BIN = Path(sys.executable).parent
INGEST_KEY = {"X-API-Key": "local-dev-ingest-key-change-me"}
ADMIN_KEY = {"X-API-Key": "local-dev-admin-key-change-me"}


def worker_command(hostname: str) -> list[str]:
    return [
        str(BIN / "celery"),
        "-A",
        "tasks.worker",
        "worker",
        "--queues",
        ",".join(QUEUES),
        "--concurrency",
        "2",
        "--hostname",
        hostname,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


class Pipeline:
    def __init__(
        self, settings: Settings, admin_engine: Engine, template: str, folder: Path, **overrides
    ):
        self.run_id = uuid.uuid4().hex[:10]
        self.admin_engine = admin_engine
        self.folder = folder
        self.db_name = f"salesflow_test_{self.run_id}"
        create_database(admin_engine, self.db_name, template=template)
        self.database_url = settings.database.set(database=self.db_name).render_as_string(
            hide_password=False
        )
        self.topic = f"test-transactions-{self.run_id}"
        self.notifications_topic = f"test-notifications-{self.run_id}"
        self.kafka = settings.kafka_bootstrap_servers
        admin = admin_client(settings)
        admin.create_topics(
            {self.topic: {"num_partitions": 3}, self.notifications_topic: {"num_partitions": 1}},
            wait_for_metadata=True,
        )
        admin.close()
        values = {
            "database_url": self.database_url,
            "celery_broker_url": "sqla+" + self.database_url,
            "kafka_bootstrap_servers": self.kafka,
            "kafka_topic_transactions": self.topic,
            "kafka_topic_notifications": self.notifications_topic,
            "processor_group": f"test-processor-{self.run_id}",
            "notifier_group": f"test-notifier-{self.run_id}",
            "log_dir": folder / "logs",
            "unknown_product_window_seconds": 4.0,
            "processor_chunk_timeout_seconds": 5.0,
            "high_value_threshold": 1000,
        } | overrides
        self.settings = example_settings(**values)
        self.env = service_environment(
            PROJECT_ROOT / ".env.example",
            **{
                name.upper(): ",".join(value) if isinstance(value, list) else str(value)
                for name, value in values.items()
            },
        )
        self.engine = make_engine(self.database_url)
        self.client = create_app(self.settings).test_client()
        self.processes: dict[str, subprocess.Popen] = {}
        # The port of each process's /metrics and /ready (health.py), by process name.
        self.health_ports: dict[str, int] = {}
        self.restarts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.keeper: threading.Thread | None = None
        self.closed = False

    # --- processes --------------------------------------------------------------------
    def ready(self, name: str) -> bool:
        """What the process's /ready says (health.py)."""
        return health.ask(self.health_ports[name])[0]

    def command(self, name: str) -> list[str]:
        if name.startswith("processor"):
            return [sys.executable, "-m", "consumers.processor"]
        if name == "collector":  # on COLLECTOR_PORT, as the stack runs it
            return [str(BIN / "gunicorn"), "--config", "web/ingestion/gunicorn_conf.py"]
        if name.startswith("notifier"):
            return [sys.executable, "-m", "consumers.notifier"]
        if name.startswith("worker"):
            return worker_command(f"{name}-{self.run_id}@%h")
        if name == "beat":
            return [
                str(BIN / "celery"),
                "-A",
                "tasks.celery_app",
                "beat",
                "--schedule",
                str(self.folder / "beat-schedule"),
            ]
        raise ValueError(name)

    def start(self, *names: str) -> None:
        with self.lock:
            for name in names:
                self._spawn(name)
        if self.keeper is None:
            self.keeper = threading.Thread(target=self._restart_on_request, daemon=True)
            self.keeper.start()

    def wait_ready(self, *names: str, timeout: float = 60) -> None:
        """Until each process answers ready: a consumer holds its partitions, the worker
        takes tasks, beat ticks (health.py)."""
        for name in names:
            wait_until(lambda n=name: self.ready(n), timeout=timeout, what=f"{name} ready")

    def _spawn(self, name: str) -> None:
        ports = {service: free_port() for service in ("processor", "worker", "notifier", "beat")}
        env = self.env | {f"{s.upper()}_METRICS_PORT": str(port) for s, port in ports.items()}
        for service, port in ports.items():
            if name.startswith(service):
                self.health_ports[name] = port
        log = open(self.folder / f"{name}.out", "ab")  # noqa: SIM115 (kept open by the child)
        self.processes[name] = subprocess.Popen(
            self.command(name),
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _restart_on_request(self) -> None:
        """Does what the process manager does for a service that exits by itself (its
        watchdog's code 3, or a crash): starts it again. Counted in `restarts`."""
        while not self.closed:
            with self.lock:
                for name, process in list(self.processes.items()):
                    if process.poll() is not None:
                        self.restarts[name] = self.restarts.get(name, 0) + 1
                        self._spawn(name)
            time.sleep(0.5)

    def kill(self, name: str) -> None:
        """SIGKILL to the process and all its children (a Celery worker's pool included)."""
        with self.lock:
            process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self, name: str) -> None:
        """SIGTERM to the service's main process, as supervisord and Compose send it (sent
        to a Celery worker's whole group, it kills the pool under the worker, which then
        takes half a minute to stop); whatever is left of the group after it exits, or
        after 30 s, is killed."""
        with self.lock:
            process = self.processes.pop(name)
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def log_tails(self, lines: int = 40) -> str:
        """The end of every process's output, for a failed test's report."""
        parts = []
        for path in sorted(self.folder.glob("*.out")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name} ---\n" + "\n".join(tail))
        return "\n".join(parts)

    def close(self) -> None:
        self.closed = True
        for name in list(self.processes):
            self.stop(name)
        # Its producer would otherwise ask for the deleted topics for the rest of the run.
        self.client.application.extensions["publisher"].close()
        self.engine.dispose()
        drop_database(self.admin_engine, self.db_name)
        admin = admin_client(self.settings)
        admin.delete_topics([self.topic, self.notifications_topic])
        admin.close()

    # --- the API and the tables ---------------------------------------------------------
    def post(self, path: str, body, headers=INGEST_KEY):
        return self.client.post(f"/api/v1/{path}", json=body, headers=headers)

    def scalar(self, sql: str, **params):
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(text(sql), params).mappings()]

    def stored(self, ids: list[str]) -> dict[str, dict]:
        rows = self.rows("SELECT * FROM transactions WHERE transaction_id = ANY(:ids)", ids=ids)
        return {r["transaction_id"]: r for r in rows}

    def rejected(self, ids: list[str]) -> list[dict]:
        return self.rows(
            "SELECT * FROM rejected_transactions WHERE transaction_id = ANY(:ids) ORDER BY id",
            ids=ids,
        )

    def wait_stored(self, ids: list[str], timeout: float = 30) -> dict[str, dict]:
        def all_stored():
            found = self.stored(ids)
            return found if len(found) == len(set(ids)) else None

        return wait_until(all_stored, timeout=timeout, what=f"{len(set(ids))} stored transactions")

    def wait_rejected(self, ids: list[str], count: int, timeout: float = 30) -> list[dict]:
        def enough():
            found = self.rejected(ids)
            return found if len(found) >= count else None

        return wait_until(enough, timeout=timeout, what=f"{count} rejections")

    def lag(self) -> int:
        """Messages on the topic past the group's committed offsets."""
        admin = admin_client(self.settings)
        consumer = KafkaConsumer(bootstrap_servers=self.kafka)
        try:
            partitions = [
                TopicPartition(self.topic, p) for p in consumer.partitions_for_topic(self.topic)
            ]
            ends = consumer.end_offsets(partitions)
            group = self.settings.processor_group
            committed = admin.list_group_offsets(group).get(group, {})
        finally:
            consumer.close()
            admin.close()
        return sum(
            end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items()
        )

    def wait_idle(self, timeout: float = 30) -> None:
        """Until every message on the topic is stored and its offset committed."""
        wait_until(
            lambda: self.lag() == 0, timeout=timeout, what="the processor to commit everything"
        )
