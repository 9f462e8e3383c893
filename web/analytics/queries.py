"""Report queries: rolled-up rows where they are complete, raw rows for the rest.

Within the range, whole local years, months and days come from the yearly, monthly and
daily rollups (when the report's zone is the rollups' zone, or the answer is not per
period), whole UTC hours and quarter-hours from the hourly and quarter-hour ones (when
every period is made of them), the edges from `transactions`; rows stored after the last
rollup run (at or above its horizon) are always read from `transactions`. All of it is
read in one REPEATABLE READ snapshot, so the answer equals a direct computation over the
raw rows at that moment.

Rollups come in three families: per product, per category, and over all products; a
report reads the smallest that can answer it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, text

from db.models.rollups import SALES_ROLLUP
from web.analytics.periods import (
    ReportRange,
    ceil_to,
    day_period_start,
    floor_to,
    local_midnight,
    next_period,
    offsets_divide,
)

CENT = Decimal("0.01")
HOUR = timedelta(hours=1)
QUARTER = timedelta(minutes=15)

# Rollup tables by family and bucket.
TABLES = {
    "product": {
        "hour": "sales_hourly",
        "day": "sales_daily",
        "month": "sales_monthly",
        "year": "sales_yearly",
    },
    "category": {
        "quarter": "sales_quarter_hour_by_category",
        "hour": "sales_hourly_by_category",
        "day": "sales_daily_by_category",
        "month": "sales_monthly_by_category",
        "year": "sales_yearly_by_category",
    },
    "total": {
        "quarter": "sales_quarter_hour_totals",
        "hour": "sales_hourly_totals",
        "day": "sales_daily_totals",
        "month": "sales_monthly_totals",
        "year": "sales_yearly_totals",
    },
}
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


@dataclass
class Filters:
    product_id: str | None = None
    category: str | None = None

    def sql(self) -> str:
        parts = []
        if self.product_id is not None:
            parts.append(" AND product_id = :product_id")
        if self.category is not None:
            parts.append(
                " AND product_id IN (SELECT product_id FROM products WHERE category = :category)"
            )
        return "".join(parts)


def _facts(p: Plan, family: str, filters: Filters, params: dict) -> str:
    """A UNION ALL of rows (utc_ts, local_ts, product_id, revenue, quantity, transactions)
    from the rollups of `family` and the raw rows."""
    tables = TABLES[family]
    product = "product_id" if family == "product" else "NULL::varchar"
    where = {"total": "", "category": " AND category = :category"}.get(family, filters.sql())
    parts = []
    for i, (unit, first, end, sign) in enumerate(p.calendar):
        params[f"c0_{i}"], params[f"c1_{i}"] = first, end
        parts.append(
            f"SELECT NULL::timestamptz, {unit}::timestamp, {product}, {sign} * revenue,"
            f" {sign} * quantity, {sign} * transactions FROM {tables[unit]}"
            f" WHERE {unit} >= :c0_{i} AND {unit} < :c1_{i}{where}"
        )
    for bucket, ranges in (("hour", p.hourly), ("quarter", p.quarters)):
        for i, (b0, b1) in enumerate(ranges):
            params[f"{bucket}0_{i}"], params[f"{bucket}1_{i}"] = b0, b1
            parts.append(
                f"SELECT {bucket}, {bucket} AT TIME ZONE :tz, {product}, revenue, quantity,"
                f" transactions FROM {tables[bucket]}"
                f" WHERE {bucket} >= :{bucket}0_{i} AND {bucket} < :{bucket}1_{i}{where}"
            )
    raw = "SELECT occurred_at, occurred_at AT TIME ZONE :tz, product_id, total_amount, quantity, 1"
    raw_where = filters.sql()
    for i, (r0, r1) in enumerate(p.raw):
        params[f"r0_{i}"], params[f"r1_{i}"] = r0, r1
        parts.append(
            f"{raw} FROM transactions WHERE ingest_xid < :watermark"
            f" AND occurred_at >= :r0_{i} AND occurred_at < :r1_{i}{raw_where}"
        )
    # Stored since the last rollup run: read live, over the whole range.
    parts.append(
        f"{raw} FROM transactions WHERE ingest_xid >= :watermark"
        f" AND occurred_at >= :start AND occurred_at < :end{raw_where}"
    )
    return "\n UNION ALL ".join(parts)


def _period_key(granularity: str, whole_hours: bool) -> str:
    if granularity == "hour":
        # The UTC instant the local hour begins.
        if whole_hours:
            return "date_trunc('hour', utc_ts)"
        return "(date_trunc('hour', local_ts) AT TIME ZONE :tz)"
    if granularity == "day":
        return "local_ts::date"
    return f"date_trunc('{granularity}', local_ts)::date"


class TooManyRawDays(Exception):
    """The answer would read more days of raw transactions than the bound allows."""

    def __init__(self, days: float, limit: int):
        super().__init__(f"{days:.1f} days of raw rows, more than {limit}")
        self.days, self.limit = days, limit


@dataclass(frozen=True)
class Bounds:
    """What one API request may cost (the tasks that read reports run unbounded)."""

    statement_timeout_ms: int  # each statement is cancelled after this
    max_raw_days: int  # most days of raw transactions one answer may read


@contextmanager
def snapshot(
    engine: Engine, report_timezone: str, bounds: Bounds | None = None
) -> Iterator[Reports]:
    """Reports that all read one snapshot of the database (the rollups' horizon and the
    rows above it must be seen at the same moment)."""
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        conn.execute(text("SET TRANSACTION READ ONLY"))
        if bounds:
            # For this transaction only: the pooled connection goes back unchanged.
            conn.execute(
                text("SELECT set_config('statement_timeout', :ms, true)"),
                {"ms": str(bounds.statement_timeout_ms)},
            )
        yield Reports(conn, report_timezone, max_raw_days=bounds.max_raw_days if bounds else None)
        conn.rollback()


class Reports:
    """Every report over one consistent snapshot of the database."""

    def __init__(
        self, connection: Connection, report_timezone: str, *, max_raw_days: int | None = None
    ):
        self.conn = connection
        self.max_raw_days = max_raw_days
        state = connection.execute(
            text("SELECT watermark, timezone FROM rollup_state WHERE name = :name"),
            {"name": SALES_ROLLUP},
        ).first()
        self.watermark = state.watermark if state else 0
        # Daily rollups are usable only if they were built in the zone now configured.
        self.daily_zone = state.timezone if state and state.timezone == report_timezone else None

    def _family(self, filters: Filters, per_product: bool) -> str:
        """The smallest rollups that answer: over all products, per category, or per
        product. Per category only while no product's sales are waiting to be moved to
        its new category by the next rollup run (rare, and brief)."""
        if per_product or filters.product_id is not None:
            return "product"
        if filters.category is None:
            return "total"
        moving = self.conn.execute(
            text(
                "SELECT EXISTS (SELECT FROM rollup_categories g JOIN products p"
                " USING (product_id) WHERE g.category <> p.category"
                " AND :category IN (g.category, p.category))"
            ),
            {"category": filters.category},
        ).scalar_one()
        return "product" if moving else "category"

    def _run(
        self,
        report: ReportRange,
        filters: Filters,
        select: str,
        *,
        granularity: str | None = None,
        per_product: bool = False,
        **extra,
    ) -> list[Any]:
        family = self._family(filters, per_product)
        p = plan(report, daily_zone=self.daily_zone, granularity=granularity, family=family)
        # Raw rows stand in for rollups at the edges, and for whole ranges where no rollup
        # fits (per period in a zone whose offset is not whole hours, for one product).
        raw_days = sum((end - start for start, end in p.raw), timedelta()) / timedelta(days=1)
        if self.max_raw_days is not None and raw_days > self.max_raw_days:
            raise TooManyRawDays(raw_days, self.max_raw_days)
        params = {
            "tz": report.tz,
            "start": report.start,
            "end": report.end,
            "watermark": self.watermark,
            "product_id": filters.product_id,
            "category": filters.category,
        } | extra
        facts = _facts(p, family, filters, params)
        if granularity:
            select = select.replace("{key}", _period_key(granularity, p.whole_hours))
        query = (
            "WITH facts (utc_ts, local_ts, product_id, revenue, quantity, transactions) AS ("
            f"{facts}) {select}"
        )
        return self.conn.execute(text(query), params).all()

    def totals(self, report: ReportRange, filters: Filters) -> dict:
        row = self._run(
            report,
            filters,
            "SELECT coalesce(sum(revenue), 0), coalesce(sum(transactions), 0),"
            " coalesce(sum(quantity), 0) FROM facts",
        )[0]
        return figures(*row)

    def by_period(self, report: ReportRange, filters: Filters, granularity: str) -> dict:
        rows = self._run(
            report,
            filters,
            "SELECT {key} AS period, sum(revenue), sum(transactions), sum(quantity)"
            " FROM facts GROUP BY 1",
            granularity=granularity,
        )
        return {_as_key(period): figures(*rest) for period, *rest in rows}

    def by_product(
        self,
        report: ReportRange,
        filters: Filters,
        *,
        order_by: str = "revenue",
        limit: int | None = None,
    ) -> list[dict]:
        """Per product, best first by `order_by`, with its share of all products' revenue."""
        assert order_by in ("revenue", "quantity", "transactions")
        # Sum per product first (a short key), rank and cut in the database, and only
        # then name the products that are returned.
        rows = self._run(
            report,
            filters,
            "SELECT f.product_id, p.name, p.category, f.revenue, f.transactions, f.quantity,"
            " f.revenue / nullif(f.grand, 0)"
            " FROM (SELECT product_id, sum(revenue) AS revenue, sum(transactions) AS transactions,"
            " sum(quantity) AS quantity, sum(sum(revenue)) OVER () AS grand"
            " FROM facts GROUP BY product_id HAVING sum(transactions) <> 0"
            f" ORDER BY {order_by} DESC, product_id"
            " LIMIT :limit) f JOIN products p USING (product_id)"
            f" ORDER BY f.{order_by} DESC, f.product_id",
            per_product=True,
            limit=limit,
        )
        return [
            {"product_id": pid, "name": name, "category": category}
            | figures(revenue, transactions, quantity)
            | {"revenue_share": _share(part)}
            for pid, name, category, revenue, transactions, quantity, part in rows
        ]

    def by_category(self, report: ReportRange, filters: Filters) -> list[dict]:
        """Per category, by revenue, with its share of all revenue."""
        rows = self._run(
            report,
            filters,
            "SELECT p.category, sum(f.revenue) AS revenue, sum(f.transactions),"
            " sum(f.quantity), sum(f.revenue) / nullif(sum(sum(f.revenue)) OVER (), 0)"
            " FROM (SELECT product_id, sum(revenue) AS revenue, sum(transactions) AS transactions,"
            " sum(quantity) AS quantity FROM facts GROUP BY product_id"
            " HAVING sum(transactions) <> 0) f"
            " JOIN products p USING (product_id) GROUP BY p.category"
            " ORDER BY revenue DESC, p.category",
            per_product=True,
        )
        return [
            {"category": category}
            | figures(revenue, transactions, quantity)
            | {"revenue_share": _share(part)}
            for category, revenue, transactions, quantity, part in rows
        ]


def _share(part: Decimal | None) -> float:
    return 0.0 if part is None else round(float(part), 6)


def _as_key(value):
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


def figures(revenue, transactions, quantity) -> dict:
    revenue = Decimal(revenue or 0)
    transactions = int(transactions or 0)
    return {
        "revenue": revenue,
        "transactions": transactions,
        "quantity": int(quantity or 0),
        "avg_purchase_value": (revenue / transactions).quantize(CENT, ROUND_HALF_UP)
        if transactions
        else None,
    }


# A period without sales (merged into new dicts, never changed).
ZERO = figures(0, 0, 0)
