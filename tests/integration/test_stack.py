"""The local stack that `make up` starts: real servers, answering on the configured ports."""

import re
import time
import uuid

import requests
from kafka import KafkaProducer
from sqlalchemy import create_engine, text

import health
from streams.topics import admin_client
from tests.helpers import prometheus_query, wait_until


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
        result = prometheus_query(base, 'up{service="prometheus"}')
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

    began = time.monotonic()
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
    # Each of those says when it last succeeded: within this test's window.
    text = _answer(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics")
    series = r'^celery_task_last_success_timestamp_seconds\{task="([\w.]+)"\} (\S+)'
    last = {task: float(at) for task, at in re.findall(series, text, re.M)}
    window = time.time() - time.monotonic() + began
    assert all(last.get(t, 0) >= window for t in frequent), (last, frequent)


def _answer(url: str) -> str | None:
    try:
        return requests.get(url, timeout=10).text
    except requests.ConnectionError:
        return None


def test_make_status_finds_every_service_of_the_stack_ready():
    """The same /ready answers the containers' healthchecks ask under Compose."""
    import subprocess

    from config import PROJECT_ROOT

    def status():
        result = subprocess.run(
            ["make", "status"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
        )
        return result if result.returncode == 0 else None

    result = wait_until(status, timeout=90, interval=2, what="make status to exit 0")
    lines = [line.split() for line in result.stdout.splitlines()]
    ready = {line[0] for line in lines if len(line) > 1 and line[1] == "ready"}
    assert ready == {"collector", "analytics", "notifications", "processor", "worker",
                     "notifier", "beat"}  # fmt: skip


def test_prometheus_has_one_job_per_component_every_one_up(settings):
    """up{job="processor"} works: each target's job is its service's name."""
    base = f"http://127.0.0.1:{settings.prometheus_port}"
    components = {"prometheus", "alertmanager", "postgres", "kafka", "processes", "collector",
                  "analytics", "notifications", "processor", "worker", "notifier",
                  "beat"}  # fmt: skip

    def jobs():
        found = {r["metric"]["job"]: r["value"][1] for r in prometheus_query(base, "up")}
        return found if set(found) == components and set(found.values()) == {"1"} else None

    wait_until(jobs, timeout=60, interval=2, what="every component's job up")


def test_every_python_service_exports_its_cpu_and_memory():
    """Also those whose children share one /metrics (gunicorn's workers, Celery's pool),
    summed over the whole service."""
    for port in health.ports().values():
        url = f"http://127.0.0.1:{port}/metrics"
        text = wait_until(lambda u=url: _answer(u), timeout=30, what=url)
        rss = re.search(r"^process_resident_memory_bytes (\S+)$", text, re.M)
        cpu = re.search(r"^process_cpu_seconds_total (\S+)$", text, re.M)
        assert rss and float(rss.group(1)) > 10 << 20, url
        assert cpu and float(cpu.group(1)) > 0, url


def test_postgres_figures_come_from_its_exporter(settings):
    """Connections, transactions and table sizes, against the server's own statistics."""
    url = f"http://127.0.0.1:{settings.postgres_exporter_port}/metrics"
    page = wait_until(lambda: _answer(url), timeout=30, what=url)
    assert re.search(r"^pg_up 1(\.0)?$", page, re.M)
    database = settings.database.database
    commits = re.search(
        rf'^pg_stat_database_xact_commit{{datid="\d+",datname="{database}"\S*}} (\S+)$', page, re.M
    )
    assert commits and float(commits.group(1)) > 0
    engine = create_engine(settings.database_url)
    with engine.connect() as conn:
        size = conn.execute(text("SELECT pg_total_relation_size('transactions')")).scalar_one()
    engine.dispose()
    exported = re.search(
        r'^pg_table_total_bytes{\S*table_name="transactions"\S*} (\S+)$', page, re.M
    )
    # The table grows while the stack runs: within 10% of the size read a moment later.
    assert exported and abs(float(exported.group(1)) - size) <= 0.1 * size


def test_postgres_exporter_answers_while_sessions_hold_temporary_tables(settings):
    """Every worker session keeps its own temporary `incoming_transactions`: two of them
    must not become two series with the same labels, which fails the whole scrape."""
    url = f"http://127.0.0.1:{settings.postgres_exporter_port}/metrics"
    engine = create_engine(settings.database_url)
    with engine.connect() as first, engine.connect() as second:
        for conn in (first, second):
            conn.execute(text("CREATE TEMP TABLE exporter_probe (n int)"))
            conn.commit()
        answer = requests.get(url, timeout=10)
    engine.dispose()
    assert answer.status_code == 200, answer.text[:500]
    assert "exporter_probe" not in answer.text
    assert re.search(r'^pg_table_live_rows{\S*table_name="transactions"\S*} ', answer.text, re.M)


def test_kafka_counts_each_topics_messages_and_its_own_cpu_and_memory(settings):
    """The JMX exporter agent in the broker: messages in per topic, exactly as many as
    were produced to a new topic, and the broker JVM's own CPU and memory."""
    topic = f"test-jmx-{uuid.uuid4().hex[:10]}"
    admin = admin_client(settings)
    admin.create_topics({topic: {"num_partitions": 2}}, wait_for_metadata=True)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    try:
        for n in range(137):
            producer.send(topic, key=str(n).encode(), value=b"{}")
        producer.flush(timeout=30)
        url = f"http://127.0.0.1:{settings.kafka_metrics_port}/metrics"
        pattern = rf'^kafka_server_brokertopicmetrics_messagesin_total{{topic="{topic}"}} (\S+)$'

        def counted():
            found = re.search(pattern, _answer(url) or "", re.M)
            return found and float(found.group(1)) == 137

        wait_until(counted, timeout=30, what=f"137 messages in for {topic}")
        page = _answer(url)
        rss = re.search(r"^process_resident_memory_bytes (\S+)$", page, re.M)
        cpu = re.search(r"^process_cpu_seconds_total (\S+)$", page, re.M)
        assert rss and float(rss.group(1)) > 100 << 20  # a broker's JVM, not a small exporter
        assert cpu and float(cpu.group(1)) > 1
        assert re.search(
            r'^kafka_network_requestmetrics_totaltimems{quantile="0.99",request="Produce"}',
            page,
            re.M,
        )
    finally:
        producer.close()
        admin.delete_topics([topic])
        admin.close()


def _series(page: str, name: str, **labels: str) -> dict[str, float]:
    """Each group's value of one family of the process exporter, by group name."""
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    pattern = rf'^{name}{{groupname="([^"]+)"{extra}}} (\S+)$'
    return {group: float(value) for group, value in re.findall(pattern, page, re.M)}


def test_every_component_has_the_cpu_and_memory_of_its_own_processes(settings):
    """The process exporter's groups, named after the components' jobs: the servers' own
    figures, not their exporters'. The broker's group is the very process whose JVM reports
    its memory through the JMX agent, and the collector's holds gunicorn's master and every
    worker."""
    url = f"http://127.0.0.1:{settings.process_exporter_port}/metrics"
    components = {"collector", "analytics", "notifications", "processor", "worker", "notifier",
                  "beat",
                  "kafka", "postgres", "prometheus", "alertmanager"}  # fmt: skip

    def grouped():
        page = _answer(url) or ""
        running = {g for g, n in _series(page, "namedprocess_namegroup_num_procs").items() if n}
        return page if components <= running else None

    page = wait_until(grouped, timeout=30, what="a process group for every component")
    procs = _series(page, "namedprocess_namegroup_num_procs")
    memory = _series(page, "namedprocess_namegroup_memory_bytes", memtype="resident")
    cpu = _series(page, "namedprocess_namegroup_cpu_seconds_total", mode="user")
    for component in components:
        assert memory[component] > 1 << 20, component
        assert component in cpu, component
    assert procs["collector"] >= 1 + settings.collector_workers
    assert procs["kafka"] == 1
    jvm = re.search(
        r"^process_resident_memory_bytes (\S+)$",
        _answer(f"http://127.0.0.1:{settings.kafka_metrics_port}/metrics") or "",
        re.M,
    )
    assert jvm and abs(float(jvm.group(1)) - memory["kafka"]) < 0.1 * memory["kafka"]
    # PostgreSQL's server with its backends, far more than its exporter.
    assert procs["postgres"] >= 5
    assert memory["postgres"] > 2 * memory["postgres-exporter"]
