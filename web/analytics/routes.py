"""Analytics endpoints: sales figures over time, by product and by category."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from flask_smorest.error_handler import ErrorSchema
from psycopg2.errors import QueryCanceled
from sqlalchemy.exc import OperationalError
from webargs.flaskparser import FlaskParser

from db import rules
from db.reports import catalog
from db.reports.periods import (
    ReportRange,
    label,
    local_midnight,
    periods,
    previous_period,
    resolve,
)
from db.reports.queries import ZERO, Bounds, Filters, Reports, TooManyRawDays, snapshot
from web.analytics import schemas
from web.common import ANALYTICS_KEY_SCHEME, require_api_key


class QueryParser(FlaskParser):
    """Refused parameters are named in the message as well as listed in `errors`."""

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        problems = "; ".join(
            f"{name}: {' '.join(map(str, problem)) if isinstance(problem, list) else problem}"
            for fields in error.messages.values()
            for name, problem in fields.items()
        )
        abort(
            error_status_code or 422,
            exc=error,
            messages=error.messages,
            message=problems,
            headers=error_headers,
        )


class AnalyticsBlueprint(Blueprint):
    ARGUMENTS_PARSER = QueryParser()


blp = AnalyticsBlueprint(
    "analytics",
    __name__,
    url_prefix="/api/v1",
    description="Sales reports, exact to the cent at any moment.",
)
require_api_key(blp, "ANALYTICS_API_KEYS", optional=True)
SECURITY = [{ANALYTICS_KEY_SCHEME: []}, {}]
RETRY_AFTER_SECONDS = 5
# Cells that a spreadsheet would run as a formula (OWASP's list): written with a quote first.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def refuse(field: str, message: str, *also: str, where: str = "query"):
    """422 naming the parameter (and any others the message asks to change)."""
    abort(
        422,
        message=f"{field}: {message}",
        errors={where: {name: [message] for name in (field, *also)}},
    )


@blp.before_request
def refuse_repeated_parameters():
    """`?tz=UTC&tz=Asia/Tokyo` is ambiguous: refused rather than read as either."""
    for name in request.args:
        if len(request.args.getlist(name)) > 1:
            refuse(name[:64], "is given more than once; give each parameter once")


def answers(schema, *, csv: bool = False):
    """Documents the answers: success (JSON, and CSV when `csv`), and 503 when the
    database took too long. The success answer is not serialised through marshmallow:
    the views build JSON-ready dicts, and long series would spend most of their time
    in dumping."""

    def decorator(view):
        view = blp.alt_response(200, schema=schema, success=True)(view)
        view = blp.alt_response(
            503,
            schema=ErrorSchema,
            description="The query took too long; retry, or narrow the range.",
            headers={"Retry-After": {"schema": {"type": "integer"}}},
        )(view)
        if csv:
            content = {"text/csv": {"schema": {"type": "string"}}}
            view = blp.doc(responses={200: {"content": content}})(view)
        return view

    return decorator


def zone_of(args) -> ZoneInfo:
    return args.get("tz") or ZoneInfo(current_app.config["REPORT_TIMEZONE"])


def range_of(args) -> ReportRange:
    try:
        return resolve(args.get("from_"), args.get("to"), zone_of(args))
    except ValueError as exc:
        refuse("from", str(exc), "to")


def periods_of(report: ReportRange, granularity: str) -> list[date | datetime]:
    try:
        return periods(report, granularity, current_app.config["MAX_PERIODS"])
    except ValueError as exc:
        refuse("granularity", str(exc), "from", "to")


def filters_of(args) -> Filters:
    return Filters(product_id=args.get("product_id"), category=args.get("category"))


def echo(args, report: ReportRange) -> dict:
    first = args.get("from_") or report.start.astimezone(report.zone).date()
    last = args.get("to") or (report.end - timedelta(microseconds=1)).astimezone(report.zone).date()
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "tz": report.tz,
        "product_id": args.get("product_id"),
        "category": args.get("category"),
    }


@contextmanager
def reports() -> Iterator[Reports]:
    """Every figure of one answer from one snapshot of the database, bounded: a statement
    that runs too long is cancelled (503, retry), an answer that would read too many raw
    rows is refused (422) before it runs."""
    engine = current_app.extensions["db_engine"]()
    bounds = Bounds(
        statement_timeout_ms=current_app.config["STATEMENT_TIMEOUT_MS"],
        max_raw_days=current_app.config["MAX_RAW_DAYS"],
    )
    try:
        with snapshot(engine, current_app.config["REPORT_TIMEZONE"], bounds) as r:
            yield r
    except OperationalError as exc:
        if not isinstance(exc.orig, QueryCanceled):
            raise
        abort(
            503,
            message=f"The query took longer than {bounds.statement_timeout_ms} ms and was"
            " cancelled; retry in a moment, or ask for a shorter range (from, to).",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    except TooManyRawDays as exc:
        refuse(
            "from",
            f"this answer would read {exc.days:.0f} days of single transactions, more than"
            f" ANALYTICS_MAX_RAW_DAYS ({exc.limit}): per-period answers in a zone whose offset"
            " is not whole hours, for one product, cannot use the rollups. Choose a range"
            f" (from, to) of at most {exc.limit} days, a zone (tz) whose offset is whole"
            " hours, or a coarser question (no product_id, or summary).",
            "to",
            "tz",
        )


def wants_csv(args) -> bool:
    if args.get("format"):
        return args["format"] == "csv"
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"])
    return (
        best == "text/csv"
        and request.accept_mimetypes["text/csv"] > request.accept_mimetypes["application/json"]
    )


def neutralised(value):
    """A text cell a spreadsheet would read as a formula, quoted (OWASP's advice). Only
    text is touched: numbers (Decimal, int, float: a change of -12.5) stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def as_csv(items: list[dict], name: str) -> Response:
    buffer = io.StringIO()
    if items:
        # RFC 4180's CRLF: the writer then quotes any cell holding a CR or LF as well.
        writer = csv.DictWriter(buffer, fieldnames=list(items[0]), lineterminator="\r\n")
        writer.writeheader()
        for item in items:
            writer.writerow({k: "" if v is None else neutralised(v) for k, v in item.items()})
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
    keys = periods_of(report, granularity)
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
    @answers(schemas.PeriodList, csv=True)
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
    @answers(schemas.TrendList, csv=True)
    def get(self, args):
        """Each period with its change against the previous one (growth or decline)"""
        report = range_of(args)
        granularity = args["granularity"]
        # Counted before anything else is done: a range too long is refused at once.
        keys = periods_of(report, granularity)
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
    @answers(schemas.ProductList, csv=True)
    def get(self, args):
        """Sales by product, top N by revenue, quantity or transactions"""
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
    @blp.arguments(schemas.CategoryArgs, location="query")
    @answers(schemas.CategoryList, csv=True)
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
    @answers(schemas.ProductPage, csv=True)
    def get(self, args):
        """The product catalog, by product_id, a page at a time"""
        with reports() as r:
            total, items = catalog.product_page(
                r.conn,
                category=args.get("category"),
                limit=args["per_page"],
                offset=(args["page"] - 1) * args["per_page"],
            )
        if wants_csv(args):
            return as_csv(items, "products")
        return {
            "items": items,
            "category": args.get("category"),
            "page": args["page"],
            "per_page": args["per_page"],
            "total": total,
        }


@blp.route("/products/<product_id>", parameters=[schemas.PRODUCT_ID_PARAMETER])
class ProductView(MethodView):
    @blp.doc(security=SECURITY)
    @answers(schemas.Product)
    @blp.alt_response(422, response="UNPROCESSABLE_ENTITY")
    @blp.alt_response(404, response="NOT_FOUND")
    def get(self, product_id):
        """One product"""
        try:
            rules.identifier(product_id)
        except ValueError as exc:
            refuse("product_id", str(exc), where="path")
        with reports() as r:
            row = catalog.product(r.conn, product_id)
        if row is None:
            abort(404, message=f"No product {product_id!r}; list them at /api/v1/products.")
        return row
