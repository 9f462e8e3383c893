"""Which partition of the transactions topic a key goes to.

Every writer of the topic (the collector, and replay from the API or the command line)
partitions by this one hash, so an id or a product lands in the same partition whichever
of them wrote it, and whatever the wire format.
"""

from __future__ import annotations

import random
import zlib

from kafka.partitioner import Partitioner


def partition_of(key: bytes, partitions: list[int]) -> int:
    """The partition of a key among the topic's sorted partitions."""
    return partitions[zlib.crc32(key) % len(partitions)]


class Crc32Partitioner(Partitioner):
    """kafka-python's default partitioner with the CRC-32 of the key (computed in C) in place
    of murmur2, which is pure Python there and costs more than the rest of a send. Only the
    system writes the topic, so the choice of hash is ours."""

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
        partitions = sorted(cluster.partitions_for_topic(topic))
        if serialized_key is None:
            return random.choice(list(cluster.available_partitions_for_topic(topic)) or partitions)
        return partition_of(serialized_key, partitions)
