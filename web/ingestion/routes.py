"""Data Collector endpoints: validate at the edge, write to Kafka, answer 202 once acknowledged."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app, jsonify, request
from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, ValidationError
from prometheus_client import Counter

from db import rules
from streams.messages import PRODUCT, TRANSACTION, single_record
from web.common import (
    API_KEY_SCHEME,
    ApiBlueprint,
    error_shape,
    parse_json_body,
    require_api_key,
)
from web.ingestion.publisher import KafkaUnavailable
from web.ingestion.schemas import (
    PRODUCT_EXAMPLE,
    TRANSACTION_EXAMPLE,
    AcceptedSchema,
    BatchAcceptedSchema,
    ProductBatchSchema,
    ProductSchema,
    TransactionBatchSchema,
    TransactionSchema,
)

blp = ApiBlueprint(
    "ingestion",
    __name__,
    url_prefix="/api/v1",
    description="Send sales transactions and catalog products. Every write needs X-API-Key.",
)

require_api_key(blp, "INGEST_API_KEYS")

ITEMS = Counter("collector_items_total", "Items received, by kind and outcome", ["kind", "outcome"])
# Every series exists from the start (at 0), so that rates and alerts see its first change.
for _kind in (TRANSACTION, PRODUCT):
    for _outcome in ("accepted", "invalid", "unavailable"):
        ITEMS.labels(_kind, _outcome).inc(0)

SECURITY = [{API_KEY_SCHEME: []}]
UNAVAILABLE = {
    "description": "Kafka did not acknowledge in time; retry the same request after "
    "Retry-After seconds (ids make retries safe)."
}


def publish(kind: str, items: list[dict], *, batch: bool) -> None:
    """Writes the items (a batch's as format-2 records, a single one as format 1) and
    returns once Kafka acknowledged them; answers 503 otherwise."""
    publisher = current_app.extensions["publisher"]
    received_at = datetime.now(UTC)
    try:
        if batch:
            publisher.publish_batch(kind, items, received_at)
        else:
            publisher.publish([single_record(kind, item, received_at) for item in items])
    except KafkaUnavailable:
        ITEMS.labels(kind, "unavailable").inc(len(items))
        abort(
            503,
            message="Kafka is not accepting writes right now; retry the same request later.",
            headers={"Retry-After": "5"},
        )
    ITEMS.labels(kind, "accepted").inc(len(items))


def validate_batch(key: str, schema: Schema, check) -> tuple[list[dict], list[dict]]:
    """Splits a batch into valid items and per-item errors (valid ones go on regardless).

    Each item is checked by `check`, the rules of `db/rules.py` the schema's fields apply,
    called directly (a quarter of the schema's cost per item); only an item they refuse
    goes through the schema, which names every wrong field in the API's words."""
    body = parse_json_body(request.get_data())
    if not isinstance(body, dict) or set(body) != {key} or not isinstance(body[key], list):
        abort(422, message=f'The body must be {{"{key}": [...]}} with nothing else.')
    items = body[key]
    limit = current_app.config["BATCH_MAX_ITEMS"]
    if len(items) > limit:
        abort(413, message=f"{len(items)} items in one batch; send at most {limit} per request.")
    if not items:
        abort(422, message=f'"{key}" is empty; send at least one item.')
    valid, rejected = [], []
    now = datetime.now(UTC)
    for index, item in enumerate(items):
        if isinstance(item, dict):
            try:
                valid.append(check(item, now))
                continue
            except ValueError:
                pass
        try:
            valid.append(schema.load(item))
        except ValidationError as exc:
            errors = exc.messages if isinstance(exc.messages, dict) else {"_item": exc.messages}
            rejected.append({"index": index, "errors": errors})
    return valid, rejected


def answer_batch(kind: str, valid: list[dict], rejected: list[dict]) -> tuple:
    ITEMS.labels(kind, "invalid").inc(len(rejected))
    if valid:
        publish(kind, valid, batch=True)
    answer = {"accepted": len(valid), "rejected": rejected}
    if valid:
        return answer, 202
    # Nothing valid: nothing was accepted, the whole request is unprocessable; the error
    # shape of both APIs, with each item's problems.
    message = "No item was valid; each is listed in rejected with what to fix."
    refused = jsonify(error_shape(422, message) | answer)
    refused.status_code = 422
    return refused


@blp.route("/transactions")
class Transactions(MethodView):
    @blp.doc(security=SECURITY)
    @blp.arguments(TransactionSchema, example=TRANSACTION_EXAMPLE)
    @blp.response(202, AcceptedSchema, description="Written to Kafka; it will be stored once.")
    @blp.alt_response(503, description=UNAVAILABLE["description"])
    def post(self, item):
        """Send one transaction"""
        publish(TRANSACTION, [item], batch=False)
        return {"accepted": 1}


def batch_body(schema: type, example: dict) -> dict:
    """OpenAPI request body of a batch endpoint (validated item by item in the view)."""
    return {
        "required": True,
        "content": {"application/json": {"schema": schema, "example": example}},
    }


@blp.route("/transactions/batch")
class TransactionBatch(MethodView):
    @blp.doc(
        security=SECURITY,
        requestBody=batch_body(TransactionBatchSchema, {"transactions": [TRANSACTION_EXAMPLE]}),
    )
    @blp.response(
        202,
        BatchAcceptedSchema,
        description="The valid items were written to Kafka; the invalid ones are listed.",
    )
    @blp.alt_response(413, description="More items than COLLECTOR_BATCH_MAX_ITEMS.")
    @blp.alt_response(422, description="No item was valid, or the body is not a batch.")
    @blp.alt_response(503, description=UNAVAILABLE["description"])
    def post(self):
        """Send up to COLLECTOR_BATCH_MAX_ITEMS transactions"""
        valid, rejected = validate_batch("transactions", TransactionSchema(), rules.transaction)
        return answer_batch(TRANSACTION, valid, rejected)


@blp.route("/products")
class Products(MethodView):
    @blp.doc(security=SECURITY)
    @blp.arguments(ProductSchema, example=PRODUCT_EXAMPLE)
    @blp.response(202, AcceptedSchema, description="Written to Kafka; the newest version wins.")
    @blp.alt_response(503, description=UNAVAILABLE["description"])
    def post(self, item):
        """Create or update one product"""
        publish(PRODUCT, [item], batch=False)
        return {"accepted": 1}


@blp.route("/products/batch")
class ProductBatch(MethodView):
    @blp.doc(
        security=SECURITY,
        requestBody=batch_body(ProductBatchSchema, {"products": [PRODUCT_EXAMPLE]}),
    )
    @blp.response(202, BatchAcceptedSchema)
    @blp.alt_response(413, description="More items than COLLECTOR_BATCH_MAX_ITEMS.")
    @blp.alt_response(422, description="No item was valid, or the body is not a batch.")
    @blp.alt_response(503, description=UNAVAILABLE["description"])
    def post(self):
        """Create or update up to COLLECTOR_BATCH_MAX_ITEMS products"""
        valid, rejected = validate_batch(
            "products", ProductSchema(), lambda item, _now: rules.product(item)
        )
        return answer_batch(PRODUCT, valid, rejected)
