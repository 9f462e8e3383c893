"""Retention: the purge tasks delete exactly the rows past their period and in a final
state, in bounded batches; Kafka topics carry the configured retention, set on creation
and on a topic that exists already."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable

import pytest
from kafka.admin import ConfigResource
from sqlalchemy import Engine, event, text

from config import PROJECT_ROOT
from streams.topics import admin_client, ensure_topics, topic_configs, wanted_topics
from tasks.upkeep import (
    purge_expired_alerts,
    purge_final_notifications,
    purge_published_outbox,
    purge_replayed_rejections,
)
from tests.helpers import example_settings, service_environment, wait_until

DAYS = 3  # every retention in these tests
SETTINGS = example_settings(
    outbox_retention_days=DAYS, notification_log_retention_days=DAYS, rejected_retention_days=DAYS
)
HOURS = DAYS * 24
# Ages in hours: new, just inside the period, just past it, long past it (two hours
# either side of the edge, so that the test's own run time never matters).
AGES = (0, HOURS - 2, HOURS + 2, 10 * HOURS)
COPIES = 3  # of every kind of row, so that small batches need several statements

Row = dict  # what a test inserted: its id and the facts the oracle reads


def hours_ago(column: str) -> str:
    """That many hours before the database's now(); NULL for None."""
    return f"now() - make_interval(hours => :{column})"


def insert(engine: Engine, sql: str, rows: list[Row]) -> list[Row]:
    with engine.begin() as conn:
        for row in rows:
            row["id"] = conn.execute(text(sql), row).scalar_one()
    return rows


def outbox_rows(engine: Engine) -> list[Row]:
    """Unpublished events of every age, and published ones of every age."""
    rows = [
        {"event_id": f"e-{uuid.uuid4().hex}", "created": created, "published": published}
        for _ in range(COPIES)
        for published in (None, *AGES)
        for created in {published or 0, (published or 0) + 24, 10 * HOURS}
    ]
    sql = (
        "INSERT INTO outbox_events (event_id, topic, payload, created_at, published_at)"
        f" VALUES (:event_id, 'notifications', '{{}}', {hours_ago('created')},"
        f" {hours_ago('published')}) RETURNING id"
    )
    return insert(engine, sql, rows)


def notification_rows(engine: Engine) -> list[Row]:
    """Rows of every status and every age."""
    rows = [
        {"key": f"k-{uuid.uuid4().hex}", "status": status, "created": age}
        for _ in range(COPIES)
        for status in ("pending", "sent", "suppressed", "failed")
        for age in AGES
    ]
    sql = (
        "INSERT INTO notification_log (event_type, severity, dedup_key, payload, status,"
        f" created_at, sent_at) VALUES ('high_value_sale', 'info', :key, '{{}}', :status,"
        f" {hours_ago('created')},"
        f" CASE WHEN :status = 'sent' THEN {hours_ago('created')} END) RETURNING id"
    )
    return insert(engine, sql, rows)


def rejected_rows(engine: Engine) -> list[Row]:
    """Open rejections of every age, and replayed ones replayed at every age (rejected a
    day before, or long before, their replay)."""
    rows = [
        {"status": "open", "rejected": age, "replayed": None} for age in AGES for _ in range(COPIES)
    ] + [
        {"status": "replayed", "rejected": rejected, "replayed": age}
        for age in AGES
        for rejected in (age + 24, 20 * HOURS)
        for _ in range(COPIES)
    ]
    for offset, row in enumerate(rows):
        row["offset"] = offset
    sql = (
        "INSERT INTO rejected_transactions (raw_payload, reason, stage, kind, kafka_topic,"
        " kafka_partition, kafka_offset, rejected_at, status, replayed_at)"
        " VALUES ('\\x00', 'malformed_message', 'processor', 'transaction', 'transactions', 0,"
        f" :offset, {hours_ago('rejected')}, :status, {hours_ago('replayed')}) RETURNING id"
    )
    return insert(engine, sql, rows)


