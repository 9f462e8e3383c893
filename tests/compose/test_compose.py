"""The system as containers: `make compose-up` on a copy of the project, as a user would
run it, under a project name and on published ports of its own (the local stack keeps
its own). Where no image registry is reachable, compose-up builds the local stand-ins.

The tests run in the order written: up from nothing, the data path, monitoring and logs,
crashes, then down and up again, and clean at the end.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import pytest
import requests

from config import PROJECT_ROOT, Settings
from tests.helpers import free_port, prometheus_query, wait_until

PROJECT = "salesflow-check"
SERVICES = {"postgres", "postgres-exporter", "kafka", "prometheus", "alertmanager",
            "collector", "analytics", "notifications", "processor", "worker", "notifier",
            "beat"}  # fmt: skip
PYTHON_SERVICES = {"collector", "analytics", "notifications", "processor", "worker", "notifier",
                   "beat"}  # fmt: skip
RUN = uuid.uuid4().hex[:8]
# The first test's setup is compose-up, which on a machine without the images builds
# them all (about 6 minutes here); each wait inside a test has its own bound.
pytestmark = pytest.mark.timeout(1800)


class Deployment:
    """A copy of the project's files, run with make compose-* under its own name."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.ports = {
            name: free_port() for name in ("collector", "analytics", "notifications", "prometheus")
        }
        # This process's environment without any setting: the deployment reads its own .env.
        self.env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
        self.env |= {
            "COMPOSE_PROJECT_NAME": PROJECT,
            "COLLECTOR_PORT": str(self.ports["collector"]),
            "ANALYTICS_PORT": str(self.ports["analytics"]),
            "NOTIFICATIONS_PORT": str(self.ports["notifications"]),
            "PROMETHEUS_PORT": str(self.ports["prometheus"]),
            "GRAFANA_PORT": str(free_port()),
        }

    def make(self, target: str, timeout: float = 1800) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["make", target], cwd=self.folder, env=self.env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    def compose(self, *args: str, timeout: float = 120) -> str:
        files = ["-f", "docker-compose.yml"]
        if (self.folder / ".local/compose/images").read_text().strip() == "local":
            files += ["-f", "stack/compose.local.yml"]
        result = subprocess.run(
            ["docker", "compose", *files, *args], cwd=self.folder, env=self.env,
            capture_output=True, text=True, timeout=timeout, check=True,
        )  # fmt: skip
        return result.stdout

    def containers(self) -> list[dict]:
        """Every container of the project, running or not (docker compose ps -a)."""
        out = self.compose("ps", "-a", "--format", "json")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def inspect(self, service: str) -> dict:
        container = self.compose("ps", "-a", "-q", service).split()[0]
        out = subprocess.run(
            ["docker", "inspect", container], capture_output=True, text=True, check=True
        ).stdout
        return json.loads(out)[0]

    def setting(self, name: str) -> str:
        for line in (self.folder / ".env").read_text().splitlines():
            if line.startswith(f"{name}="):
                return line.partition("=")[2]
        raise KeyError(name)

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"


