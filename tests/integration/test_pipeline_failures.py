"""Nothing lost, nothing twice: processes killed with SIGKILL mid-flight, and consumers
sharing a group. Each test has a pipeline of its own."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest

from streams.topics import admin_client
from tests.helpers import wait_until
from tests.integration.pipeline import Pipeline

BATCH = 200


@pytest.fixture
def pipeline(settings, admin_engine, migrated_template, tmp_path):
    p = Pipeline(settings, admin_engine, migrated_template, tmp_path, processor_chunk_size=300)
    yield p
    p.close()


def seed_product(pipeline) -> str:
    sku = f"sku-{uuid.uuid4().hex[:8]}"
    body = {"product_id": sku, "name": "Cup", "category": "Kitchen", "price": "1.50"}
    assert pipeline.post("products", body).status_code == 202
    return sku


def send(pipeline, sku: str, total: int, accepted: list[str], pause: float = 0.0) -> None:
    """Posts `total` transactions in batches; records the ids answered 202."""
    now = datetime.now(UTC).isoformat()
    for _ in range(0, total, BATCH):
        items = [
            {
                "transaction_id": f"kill-{uuid.uuid4().hex}",
                "product_id": sku,
                "quantity": 1,
                "timestamp": now,
            }
            for _ in range(BATCH)
        ]
        answer = pipeline.post("transactions/batch", {"transactions": items})
        assert answer.status_code == 202, answer.get_json()
        accepted.extend(i["transaction_id"] for i in items)
        time.sleep(pause)


def stored_ids(pipeline) -> set[str]:
    return {r["transaction_id"] for r in pipeline.rows("SELECT transaction_id FROM transactions")}


def test_worker_and_processor_killed_mid_flight_lose_nothing_and_store_nothing_twice(pipeline):
    pipeline.start("worker", "beat", "processor")
    sku = seed_product(pipeline)
    accepted: list[str] = []
    sender = threading.Thread(target=send, args=(pipeline, sku, 6000, accepted, 0.05))
    sender.start()

    # Kill the worker while chunks are in its hands: the broker loses what it fetched.
    wait_until(
        lambda: pipeline.scalar("SELECT count(*) FROM transactions") > 0,
        timeout=90,
        what="first rows",
    )
    pipeline.kill("worker")
    in_flight_at_kill = len(accepted) - len(stored_ids(pipeline))
    time.sleep(1.0)
    pipeline.start("worker")

    # Kill the processor with chunks handed out and offsets not yet committed.
    time.sleep(1.5)
    pipeline.kill("processor")
    time.sleep(1.0)
    pipeline.start("processor")

    sender.join(timeout=120)
    assert not sender.is_alive()
    assert in_flight_at_kill > 0, "the kill came after everything was stored; nothing was tested"
    wait_until(
        lambda: len(stored_ids(pipeline)) >= len(accepted), timeout=120, what="every accepted row"
    )
    pipeline.wait_idle(timeout=60)
    assert stored_ids(pipeline) == set(accepted)
    assert pipeline.scalar("SELECT count(*) FROM transactions") == len(accepted)
    assert pipeline.scalar("SELECT count(*) FROM rejected_transactions") == 0
    assert pipeline.scalar("SELECT count(*) FROM parked_transactions") == 0


def test_two_processors_share_the_partitions_and_hand_over_on_leave(pipeline):
    pipeline.start("worker", "beat", "processor-1", "processor-2")
    group = pipeline.settings.processor_group

    def members():
        admin = admin_client(pipeline.settings)
        try:
            described = admin.describe_groups([group])[group]
        finally:
            admin.close()
        return (
            described
            if described["group_state"] == "Stable" and len(described["members"]) == 2
            else None
        )

    described = wait_until(members, timeout=60, what="both processors in the group")
    assert len(described["members"]) == 2

    sku = seed_product(pipeline)
    accepted: list[str] = []
    send(pipeline, sku, 1000, accepted)
    wait_until(lambda: len(stored_ids(pipeline)) >= len(accepted), timeout=60, what="first half")

    # One leaves (a clean stop); the other takes over its partitions.
    pipeline.stop("processor-1")
    send(pipeline, sku, 1000, accepted)
    wait_until(lambda: len(stored_ids(pipeline)) >= len(accepted), timeout=90, what="second half")
    pipeline.wait_idle()
    assert stored_ids(pipeline) == set(accepted)
    assert pipeline.scalar("SELECT count(*) FROM transactions") == 2000
    assert pipeline.scalar("SELECT count(*) FROM rejected_transactions") == 0
