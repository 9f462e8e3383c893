"""Faults while a stream of transactions (with repeats) is posted: PostgreSQL killed with
SIGKILL and restarted, the collector killed (clients retry what got no answer), beat and
the notifier killed. Each time the stored set equals the acknowledged set, nothing is
stored twice, no alert is lost, and storage catches up within RECOVERY seconds of the
component's return (the figure is printed)."""

from __future__ import annotations

import random
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
import requests
from sqlalchemy import text

from tasks.alert_rules import evaluate
from tests.fake_telegram import FakeTelegram
from tests.helpers import free_port, stack_ctl, wait_until
from tests.integration.pipeline import ADMIN_KEY, INGEST_KEY, Pipeline
from web.notifications.app import create_app as create_notifications_app

RECOVERY = 30.0
STREAM_AFTER = 3.0  # the stream goes on this long after the component's return
OUTAGE = 6.0  # PostgreSQL stays away this long: beat's 2-second jobs fail meanwhile
PRICE = "2.50"
HIGH_VALUE_QUANTITY = 500  # 1,250.00: above the high-value rule's threshold of 1,000
MINUTE = timedelta(minutes=1)


class Stream:
    """Posts batches of new transactions, each with a few repeats of acknowledged ones,
    until stopped; a batch that gets no answer or a 5xx is posted again, as a client
    does. Records what was acknowledged."""

    def __init__(self, post: Callable[[dict], int], sku: str):
        self.post = post
        self.sku = sku
        self.acked: list[str] = []
        self.high_value: set[str] = set()
        self.unanswered = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.rng = random.Random(7)
        self.sent: dict[str, dict] = {}  # every item posted, by id (repeats are resent whole)

    def __enter__(self) -> Stream:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the stream did not stop"

    def _run(self) -> None:
        while not self.stopping.is_set():
            now = datetime.now(UTC).isoformat()
            items = []
            for _ in range(100):
                quantity = HIGH_VALUE_QUANTITY if self.rng.random() < 0.02 else 1
                items.append(
                    {
                        "transaction_id": f"f-{uuid.uuid4().hex}",
                        "product_id": self.sku,
                        "quantity": quantity,
                        "timestamp": now,
                    }
                )
            repeats = self.rng.sample(self.acked[-2000:], min(5, len(self.acked)))
            body = {"transactions": items + [self._repeat(i) for i in repeats]}
            while True:  # until answered: ids make the retry safe
                status = self.post(body)
                if status == 202:
                    break
                self.unanswered += 1
                time.sleep(0.2)
            self.acked += [i["transaction_id"] for i in items]
            self.high_value |= {
                i["transaction_id"] for i in items if i["quantity"] == HIGH_VALUE_QUANTITY
            }
            time.sleep(0.05)

    def _repeat(self, txid: str) -> dict:
        return self.sent[txid]

    def remember(self, body: dict) -> None:
        for item in body["transactions"]:
            self.sent.setdefault(item["transaction_id"], item)


@pytest.fixture
def pipeline(settings, admin_engine, migrated_template, tmp_path, telegram):
    p = Pipeline(
        settings,
        admin_engine,
        migrated_template,
        tmp_path,
        processor_chunk_size=500,
        processor_chunk_timeout_seconds=60.0,
        collector_port=free_port(),
        collector_workers=1,
        **telegram.settings,
        # Beat's rollup every 5 s: a sign that beat works again after an outage.
        rollup_interval_seconds=5.0,
    )
    yield p
    p.close()


def in_process(pipeline: Pipeline, stream_ref: list) -> Callable[[dict], int]:
    def post(body: dict) -> int:
        stream_ref[0].remember(body)
        return pipeline.post("transactions/batch", body).status_code

    return post


def over_http(pipeline: Pipeline, stream_ref: list) -> Callable[[dict], int]:
    url = f"http://127.0.0.1:{pipeline.settings.collector_port}/api/v1/transactions/batch"
    session = requests.Session()

    def post(body: dict) -> int:
        stream_ref[0].remember(body)
        try:
            return session.post(url, json=body, headers=INGEST_KEY, timeout=10).status_code
        except requests.RequestException:
            return 0

    return post


def stream_for(pipeline: Pipeline, sku: str, how) -> Stream:
    ref: list = [None]
    stream = Stream(how(pipeline, ref), sku)
    ref[0] = stream
    return stream


def seed_product(pipeline: Pipeline) -> str:
    sku = f"sku-{uuid.uuid4().hex[:8]}"
    body = {"product_id": sku, "name": "Cup", "category": "Kitchen", "price": PRICE}
    assert pipeline.post("products", body).status_code == 202
    wait_until(lambda: pipeline.scalar("SELECT count(*) FROM products"), what="the product")
    return sku


