"""Readiness of every service, asked the same way under the local stack and under Compose.

The two APIs answer `/ready` themselves. The processes without an API of their own (the
processor, the worker, the notifier, beat) serve `/ready` beside `/metrics` on their
metrics port (`serve`): each says ready only while its loop is really turning and it can
do its work, so a hung or cut-off process is not taken for a healthy one.

`ServiceProcesses` gives the `process_*` figures (CPU, memory, open files) of a whole
service, its main process and every child summed, for the services whose children share
one /metrics (gunicorn's workers, Celery's pool), where prometheus_client's multiprocess
mode drops its own.

`python -m health probe PORT` asks one port's `/ready` and exits 0 or 1: the containers'
healthchecks. `python -m health status` asks every service of this machine's settings: what
`make status` prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http import HTTPStatus
from wsgiref.simple_server import WSGIRequestHandler, make_server

import psutil
from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

Check = Callable[[], tuple[bool, dict]]


class Heartbeat:
    """The time of a loop's last turn; stale after `max_age` seconds."""

    def __init__(self, max_age: float):
        self.max_age = max_age
        self.last: float | None = None

    def beat(self) -> None:
        self.last = time.monotonic()

    def check(self) -> tuple[bool, str]:
        if self.last is None:
            return False, "not started"
        age = time.monotonic() - self.last
        if age > self.max_age:
            return False, f"last turn {age:.0f} s ago (more than {self.max_age:.0f} s)"
        return True, f"last turn {age:.1f} s ago"


class ServiceProcesses(Collector):
    """CPU and memory of the process `root()` names and all its descendants, summed.
    CPU counts the children already ended too (the root reaped them), so the total only
    grows as a counter must."""

    def __init__(self, root: Callable[[], int]):
        self.root = root

    def collect(self):
        try:
            root = psutil.Process(self.root())
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        cpu = rss = fds = 0.0
        alive = 0
        for process in processes:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    cpu += times.user + times.system
                    rss += process.memory_info().rss
                    fds += process.num_fds()
                alive += 1
            except psutil.Error:  # ended between the listing and the reading
                continue
            if process is root:  # and the children it has reaped
                cpu += times.children_user + times.children_system
        yield CounterMetricFamily(
            "process_cpu_seconds", "CPU time of the service's processes, summed", value=cpu
        )
        yield GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory of the service's processes", rss
        )
        yield GaugeMetricFamily("process_open_fds", "Open files of the service's processes", fds)
        yield GaugeMetricFamily(
            "process_start_time_seconds", "When the service's main process started",
            root.create_time(),
        )  # fmt: skip
        yield GaugeMetricFamily("process_count", "Processes of the service", alive)


# A readiness probe connects to PostgreSQL from the metrics thread. A process forked
# meanwhile (a Celery worker's pool child) would inherit the locks libpq's OpenSSL holds
# at that moment and hang in its own first connect, for ever: forks wait for the probe.
_PROBING = threading.Lock()
os.register_at_fork(
    before=_PROBING.acquire, after_in_parent=_PROBING.release, after_in_child=_PROBING.release
)


def database(engine) -> str:
    """ "ok" when the engine's database answers a query, else why not (for a check)."""
    from sqlalchemy import text

    try:
        with _PROBING, engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # any failure to reach the database means not ready
        return f"unreachable: {type(exc).__name__}"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *_args) -> None:  # scrapes and probes every few seconds
        pass


# A POST route beside them: the request's body in, (HTTP status, JSON answer) out.
Handler = Callable[[bytes], tuple[int, dict]]
MAX_POST_BYTES = 1 << 20


def serve(
    port: int,
    host: str,
    ready: Check,
    registry: CollectorRegistry = REGISTRY,
    post: dict[str, Handler] | None = None,
) -> None:
    """/ready from `ready`, the `post` routes, and every other path the registry's
    metrics, in a daemon thread."""
    metrics = make_wsgi_app(registry)
    post = post or {}

    def answer(start_response, status: int, body: dict):
        phrase = HTTPStatus(status).phrase
        start_response(f"{status} {phrase}", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    def app(environ, start_response):
        path = environ.get("PATH_INFO")
        if path in post:
            if environ["REQUEST_METHOD"] != "POST":
                return answer(start_response, 405, {"error": "POST only"})
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length > MAX_POST_BYTES:
                return answer(start_response, 413, {"error": f"at most {MAX_POST_BYTES} bytes"})
            return answer(start_response, *post[path](environ["wsgi.input"].read(length)))
        if path != "/ready":
            return metrics(environ, start_response)
        ok, checks = ready()
        return answer(
            start_response, 200 if ok else 503,
            {"status": "ready" if ok else "not ready", "checks": checks},
        )  # fmt: skip

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


def ask(port: int, host: str = "127.0.0.1", timeout: float = 3) -> tuple[bool, str]:
    """(ready, what the service said) from http://host:port/ready."""
    url = f"http://{host}:{port}/ready"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return True, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return False, exc.read().decode(errors="replace")
    except OSError as exc:
        return False, f"no answer from {url}: {exc}"


def ports() -> dict[str, int]:
    """Each service of the local stack and the port of its /ready, from the settings."""
    from config import get_settings

    settings = get_settings()
    return {
        "collector": settings.collector_port,
        "analytics": settings.analytics_port,
        "notifications": settings.notifications_port,
        "processor": settings.processor_metrics_port,
        "worker": settings.worker_metrics_port,
        "notifier": settings.notifier_metrics_port,
        "beat": settings.beat_metrics_port,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m health", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    probe = commands.add_parser("probe", help="ask one port's /ready; exit 0 when ready")
    probe.add_argument("port", type=int)
    commands.add_parser("status", help="ask every service of the local stack")
    args = parser.parse_args(argv)
    if args.command == "probe":
        ok, said = ask(args.port)
        if not ok:
            print(said, file=sys.stderr)
        return 0 if ok else 1
    all_ready = True
    for service, port in ports().items():
        ok, said = ask(port)
        all_ready &= ok
        try:
            checks = json.loads(said).get("checks", {})
            detail = ", ".join(f"{name}: {value}" for name, value in checks.items())
        except ValueError:
            detail = said
        print(f"{service:<10} {'ready' if ok else 'NOT READY':<10} {detail}")
    return 0 if all_ready else 1


if __name__ == "__main__":
    sys.exit(main())
