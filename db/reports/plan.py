"""Range planning: which rows of which rollup table, and which raw rows, cover a report's
range exactly.

Within the range, whole local years, months and days come from the yearly, monthly and
daily rollups (when the report's zone is the rollups' zone, or the answer is not per
period), whole UTC hours and quarter-hours from the hourly and quarter-hour ones (when
every period is made of them), the edges from `transactions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from db.reports.periods import (
    ReportRange,
    ceil_to,
    day_period_start,
    floor_to,
    local_midnight,
    next_period,
    offsets_divide,
)

HOUR = timedelta(hours=1)
QUARTER = timedelta(minutes=15)

# The calendar buckets an answer per period may read: those inside one of its periods.
CALENDAR = {
    None: ("year", "month", "day"),
    "year": ("year", "month", "day"),
    "month": ("month", "day"),
    "week": ("day",),
    "day": ("day",),
    "hour": (),
}

Part = tuple[str, date, date, int]  # (bucket, first, end exclusive, +1 to add or -1 to subtract)


@dataclass
class Plan:
    calendar: list[Part] = field(default_factory=list)  # local dates of the rollups' zone
    hourly: list[tuple[datetime, datetime]] = field(default_factory=list)
    quarters: list[tuple[datetime, datetime]] = field(default_factory=list)
    raw: list[tuple[datetime, datetime]] = field(default_factory=list)
    whole_hours: bool = True


def _count(first: date, end: date, unit: str) -> int:
    if unit == "year":
        return end.year - first.year
    if unit == "month":
        return (end.year - first.year) * 12 + end.month - first.month
    return (end - first).days


def _negated(parts: list[Part]) -> list[Part]:
    return [(unit, a, b, -sign) for unit, a, b, sign in parts]


def cover(first: date, end: date, units: tuple[str, ...]) -> tuple[int, list[Part]]:
    """The days first..end (exclusive) as whole buckets of `units[0]` and, at either end,
    finer buckets added, or a whole bucket less the finer ones outside the range:
    whichever reads the fewest buckets. Returns (buckets read, parts)."""
    if first >= end or not units:
        return 0, []
    unit, finer = units[0], units[1:]
    if not finer:
        return _count(first, end, unit), [(unit, first, end, 1)]

    def whole_less(start: date, inner: list[tuple[date, date]]) -> tuple[int, list[Part]]:
        cost, parts = 1, [(unit, start, next_period(start, unit), 1)]
        for a, b in inner:
            c, p = cover(a, b, finer)
            cost, parts = cost + c, parts + _negated(p)
        return cost, parts

    head = day_period_start(first, unit)
    if head == day_period_start(end - timedelta(days=1), unit) and first != head:
        # Inside one bucket.
        after = next_period(head, unit)
        options = [cover(first, end, finer), whole_less(head, [(head, first), (end, after)])]
        return min(options, key=lambda o: o[0])
    u0 = first if first == head else next_period(head, unit)
    u1 = day_period_start(end, unit)
    cost, parts = 0, []
    if u0 < u1:
        cost, parts = _count(u0, u1, unit), [(unit, u0, u1, 1)]
    partial_ends = (  # (days in the range, their bucket, its days outside the range)
        (first, u0, head, (head, first)),
        (u1, end, u1, (end, next_period(u1, unit))),
    )
    for a, b, bucket, outside in partial_ends:
        if a < b:
            c, p = min((cover(a, b, finer), whole_less(bucket, [outside])), key=lambda o: o[0])
            cost, parts = cost + c, parts + p
    return cost, _merged(parts)


def _merged(parts: list[Part]) -> list[Part]:
    """Adjacent buckets of one kind and sign as one range."""
    out: list[Part] = []
    for part in sorted(parts, key=lambda p: (p[0], p[3], p[1])):
        if out and out[-1][0] == part[0] and out[-1][3] == part[3] and out[-1][2] == part[1]:
            out[-1] = (part[0], out[-1][1], part[2], part[3])
        else:
            out.append(part)
    return out


def plan(
    report: ReportRange, *, daily_zone: str | None, granularity: str | None, family: str
) -> Plan:
    """Which rows of which table cover which part of the range.

    An answer per period needs buckets that lie inside one period: days, months and years
    of the rollups' zone only when it is the report's zone, UTC hours only when the zone's
    offset is whole hours, quarters only when it is whole quarters. An answer over the
    whole range (totals, by product, by category) may use any bucket inside the range.
    """
    whole_hours = offsets_divide(report.zone, report.start, report.end, HOUR)
    result = Plan(whole_hours=whole_hours)
    per_period = granularity is not None
    units = CALENDAR[granularity]
    rest = [(report.start, report.end)]
    if daily_zone and units and (not per_period or daily_zone == report.tz):
        zone = ZoneInfo(daily_zone)
        first = report.start.astimezone(zone).date()
        if local_midnight(first, zone) < report.start:
            first += timedelta(days=1)
        last = report.end.astimezone(zone).date()  # exclusive
        if first < last:
            rest = [
                (report.start, local_midnight(first, zone)),
                (local_midnight(last, zone), report.end),
            ]
            result.calendar = cover(first, last, units)[1]
    hours_usable = whole_hours or not per_period
    quarters_usable = family != "product" and (
        not per_period or offsets_divide(report.zone, report.start, report.end, QUARTER)
    )
    for start, end in rest:
        if start >= end:
            continue
        h0, h1 = ceil_to(start, HOUR), floor_to(end, HOUR)
        q0, q1 = ceil_to(start, QUARTER), floor_to(end, QUARTER)
        if hours_usable and h0 < h1:
            result.hourly.append((h0, h1))
            result.raw += [(s, e) for s, e in ((start, h0), (h1, end)) if s < e]
        elif quarters_usable and q0 < q1:
            result.quarters.append((q0, q1))
            result.raw += [(s, e) for s, e in ((start, q0), (q1, end)) if s < e]
        else:
            result.raw.append((start, end))
    return result