def stored_count(pipeline: Pipeline) -> int:
    return pipeline.scalar("SELECT count(*) FROM transactions")


def wait_all_stored(pipeline: Pipeline, stream: Stream, since: float, what: str, capsys) -> None:
    """Every acknowledged transaction stored, once; prints the time since `since` (the
    stream went on for STREAM_AFTER seconds after it) and since the stream stopped."""
    stopped = time.monotonic()
    expected = set(stream.acked)

    def done():
        try:
            return stored_count(pipeline) >= len(expected)
        except Exception:  # the database may still be recovering
            return False

    wait_until(done, timeout=120, interval=0.2, what="every acknowledged transaction")
    caught_up = time.monotonic() - since
    rows = pipeline.rows("SELECT transaction_id FROM transactions")
    ids = [r["transaction_id"] for r in rows]
    assert len(ids) == len(set(ids))
    assert set(ids) == expected
    assert pipeline.scalar("SELECT count(*) FROM rejected_transactions") == 0
    with capsys.disabled():
        print(
            f"\n{what}: {len(expected)} acknowledged transactions, all stored once,"
            f" {caught_up:.1f} s after its return ({time.monotonic() - stopped:.1f} s after"
            f" the stream stopped, {STREAM_AFTER:.0f} s after the return;"
            f" {stream.unanswered} posts retried; restarted by the process manager:"
            f" {pipeline.restarts or 'none'})"
        )
    assert caught_up < RECOVERY, f"storage caught up {caught_up:.1f} s after the return"


def high_value_digest_delivered(pipeline: Pipeline, stream: Stream, telegram: FakeTelegram) -> None:
    """A high-value rule over the stream's product, evaluated after the fault: its one
    digest counts every high-value sale acknowledged (each stored once), and reaches the
    chat once. Beat is stopped first, so that this evaluation is the rule's first."""
    assert stream.high_value, "the stream made no high-value sale: this tests nothing"
    pipeline.kill("beat")
    api = create_notifications_app(pipeline.settings).test_client()
    answer = api.post(
        "/api/v1/alert-rules",
        json={
            "name": "Big orders",
            "kind": "high_value_sale",
            "threshold": 1000,
            "scope": {"product_id": stream.sku},
            "window_minutes": 60,
        },
        headers=ADMIN_KEY,
    )
    assert answer.status_code == 201, answer.get_json()
    # The window ends at the next minute: every row stored so far is inside it.
    evaluate(pipeline.engine, "UTC", pipeline.notifications_topic, datetime.now(UTC) + MINUTE)
    expected = f"{len(stream.high_value)} sales at or above 1,000.00"
    wait_until(
        lambda: any(expected in m["text"] for m in telegram.messages),
        timeout=60,
        what=f"the digest of {len(stream.high_value)} high-value sales in the chat",
    )
    assert sum("High-value sales" in m["text"] for m in telegram.messages) == 1
    logged = pipeline.scalar(
        "SELECT count(*) FROM notification_log WHERE event_type = 'high_value_sale'"
        " AND status = 'sent'"
    )
    assert logged == 1


def kill_postgres(away: float = OUTAGE, meanwhile=lambda: None) -> None:
    """SIGKILL to every PostgreSQL process of the stack (as a crash), kept away for `away`
    seconds (long enough for every client to notice) while `meanwhile` runs, then started
    again: it recovers from its write-ahead log."""
    subprocess.run(["pkill", "-KILL", "-u", "postgres"], check=True)
    stack_ctl("stop", "servers:postgres")  # the process manager would start it at once
    started = time.monotonic()
    meanwhile()
    time.sleep(max(0.0, away - (time.monotonic() - started)))
    stack_ctl("start", "servers:postgres")


# What cannot work without PostgreSQL, and says so on /ready while it is away.
DEPEND_ON_POSTGRES = ("processor", "worker", "beat")


def not_ready_meanwhile(pipeline: Pipeline) -> None:
    for name in DEPEND_ON_POSTGRES:
        wait_until(lambda n=name: not pipeline.ready(n), timeout=OUTAGE - 1, interval=0.1,
                   what=f"{name} not ready without PostgreSQL")  # fmt: skip


def postgres_answers(pipeline: Pipeline) -> bool:
    try:
        psycopg2.connect(pipeline.database_url.replace("+psycopg2", ""), connect_timeout=1).close()
        return True
    except psycopg2.OperationalError:
        return False


