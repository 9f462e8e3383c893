"""Celery's queues exist from the start: kombu's SQLAlchemy transport creates a queue's
row on first use with a check and then an insert, which two processes can race (a worker
declaring `ingest` while the processor sends its first task); the loser dies with a
unique violation. With the rows in place, the transport only ever finds them.

The names are those of tasks/celery_app.py (INGEST_QUEUE, MAINTENANCE_QUEUE); a test
checks that every queue the app routes to exists after migrating.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 06:50:00+00:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUES = ("ingest", "maintenance")


def upgrade() -> None:
    for name in QUEUES:
        op.execute(
            "INSERT INTO kombu_queue (id, name) VALUES (nextval('queue_id_sequence'),"
            f" '{name}') ON CONFLICT (name) DO NOTHING"
        )


def downgrade() -> None:
    # Rows only: a queue that still holds messages keeps them (and its row).
    names = ", ".join(f"'{name}'" for name in QUEUES)
    op.execute(
        f"DELETE FROM kombu_queue q WHERE q.name IN ({names})"
        " AND NOT EXISTS (SELECT 1 FROM kombu_message m WHERE m.queue_id = q.id)"
    )
