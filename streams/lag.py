"""Consumer lag of the system's Kafka consumer groups, as Prometheus metrics.

On each scrape: the committed offsets of each group (the admin client) against the end
offsets of the partitions it reads. The metric names are kafka_exporter's, so that
community dashboards and alerts read them as they are:

- `kafka_topic_partition_current_offset{topic, partition}`: the end offset (the next
  message's offset);
- `kafka_consumergroup_current_offset{consumergroup, topic, partition}`: the committed one;
- `kafka_consumergroup_lag{consumergroup, topic, partition}` and
  `kafka_consumergroup_lag_sum{consumergroup, topic}`: messages not yet committed;
- `kafka_lag_scrape_success`: 0 when Kafka did not answer (the series above are then
  missing, never stale).

Only the configured groups are read: test runs and tools leave other groups behind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from kafka import KafkaConsumer
from kafka.errors import KafkaError
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from config import Settings
from streams.topics import admin_client, client_options

logger = logging.getLogger(__name__)


def lag(settings: Settings, groups: list[str]) -> dict[str, dict]:
    """{group: {TopicPartition: (committed, end)}} for every partition a group committed."""
    admin = admin_client(settings, client_id="salesflow-lag")
    consumer = KafkaConsumer(**client_options(settings, "salesflow-lag"), request_timeout_ms=10_000)
    try:
        committed = admin.list_group_offsets(list(groups))
        partitions = {tp for offsets in committed.values() for tp in offsets}
        ends = consumer.end_offsets(sorted(partitions)) if partitions else {}
    finally:
        consumer.close()
        admin.close()
    return {
        group: {tp: (meta.offset, ends[tp]) for tp, meta in offsets.items() if tp in ends}
        for group, offsets in committed.items()
    }


class LagCollector(Collector):
    def __init__(self, settings: Settings, groups: list[str]):
        self.settings = settings
        self.groups = groups
        self.lock = threading.Lock()  # scrapes may overlap

    def collect(self) -> Iterator[GaugeMetricFamily]:
        success = GaugeMetricFamily(
            "kafka_lag_scrape_success", "1 when Kafka answered this scrape's offset requests"
        )
        try:
            with self.lock:
                found = lag(self.settings, self.groups)
        except (KafkaError, OSError) as exc:
            logger.warning("consumer lag not read", extra={"error": str(exc)})
            success.add_metric([], 0)
            yield success
            return
        success.add_metric([], 1)
        yield success
        end = GaugeMetricFamily(
            "kafka_topic_partition_current_offset",
            "End offset of a partition",
            labels=["topic", "partition"],
        )
        current = GaugeMetricFamily(
            "kafka_consumergroup_current_offset",
            "Committed offset of a consumer group in a partition",
            labels=["consumergroup", "topic", "partition"],
        )
        behind = GaugeMetricFamily(
            "kafka_consumergroup_lag",
            "Messages of a partition after the group's committed offset",
            labels=["consumergroup", "topic", "partition"],
        )
        total = GaugeMetricFamily(
            "kafka_consumergroup_lag_sum",
            "Messages of a topic after the group's committed offsets",
            labels=["consumergroup", "topic"],
        )
        ends: dict = {}
        sums: dict[tuple[str, str], int] = {}
        for group, partitions in sorted(found.items()):
            for tp, (committed, last) in sorted(partitions.items()):
                ends[tp] = last
                labels = [group, tp.topic, str(tp.partition)]
                waiting = max(0, last - committed)
                current.add_metric(labels, committed)
                behind.add_metric(labels, waiting)
                sums[(group, tp.topic)] = sums.get((group, tp.topic), 0) + waiting
        for tp, last in sorted(ends.items()):
            end.add_metric([tp.topic, str(tp.partition)], last)
        for (group, topic), value in sorted(sums.items()):
            total.add_metric([group, topic], value)
        yield from (end, current, behind, total)
