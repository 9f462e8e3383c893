"""The real broker carries messages on the `transactions` topic; offsets are committed by hand."""

import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import MemberToRemove
from kafka.structs import OffsetAndMetadata

from consumers.processor import Processor
from consumers.watchdog import STALL_SECONDS, UNASSIGNED_SECONDS
from streams.topics import admin_client, wanted_topics
from tests.helpers import wait_until


def consumer(settings, group: str) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=15_000,
    )


def test_topics_exist_with_the_configured_partitions(settings):
    admin = admin_client(settings)
    try:
        described = {t["name"]: t for t in admin.describe_topics(list(wanted_topics(settings)))}
    finally:
        admin.close()
    for name, partitions in wanted_topics(settings).items():
        assert described[name]["error_code"] == 0, name
        assert len(described[name]["partitions"]) >= partitions


def test_produce_then_consume_with_manual_commits(settings):
    topic = settings.kafka_topic_transactions
    run = uuid.uuid4().hex
    group = f"test-{run}"
    keys = [f"{run}-{i}".encode() for i in range(20)]

    # Start the group at the current end of every partition, so only this run's messages count.
    first = consumer(settings, group)
    partitions = [TopicPartition(topic, p) for p in first.partitions_for_topic(topic)]
    first.assign(partitions)
    first.seek_to_end()
    first.commit({tp: OffsetAndMetadata(first.position(tp), "", -1) for tp in partitions})

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    for key in keys:
        producer.send(topic, key=key, value=b'{"run": "%s"}' % run.encode())
    producer.flush(timeout=30)
    producer.close()

    records = read(first, len(keys))
    assert sorted(r.key for r in records) == sorted(keys)
    # Commit only the first message of each partition, then stop.
    firsts = {}
    for r in records:
        firsts.setdefault(TopicPartition(r.topic, r.partition), r)
    first.commit({tp: OffsetAndMetadata(r.offset + 1, "", -1) for tp, r in firsts.items()})
    first.close(autocommit=False)

    # A new member of the group resumes from the committed offsets: it reads again exactly
    # what was read but not committed.
    second = consumer(settings, group)
    second.assign(partitions)
    again = read(second, len(keys) - len(firsts))
    assert sorted(r.key for r in again) == sorted(set(keys) - {r.key for r in firsts.values()})
    second.close(autocommit=False)


def read(c: KafkaConsumer, count: int) -> list:
    """Polls until `count` records arrived (and fails if they do not)."""
    got = []
    while len(got) < count:
        batch = c.poll(timeout_ms=15_000)
        assert batch, f"only {len(got)} of {count} messages arrived"
        for records in batch.values():
            got.extend(records)
    return got


def test_a_processor_that_stops_fetching_leaves_for_a_restart(settings):
    """A consumer that holds its partitions but fetches nothing while messages wait (seen
    after a broker restart) exits, so that the process manager starts it again."""
    run = uuid.uuid4().hex[:10]
    topic = f"test-stall-{run}"
    admin = admin_client(settings)
    admin.create_topics({topic: {"num_partitions": 2}}, wait_for_metadata=True)
    processor = Processor(
        settings.model_copy(
            update={"kafka_topic_transactions": topic, "processor_group": f"test-stall-{run}"}
        )
    )
    try:
        wait_until(
            lambda: (
                processor.consumer.poll(timeout_ms=100) == {} and processor.consumer.assignment()
            ),
            what="the partitions",
        )
        watchdog = processor.watchdog
        long_ago = time.monotonic() - STALL_SECONDS - 1
        watchdog.last_read = watchdog.checked = long_ago
        watchdog.check(busy=False)  # nothing waits: it stays

        processor.consumer.pause(*processor.consumer.assignment())  # fetches nothing now
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        for i in range(5):
            producer.send(topic, key=str(i).encode(), value=b"{}")
        producer.flush()
        producer.close()
        watchdog.checked = long_ago
        watchdog.check(busy=False)  # the messages may be in this very fetch: it looks again
        assert watchdog.waiting_since is not None
        watchdog.waiting_since = watchdog.checked = long_ago
        watchdog.check(busy=True)  # its own work in flight: reading nothing is expected
        assert watchdog.waiting_since is None
        watchdog.check(busy=False)
        watchdog.waiting_since = watchdog.checked = long_ago
        with pytest.raises(SystemExit):
            watchdog.check(busy=False)
        # It left the group on the way out: its successor gets the partitions at once.
        assert admin.describe_groups([f"test-stall-{run}"])[f"test-stall-{run}"]["members"] == []
    finally:
        processor.consumer.close(autocommit=False)
        processor.producer.close(timeout=5)
        admin.delete_topics([topic])
        admin.close()


def test_a_processor_left_out_of_its_group_leaves_for_a_restart(settings):
    """A member whose partitions were revoked and who never got back into its group (seen
    under Compose: the group empty, the consumer still holding its old assignment, its
    loop turning) exits, so that the process manager starts it again."""
    run = uuid.uuid4().hex[:10]
    topic, group = f"test-left-out-{run}", f"test-left-out-{run}"
    admin = admin_client(settings)
    admin.create_topics({topic: {"num_partitions": 2}}, wait_for_metadata=True)
    processor = Processor(
        settings.model_copy(update={"kafka_topic_transactions": topic, "processor_group": group})
    )
    try:
        wait_until(
            lambda: processor.consumer.poll(timeout_ms=100) == {} and processor.settled,
            what="the partitions",
        )
        watchdog = processor.watchdog
        long_ago = time.monotonic() - UNASSIGNED_SECONDS - 1
        watchdog.unassigned_since = long_ago
        watchdog.check(busy=False, settled=False)  # a rebalance under way, still a member
        members = admin.describe_groups([group])[group]["members"]
        assert len(members) == 1
        # Out of the group (its next poll would rejoin; a stuck client never does).
        admin.remove_group_members(group, [MemberToRemove(member_id=members[0]["member_id"])])
        assert admin.describe_groups([group])[group]["members"] == []
        assert processor.consumer.assignment()  # it still believes it holds them
        watchdog.check(busy=False, settled=True)  # settled and holding: not this check's case
        watchdog.unassigned_since = long_ago
        with pytest.raises(SystemExit):
            watchdog.check(busy=False, settled=False)
    finally:
        processor.consumer.close(autocommit=False)
        processor.producer.close(timeout=5)
        admin.delete_topics([topic])
        admin.close()
