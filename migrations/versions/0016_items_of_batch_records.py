"""A Kafka record may carry a batch of items (wire format 2): the stored, parked and
rejected transactions say which item of their record they were (`kafka_item`, 0 for a
record of one item), and a rejection is unique per item, not per record.

Adding a column with a constant default rewrites nothing (PostgreSQL 11 and later).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 16:00:00+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("transactions", "parked_transactions", "rejected_transactions")
SOURCE = ["kafka_topic", "kafka_partition", "kafka_offset"]


def upgrade() -> None:
    for table in TABLES:
        op.add_column(
            table, sa.Column("kafka_item", sa.Integer(), server_default="0", nullable=False)
        )
    op.drop_constraint("uq_rejected_transactions_source", "rejected_transactions")
    op.create_unique_constraint(
        "uq_rejected_transactions_source", "rejected_transactions", [*SOURCE, "kafka_item"]
    )


def downgrade() -> None:
    # Items of one record collapse into one rejection again: the first one is kept.
    op.execute(
        "DELETE FROM rejected_transactions r USING rejected_transactions o"
        " WHERE (r.kafka_topic, r.kafka_partition, r.kafka_offset)"
        " = (o.kafka_topic, o.kafka_partition, o.kafka_offset) AND r.kafka_item > o.kafka_item"
    )
    op.drop_constraint("uq_rejected_transactions_source", "rejected_transactions")
    op.create_unique_constraint("uq_rejected_transactions_source", "rejected_transactions", SOURCE)
    for table in TABLES:
        op.drop_column(table, "kafka_item")