def alert_rows(engine: Engine) -> list[Row]:
    """Alerts of every state raised at every age."""
    rows = [
        {"event_id": f"alert:{uuid.uuid4().hex}", "state": state, "occurred": age}
        for _ in range(COPIES)
        for state in ("firing", "resolved", "test")
        for age in AGES
    ]
    sql = (
        "INSERT INTO alert_events (event_id, rule_name, kind, state, window_start,"
        f" window_end, payload, occurred_at) VALUES (:event_id, 'r', 'low_sales', :state,"
        f" now(), now(), '{{}}', {hours_ago('occurred')}) RETURNING id"
    )
    return insert(engine, sql, rows)


# The rules as the settings describe them, applied to what the test inserted.
def outbox_expired(row: Row) -> bool:
    return row["published"] is not None and row["published"] > HOURS


def notification_expired(row: Row) -> bool:
    return row["status"] in ("sent", "suppressed", "failed") and row["created"] > HOURS


def alert_expired(row: Row) -> bool:
    return row["occurred"] > HOURS


def rejected_expired(row: Row) -> bool:
    return row["status"] == "replayed" and row["replayed"] > HOURS


CASES = {
    "outbox_events": (outbox_rows, purge_published_outbox, outbox_expired),
    "notification_log": (notification_rows, purge_final_notifications, notification_expired),
    "rejected_transactions": (rejected_rows, purge_replayed_rejections, rejected_expired),
    "alert_events": (alert_rows, purge_expired_alerts, alert_expired),
}


def remaining_ids(engine: Engine, table: str) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(text(f"SELECT id FROM {table}")).scalars())


def deletes_per_statement(engine: Engine) -> list[int]:
    """Rows each DELETE on `engine` removes from now on, as the driver reports them."""
    counts: list[int] = []

    @event.listens_for(engine, "after_cursor_execute")
    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("DELETE"):
            counts.append(cursor.rowcount)

    return counts


@pytest.mark.parametrize("table", CASES)
def test_purge_deletes_exactly_the_expired_rows_in_bounded_batches(engine, table):
    make_rows, purge, expired = CASES[table]
    rows = make_rows(engine)
    doomed = {row["id"] for row in rows if expired(row)}
    assert doomed and len(doomed) < len(rows)  # the rows test both sides of every rule
    batch_rows = 4
    assert len(doomed) > 2 * batch_rows
    statements = deletes_per_statement(engine)

    assert purge(engine, SETTINGS, batch_rows=batch_rows) == len(doomed)
    assert remaining_ids(engine, table) == {row["id"] for row in rows} - doomed
    assert max(statements) <= batch_rows and sum(statements) == len(doomed)
    assert len(statements) == len(doomed) // batch_rows + 1  # the last finds fewer: done

    assert purge(engine, SETTINGS) == 0  # nothing left to purge; the rest stays
    assert remaining_ids(engine, table) == {row["id"] for row in rows} - doomed


def test_purge_tasks_read_their_retention_from_the_settings(engine, database_url):
    """The Celery tasks' bodies, run as the worker runs them (settings from the
    environment, the database of DATABASE_URL), each purge what the oracle expects."""
    expected = {}
    for table, (make_rows, _, expired) in CASES.items():
        expected[table] = sum(expired(row) for row in make_rows(engine))
    tasks = {
        "outbox_events": "purge_outbox",
        "notification_log": "purge_notification_log",
        "rejected_transactions": "purge_rejected",
        "alert_events": "purge_alert_history",
    }
    script = (
        "import json, tasks.upkeep as m;"
        f"print(json.dumps({{t: getattr(m, f)() for t, f in {tasks!r}.items()}}))"
    )
    retention = str(DAYS)
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=service_environment(
            PROJECT_ROOT / ".env.example",
            DATABASE_URL=database_url,
            OUTBOX_RETENTION_DAYS=retention,
            NOTIFICATION_LOG_RETENTION_DAYS=retention,
            REJECTED_RETENTION_DAYS=retention,
            KAFKA_NOTIFICATIONS_RETENTION_HOURS=str(HOURS),  # may not outlive the log
        ),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == expected


