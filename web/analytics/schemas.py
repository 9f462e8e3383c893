"""Query parameters and response bodies of the Analytics API."""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP

from marshmallow import Schema, ValidationError, fields, validate

from web.analytics.periods import GRANULARITIES


class DateOrDateTime(fields.Field):
    """`2026-03-01` (a whole local day) or `2026-03-01T10:00:00+01:00` (an instant)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError("must be a date (YYYY-MM-DD) or an ISO 8601 datetime")
        try:
            return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(
                f"{value!r} is not a date (YYYY-MM-DD) or an ISO 8601 datetime"
            ) from None


class Money(fields.Decimal):
    def __init__(self, **kwargs):
        super().__init__(places=2, rounding=ROUND_HALF_UP, **kwargs)


RANGE_HELP = (
    "A date (whole local day, inclusive) or an ISO datetime (half-open range). "
    "Default: the last 30 days."
)


class RangeArgs(Schema):
    # No examples on parameters: Swagger UI would fill them in for every request.
    from_ = DateOrDateTime(data_key="from", metadata={"description": RANGE_HELP})
    to = DateOrDateTime(metadata={"description": RANGE_HELP})
    tz = fields.String(
        metadata={"description": "IANA time zone, e.g. Europe/Berlin; default REPORT_TIMEZONE."}
    )
    format = fields.String(
        validate=validate.OneOf(["json", "csv"]),
        metadata={"description": "csv for text/csv (or send Accept: text/csv)."},
    )


class FilterArgs(RangeArgs):
    product_id = fields.String(metadata={"description": "Only this product."})
    category = fields.String(metadata={"description": "Only this category."})


class SalesArgs(FilterArgs):
    granularity = fields.String(
        load_default="day",
        validate=validate.OneOf(GRANULARITIES, error="must be one of: " + ", ".join(GRANULARITIES)),
    )


class TrendArgs(FilterArgs):
    granularity = fields.String(
        load_default="day",
        validate=validate.OneOf(("day", "week", "month"), error="must be one of: day, week, month"),
    )


class ProductRankingArgs(RangeArgs):
    category = fields.String(metadata={"description": "Only this category."})
    order_by = fields.String(
        load_default="revenue",
        validate=validate.OneOf(
            ("revenue", "quantity", "transactions"),
            error="must be one of: revenue, quantity, transactions",
        ),
    )
    limit = fields.Integer(
        load_default=20, metadata={"description": "Top N (at most ANALYTICS_MAX_LIMIT)."}
    )


class DailyReportArgs(Schema):
    date = fields.Date(metadata={"description": "The day (YYYY-MM-DD); default today."})
    limit = fields.Integer(
        load_default=20, metadata={"description": "Top N products (at most ANALYTICS_MAX_LIMIT)."}
    )
    tz = fields.String(metadata={"description": "IANA time zone; default REPORT_TIMEZONE."})


class CatalogArgs(Schema):
    category = fields.String()
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    format = fields.String(validate=validate.OneOf(["json", "csv"]))


class Figures(Schema):
    revenue = Money(metadata={"example": 1234.5})
    transactions = fields.Integer(metadata={"example": 42})
    quantity = fields.Integer(metadata={"example": 57})
    avg_purchase_value = Money(allow_none=True, metadata={"example": 29.39})


class Echo(Schema):
    from_ = fields.String(data_key="from")
    to = fields.String()
    tz = fields.String()
    product_id = fields.String(allow_none=True)
    category = fields.String(allow_none=True)


class Summary(Figures, Echo):
    pass


class PeriodItem(Figures):
    period = fields.String(metadata={"example": "2026-11-25"})


class PeriodList(Echo):
    granularity = fields.String()
    items = fields.List(fields.Nested(PeriodItem))


class TrendItem(PeriodItem):
    change_abs = Money(allow_none=True, metadata={"example": -120.0})
    change_pct = fields.Float(allow_none=True, metadata={"example": -12.5})


class TrendList(PeriodList):
    items = fields.List(fields.Nested(TrendItem))


class ProductItem(Figures):
    product_id = fields.String()
    name = fields.String()
    category = fields.String()
    revenue_share = fields.Float(metadata={"description": "Fraction of the revenue, 0-1."})


class ProductList(Echo):
    order_by = fields.String()
    limit = fields.Integer()
    items = fields.List(fields.Nested(ProductItem))


class CategoryItem(Figures):
    category = fields.String()
    revenue_share = fields.Float()


class CategoryList(Echo):
    items = fields.List(fields.Nested(CategoryItem))


class DailyReport(Schema):
    date = fields.String()
    tz = fields.String()
    totals = fields.Nested(Figures)
    previous_day = fields.Nested(Figures)
    change_abs = Money(allow_none=True)
    change_pct = fields.Float(allow_none=True)
    products = fields.List(fields.Nested(ProductItem))
    categories = fields.List(fields.Nested(CategoryItem))


class Product(Schema):
    product_id = fields.String()
    name = fields.String()
    category = fields.String()
    price = Money()
    updated_at = fields.DateTime()


class ProductPage(Schema):
    items = fields.List(fields.Nested(Product))
    category = fields.String(allow_none=True)
    page = fields.Integer()
    per_page = fields.Integer()
    total = fields.Integer()
