"""The alert rules whose thresholds mirror a setting follow that setting: a real Prometheus
with the project's rules scrapes services started with values other than the defaults
(as a changed .env would give them), and the rules hold at those values."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import yaml

from config import PROJECT_ROOT
from tests.helpers import free_port, prometheus_query, wait_until
from tests.integration.pipeline import Pipeline

RULES = PROJECT_ROOT / "monitoring/prometheus/rules"


@pytest.fixture(scope="module")
def pipeline(settings, admin_engine, migrated_template, tmp_path_factory):
    p = Pipeline(
        settings, admin_engine, migrated_template, tmp_path_factory.mktemp("thresholds"),
        # Not the defaults (8 chunks, 60 s, 100 rejections in 300 s): what the rules read.
        processor_max_inflight_chunks=2, processor_chunk_size=5, rollup_interval_seconds=1,
        rejection_burst_threshold=3, rejection_burst_window_seconds=60,
    )  # fmt: skip
    yield p
    p.close()


class Prometheus:
    """Prometheus with the project's rule files, scraping this pipeline's processes every
    second and evaluating every second. A process started again listens on a new port:
    `aim()` rewrites the targets file, which Prometheus watches."""

    JOBS = ("processor", "worker", "beat")

    def __init__(self, pipeline: Pipeline, folder: Path):
        self.pipeline, self.targets = pipeline, folder / "targets.json"
        self.aim()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in sorted(RULES.glob("*.yml"))],
            "scrape_configs": [
                {"job_name": "services", "file_sd_configs": [{"files": [str(self.targets)]}]}
            ],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{port}"
        wait_until(self.answers, timeout=30, what="Prometheus")

    def aim(self) -> None:
        ports = self.pipeline.health_ports
        targets = [
            {"targets": [f"127.0.0.1:{ports[job]}"], "labels": {"job": job, "service": job}}
            for job in self.JOBS
        ]
        self.targets.write_text(json.dumps(targets))

    def answers(self) -> bool:
        try:
            return requests.get(f"{self.base}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def query(self, expr: str) -> list[dict]:
        return prometheus_query(self.base, expr)

    def values(self, expr: str) -> list[float]:
        return [float(r["value"][1]) for r in self.query(expr)]

    def pending(self, alert: str) -> bool:
        return bool(self.query(f'ALERTS{{alertname="{alert}",alertstate="pending"}}'))

    def firing(self, alert: str) -> bool:
        return bool(self.query(f'ALERTS{{alertname="{alert}",alertstate="firing"}}'))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def prometheus(pipeline, tmp_path_factory):
    pipeline.start(*Prometheus.JOBS)
    pipeline.wait_ready(*Prometheus.JOBS)
    server = Prometheus(pipeline, tmp_path_factory.mktemp("prometheus"))
    yield server
    server.close()


def test_the_backlog_rule_holds_at_the_processors_own_limit(pipeline, prometheus):
    """No worker: the chunks stay in flight, and the processor stops at its limit of 2,
    well below the default 8, which the rule takes as full."""
    pipeline.stop("worker")
    try:
        # The product comes first: these transactions are stored, none rejected.
        product = {"product_id": "sku-1", "name": "Cup", "category": "Kitchen", "price": "1.00"}
        assert pipeline.post("products", product).status_code == 202
        now = datetime.now(UTC).isoformat()
        items = [
            {"transaction_id": f"t-{uuid.uuid4().hex}", "product_id": "sku-1", "quantity": 1,
             "total_amount": "1.00", "timestamp": now}
            for _ in range(40)
        ]  # fmt: skip
        answer = pipeline.post("transactions/batch", {"transactions": items})
        assert answer.status_code == 202, answer.get_json()
        wait_until(
            lambda: prometheus.pending("ProcessorBacklogFull"),
            timeout=30,
            what="ProcessorBacklogFull pending at 2 chunks in flight",
        )
        assert prometheus.values("processor_inflight_chunks") == [2]
        assert prometheus.values("processor_max_inflight_chunks") == [2]
    finally:
        pipeline.start("worker")
        prometheus.aim()
    pipeline.wait_idle(timeout=60)
    wait_until(
        lambda: not prometheus.pending("ProcessorBacklogFull"),
        timeout=30,
        what="ProcessorBacklogFull gone once the worker stored the chunks",
    )


def test_the_stale_rollup_rule_waits_ten_of_the_workers_own_intervals(pipeline, prometheus):
    """ROLLUP_INTERVAL_SECONDS=1: ten seconds without a run is stale (the default would
    wait ten minutes)."""
    wait_until(
        lambda: prometheus.query("time() - max(rollup_last_run_timestamp_seconds) < 5"),
        timeout=60,
        what="the worker's rollups, run by beat, seen by Prometheus",
    )
    assert prometheus.values("rollup_interval_seconds") == [1]
    assert not prometheus.pending("RollupStale")
    pipeline.stop("beat")  # nothing schedules the rollup any more
    try:
        stopped = time.monotonic()
        wait_until(
            lambda: prometheus.pending("RollupStale"),
            timeout=40,
            interval=0.5,
            what="RollupStale pending ten intervals after the last run",
        )
        assert time.monotonic() - stopped >= 5
    finally:
        pipeline.start("beat")
        prometheus.aim()


def test_the_rejections_rule_counts_in_the_workers_own_burst_window(pipeline, prometheus):
    """REJECTION_BURST_THRESHOLD=3 in 60 s: twenty transactions of a product that never
    comes, rejected by the worker, are a burst (the default 100 in 300 s would not be)."""
    assert not prometheus.firing("RejectionsRising")
    now = datetime.now(UTC).isoformat()
    items = [
        {"transaction_id": f"u-{uuid.uuid4().hex}", "product_id": f"never-{uuid.uuid4().hex}",
         "quantity": 1, "total_amount": "1.00", "timestamp": now}
        for _ in range(20)
    ]  # fmt: skip
    assert pipeline.post("transactions/batch", {"transactions": items}).status_code == 202
    wait_until(
        lambda: (
            pipeline.scalar(
                "SELECT count(*) FROM rejected_transactions WHERE reason = 'unknown_product'"
            )
            >= 20
        ),
        timeout=60,
        what="20 transactions rejected as unknown_product",
    )
    wait_until(
        lambda: prometheus.firing("RejectionsRising"),
        timeout=30,
        what="RejectionsRising firing at the worker's own threshold",
    )
    assert prometheus.values("rejection_burst_threshold") == [3]
    assert prometheus.values("rejection_burst_window_seconds") == [60]
