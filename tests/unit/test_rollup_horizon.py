"""Widening a running transaction's 32-bit id to the 64-bit id the rows carry."""

import pytest

from db.reports.rollups import widen_xid

EPOCH = 2**32


@pytest.mark.parametrize(
    ("xid", "xmax", "expected"),
    [
        (1400, 1469, 1400),  # began before the snapshot
        (1472, 1469, 1472),  # began after it: above xmax, never an epoch back
        (EPOCH - 10, EPOCH + 5, EPOCH - 10),  # the previous epoch, across the wrap
        (3, EPOCH - 2, EPOCH + 3),  # began after the snapshot, in the next epoch
        (7, 5 * EPOCH + 9, 5 * EPOCH + 7),
    ],
)
def test_a_running_id_is_the_nearest_to_xmax(xid, xmax, expected):
    assert widen_xid(xid, xmax) == expected