def test_postgres_killed_mid_stream(pipeline, telegram, capsys):
    pipeline.start("worker", "beat", "processor", "notifier")
    sku = seed_product(pipeline)
    with stream_for(pipeline, sku, in_process) as stream:
        wait_until(lambda: stored_count(pipeline) > 1000, timeout=60, what="a first thousand")
        kill_postgres(meanwhile=lambda: not_ready_meanwhile(pipeline))
        wait_until(lambda: postgres_answers(pipeline), timeout=60, what="PostgreSQL back")
        back = time.monotonic()
        time.sleep(STREAM_AFTER)
    wait_all_stored(pipeline, stream, back, "PostgreSQL killed", capsys)
    for name in DEPEND_ON_POSTGRES:
        wait_until(lambda n=name: pipeline.ready(n), timeout=30, what=f"{name} ready again")
    pipeline.wait_idle(timeout=60)
    beat_works_again(pipeline)
    high_value_digest_delivered(pipeline, stream, telegram)


def beat_works_again(pipeline: Pipeline) -> None:
    """Beat's jobs run again after the outage: the rollup (every 5 s) takes in every row."""
    rolled_up = "SELECT coalesce(sum(transactions), 0) FROM sales_daily_totals"
    try:
        wait_until(
            lambda: pipeline.scalar(rolled_up) == stored_count(pipeline),
            timeout=30,
            what="the rollup to take in every stored row",
        )
    except AssertionError as exc:
        # What holds the rollups' horizon back: this database's transactions with an id.
        with pipeline.engine.connect() as conn:
            holding = conn.execute(
                text(
                    "SELECT pid, application_name, state, backend_xid, xact_start, query"
                    " FROM pg_stat_activity WHERE datname = current_database()"
                    " AND backend_xid IS NOT NULL"
                )
            ).all()
            state = conn.execute(text("SELECT * FROM rollup_state")).all()
        raise AssertionError(f"{exc}; rollup_state {state}; holding: {holding}") from None


def test_collector_killed_mid_stream(pipeline, telegram, capsys):
    pipeline.start("collector", "worker", "beat", "processor", "notifier")
    sku = seed_product(pipeline)
    url = f"http://127.0.0.1:{pipeline.settings.collector_port}/health"
    wait_until(lambda: _answers(url), timeout=30, what="the collector")
    with stream_for(pipeline, sku, over_http) as stream:
        wait_until(lambda: stored_count(pipeline) > 1000, timeout=60, what="a first thousand")
        pipeline.kill("collector")
        time.sleep(1)
        pipeline.start("collector")
        wait_until(lambda: _answers(url), timeout=30, what="the collector back")
        back = time.monotonic()
        time.sleep(STREAM_AFTER)
    assert stream.unanswered > 0, "no post went unanswered: the kill tested nothing"
    wait_all_stored(pipeline, stream, back, "collector killed", capsys)
    high_value_digest_delivered(pipeline, stream, telegram)


def test_beat_and_notifier_killed_mid_stream(pipeline, telegram, capsys):
    pipeline.start("worker", "beat", "processor", "notifier")
    sku = seed_product(pipeline)
    with stream_for(pipeline, sku, in_process) as stream:
        wait_until(lambda: stored_count(pipeline) > 1000, timeout=60, what="a first thousand")
        pipeline.kill("notifier")
        pipeline.kill("beat")
        time.sleep(2)
        pipeline.start("beat", "notifier")
        back = time.monotonic()
        time.sleep(STREAM_AFTER)
    wait_all_stored(pipeline, stream, back, "beat and notifier killed", capsys)
    high_value_digest_delivered(pipeline, stream, telegram)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_a_lost_task_is_sent_again_in_seconds_not_at_the_timeout(pipeline):
    """The broker loses a chunk's task (as when PostgreSQL went down under a worker that
    had fetched it): the processor sees it neither started nor waiting, and sends it again
    long before PROCESSOR_CHUNK_TIMEOUT_SECONDS (60 s here)."""
    pipeline.start("processor")
    sku = f"sku-{uuid.uuid4().hex[:8]}"
    body = {"product_id": sku, "name": "Cup", "category": "Kitchen", "price": PRICE}
    assert pipeline.post("products", body).status_code == 202
    queued = "SELECT count(*) FROM kombu_message WHERE visible"
    wait_until(lambda: pipeline.scalar(queued), timeout=30, what="the chunk's task")
    with pipeline.engine.begin() as conn:
        conn.execute(text("DELETE FROM kombu_message"))
    lost_at = time.monotonic()
    wait_until(lambda: pipeline.scalar(queued), timeout=15, what="the task sent again")
    pipeline.start("worker")
    wait_until(lambda: pipeline.scalar("SELECT count(*) FROM products"), what="the product")
    assert time.monotonic() - lost_at < 20
