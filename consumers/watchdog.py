"""Leaving for a restart when a kafka-python group consumer has stopped consuming.

kafka-python 3.0 was seen stopping in these ways, each without an error: a consumer
started while the broker is still loading can hold no partitions while its group has no
members at all; one whose partitions were revoked can stay out of its group for good,
its old assignment still in hand and its group empty; and a consumer holding its
partitions can fetch nothing from them while messages wait: for up to half a minute
after a broker outage unless its metadata backoff is bounded (`client_options` bounds
it), and now and then just after joining a new topic, for reasons not yet known. A
service that exits is started again by its process manager (supervisord, Compose), and
reads its uncommitted messages again. It leaves the group on the way out, so that its
successor gets the partitions at once instead of after the session timeout. A spare
consumer without partitions that is a member of its group is left alone, and so is one
whose own work is in flight.
"""

from __future__ import annotations

import logging
import time

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from config import Settings
from streams.topics import admin_client

logger = logging.getLogger(__name__)

# How long without partitions, or in a rebalance, before the group is asked whether this
# consumer is still a member (a healthy rebalance of members that poll every second ends
# within a few; a consumer that is no member any more never gets back)...
UNASSIGNED_SECONDS = 15.0
# ...and how often it is asked again while the answer is yes.
MEMBERSHIP_CHECK_SECONDS = 5.0
# ...and how long messages may wait while nothing is read (a healthy consumer that is
# not busy with its own work reads them within its fetch wait, half a second).
STALL_SECONDS = 10.0
# Waiting messages are looked for this often once nothing has been read for as long.
CHECK_SECONDS = 2.0


class Watchdog:
    def __init__(self, consumer: KafkaConsumer, settings: Settings, group: str):
        self.consumer = consumer
        self.settings = settings
        self.group = group
        self.last_read = self.checked = time.monotonic()
        self.waiting_since: float | None = None
        self.unassigned_since: float | None = time.monotonic()

    def read(self) -> None:
        """Records were just read (or handled)."""
        self.last_read = time.monotonic()
        self.waiting_since = None

    def check(self, *, busy: bool, settled: bool = True) -> None:
        """Raises SystemExit(3) when the consumer has stopped consuming; `busy`: work of
        its own is in flight, so that reading nothing is expected; `settled`: its last
        rebalance ended with an assignment (a revocation with none after it counts as no
        partitions: a member that dropped out keeps its old assignment)."""
        assigned = self.consumer.assignment()
        if assigned and settled:
            self.unassigned_since = None
            self._check_stall(assigned, busy)
        else:
            self._check_unassigned()

    def _check_stall(self, assigned, busy: bool) -> None:
        now = time.monotonic()
        if busy:
            self.waiting_since = None
            return
        if min(now - self.last_read, now - self.checked) < CHECK_SECONDS:
            return
        self.checked = now
        waiting = self._waiting(assigned)
        if not waiting:
            self.waiting_since = None
        elif self.waiting_since is None:
            # Messages that arrived a moment ago may be in this very fetch: look again later.
            self.waiting_since = now
        elif now - self.waiting_since >= STALL_SECONDS:
            self._leave(
                "holding partitions with messages waiting but reading none; restarting",
                waiting=waiting,
                seconds=round(now - self.waiting_since),
                partitions=self._partition_states(assigned),
            )

    def _waiting(self, assigned) -> int:
        """Messages after the committed offsets (0 when the broker cannot tell)."""
        try:
            ends = self.consumer.end_offsets(list(assigned))
            return sum(max(0, ends[tp] - (self.consumer.committed(tp) or 0)) for tp in assigned)
        except KafkaError:
            return 0  # the broker is away: nothing could be read anyway

    def _check_unassigned(self) -> None:
        now = time.monotonic()
        if self.unassigned_since is None:
            self.unassigned_since = now
        if now - self.unassigned_since < UNASSIGNED_SECONDS:
            return
        # Asked again soon, not a whole UNASSIGNED_SECONDS later.
        self.unassigned_since = now - UNASSIGNED_SECONDS + MEMBERSHIP_CHECK_SECONDS
        member = self.consumer.group_metadata().member_id
        admin = admin_client(self.settings)
        try:
            members = admin.describe_groups([self.group])[self.group]["members"]
        except KafkaError:
            return  # the broker is away: nothing could be read anyway
        finally:
            admin.close()
        if member not in {m["member_id"] for m in members}:
            self._leave(
                "no partitions, or a rebalance that never ended, and not a member of the"
                " consumer group; restarting",
                member_id=member,
                members=len(members),
            )

    def _leave(self, message: str, **details) -> None:
        logger.error(message, extra=details)
        try:
            self.consumer.close(autocommit=False, timeout_ms=5000)
        except KafkaError:
            logger.warning("could not leave the consumer group cleanly", exc_info=True)
        raise SystemExit(3)

    def _partition_states(self, assigned) -> dict[int, dict] | str:
        """What the client believes about each partition, for the log: why it fetches
        nothing. These are kafka-python's internals, read defensively."""
        try:
            states = self.consumer._subscription.assignment
            pending = self.consumer._fetcher._nodes_with_pending_fetch_requests
            cluster = self.consumer._client.cluster
            result = {}
            for tp in sorted(assigned):
                state, leader = states[tp], cluster.leader_for_partition(tp)
                result[tp.partition] = {
                    "position": state.position.offset if state.has_valid_position else None,
                    "paused": state.paused,
                    "awaiting_reset": state.awaiting_reset,
                    "awaiting_validation": state._awaiting_validation,
                    "pending_revocation": state._pending_revocation,
                    "fetchable": state.is_fetchable(),
                    "leader": leader,
                    "fetch_in_flight_to_leader": leader in pending,
                }
            return result
        except Exception as error:  # diagnostics only: never in the way of the restart
            return f"unavailable: {error!r}"
