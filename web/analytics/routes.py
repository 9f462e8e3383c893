"""Analytics endpoints: sales figures over time, by product and by category."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from sqlalchemy import text

from web.analytics import schemas
from web.analytics.periods import (
    ReportRange,
    label,
    local_midnight,
    periods,
    previous_period,
    resolve,
)
from web.analytics.queries import ZERO, Filters, Reports, snapshot
from web.common import ANALYTICS_KEY_SCHEME, require_api_key

blp = Blueprint(
    "analytics",
    __name__,
    url_prefix="/api/v1",
    description="Sales reports, exact to the cent at any moment.",
)
require_api_key(blp, "ANALYTICS_API_KEYS", optional=True)
SECURITY = [{ANALYTICS_KEY_SCHEME: []}, {}]


def answers(schema):
    """Documents the success answer without serialising through marshmallow: the views
    build JSON-ready dicts, and long series would spend most of their time in dumping."""
    return blp.alt_response(200, schema=schema, success=True)


def refuse(field: str, message: str):
    abort(422, message=f"{field}: {message}", errors={"query": {field: [message]}})


def zone_of(args) -> ZoneInfo:
    name = args.get("tz") or current_app.config["REPORT_TIMEZONE"]
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        refuse("tz", f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin or UTC")


def range_of(args) -> ReportRange:
    try:
        return resolve(args.get("from_"), args.get("to"), zone_of(args))
    except ValueError as exc:
        refuse("from", str(exc))


def check_limit(args) -> None:
    maximum = current_app.config["MAX_LIMIT"]
    if not 1 <= args["limit"] <= maximum:
        refuse("limit", f"must be between 1 and {maximum}")


def filters_of(args) -> Filters:
    return Filters(product_id=args.get("product_id"), category=args.get("category"))


def echo(args, report: ReportRange) -> dict:
    return {
        "from": str(args.get("from_") or report.start.astimezone(report.zone).date()),
        "to": str(
            args.get("to")
            or (report.end - timedelta(microseconds=1)).astimezone(report.zone).date()
        ),
        "tz": report.tz,
        "product_id": args.get("product_id"),
        "category": args.get("category"),
    }


def reports():
    """Every figure of one answer from one snapshot of the database."""
    engine = current_app.extensions["db_engine"]()
    return snapshot(engine, current_app.config["REPORT_TIMEZONE"])


def wants_csv(args) -> bool:
    if args.get("format"):
        return args["format"] == "csv"
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"])
    return (
        best == "text/csv"
        and request.accept_mimetypes["text/csv"] > request.accept_mimetypes["application/json"]
    )


def as_csv(items: list[dict], name: str) -> Response:
    buffer = io.StringIO()
    if items:
        writer = csv.DictWriter(buffer, fieldnames=list(items[0]), lineterminator="\n")
        writer.writeheader()
        for item in items:
            writer.writerow({k: "" if v is None else v for k, v in item.items()})
    return Response(
        buffer.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def answer_list(args, report: ReportRange, items: list[dict], name: str, **extra):
    """CSV when asked for, else the items with the parameters echoed beside them."""
    if wants_csv(args):
        return as_csv(csv_ready(items), name)
    return echo(args, report) | extra | {"items": items}


def money(value: Decimal | None) -> Decimal | None:
    return None if value is None else Decimal(value).quantize(Decimal("0.01"), ROUND_HALF_UP)


def csv_ready(items: list[dict]) -> list[dict]:
    """Money as it appears in JSON: rounded to the cent."""
    return [
        {k: money(v) if isinstance(v, Decimal) else v for k, v in item.items()} for item in items
    ]


def series(report: ReportRange, filters: Filters, granularity: str, r: Reports) -> list[dict]:
    limit = current_app.config["MAX_PERIODS"]
    try:
        keys = periods(report, granularity, limit)
    except ValueError as exc:
        refuse("granularity", str(exc))
    found = r.by_period(report, filters, granularity)
    return [{"period": label(key, granularity, report.zone)} | found.get(key, ZERO) for key in keys]


def change(current: Decimal, previous: Decimal) -> tuple[Decimal, float | None]:
    delta = current - previous
    pct = (
        None
        if previous == 0
        else float((delta / previous * 100).quantize(Decimal("0.01"), ROUND_HALF_UP))
    )
    return delta, pct


@blp.route("/analytics/summary")
class SummaryView(MethodView):
    @blp.doc(security=SECURITY)
    @blp.arguments(schemas.FilterArgs, location="query")
    @answers(schemas.Summary)
    def get(self, args):
        """Revenue, transactions, quantity and average purchase value over a range"""
        report = range_of(args)
        with reports() as r:
            figures = r.totals(report, filters_of(args))
        return echo(args, report) | figures


@blp.route("/analytics/sales")
class SalesView(MethodView):
    @blp.doc(security=SECURITY)
    @blp.arguments(schemas.SalesArgs, location="query")
    @answers(schemas.PeriodList)
    def get(self, args):
        """Sales per hour, day, ISO week, month or year; periods without sales as zeros"""
        report = range_of(args)
        with reports() as r:
            items = series(report, filters_of(args), args["granularity"], r)
        return answer_list(args, report, items, "sales", granularity=args["granularity"])


@blp.route("/analytics/trends")
class TrendsView(MethodView):
    @blp.doc(security=SECURITY)
    @blp.arguments(schemas.TrendArgs, location="query")
    @answers(schemas.TrendList)
    def get(self, args):
        """Each period with its change against the previous one (growth or decline)"""
        report = range_of(args)
        granularity = args["granularity"]
        keys = periods(report, granularity, current_app.config["MAX_PERIODS"])
        before = previous_period(keys[0], granularity)
        extended = ReportRange(local_midnight(before, report.zone), report.end, report.zone)
        with reports() as r:
            items = series(extended, filters_of(args), granularity, r)
        for previous, item in itertools.pairwise(items):
            item["change_abs"], item["change_pct"] = change(item["revenue"], previous["revenue"])
        return answer_list(args, report, items[1:], "trends", granularity=granularity)


@blp.route("/analytics/products")
class ProductRankingView(MethodView):
    @blp.doc(security=SECURITY)
    @blp.arguments(schemas.ProductRankingArgs, location="query")
    @answers(schemas.ProductList)
    def get(self, args):
        """Sales by product, top N by revenue, quantity or transactions"""
        check_limit(args)
        report = range_of(args)
        with reports() as r:
            items = r.by_product(
                report,
                Filters(category=args.get("category")),
                order_by=args["order_by"],
                limit=args["limit"],
            )
        return answer_list(
            args, report, items, "products", order_by=args["order_by"], limit=args["limit"]
        )


@blp.route("/analytics/categories")
class CategoryView(MethodView):
    @blp.doc(security=SECURITY)
    @blp.arguments(schemas.RangeArgs, location="query")
    @answers(schemas.CategoryList)
    def get(self, args):
        """Sales by category"""
        report = range_of(args)
        with reports() as r:
            items = r.by_category(report, Filters())
        return answer_list(args, report, items, "categories")


@blp.route("/reports/daily")
class DailyReportView(MethodView):
    @blp.doc(security=SECURITY)
    @blp.arguments(schemas.DailyReportArgs, location="query")
    @answers(schemas.DailyReport)
    def get(self, args):
        """One day: totals, top products, categories, and against the day before"""
        check_limit(args)
        zone = zone_of(args)
        day: date = args.get("date") or datetime.now(zone).date()
        today = resolve(day, day, zone)
        yesterday = resolve(day - timedelta(days=1), day - timedelta(days=1), zone)
        with reports() as r:
            totals = r.totals(today, Filters())
            previous = r.totals(yesterday, Filters())
            products = r.by_product(today, Filters(), limit=args["limit"])
            categories = r.by_category(today, Filters())
        delta, pct = change(totals["revenue"], previous["revenue"])
        return {
            "date": day.isoformat(),
            "tz": zone.key,
            "totals": totals,
            "previous_day": previous,
            "change_abs": delta,
            "change_pct": pct,
            "products": products,
            "categories": categories,
        }


@blp.route("/products")
class CatalogView(MethodView):
    @blp.doc(security=SECURITY)
    @blp.arguments(schemas.CatalogArgs, location="query")
    @answers(schemas.ProductPage)
    def get(self, args):
        """The product catalog, by product_id, a page at a time"""
        params = {
            "category": args.get("category"),
            "limit": args["per_page"],
            "offset": (args["page"] - 1) * args["per_page"],
        }
        where = "WHERE (CAST(:category AS text) IS NULL OR category = :category)"
        with reports() as r:
            total = r.conn.execute(text(f"SELECT count(*) FROM products {where}"), params).scalar()
            rows = r.conn.execute(
                text(
                    "SELECT product_id, name, category, price, updated_at FROM products"
                    f" {where} ORDER BY product_id LIMIT :limit OFFSET :offset"
                ),
                params,
            ).mappings()
            items = [dict(row) for row in rows]
        if wants_csv(args):
            return as_csv(items, "products")
        return {
            "items": items,
            "category": args.get("category"),
            "page": args["page"],
            "per_page": args["per_page"],
            "total": total,
        }


@blp.route("/products/<product_id>")
class ProductView(MethodView):
    @blp.doc(security=SECURITY)
    @answers(schemas.Product)
    def get(self, product_id):
        """One product"""
        with reports() as r:
            row = (
                r.conn.execute(
                    text(
                        "SELECT product_id, name, category, price, updated_at FROM products"
                        " WHERE product_id = :id"
                    ),
                    {"id": product_id},
                )
                .mappings()
                .first()
            )
        if row is None:
            abort(404, message=f"No product {product_id!r}; list them at /api/v1/products.")
        return dict(row)
