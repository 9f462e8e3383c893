"""Admin endpoints of the Data Collector: list rejected transactions and replay them."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_smorest import abort
from kafka.errors import KafkaError
from marshmallow import Schema, fields, validate, validates_schema
from marshmallow import ValidationError as SchemaError

from db.rejections import REASONS
from streams.replay import list_rejected, replay
from web.common import ADMIN_KEY_SCHEME, ApiBlueprint, require_api_key
from web.ingestion.publisher import KafkaUnavailable

blp = ApiBlueprint(
    "admin",
    __name__,
    url_prefix="/api/v1/rejected",
    description="Rejected transactions: see why, fix the cause, replay. Needs an admin X-API-Key.",
)
require_api_key(blp, "ADMIN_API_KEYS")
SECURITY = [{ADMIN_KEY_SCHEME: []}]
MAX_ID = 2**63 - 1  # rejected_transactions.id is a bigint


class RejectedQuery(Schema):
    reason = fields.String(validate=validate.OneOf(REASONS))
    status = fields.String(load_default="open", validate=validate.OneOf(["open", "replayed"]))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class RejectedItem(Schema):
    id = fields.Integer()
    transaction_id = fields.String(allow_none=True)
    reason = fields.String()
    details = fields.Dict()
    stage = fields.String()
    kind = fields.String()
    status = fields.String()
    rejected_at = fields.DateTime()
    replayed_at = fields.DateTime(allow_none=True)
    payload = fields.String(metadata={"description": "The message as received (UTF-8 text)."})
    payload_base64 = fields.String(metadata={"description": "The message, when not UTF-8."})


class RejectedList(Schema):
    items = fields.List(fields.Nested(RejectedItem))
    reason = fields.String(allow_none=True)
    status = fields.String()
    limit = fields.Integer()


class ReplayRequest(Schema):
    ids = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID)),
        validate=validate.Length(min=1, max=10_000),
    )
    reason = fields.String(validate=validate.OneOf(REASONS))

    @validates_schema
    def one_of(self, data, **_kwargs):
        if not data.get("ids") and not data.get("reason"):
            raise SchemaError('Name what to replay: "ids": [...] or "reason": "..."')


class ReplayAnswer(Schema):
    replayed = fields.List(fields.Integer(), metadata={"description": "Ids put back on Kafka."})


@blp.route("")
class Rejected(MethodView):
    @blp.doc(security=SECURITY)
    @blp.arguments(RejectedQuery, location="query")
    @blp.response(200, RejectedList)
    def get(self, query):
        """List rejected transactions, oldest first"""
        items = list_rejected(current_app.extensions["db_engine"](), **query)
        return {"items": items, "reason": query.get("reason"), **query}


@blp.route("/replay")
class Replay(MethodView):
    @blp.doc(security=SECURITY)
    @blp.arguments(ReplayRequest, example={"reason": "unknown_product"})
    @blp.response(200, ReplayAnswer)
    @blp.alt_response(503, description="Kafka did not take the messages; nothing was marked.")
    def post(self, body):
        """Put open rejections back on the transactions topic"""
        publisher = current_app.extensions["publisher"]
        try:
            done = replay(
                current_app.extensions["db_engine"](),
                publisher.producer(),
                publisher.topic,
                ids=body.get("ids"),
                reason=body.get("reason"),
                timeout=publisher.timeout,
            )
        except (KafkaError, KafkaUnavailable):
            abort(
                503,
                message="Kafka is not accepting writes; nothing was marked. Retry later.",
                headers={"Retry-After": "5"},
            )
        return {"replayed": done}
