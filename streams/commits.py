"""Committing a consumer's offsets while its group may be rebalancing."""

from __future__ import annotations

import logging

from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

logger = logging.getLogger(__name__)

# What the coordinator answers a commit from a member whose generation is over or about
# to be: kafka-python raises the broker's error as it is, not always CommitFailedError.
REFUSED = (
    CommitFailedError,
    RebalanceInProgressError,
    IllegalGenerationError,
    UnknownMemberIdError,
)


def commit(consumer, offsets: dict | None = None) -> bool:
    """Commits `offsets` (or everything polled); False when the group was rebalancing.

    A refused commit loses nothing: the partitions' next owner, this consumer after its
    next poll included, reads those messages again, and every handler is idempotent."""
    try:
        consumer.commit(offsets)
    except REFUSED as exc:
        logger.warning("offset commit refused during a rebalance", extra={"error": repr(exc)})
        return False
    return True
