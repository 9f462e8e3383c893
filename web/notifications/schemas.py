"""What an alert rule may be, what the API answers, and the history's shapes."""

from __future__ import annotations

import re
from datetime import UTC

from flask import current_app, has_app_context
from marshmallow import (
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from db import webhooks
from db.models.alerts import COMPARE_TO, EVENT_STATES, KINDS
from web.fields import Identifier, Text

# Kinds that compare a figure with `threshold`; sales_drop uses drop_percent, and
# no_sales has no threshold (nothing stored at all is its condition).
WITH_THRESHOLD = ("low_sales", "high_value_sale", "rejections")
CHAT_ID = re.compile(r"^(-?\d+|@[A-Za-z0-9_]{5,})$")
HOURS = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")
MAX_WINDOW_MINUTES = 31 * 24 * 60
MAX_AMOUNT = 10**18


class Scope(Schema):
    product_id = Identifier(metadata={"description": "Only this product's sales."})
    category = Text(100, metadata={"description": "Only this category's sales."})

    @validates_schema
    def _one(self, data, **_):
        if len(data) > 1:
            raise ValidationError("give product_id or category, not both", "_schema")


class Channel(Schema):
    type = fields.String(required=True, validate=validate.OneOf(["telegram", "webhook"]))
    chat_id = fields.String(
        validate=validate.Regexp(CHAT_ID, error="a chat id: digits (-100… for a group) or @name"),
        metadata={"description": "telegram: this chat instead of TELEGRAM_CHAT_ID."},
    )
    url = fields.String(
        validate=validate.Length(max=2000),
        metadata={"description": "webhook: where the JSON is POSTed (an allowed host)."},
    )
    secret = fields.String(
        load_only=True,
        validate=validate.Length(min=16, max=200),
        metadata={
            "description": "webhook: the key of the X-Signature-SHA256 header, an HMAC-SHA256"
            " of the body in hex. Never shown again."
        },
    )
    has_secret = fields.Boolean(dump_only=True)

    @validates_schema
    def _fits_its_type(self, data, **_):
        kind = data.get("type")
        if kind == "telegram":
            extra = {"url", "secret"} & set(data)
            if extra:
                raise ValidationError(f"a telegram channel has no {', '.join(sorted(extra))}")
        elif kind == "webhook":
            if "chat_id" in data:
                raise ValidationError("a webhook channel has no chat_id", "chat_id")
            if "url" not in data:
                raise ValidationError("a webhook channel needs its url", "url")
            allowed = current_app.config["WEBHOOK_ALLOWED_HOSTS"] if has_app_context() else []
            try:
                webhooks.check_url(data["url"], allowed)
            except ValueError as error:
                raise ValidationError(str(error), "url") from None


class RuleIn(Schema):
    """A rule as written: POST and PUT take all of it, PATCH the fields to change."""

    name = Text(200, required=True)
    kind = fields.String(
        required=True,
        validate=validate.OneOf(KINDS),
        metadata={
            "description": "low_sales: revenue in the window below threshold (no sales is"
            " zero). sales_drop: revenue fell by at least drop_percent against compare_to."
            " high_value_sale: sales at or above threshold stored, one digest of those"
            " since the last alert (not a message per sale)."
            " no_sales: nothing stored in the window (optionally inside active_hours)."
            " rejections: more than threshold rejected transactions in the window."
        },
    )
    scope = fields.Nested(Scope, load_default=dict, metadata={"description": "{} is all sales."})
    threshold = fields.Decimal(
        allow_none=True,
        places=2,
        validate=validate.Range(min=0, max=MAX_AMOUNT),
        metadata={"description": "Revenue, amount or count, by kind."},
    )
    drop_percent = fields.Decimal(
        allow_none=True, places=2, validate=validate.Range(min=0, max=100)
    )
    compare_to = fields.String(allow_none=True, validate=validate.OneOf(COMPARE_TO))
    window_minutes = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=MAX_WINDOW_MINUTES)
    )
    cooldown_minutes = fields.Integer(
        load_default=60,
        strict=True,
        validate=validate.Range(min=0, max=MAX_WINDOW_MINUTES),
        metadata={"description": "While it keeps holding, a reminder this often."},
    )
    active_hours = fields.String(
        allow_none=True,
        validate=validate.Regexp(HOURS, error='hours in the report zone, such as "09:00-21:00"'),
        metadata={"description": "no_sales: only between these hours, in REPORT_TIMEZONE."},
    )
    enabled = fields.Boolean(load_default=True)
    channels = fields.List(
        fields.Nested(Channel),
        load_default=lambda: [{"type": "telegram"}],
        validate=validate.Length(min=1, max=20),
    )

    @validates_schema
    def _fits_its_kind(self, data, partial=None, **_):
        if partial:
            return  # checked again whole, merged with the stored rule
        kind = data.get("kind")
        if kind in WITH_THRESHOLD and data.get("threshold") is None:
            raise ValidationError(f"a {kind} rule needs its threshold", "threshold")
        if kind == "sales_drop" and data.get("drop_percent") is None:
            raise ValidationError("a sales_drop rule needs drop_percent (0-100)", "drop_percent")
        for name, only in (
            ("drop_percent", "sales_drop"),
            ("compare_to", "sales_drop"),
            ("active_hours", "no_sales"),
        ):
            if data.get(name) is not None and kind != only:
                raise ValidationError(f"only a {only} rule has {name}", name)
        if kind in ("sales_drop", "no_sales") and data.get("threshold") is not None:
            raise ValidationError(f"a {kind} rule has no threshold", "threshold")
        if kind == "rejections" and data.get("scope"):
            raise ValidationError("rejections are counted over all sales: scope is {}", "scope")

    @post_load
    def _defaults(self, data, partial=None, **_):
        if not partial and data.get("kind") == "sales_drop" and not data.get("compare_to"):
            data["compare_to"] = "previous_window"
        return data


