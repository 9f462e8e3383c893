"""Report ranges and periods in a time zone: what `from`, `to`, `tz` and `granularity` mean.

A date `from`/`to` is a whole local day (both inclusive); a datetime is an instant (the
range is then half-open, `from` <= t < `to`); a datetime without an offset is local time
in the report's zone. Every period is labelled the same way in the API, the rollups and
the dashboards: `YYYY-MM-DD` (day), `YYYY-Www` (ISO week), `YYYY-MM` (month), `YYYY`
(year), or the local ISO datetime of the hour's start with its offset (hour).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

GRANULARITIES = ("hour", "day", "week", "month", "year")
DEFAULT_DAYS = 30

# Every day a report may name (`from`, `to`, `date`): it holds every sale the collector
# accepts (2000 to 2099), and a day before or after it, in any offset, is still a date
# Python and PostgreSQL can hold.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2100, 12, 31)
# The zone names a report may use, listed once: a name from a request is looked up here
# and never used as a path first (`America` is a folder of the database, `../etc` leaves it).
ZONE_NAMES = frozenset(available_timezones())


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The instant a local day begins, in UTC."""
    return datetime.combine(day, time(0), zone).astimezone(UTC)


def offsets_divide(zone: ZoneInfo, start: datetime, end: datetime, step: timedelta) -> bool:
    """Whether the zone's offset is a whole number of `step`s throughout (sampled at every
    month's start): then every UTC bucket of that length lies inside one local period."""
    moment = start
    while True:
        offset = moment.astimezone(zone).utcoffset()
        if offset is None or offset % step:
            return False
        if moment >= end:
            return True
        moment = min(end, moment + timedelta(days=28))


@dataclass(frozen=True)
class ReportRange:
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    zone: ZoneInfo

    @property
    def tz(self) -> str:
        return self.zone.key


def resolve(
    first: date | datetime | None, last: date | datetime | None, zone: ZoneInfo
) -> ReportRange:
    """Turns the API's from/to into a UTC range; raises ValueError with what to change."""
    today = datetime.now(zone).date()
    if first is None and last is None:
        first, last = today - timedelta(days=DEFAULT_DAYS - 1), today
    elif first is None:
        first = (last.date() if isinstance(last, datetime) else last) - timedelta(
            days=DEFAULT_DAYS - 1
        )
    elif last is None:
        last = today if not isinstance(first, datetime) else datetime.now(zone)
    start = _instant(first, zone, end=False)
    end = _instant(last, zone, end=True)
    if end <= start:
        raise ValueError("`from` must be before `to` (dates are inclusive, datetimes half-open)")
    return ReportRange(start, end, zone)


def _instant(value: date | datetime, zone: ZoneInfo, *, end: bool) -> datetime:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=zone)).astimezone(UTC)
    return local_midnight(value + timedelta(days=1) if end else value, zone)


def period_start(moment: datetime, granularity: str, zone: ZoneInfo) -> date | datetime:
    """The key of the period holding a UTC instant: a local date, or the hour's UTC start."""
    local = moment.astimezone(zone)
    if granularity == "hour":
        return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    return day_period_start(local.date(), granularity)


def day_period_start(day: date, granularity: str) -> date:
    """The first day of the day, ISO week, month or year holding `day`."""
    if granularity == "day":
        return day
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    return day.replace(month=1, day=1)


EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def floor_to(moment: datetime, step: timedelta) -> datetime:
    """The start of the UTC bucket of length `step` (an hour, a quarter) holding `moment`."""
    return moment - (moment - EPOCH) % step


def ceil_to(moment: datetime, step: timedelta) -> datetime:
    floor = floor_to(moment, step)
    return floor if floor == moment else floor + step


def next_period(key: date | datetime, granularity: str) -> date | datetime:
    if granularity == "hour":
        return key + timedelta(hours=1)
    if granularity == "day":
        return key + timedelta(days=1)
    if granularity == "week":
        return key + timedelta(days=7)
    if granularity == "month":
        return (key + timedelta(days=32)).replace(day=1)
    return key.replace(year=key.year + 1)


def previous_period(key: date | datetime, granularity: str) -> date | datetime:
    if granularity == "hour":
        return key - timedelta(hours=1)
    if granularity == "day":
        return key - timedelta(days=1)
    if granularity == "week":
        return key - timedelta(days=7)
    if granularity == "month":
        return (key - timedelta(days=1)).replace(day=1)
    return key.replace(year=key.year - 1)


def periods(report: ReportRange, granularity: str, limit: int) -> list[date | datetime]:
    """Every period the range touches, in order; ValueError past `limit` periods."""
    keys = []
    key = period_start(report.start, granularity, report.zone)
    last = period_start(report.end - timedelta(microseconds=1), granularity, report.zone)
    while key <= last:
        keys.append(key)
        if len(keys) > limit:
            raise ValueError(
                f"the range holds more than {limit} {granularity} periods;"
                " choose a shorter range or a coarser granularity"
            )
        key = next_period(key, granularity)
    return keys


def label(key: date | datetime, granularity: str, zone: ZoneInfo) -> str:
    if granularity == "hour":
        return key.astimezone(zone).isoformat()
    if granularity == "day":
        return key.isoformat()
    if granularity == "week":
        year, week, _ = key.isocalendar()
        return f"{year}-W{week:02d}"
    if granularity == "month":
        return f"{key.year:04d}-{key.month:02d}"
    return f"{key.year:04d}"
