"""Request and response bodies of the Data Collector API."""

from marshmallow import RAISE, Schema, fields

from db.rules import CATEGORY_MAX, MAX_AMOUNT, MAX_PRICE, NAME_MAX
from web.fields import Identifier, Money, Quantity, SaleTime, Text


class TransactionSchema(Schema):
    class Meta:
        unknown = RAISE

    transaction_id = Identifier(
        required=True, metadata={"description": "Your unique id; sending it again is harmless."}
    )
    product_id = Identifier(required=True)
    quantity = Quantity(required=True)
    total_amount = Money(
        MAX_AMOUNT,
        load_default=None,
        metadata={"description": "Amount paid; price x quantity when left out."},
    )
    timestamp = SaleTime(
        required=True, metadata={"description": "When the sale happened; no offset means UTC."}
    )


TRANSACTION_EXAMPLE = {
    "transaction_id": "tx-2026-000001",
    "product_id": "sku-1001",
    "quantity": 2,
    "total_amount": "39.98",
    "timestamp": "2026-11-26T10:15:00Z",
}


class TransactionBatchSchema(Schema):
    transactions = fields.List(
        fields.Nested(TransactionSchema),
        required=True,
        metadata={"minItems": 1, "description": "At most COLLECTOR_BATCH_MAX_ITEMS (1000)."},
    )


class ProductSchema(Schema):
    class Meta:
        unknown = RAISE

    product_id = Identifier(required=True)
    name = Text(NAME_MAX, required=True)
    category = Text(CATEGORY_MAX, required=True)
    price = Money(MAX_PRICE, required=True)


PRODUCT_EXAMPLE = {
    "product_id": "sku-1001",
    "name": "Espresso cup",
    "category": "Kitchen",
    "price": "19.99",
}


class ProductBatchSchema(Schema):
    products = fields.List(
        fields.Nested(ProductSchema),
        required=True,
        metadata={"minItems": 1, "description": "At most COLLECTOR_BATCH_MAX_ITEMS (1000)."},
    )


class AcceptedSchema(Schema):
    accepted = fields.Integer(
        required=True, metadata={"description": "Items written to Kafka.", "example": 1}
    )


class ItemErrorSchema(Schema):
    index = fields.Integer(
        required=True, metadata={"description": "Position in the request.", "example": 3}
    )
    errors = fields.Dict(
        required=True,
        metadata={
            "description": "Field -> messages.",
            "example": {"quantity": ["must be between 1 and 1000000"]},
        },
    )


class BatchAcceptedSchema(AcceptedSchema):
    rejected = fields.List(fields.Nested(ItemErrorSchema), required=True)