class RuleChanges(RuleIn):
    """PATCH: any of RuleIn's fields; the rule they make is checked whole."""


class RuleState(Schema):
    state = fields.String(metadata={"description": "ok or firing"})
    since = fields.DateTime(allow_none=True)
    evaluated_at = fields.DateTime(allow_none=True)


class RuleOut(Schema):
    id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    scope = fields.Dict()
    threshold = fields.Decimal(allow_none=True)
    drop_percent = fields.Decimal(allow_none=True)
    compare_to = fields.String(allow_none=True)
    window_minutes = fields.Integer()
    cooldown_minutes = fields.Integer()
    active_hours = fields.String(allow_none=True)
    enabled = fields.Boolean()
    channels = fields.List(fields.Nested(Channel))
    status = fields.Nested(RuleState)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class RuleList(Schema):
    items = fields.List(fields.Nested(RuleOut))


class TestResult(Schema):
    event_id = fields.String()
    channels = fields.Integer(metadata={"description": "Channels the test message goes to."})


class Instant(fields.AwareDateTime):
    """An ISO 8601 date-time with its offset, as UTC (PostgreSQL takes offsets up to 15:59
    only, and a moment in the first or last hours of the calendar may have no UTC time)."""

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError(
                f"{value!r} has no UTC time: give a time of years 1 to 9999"
            ) from None


class AlertQuery(Schema):
    rule = fields.Integer(
        validate=validate.Range(min=1, max=2**63 - 1),
        metadata={"description": "Only the alerts of this rule (its id)."},
    )
    rule_id = fields.Integer(
        validate=validate.Range(min=1, max=2**63 - 1),
        metadata={"description": "The same as `rule`."},
    )

    @validates_schema
    def _one_rule(self, data, **kwargs):
        if {"rule", "rule_id"} <= data.keys() and data["rule"] != data["rule_id"]:
            raise ValidationError("give rule or rule_id, not two different ones", "rule")

    state = fields.String(validate=validate.OneOf(EVENT_STATES))
    from_ = Instant(data_key="from")
    to = Instant()
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    before = fields.Integer(
        validate=validate.Range(min=1, max=2**63 - 1),
        metadata={"description": "The next page: the `next` of the previous answer."},
    )


class Delivery(Schema):
    channel = fields.String()
    status = fields.String(metadata={"description": "pending, sent, failed or suppressed"})
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    sent_at = fields.DateTime(allow_none=True)


class AlertOut(Schema):
    id = fields.Integer()
    event_id = fields.String()
    rule_id = fields.Integer(allow_none=True)
    rule_name = fields.String()
    kind = fields.String()
    state = fields.String()
    reminder = fields.Boolean()
    value = fields.Decimal(allow_none=True)
    threshold = fields.Decimal(allow_none=True)
    window_start = fields.DateTime()
    window_end = fields.DateTime()
    occurred_at = fields.DateTime()
    payload = fields.Dict(metadata={"description": "The event as sent (schema v2)."})
    deliveries = fields.List(fields.Nested(Delivery))


class AlertList(Schema):
    items = fields.List(fields.Nested(AlertOut))
    next = fields.Integer(allow_none=True, metadata={"description": "`before` of the next page."})