def test_beat_runs_every_purge_on_the_maintenance_queue():
    from db.broker import MAINTENANCE_QUEUE
    from tasks.celery_app import app

    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    purges = {"maintenance.purge_outbox", "maintenance.purge_notification_log"}
    purges |= {"maintenance.purge_rejected", "maintenance.purge_alert_history"}
    assert purges <= scheduled
    for name in purges:
        assert name in app.tasks, name
        assert app.amqp.router.route({}, name)["queue"].name == MAINTENANCE_QUEUE


# --- Kafka -----------------------------------------------------------------------------
def topic_retention(admin, topics: list[str]) -> dict[str, tuple[str, str]]:
    """Topic -> (retention.ms, where the value comes from), as the broker describes it."""
    described = admin.describe_configs(
        [ConfigResource("TOPIC", name, ["retention.ms"]) for name in topics], config_filter="all"
    )["topic"]
    return {
        name: (configs["retention.ms"]["value"], configs["retention.ms"]["config_source"])
        for name, configs in described.items()
    }


@pytest.fixture
def topic_names(settings) -> Callable:
    """Makes fresh topic names for a test, and deletes those topics afterwards."""
    made: list[str] = []

    def make(count: int) -> list[str]:
        made.extend(f"test-retention-{uuid.uuid4().hex[:12]}" for _ in range(count))
        return made[-count:]

    yield make
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        admin.delete_topics([name for name in made if name in existing])
    finally:
        admin.close()


def topic_settings(transactions: str, notifications: str, hours: tuple[int, int]):
    return example_settings(
        kafka_topic_transactions=transactions,
        kafka_topic_notifications=notifications,
        kafka_transactions_partitions=1,
        kafka_transactions_retention_hours=hours[0],
        kafka_notifications_retention_hours=hours[1],
    )


def settled(admin, expected: dict) -> None:
    """Until the topics' configs read back as expected: the broker applies an accepted
    change a moment later (seen: the old value read right after the change)."""
    wait_until(
        lambda: topic_retention(admin, list(expected)) == expected,
        timeout=15,
        what=f"topic configs {expected}",
    )


def test_topics_are_created_with_the_configured_retention(settings, topic_names):
    transactions, notifications = topic_names(2)
    wanted = topic_settings(transactions, notifications, (30, 5))
    admin = admin_client(settings)
    try:
        done = ensure_topics(admin, wanted_topics(wanted), topic_configs(wanted))
        assert set(done) == {transactions, notifications}
        settled(
            admin,
            {
                transactions: (str(30 * 3_600_000), "DYNAMIC_TOPIC_CONFIG"),
                notifications: (str(5 * 3_600_000), "DYNAMIC_TOPIC_CONFIG"),
            },
        )
    finally:
        admin.close()


def test_retention_is_applied_to_topics_that_exist_already(settings, topic_names):
    transactions, notifications = topic_names(2)
    admin = admin_client(settings)
    try:
        # Made as before retention was configured: the broker's default applies.
        admin.create_topics(
            {name: {"num_partitions": 1} for name in (transactions, notifications)},
            wait_for_metadata=True,
        )
        before = topic_retention(admin, [transactions, notifications])
        assert all(source != "DYNAMIC_TOPIC_CONFIG" for _, source in before.values()), before

        first = topic_settings(transactions, notifications, (200, 3))
        done = ensure_topics(admin, wanted_topics(first), topic_configs(first))
        assert all("retention.ms set to" in what for what in done.values()), done
        settled(
            admin,
            {
                transactions: (str(200 * 3_600_000), "DYNAMIC_TOPIC_CONFIG"),
                notifications: (str(3 * 3_600_000), "DYNAMIC_TOPIC_CONFIG"),
            },
        )

        # A changed setting reaches the topic; an unchanged one is left alone.
        second = topic_settings(transactions, notifications, (200, 9))
        done = ensure_topics(admin, wanted_topics(second), topic_configs(second))
        assert "set to" not in done[transactions] and "set to" in done[notifications], done
        settled(
            admin,
            {
                transactions: (str(200 * 3_600_000), "DYNAMIC_TOPIC_CONFIG"),
                notifications: (str(9 * 3_600_000), "DYNAMIC_TOPIC_CONFIG"),
            },
        )
        again = ensure_topics(admin, wanted_topics(second), topic_configs(second))
        assert not any("set to" in what for what in again.values()), again
    finally:
        admin.close()