def copy_project(target: Path) -> None:
    """The project's files as a clone has them (tracked, and new ones not ignored)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT_ROOT, capture_output=True, check=True,
    ).stdout.split(b"\0")  # fmt: skip
    for name in filter(None, files):
        source = PROJECT_ROOT / name.decode()
        if source.is_file():
            destination = target / name.decode()
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(source.read_bytes())
            destination.chmod(source.stat().st_mode)


@pytest.fixture(scope="module")
def system(tmp_path_factory) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path_factory.mktemp("deploy"))
    copy_project(deployment.folder)
    # From nothing: no containers or volumes of this project are left from an earlier run.
    deployment.make("compose-clean")
    started = time.monotonic()
    result = deployment.make("compose-up")
    deployment.up_seconds = time.monotonic() - started
    deployment.up_output = result.stdout
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    print(f"make compose-up took {deployment.up_seconds:.0f} s")
    yield deployment
    deployment.make("compose-clean")


def test_compose_up_starts_every_service_healthy_and_migrates_once(system):
    containers = {c["Service"]: c for c in system.containers()}
    assert SERVICES | {"migrate", "kafka-jmx-agent", "process-exporter"} <= set(containers)
    for service in SERVICES:
        assert containers[service]["State"] == "running", containers[service]
        assert containers[service]["Health"] == "healthy", containers[service]
    # Its official image has nothing to run a healthcheck with: its health is its target's up.
    assert containers["process-exporter"]["State"] == "running"
    for one_shot in ("migrate", "kafka-jmx-agent"):
        finished = system.inspect(one_shot)
        assert finished["State"]["Status"] == "exited", one_shot
        assert finished["State"]["ExitCode"] == 0, one_shot
        assert finished["RestartCount"] == 0, one_shot
        assert [c["Service"] for c in system.containers()].count(one_shot) == 1, one_shot
    # The keys are fresh, not the example's (which the services would refuse).
    assert "change-me" not in system.setting("INGEST_API_KEYS")
    # It says where the APIs answer, on the published ports.
    assert f"http://127.0.0.1:{system.ports['collector']}/docs" in system.up_output
    assert f"http://127.0.0.1:{system.ports['analytics']}/docs" in system.up_output
    assert f"http://127.0.0.1:{system.ports['notifications']}/docs" in system.up_output
    ready = requests.get(system.url("notifications", "/ready"), timeout=10)
    assert ready.json() == {"status": "ready", "checks": {"database": "ok"}}


def test_the_compose_file_is_valid_for_compose_itself(system):
    system.compose("config", "--quiet")


def products(n: int) -> list[dict]:
    categories = [f"compose-{RUN}-{c}" for c in ("coffee", "tea", "cocoa")]
    return [
        {"product_id": f"c-{RUN}-{i}", "name": f"Product {i}",
         "category": categories[i % 3], "price": f"{random.randint(100, 9999) / 100:.2f}"}
        for i in range(n)
    ]  # fmt: skip


def transactions(items: list[dict], n: int, prefix: str) -> list[dict]:
    """Sales of the last five days, each at or up to 20% below its list price."""
    now = datetime.now(UTC)
    sales = []
    for i in range(n):
        product = random.choice(items)
        quantity = random.randint(1, 5)
        paid = Decimal(product["price"]) * quantity * random.randint(80, 100) / 100
        sales.append({
            "transaction_id": f"{prefix}-{RUN}-{i}",
            "product_id": product["product_id"],
            "quantity": quantity,
            "total_amount": str(paid.quantize(Decimal("0.01"), ROUND_DOWN)),
            "timestamp": (now - timedelta(minutes=random.randint(1, 60 * 24 * 5))).isoformat(),
        })  # fmt: skip
    return sales


def post(system: Deployment, path: str, body: dict) -> None:
    key = {"X-API-Key": system.setting("INGEST_API_KEYS").split(",")[0]}
    reply = requests.post(system.url("collector", path), json=body, headers=key, timeout=30)
    assert reply.status_code == 202, reply.text
    assert not reply.json().get("rejected"), reply.text


def summary(system: Deployment, **params) -> dict:
    since = (datetime.now(UTC) - timedelta(days=10)).date().isoformat()
    until = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    reply = requests.get(
        system.url("analytics", "/api/v1/analytics/summary"),
        params={"from": since, "to": until, **params}, timeout=30,
    )  # fmt: skip
    assert reply.status_code == 200, reply.text
    return reply.json()


def oracle(sales: list[dict], field: str, value: str, catalog: dict[str, dict]) -> dict:
    """Totals computed straight from what was posted."""
    mine = [s for s in sales if catalog[s["product_id"]][field] == value]
    revenue = sum((Decimal(s["total_amount"]) for s in mine), Decimal(0))
    return {"revenue": float(revenue), "transactions": len(mine),
            "quantity": sum(s["quantity"] for s in mine)}  # fmt: skip


CATALOG: dict[str, dict] = {}
POSTED: list[dict] = []


def test_sales_posted_to_the_collector_are_exactly_in_the_reports(system):
    items = products(30)
    CATALOG.update({p["product_id"]: p for p in items})
    post(system, "/api/v1/products/batch", {"products": items})
    sales = transactions(items, 600, "first")
    for start in range(0, len(sales), 200):
        post(system, "/api/v1/transactions/batch", {"transactions": sales[start : start + 200]})
    POSTED.extend(sales)
    for category in sorted({p["category"] for p in items}):
        expected = oracle(sales, "category", category, CATALOG)

        def matches(category=category, expected=expected):
            got = summary(system, category=category)
            return {k: got[k] for k in expected} == expected

        wait_until(matches, timeout=120, interval=1, what=f"the reports of {category}")
    one = items[0]["product_id"]
    got = summary(system, product_id=one)
    assert {k: got[k] for k in ("transactions", "quantity")} == {
        k: v for k, v in oracle(sales, "product_id", one, CATALOG).items() if k != "revenue"
    }


def test_prometheus_inside_compose_scrapes_every_target_up(system):
    wanted = PYTHON_SERVICES | {"prometheus", "alertmanager", "postgres", "kafka", "processes"}

    seen: dict[str, str] = {}

    def targets():
        reply = requests.get(system.url("prometheus", "/api/v1/targets"), timeout=10).json()
        active = reply["data"]["activeTargets"]
        services = {t["labels"]["service"]: t["health"] for t in active}
        seen.clear()
        seen.update({t["labels"]["service"]: t["lastError"] or t["health"] for t in active})
        return services if wanted <= set(services) and set(services.values()) == {"up"} else None

    try:
        found = wait_until(targets, timeout=90, interval=2, what="every target up")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the targets: {seen}") from None
    assert set(found) == wanted
    # The process exporter finds every component's processes in the host's table.
    resident = 'namedprocess_namegroup_memory_bytes{memtype="resident"} > 0'
    groups = {
        r["metric"]["groupname"] for r in prometheus_query(system.url("prometheus", ""), resident)
    }
    assert groups >= SERVICES, SERVICES - groups


def test_each_python_service_writes_its_log_file_on_the_logs_volume(system):
    listing = system.compose("exec", "-T", "collector", "ls", "/var/log/salesflow")
    files = set(listing.split())
    assert {f"{service}.log" for service in PYTHON_SERVICES} <= files, files
    # Docker's own log of each container is bounded.
    config = system.inspect("processor")["HostConfig"]["LogConfig"]
    assert config == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}


def crash(system: Deployment, service: str) -> int:
    """SIGKILL to the container's main process, as a crash or the OOM killer sends it
    (`docker kill` counts as a stop by hand, which no restart policy undoes)."""
    state = system.inspect(service)
    subprocess.run(["kill", "-9", str(state["State"]["Pid"])], check=True)
    return state["RestartCount"]


def stored(system: Deployment, prefix: str) -> tuple[int, int]:
    """(rows, distinct ids) of the transactions whose id starts with prefix."""
    query = (
        "SELECT count(*), count(DISTINCT transaction_id) FROM transactions "
        f"WHERE transaction_id LIKE '{prefix}-{RUN}-%'"
    )
    out = system.compose(
        "exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "sales", "-tAc", query
    )
    rows, distinct = out.strip().split("|")
    return int(rows), int(distinct)


def test_killed_processor_and_worker_are_restarted_and_the_stream_is_stored_once(system):
    items = list(CATALOG.values())
    sales = transactions(items, 2000, "stream")
    # Repeats: every tenth batch is posted twice (a client retrying).
    batches = [sales[i : i + 100] for i in range(0, len(sales), 100)]
    errors: list[str] = []

    def stream():
        try:
            for i, batch in enumerate(batches):
                post(system, "/api/v1/transactions/batch", {"transactions": batch})
                if i % 10 == 0:
                    post(system, "/api/v1/transactions/batch", {"transactions": batch})
                time.sleep(0.3)
        except AssertionError as exc:
            errors.append(str(exc))

    poster = threading.Thread(target=stream)
    poster.start()
    time.sleep(1.5)
    restarts = {service: crash(system, service) for service in ("processor", "worker")}
    poster.join()
    assert not errors, errors

    def restarted():
        return all(
            system.inspect(s)["RestartCount"] > n and system.inspect(s)["State"]["Running"]
            for s, n in restarts.items()
        )

    wait_until(restarted, timeout=60, interval=1, what="the restart policy")
    # A worker killed with a chunk in hand loses its broker message; the processor sends
    # the chunk again after PROCESSOR_CHUNK_TIMEOUT_SECONDS (60 s by default).
    wait_until(lambda: stored(system, "stream") == (len(sales), len(sales)), timeout=300,
               interval=2, what="the whole stream stored")  # fmt: skip
    time.sleep(5)
    assert stored(system, "stream") == (len(sales), len(sales))
    for service in ("processor", "worker"):
        wait_until(lambda s=service: system.inspect(s)["State"]["Health"]["Status"] == "healthy",
                   timeout=90, interval=2, what=f"{service} healthy again")  # fmt: skip


def test_down_then_up_keeps_the_data_and_clean_leaves_nothing(system):
    before = {c: summary(system, category=c) for c in {p["category"] for p in CATALOG.values()}}
    result = system.make("compose-down")
    assert result.returncode == 0, result.stderr
    assert system.containers() == []
    result = system.make("compose-up")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = {c: summary(system, category=c) for c in before}
    assert after == before
    assert stored(system, "stream")[0] == 2000
    result = system.make("compose-clean")
    assert result.returncode == 0, result.stderr
    assert system.containers() == []
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert volumes == []
