"""Query parameters and response bodies of the Analytics API.

Each parameter's field both enforces its rule and declares it in the OpenAPI document
(format, pattern, bounds, choices), so that generated clients and the server agree.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import ROUND_HALF_UP
from zoneinfo import ZoneInfo

from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate

from db import rules
from db.reports.periods import FIRST_DAY, GRANULARITIES, LAST_DAY, ZONE_NAMES
from web.fields import Identifier, Text

# A date, or a date and time: `YYYY-MM-DD` then `T` (or a space) and the time.
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DATE_TIME_MAX_LENGTH = 40  # 2026-03-01T10:00:00.123456+01:00 is 32
# The years FIRST_DAY..LAST_DAY, as the document's pattern for every date parameter.
YEARS_PATTERN = r"^(20[0-9]{2}|2100)-"
DAY_RANGE_HELP = f"must lie between {FIRST_DAY} and {LAST_DAY}"
PAGE_MAX = 1_000_000  # with PER_PAGE_MAX, an offset PostgreSQL's bigint holds with room
PER_PAGE_MAX = 1000


def _in_range(day: date) -> None:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValidationError(f"{DAY_RANGE_HELP} (reports cover these days only)")


def _shown(value: str) -> str:
    """A value as quoted in a message, cut short."""
    return repr(value if len(value) <= 50 else value[:50] + "…")


class DateOrDateTime(fields.Field):
    """`2026-03-01` (a whole local day) or `2026-03-01T10:00:00+01:00` (an instant)."""

    HELP = "a date (YYYY-MM-DD) or an ISO 8601 datetime (YYYY-MM-DDTHH:MM:SS, optional offset)"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.metadata.update(
            type="string",
            anyOf=[{"format": "date"}, {"format": "date-time"}],
            pattern=YEARS_PATTERN,
            maxLength=DATE_TIME_MAX_LENGTH,
        )

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or len(value) > DATE_TIME_MAX_LENGTH:
            raise ValidationError(f"must be at most {DATE_TIME_MAX_LENGTH} characters: {self.HELP}")
        try:
            if _DAY.fullmatch(value):
                moment = day = date.fromisoformat(value)
            elif _DAY.match(value) and value[10] in "Tt ":
                moment = datetime.fromisoformat(value)
                day = moment.date()
            else:
                raise ValueError(value)
        except ValueError:
            raise ValidationError(f"{_shown(value)} is not {self.HELP}") from None
        # The day as written: with it inside the range, any offset stays inside the calendar.
        _in_range(day)
        return moment


class ReportDay(fields.Date):
    HELP = "must be a date written YYYY-MM-DD, e.g. 2026-03-01"

    def __init__(self, **kwargs):
        super().__init__(error_messages={"invalid": self.HELP}, **kwargs)
        self.metadata.update(pattern=YEARS_PATTERN, maxLength=10)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not _DAY.fullmatch(value):
            raise ValidationError(self.HELP)
        day = super()._deserialize(value, attr, data, **kwargs)
        _in_range(day)
        return day


class Zone(fields.Field):
    """An IANA zone name of the zone database, loaded as a ZoneInfo."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.metadata.update(type="string", enum=sorted(ZONE_NAMES))

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or value not in ZONE_NAMES:
            shown = _shown(value) if isinstance(value, str) else "this value"
            raise ValidationError(
                f"unknown time zone {shown}; use an IANA name such as Europe/Berlin or UTC"
            )
        return ZoneInfo(value)


class Whole(fields.Integer):
    """A whole number within bounds, with messages that say what to send."""

    def __init__(self, validator: validate.Validator, **kwargs):
        super().__init__(
            validate=validator,
            error_messages={
                "invalid": "must be a whole number such as 20",
                "too_large": "must be a whole number such as 20",
            },
            **kwargs,
        )


class AtMostSetting(validate.Validator):
    """1..app.config[key]: the maximum is a setting, read in the app's context both when a
    request is checked and when the app's OpenAPI document is built (create_app builds it
    inside its context), so the document declares the maximum this server enforces."""

    min = 1

    def __init__(self, key: str):
        self.key = key

    @property
    def max(self) -> int:
        return current_app.config[self.key]

    def __call__(self, value: int) -> int:
        if not self.min <= value <= self.max:
            raise ValidationError(f"must be between {self.min} and {self.max}")
        return value


def _between(minimum: int, maximum: int) -> validate.Range:
    return validate.Range(minimum, maximum, error="must be between {min} and {max}")


def _one_of(choices) -> validate.OneOf:
    return validate.OneOf(choices, error="must be one of: " + ", ".join(choices))


class Money(fields.Decimal):
    def __init__(self, **kwargs):
        super().__init__(places=2, rounding=ROUND_HALF_UP, **kwargs)


RANGE_HELP = (
    f"A date (whole local day, inclusive) or an ISO datetime (half-open range), from "
    f"{FIRST_DAY} to {LAST_DAY}. Default: the last 30 days."
)


class RangeArgs(Schema):
    # No examples on parameters: Swagger UI would fill them in for every request.
    from_ = DateOrDateTime(data_key="from", metadata={"description": RANGE_HELP})
    to = DateOrDateTime(metadata={"description": RANGE_HELP})
    tz = Zone(
        metadata={"description": "IANA time zone, e.g. Europe/Berlin; default REPORT_TIMEZONE."}
    )


class CsvArgs(Schema):
    format = fields.String(
        validate=_one_of(("json", "csv")),
        metadata={"description": "csv for text/csv (or send Accept: text/csv)."},
    )


class FilterArgs(RangeArgs):
    product_id = Identifier(metadata={"description": "Only this product."})
    category = Text(rules.CATEGORY_MAX, metadata={"description": "Only this category."})


class SalesArgs(FilterArgs, CsvArgs):
    granularity = fields.String(load_default="day", validate=_one_of(GRANULARITIES))


class TrendArgs(FilterArgs, CsvArgs):
    granularity = fields.String(load_default="day", validate=_one_of(("day", "week", "month")))


class ProductRankingArgs(RangeArgs, CsvArgs):
    category = Text(rules.CATEGORY_MAX, metadata={"description": "Only this category."})
    order_by = fields.String(
        load_default="revenue", validate=_one_of(("revenue", "quantity", "transactions"))
    )
    limit = Whole(
        AtMostSetting("MAX_LIMIT"),
        load_default=20,
        metadata={"description": "Top N (at most ANALYTICS_MAX_LIMIT)."},
    )


class CategoryArgs(RangeArgs, CsvArgs):
    pass


class DailyReportArgs(Schema):
    date = ReportDay(
        metadata={"description": f"The day (YYYY-MM-DD, {FIRST_DAY} to {LAST_DAY}); default today."}
    )
    limit = Whole(
        AtMostSetting("MAX_LIMIT"),
        load_default=20,
        metadata={"description": "Top N products (at most ANALYTICS_MAX_LIMIT)."},
    )
    tz = Zone(metadata={"description": "IANA time zone; default REPORT_TIMEZONE."})


class CatalogArgs(CsvArgs):
    category = Text(rules.CATEGORY_MAX, metadata={"description": "Only this category."})
    page = Whole(_between(1, PAGE_MAX), load_default=1)
    per_page = Whole(_between(1, PER_PAGE_MAX), load_default=100)


# The path parameter of /products/{product_id}, as the document declares it.
PRODUCT_ID_PARAMETER = {
    "in": "path",
    "name": "product_id",
    "required": True,
    "schema": Identifier().metadata,
}


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
