"""Celery broker tables: kombu's SQLAlchemy transport (kombu_queue, kombu_message).

kombu would create these with create_all on first use; they are created here so that
every table comes from a revision. The shape matches kombu/transport/sqlalchemy/models.py
exactly (the drift test compares it with kombu's own models): ids come from two named
sequences that kombu's INSERTs call nextval() on, so both must exist, and kombu's
timestamp column is its own naive TIMESTAMP.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 01:10:00+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("queue_id_sequence")))
    op.execute(sa.schema.CreateSequence(sa.Sequence("message_id_sequence")))
    op.create_table(
        "kombu_queue",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "kombu_message",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("visible", sa.Boolean(), nullable=True),
        sa.Column("timestamp", sa.DateTime(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("version", sa.SmallInteger(), nullable=False),
        sa.Column("queue_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["queue_id"], ["kombu_queue.id"], name="FK_kombu_message_queue"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_kombu_message_timestamp", "kombu_message", ["timestamp"])
    op.create_index("ix_kombu_message_timestamp_id", "kombu_message", ["timestamp", "id"])
    op.create_index("ix_kombu_message_visible", "kombu_message", ["visible"])


def downgrade() -> None:
    op.drop_table("kombu_message")
    op.drop_table("kombu_queue")
    op.execute(sa.schema.DropSequence(sa.Sequence("message_id_sequence")))
    op.execute(sa.schema.DropSequence(sa.Sequence("queue_id_sequence")))
