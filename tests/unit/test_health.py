"""health.py: /ready says what the service's own check says, /metrics stays beside it,
a loop that stopped turning is not ready, and a fork waits for a database probe."""

import contextlib
import os
import threading
import time
import types

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter

import health
from tests.helpers import free_port, wait_until


def test_a_heartbeat_is_stale_after_its_max_age_and_never_ready_before_the_first_turn():
    beat = health.Heartbeat(max_age=0.2)
    assert beat.check() == (False, "not started")
    beat.beat()
    assert beat.check()[0] is True
    time.sleep(0.3)
    ok, said = beat.check()
    assert ok is False and "more than" in said


@pytest.fixture
def served():
    state = {"ok": True}
    registry = CollectorRegistry()
    Counter("probe_things", "things", registry=registry).inc(3)
    port = free_port()
    health.serve(port, "127.0.0.1", lambda: (state["ok"], {"loop": "x"}), registry)
    wait_until(lambda: health.ask(port)[0], timeout=5, what="the server")
    return port, state


def test_ready_answers_200_or_503_with_the_checks(served):
    port, state = served
    reply = requests.get(f"http://127.0.0.1:{port}/ready", timeout=5)
    assert (reply.status_code, reply.json()) == (200, {"status": "ready", "checks": {"loop": "x"}})
    state["ok"] = False
    reply = requests.get(f"http://127.0.0.1:{port}/ready", timeout=5)
    assert (reply.status_code, reply.json()["status"]) == (503, "not ready")
    assert health.ask(port)[0] is False
    assert health.main(["probe", str(port)]) == 1


def test_every_other_path_is_the_registrys_metrics(served):
    port, _ = served
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "probe_things_total 3.0" in text


def test_a_port_nobody_listens_on_is_not_ready():
    ok, said = health.ask(free_port())
    assert ok is False and "no answer" in said


def test_service_processes_sums_the_main_process_and_its_children():
    import os
    import subprocess
    import sys

    import psutil
    from prometheus_client import generate_latest

    hold = "import time; x = bytearray(64 << 20); time.sleep(30)"
    children = [subprocess.Popen([sys.executable, "-c", hold]) for _ in range(2)]
    try:
        wait_until(
            lambda: all(psutil.Process(c.pid).memory_info().rss > 64 << 20 for c in children),
            timeout=10,
            what="the children's memory",
        )
        registry = CollectorRegistry()
        registry.register(health.ServiceProcesses(os.getpid))
        text = generate_latest(registry).decode()
        values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line[0] != "#")
        own = psutil.Process().memory_info().rss
        assert float(values["process_count"]) >= 3
        assert float(values["process_resident_memory_bytes"]) >= own + 2 * (64 << 20)
        assert float(values["process_cpu_seconds_total"]) >= sum(psutil.Process().cpu_times()[:2])
    finally:
        for child in children:
            child.kill()
            child.wait()


def test_a_fork_waits_for_a_database_probe_in_progress():
    """A Celery pool child forked while the metrics thread's probe is inside libpq would
    inherit OpenSSL's locks held, and hang in its first connect: the fork waits."""
    entered, release = threading.Event(), threading.Event()

    class SlowEngine:
        @contextlib.contextmanager
        def connect(self):
            entered.set()
            release.wait(10)
            yield types.SimpleNamespace(execute=lambda _sql: None)

    probe = threading.Thread(target=health.database, args=(SlowEngine(),))
    probe.start()
    assert entered.wait(5)
    threading.Timer(0.5, release.set).start()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    waited = time.monotonic() - started
    os.waitpid(pid, 0)
    probe.join(5)
    assert waited >= 0.4, f"forked {waited:.2f} s after, while the probe was in progress"
