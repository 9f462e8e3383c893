"""The calendar cover of a report range: whole years, months and days, some subtracted,
must add up to exactly the range's days."""

import random
from collections import Counter
from datetime import date, timedelta

import pytest

from db.reports.plan import CALENDAR, cover


def days_of(parts) -> Counter:
    signed: Counter = Counter()
    for _, first, end, sign in parts:
        day = first
        while day < end:
            signed[day] += sign
            day += timedelta(days=1)
    return Counter({day: n for day, n in signed.items() if n})


def plain_cost(first: date, end: date, units: tuple[str, ...]) -> int:
    """Buckets read without subtracting: whole buckets of each unit, finer at the ends."""
    days = [first + timedelta(days=i) for i in range((end - first).days)]
    cost, i = 0, 0
    while i < len(days):
        for unit in units:
            day = days[i]
            if unit == "year" and (day.month, day.day) == (1, 1):
                following = date(day.year + 1, 1, 1)
            elif unit == "month" and day.day == 1:
                following = (day + timedelta(days=32)).replace(day=1)
            elif unit == "day":
                following = day + timedelta(days=1)
            else:
                continue
            if following <= end:
                cost += 1
                i += (following - day).days
                break
    return cost


@pytest.mark.parametrize("granularity", [None, "month", "day"])
def test_cover_adds_up_to_the_range_and_reads_no_more_than_plain_buckets(granularity):
    units = CALENDAR[granularity]
    rng = random.Random(7)
    cases = [(date(2024, 2, 5), date(2026, 11, 27)), (date(2024, 1, 1), date(2025, 1, 1))]
    cases += [(date(2024, 12, 31), date(2025, 1, 2)), (date(2024, 2, 29), date(2024, 3, 1))]
    for _ in range(300):
        first = date(2023, 1, 1) + timedelta(days=rng.randint(0, 1500))
        cases.append((first, first + timedelta(days=rng.randint(1, 900))))
    for first, end in cases:
        cost, parts = cover(first, end, units)
        expected = Counter({first + timedelta(days=i): 1 for i in range((end - first).days)})
        assert days_of(parts) == expected, (first, end, parts)
        assert {unit for unit, *_ in parts} <= set(units)
        assert cost <= plain_cost(first, end, units), (first, end, parts)


def test_two_years_read_whole_years():
    first, end = date(2024, 11, 27), date(2026, 11, 27)
    cost, parts = cover(first, end, CALENDAR[None])
    assert any(
        unit == "year" and a <= date(2025, 1, 1) and b >= date(2026, 1, 1) and sign == 1
        for unit, a, b, sign in parts
    )
    assert cost * 2 < plain_cost(first, end, CALENDAR[None])
