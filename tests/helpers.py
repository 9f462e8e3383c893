"""Small helpers shared by the tests."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import requests

from config import PROJECT_ROOT, Settings

T = TypeVar("T")

# The tests run on the local stack, a development machine whose .env holds .env.example's
# API keys: allow them here (as stack/lib.sh does) and in the services the tests start.
DEVELOPMENT = {"ALLOW_EXAMPLE_KEYS": "true"}
for _name, _value in DEVELOPMENT.items():
    os.environ.setdefault(_name, _value)


def example_settings(**overrides) -> Settings:
    """The settings as shipped in .env.example, with overrides (no .env, no environment)."""
    base = Settings(_env_file=PROJECT_ROOT / ".env.example", allow_example_keys=True)
    return base.model_copy(update=overrides)


def service_environment(env_file: Path, **environment: str) -> dict[str, str]:
    """The environment for a service started by a test: this process's, less any setting,
    with the settings read from `env_file`, the development setting, and `environment` on
    top (which may turn the development setting off)."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    return env | {"ENV_FILE": str(env_file)} | DEVELOPMENT | environment


def wait_until(
    check: Callable[[], T], *, timeout: float = 30, interval: float = 0.2, what: str = ""
) -> T:
    """Calls `check` until it returns something truthy; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stack_ctl(*args: str) -> str:
    """supervisorctl of the local stack that `make up` runs (for tests that stop a server)."""
    import subprocess

    command = 'source stack/lib.sh && load_stack_env && supervisorctl_ "$@"'
    result = subprocess.run(
        ["bash", "-c", command, "stack_ctl", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout + result.stderr


def prometheus_query(base: str, expr: str) -> list[dict]:
    """The result of an instant query to the Prometheus at `base` (http://host:port); the
    test fails when Prometheus refuses the expression."""
    answer = requests.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    return answer["data"]["result"]


def v1_event(event_id: str, type_: str, severity: str, data: dict) -> dict:
    """A version-1 notification event (docs/events/notification.v1.schema.json), as the
    checks set by the environment raised them and Alertmanager's receiver still does."""
    return {
        "schema_version": 1,
        "event_id": event_id,
        "type": type_,
        "severity": severity,
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": data,
    }
