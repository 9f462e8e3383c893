"""Creates the system's Kafka topics with the partition counts and retention from the settings.

`python -m streams.topics` creates what is missing, grows a topic that has fewer
partitions than configured (Kafka cannot shrink one), and sets the configured
retention (`retention.ms`) on a topic that has another. `--check` only asks the broker
whether it answers, for readiness checks.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import ConfigResource
from kafka.errors import KafkaError

from config import Settings, get_settings

logger = logging.getLogger(__name__)


def wanted_topics(settings: Settings) -> dict[str, int]:
    """Topic name -> partition count, as configured."""
    return {
        settings.kafka_topic_transactions: settings.kafka_transactions_partitions,
        settings.kafka_topic_notifications: settings.kafka_notifications_partitions,
    }


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Topic name -> the topic configs the system sets on it, as Kafka spells them."""
    hour_ms = 3_600_000
    return {
        settings.kafka_topic_transactions: {
            "retention.ms": str(settings.kafka_transactions_retention_hours * hour_ms)
        },
        settings.kafka_topic_notifications: {
            "retention.ms": str(settings.kafka_notifications_retention_hours * hour_ms)
        },
    }


def client_options(settings: Settings, client_id: str) -> dict:
    """Options every Kafka client of the system shares (consumers, producers, admin)."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": client_id,
        # kafka-python backs off failed metadata refreshes up to this bound (30 s by default)
        # and will not refresh sooner when asked. After a broker outage, consumers fetched
        # nothing for up to half a minute once the broker was back (their positions wait
        # for fresh leader epochs) and producers did not send. 1 s is the Java client's bound.
        "reconnect_backoff_max_ms": 1000,
    }


def subscribe(consumer: KafkaConsumer, topic: str, listener, seconds: float = 60) -> None:
    """Subscribes, then waits until the topic's partitions are known, before the first
    poll joins the group.

    The order matters with kafka-python (3.0). Joining before the partitions are known
    gets an empty assignment it does not always recover from. Subscribing after they
    were fetched leaves the group's metadata snapshot empty: the first answer that
    names them starts a second rebalance, and when that one spans more than one poll,
    its assignment is never applied and the member drops out of its group (seen in
    1 start in 13 with 100 ms polls in that order; none in 15 in this one).
    """
    consumer.subscribe([topic], listener=listener)
    deadline = time.monotonic() + seconds
    while not consumer.partitions_for_topic(topic):
        if time.monotonic() > deadline:
            raise SystemExit(
                f"topic {topic!r} has no partitions after {seconds:.0f}s;"
                " create it with `python -m streams.topics`"
            )
        time.sleep(0.5)


def admin_client(settings: Settings, **overrides) -> KafkaAdminClient:
    options = client_options(settings, "salesflow-admin") | {"request_timeout_ms": 10_000}
    return KafkaAdminClient(**(options | overrides))


def ensure_topics(
    admin: KafkaAdminClient,
    topics: dict[str, int],
    configs: dict[str, dict[str, str]] | None = None,
) -> dict[str, str]:
    """Makes each topic exist with at least its partition count and with `configs` (topic
    name -> configs); returns what was done per topic."""
    configs = configs or {}
    existing = {
        t["name"]: len(t["partitions"])
        for t in admin.describe_topics(list(topics))
        if t["error_code"] == 0
    }
    missing = {name: count for name, count in topics.items() if name not in existing}
    done = {name: f"exists with {count} partitions" for name, count in existing.items()}
    if missing:
        admin.create_topics(
            {
                name: {
                    "num_partitions": count,
                    "replication_factor": -1,
                    "configs": configs.get(name, {}),
                }
                for name, count in missing.items()
            },
            wait_for_metadata=True,
        )
        done |= {name: f"created with {count} partitions" for name, count in missing.items()}
    grow = {name: topics[name] for name, count in existing.items() if count < topics[name]}
    if grow:
        admin.create_partitions(grow)
        done |= {name: f"grown to {count} partitions" for name, count in grow.items()}
    for name, changed in apply_configs(admin, {n: configs[n] for n in existing if n in configs}):
        done[name] += f", {changed}"
    return done


def apply_configs(
    admin: KafkaAdminClient, configs: dict[str, dict[str, str]]
) -> list[tuple[str, str]]:
    """Sets on existing topics those of `configs` the topic does not have yet (the stack
    creates topics once, so a changed setting must reach a topic that is already there);
    returns (topic, what was set) for each topic changed. Other configs stay as they are."""
    if not configs:
        return []
    resources = [ConfigResource("TOPIC", name, list(wanted)) for name, wanted in configs.items()]
    current = admin.describe_configs(resources, config_filter="all")["topic"]
    stale = {}
    for name, wanted in configs.items():
        # Set on the topic itself: a value inherited from the broker's default is not
        # pinned (the default may change with the broker's version or configuration).
        own = {
            key: config["value"]
            for key, config in current.get(name, {}).items()
            if config["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        }
        if changes := {key: value for key, value in wanted.items() if own.get(key) != value}:
            stale[name] = changes
    if not stale:
        return []
    # Incremental: only the named configs change; the topic's others stay.
    results = admin.alter_configs(
        [ConfigResource("TOPIC", name, changes) for name, changes in stale.items()],
        incremental=True,
    )["topic"]
    failed = {name: result for name, result in results.items() if result != "OK"}
    if failed:
        raise KafkaError(f"the broker refused the topic configs: {failed}")
    return [
        (name, ", ".join(f"{key} set to {value}" for key, value in changes.items()))
        for name, changes in stale.items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the broker answers")
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        admin = admin_client(settings)
    except KafkaError as exc:
        print(
            f"Kafka at {','.join(settings.kafka_bootstrap_servers)} does not answer: {exc!r}",
            file=sys.stderr,
        )
        return 1
    try:
        if args.check:
            admin.list_topics()
            return 0
        for name, what in ensure_topics(
            admin, wanted_topics(settings), topic_configs(settings)
        ).items():
            print(f"topic {name}: {what}")
        return 0
    finally:
        admin.close()


if __name__ == "__main__":
    sys.exit(main())
