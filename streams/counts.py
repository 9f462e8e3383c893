"""Kafka messages produced (acknowledged) and consumed, by topic, in every service that
writes or reads a topic: the same two counters everywhere, so that
`sum by (job, topic) (rate(kafka_messages_produced_total[5m]))` compares them."""

from prometheus_client import Counter

PRODUCED = Counter(
    "kafka_messages_produced_total", "Messages Kafka acknowledged, by topic", ["topic"]
)
CONSUMED = Counter("kafka_messages_consumed_total", "Messages read from Kafka, by topic", ["topic"])


def declare(*, produces: tuple[str, ...] = (), consumes: tuple[str, ...] = ()) -> None:
    """Makes the series of the topics a service writes or reads exist from its start, at
    0, so that rates and alerts see its first message."""
    for topic in produces:
        PRODUCED.labels(topic).inc(0)
    for topic in consumes:
        CONSUMED.labels(topic).inc(0)


def consumed(batch: dict) -> None:
    """Counts a poll's records ({TopicPartition: [records]})."""
    for partition, records in batch.items():
        CONSUMED.labels(partition.topic).inc(len(records))
