"""Leaving for a restart when a kafka-python group consumer has stopped consuming.

kafka-python 3.0 was seen stopping in two ways, each of which waits forever without an
error: a consumer started while the broker is still loading can hold no partitions while
its group has no members at all; and a consumer holding its partitions can fetch nothing
from them after a broker restart while messages wait. A service that exits is started
again by its process manager (supervisord, Compose), and reads its uncommitted messages
again. A spare consumer without partitions in a healthy group is left alone, and so is
one whose own work is in flight.
"""

from __future__ import annotations

import logging
import time

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from config import Settings
from consumers.topics import admin_client

logger = logging.getLogger(__name__)

# How long without partitions is a stop (a rebalance can take a while)...
UNASSIGNED_SECONDS = 60.0
# ...and how long without reading while messages wait (a healthy consumer that is not
# busy with its own work reads them at once).
STALL_SECONDS = 20.0


class Watchdog:
    def __init__(self, consumer: KafkaConsumer, settings: Settings, group: str):
        self.consumer = consumer
        self.settings = settings
        self.group = group
        self.last_read = self.checked = time.monotonic()
        self.unassigned_since: float | None = time.monotonic()

    def read(self) -> None:
        """Records were just read (or handled)."""
        self.last_read = time.monotonic()

    def check(self, *, busy: bool) -> None:
        """Raises SystemExit(3) when the consumer has stopped consuming; `busy`: work of
        its own is in flight, so that reading nothing is expected."""
        now = time.monotonic()
        assigned = self.consumer.assignment()
        if assigned:
            self.unassigned_since = None
            if busy or min(now - self.last_read, now - self.checked) < STALL_SECONDS:
                return
            self.checked = now
            try:
                ends = self.consumer.end_offsets(list(assigned))
                waiting = sum(
                    max(0, ends[tp] - (self.consumer.committed(tp) or 0)) for tp in assigned
                )
            except KafkaError:
                return  # the broker is away: nothing could be read anyway
            if waiting:
                logger.error(
                    "holding partitions with messages waiting but reading none; restarting",
                    extra={"waiting": waiting, "seconds": round(now - self.last_read)},
                )
                raise SystemExit(3)
            return
        if self.unassigned_since is None:
            self.unassigned_since = now
        if now - self.unassigned_since < UNASSIGNED_SECONDS:
            return
        self.unassigned_since = now
        admin = admin_client(self.settings)
        try:
            members = admin.describe_groups([self.group])[self.group]["members"]
        finally:
            admin.close()
        if not members:
            logger.error("no partitions and no members in the consumer group; restarting")
            raise SystemExit(3)
