"""Report queries: rolled-up rows where they are complete, raw rows for the rest.

Which rows cover which part of the range is planned in `db/reports/plan.py`; rows
stored after the last rollup run (at or above its horizon) are always read from
`transactions`. All of it is read in one REPEATABLE READ snapshot, so the answer equals a
direct computation over the raw rows at that moment.

Rollups come in three families: per product, per category, and over all products; a
report reads the smallest that can answer it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Connection, Engine, text

from db.models.rollups import SALES_ROLLUP
from db.reports.periods import ReportRange
from db.reports.plan import Plan, plan
from db.reports.tables import TABLES
from db.rules import CENT


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
    product = "product_id" if family == "product" else "NULL::varchar"
    where = {"total": "", "category": " AND category = :category"}.get(family, filters.sql())
    parts = []
    for i, (unit, first, end, sign) in enumerate(p.calendar):
        params[f"c0_{i}"], params[f"c1_{i}"] = first, end
        parts.append(
            f"SELECT NULL::timestamptz, {unit}::timestamp, {product}, {sign} * revenue,"
            f" {sign} * quantity, {sign} * transactions FROM {TABLES[family, unit]}"
            f" WHERE {unit} >= :c0_{i} AND {unit} < :c1_{i}{where}"
        )
    for bucket, ranges in (("hour", p.hourly), ("quarter", p.quarters)):
        for i, (b0, b1) in enumerate(ranges):
            params[f"{bucket}0_{i}"], params[f"{bucket}1_{i}"] = b0, b1
            parts.append(
                f"SELECT {bucket}, {bucket} AT TIME ZONE :tz, {product}, revenue, quantity,"
                f" transactions FROM {TABLES[family, bucket]}"
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
