"""Report queries: rolled-up rows where they are complete, raw rows for the rest.

Within the range, whole local days come from `sales_daily` (when the report's zone is
the rollups' zone), whole UTC hours from `sales_hourly` (when the zone's offset is whole
hours), the edges from `transactions`; rows stored after the last rollup run (at or
above its horizon) are always read from `transactions`. All of it is read in one
REPEATABLE READ snapshot, so the answer equals a direct computation over the raw rows
at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from db.models.rollups import SALES_ROLLUP
from web.analytics.periods import ReportRange, local_midnight, whole_hour_offsets

CENT = Decimal("0.01")


@dataclass
class Plan:
    monthly: tuple[date, date] | None = None
    # (first day, day after the last, +1 to add or -1 to subtract)
    daily: list[tuple[date, date, int]] = field(default_factory=list)
    hourly: list[tuple[datetime, datetime]] = field(default_factory=list)
    quarters: list[tuple[datetime, datetime]] = field(default_factory=list)
    raw: list[tuple[datetime, datetime]] = field(default_factory=list)
    whole_hours: bool = True


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(moment: datetime) -> datetime:
    floor = _floor_hour(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


def _next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


QUARTER = timedelta(minutes=15)


def _floor_quarter(moment: datetime) -> datetime:
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def _ceil_quarter(moment: datetime) -> datetime:
    floor = _floor_quarter(moment)
    return floor if floor == moment else floor + QUARTER


def _months_and_days(
    first: date, last: date, m0: date, m1: date
) -> tuple[tuple[date, date] | None, list[tuple[date, date, int]]]:
    """Whole months m0..m1 plus the partial months at either end. A partial month that
    holds more days of the range than not is taken whole, less the days outside the range
    (subtracted): fewer rows to read, the same sums."""
    daily: list[tuple[date, date, int]] = []
    if first < m0:  # the range starts inside a month
        head = first.replace(day=1)
        if (first - head).days < (m0 - first).days:
            m0 = head
            daily.append((head, first, -1))
        else:
            daily.append((first, m0, 1))
    if m1 < last:  # the range ends inside a month
        after = _next_month(m1)
        if (after - last).days < (last - m1).days:
            daily.append((last, after, -1))
            m1 = after
        else:
            daily.append((m1, last, 1))
    return ((m0, m1) if m0 < m1 else None), daily


def plan(
    report: ReportRange, *, daily_zone: str | None, granularity: str | None, totals: bool = False
) -> Plan:
    """Which rows of which table cover which part of the range.

    An answer per period needs buckets that lie inside one period: days and months of
    the rollups' zone only when it is the report's zone, UTC hours only when the zone's
    offset is whole hours (else, for `totals`, quarters of an hour). An answer over the
    whole range (totals, by product, by category) may use any bucket that lies inside
    the range, whatever the zone.
    """
    result = Plan(whole_hours=whole_hour_offsets(report.zone, report.start, report.end))
    per_period = granularity is not None
    rest = [(report.start, report.end)]
    if daily_zone and granularity != "hour" and (not per_period or daily_zone == report.tz):
        zone = ZoneInfo(daily_zone)
        first = report.start.astimezone(zone).date()
        if local_midnight(first, zone) < report.start:
            first += timedelta(days=1)
        last = report.end.astimezone(zone).date()  # exclusive
        if first < last:
            a, b = local_midnight(first, zone), local_midnight(last, zone)
            rest = [(report.start, a), (b, report.end)]
            m0 = first if first.day == 1 else _next_month(first)
            m1 = last.replace(day=1)
            if granularity not in ("day", "week") and m0 <= m1:
                result.monthly, result.daily = _months_and_days(first, last, m0, m1)
            else:
                result.daily = [(first, last, 1)]
    hours_usable = result.whole_hours or not per_period
    for start, end in rest:
        if start >= end:
            continue
        h0, h1 = _ceil_hour(start), _floor_hour(end)
        q0, q1 = _ceil_quarter(start), _floor_quarter(end)
        if hours_usable and h0 < h1:
            result.hourly.append((h0, h1))
            result.raw += [(s, e) for s, e in ((start, h0), (h1, end)) if s < e]
        elif totals and q0 < q1:
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


def _facts(p: Plan, filters: Filters, params: dict, *, totals: bool) -> str:
    """A UNION ALL of rows (utc_ts, local_ts, product_id, revenue, quantity, transactions);
    with `totals`, from the rollups summed over all products (`*_totals`): far fewer rows."""
    where = filters.sql()
    suffix, product = ("_totals", "NULL::varchar") if totals else ("", "product_id")
    parts = []
    if p.monthly:
        params["m0"], params["m1"] = p.monthly
        parts.append(
            f"SELECT NULL::timestamptz, month::timestamp, {product}, revenue, quantity,"
            f" transactions FROM sales_monthly{suffix} WHERE month >= :m0 AND month < :m1{where}"
        )
    for i, (d0, d1, sign) in enumerate(p.daily):
        params[f"d0_{i}"], params[f"d1_{i}"] = d0, d1
        parts.append(
            f"SELECT NULL::timestamptz, day::timestamp, {product}, {sign} * revenue,"
            f" {sign} * quantity, {sign} * transactions"
            f" FROM sales_daily{suffix} WHERE day >= :d0_{i} AND day < :d1_{i}{where}"
        )
    for i, (h0, h1) in enumerate(p.hourly):
        params[f"h0_{i}"], params[f"h1_{i}"] = h0, h1
        parts.append(
            f"SELECT hour, hour AT TIME ZONE :tz, {product}, revenue, quantity, transactions"
            f" FROM sales_hourly{suffix} WHERE hour >= :h0_{i} AND hour < :h1_{i}{where}"
        )
    for i, (q0, q1) in enumerate(p.quarters):
        params[f"q0_{i}"], params[f"q1_{i}"] = q0, q1
        parts.append(
            "SELECT quarter, quarter AT TIME ZONE :tz, NULL::varchar, revenue, quantity,"
            f" transactions FROM sales_quarter_hour_totals"
            f" WHERE quarter >= :q0_{i} AND quarter < :q1_{i}"
        )
    raw = "SELECT occurred_at, occurred_at AT TIME ZONE :tz, product_id, total_amount, quantity, 1"
    for i, (r0, r1) in enumerate(p.raw):
        params[f"r0_{i}"], params[f"r1_{i}"] = r0, r1
        parts.append(
            f"{raw} FROM transactions WHERE ingest_xid < :watermark"
            f" AND occurred_at >= :r0_{i} AND occurred_at < :r1_{i}{where}"
        )
    # Stored since the last rollup run: read live, over the whole range.
    parts.append(
        f"{raw} FROM transactions WHERE ingest_xid >= :watermark"
        f" AND occurred_at >= :start AND occurred_at < :end{where}"
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


class Reports:
    """Every report over one consistent snapshot of the database."""

    def __init__(self, connection: Connection, report_timezone: str):
        self.conn = connection
        state = connection.execute(
            text("SELECT watermark, timezone FROM rollup_state WHERE name = :name"),
            {"name": SALES_ROLLUP},
        ).first()
        self.watermark = state.watermark if state else 0
        # Daily rollups are usable only if they were built in the zone now configured.
        self.daily_zone = state.timezone if state and state.timezone == report_timezone else None

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
        # Without filters, and when the answer is not per product, the rollups summed over
        # all products can stand in for the per-product ones.
        totals = not per_product and not filters.sql()
        p = plan(
            report,
            daily_zone=self.daily_zone,
            granularity=granularity,
            totals=totals,
        )
        params = {
            "tz": report.tz,
            "start": report.start,
            "end": report.end,
            "watermark": self.watermark,
            "product_id": filters.product_id,
            "category": filters.category,
        } | extra
        facts = _facts(p, filters, params, totals=totals)
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


def zero() -> dict:
    return figures(0, 0, 0)
