"""Offsets are committed only past chunks that are stored, partition by partition."""

import uuid

from kafka import TopicPartition

from consumers.processor import Chunk, Tracker, records_for_chunk

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


def chunk(**last_offsets) -> Chunk:
    offsets = {P0 if name == "p0" else P1: offset for name, offset in last_offsets.items()}
    return Chunk(uuid.uuid4(), [], offsets)


def committed(offsets) -> dict:
    return {tp.partition: meta.offset for tp, meta in offsets.items()}


def test_nothing_is_committed_before_a_chunk_is_stored():
    tracker = Tracker()
    tracker.add(chunk(p0=9))
    offsets, done = tracker.committable()
    assert offsets == {} and done == []


def test_a_later_finished_chunk_waits_for_an_earlier_one():
    tracker = Tracker()
    first, second = chunk(p0=9, p1=4), chunk(p0=19)
    tracker.add(first)
    tracker.add(second)
    second.finished = True
    offsets, done = tracker.committable()
    assert committed(offsets) == {} and done == []
    first.finished = True
    offsets, done = tracker.committable()
    # Past the last message of each partition's finished run.
    assert committed(offsets) == {0: 20, 1: 5}
    assert {c.chunk_id for c in done} == {first.chunk_id, second.chunk_id}
    assert tracker.chunks == {}


def test_one_partition_is_not_held_back_by_another():
    tracker = Tracker()
    a, b = chunk(p0=9), chunk(p1=3)
    tracker.add(a)
    tracker.add(b)
    b.finished = True
    offsets, done = tracker.committable()
    assert committed(offsets) == {1: 4}
    assert [c.chunk_id for c in done] == [b.chunk_id]
    assert list(tracker.chunks) == [a.chunk_id]


def test_a_chunk_over_two_partitions_is_kept_until_both_may_commit():
    tracker = Tracker()
    blocker, shared = chunk(p1=2), chunk(p0=5, p1=8)
    tracker.add(blocker)
    tracker.add(shared)
    shared.finished = True
    offsets, done = tracker.committable()
    assert committed(offsets) == {0: 6}
    assert done == []  # partition 1 still waits on it behind the blocker
    blocker.finished = True
    offsets, done = tracker.committable()
    assert committed(offsets) == {1: 9}


def test_revoked_partitions_are_forgotten():
    tracker = Tracker()
    a = chunk(p0=9)
    tracker.add(a)
    tracker.forget({P0})
    assert tracker.chunks == {} and tracker.committable() == ({}, [])


class Record:
    def __init__(self, items: int | None):
        self.headers = [] if items is None else [("format", b"2"), ("items", str(items).encode())]


def test_a_chunk_holds_at_most_the_chunk_size_in_items_and_never_splits_a_record():
    assert records_for_chunk([Record(None)] * 5, 3) == (3, 3)
    assert records_for_chunk([Record(400), Record(600), Record(1)], 1000) == (2, 1000)
    assert records_for_chunk([Record(400), Record(601), Record(1)], 1000) == (1, 400)
    # A record bigger than a chunk goes alone.
    assert records_for_chunk([Record(5000), Record(1)], 1000) == (1, 5000)
    assert records_for_chunk([Record(2), Record(None)], 1000) == (2, 3)
