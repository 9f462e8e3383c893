"""The local stack that `make up` starts: real servers, answering on the configured ports."""

import re
import time

import requests
from sqlalchemy import create_engine, text

from tests.helpers import wait_until


def test_postgres_is_a_real_server_at_the_configured_url(settings):
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        version = conn.execute(text("SHOW server_version_num")).scalar_one()
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    assert int(version) >= 150000
    assert revision  # `make up` migrated the system's own database


def test_prometheus_runs_the_project_config_and_scrapes_itself(settings):
    base = f"http://127.0.0.1:{settings.prometheus_port}"
    assert requests.get(f"{base}/-/ready", timeout=5).status_code == 200
    rules = requests.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert "stack" in {group["name"] for group in rules}
    deadline = time.monotonic() + 40  # first scrape within one 15 s interval
    while True:
        result = requests.get(
            f"{base}/api/v1/query", params={"query": 'up{service="prometheus"}'}, timeout=5
        ).json()["data"]["result"]
        if result or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert [r["value"][1] for r in result] == ["1"]


def test_every_periodic_task_succeeds_in_the_running_worker(settings):
    """Beat's jobs, run by the stack's worker: within this test's own window, each due
    every minute or more often succeeds again and none fails (as the worker's own metrics
    count them). Counted from the window's start: the fault tests stop the stack's
    PostgreSQL, and a job running at that moment fails, as it should."""
    from tasks.celery_app import app

    schedule = app.conf.beat_schedule.values()
    tasks = {entry["task"] for entry in schedule}
    frequent = {entry["task"] for entry in schedule if entry["schedule"] <= 60}

    def counts() -> dict[tuple[str, str], float]:
        url = f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"
        # A worker restarted by `make up` a moment ago may not listen yet.
        text = wait_until(lambda: _answer(url), timeout=30, what=url)
        series = r'^celery_tasks_total\{outcome="(\w+)",task="([\w.]+)"\} (\S+)'
        found = re.findall(series, text, re.M)
        return {(task, outcome): float(n) for outcome, task, n in found}

    start = counts()

    def since_start() -> dict[tuple[str, str], float]:
        return {key: n - start.get(key, 0) for key, n in counts().items()}

    seen = wait_until(
        lambda: (
            (c := since_start()) and all(c.get((t, "succeeded"), 0) > 0 for t in frequent) and c
        ),
        timeout=90,
        interval=3,
        what="every periodic task to succeed again",
    )
    assert {t: seen.get((t, "failed"), 0) for t in tasks} == dict.fromkeys(tasks, 0)


def _answer(url: str) -> str | None:
    try:
        return requests.get(url, timeout=10).text
    except requests.ConnectionError:
        return None
