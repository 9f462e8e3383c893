"""A commit the group's coordinator refuses during a rebalance does not stop a consumer."""

import pytest
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaTimeoutError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

from streams import commits


class Consumer:
    def __init__(self, error=None):
        self.error, self.committed = error, []

    def commit(self, offsets=None):
        if self.error:
            raise self.error
        self.committed.append(offsets)


@pytest.mark.parametrize(
    "error",
    [
        RebalanceInProgressError("rebalancing"),
        CommitFailedError("generation over"),
        IllegalGenerationError("old generation"),
        UnknownMemberIdError("left the group"),
    ],
)
def test_a_commit_refused_by_a_rebalance_is_logged_and_reported(error, caplog):
    assert commits.commit(Consumer(error), {"tp": 3}) is False
    assert "refused during a rebalance" in caplog.text


def test_a_commit_sends_the_offsets_it_is_given_or_everything_polled():
    consumer = Consumer()
    assert commits.commit(consumer, {"tp": 3}) is True
    assert commits.commit(consumer) is True
    assert consumer.committed == [{"tp": 3}, None]


def test_other_kafka_errors_are_not_swallowed():
    with pytest.raises(KafkaTimeoutError):
        commits.commit(Consumer(KafkaTimeoutError("no coordinator")))
