"""The Celery broker, which lives in PostgreSQL: its queues, the task that one process
sends another by name, and its tables.

The queue names are the one list every worker command is built from (the local stack's
supervisord, Compose, the test pipeline; a test holds each to it), and revision 0010
creates their rows. The processor sends STORE_CHUNK by name, so that it never loads the
worker's code.

The tables are kombu's SQLAlchemy transport's own.

kombu would create `kombu_queue` and `kombu_message` itself at run time; here they
come from an Alembic revision instead. Registering kombu's own model classes (the
way its channel does, under the same names) gives the drift check kombu's exact
shape to compare the database with, so an upgrade of kombu that changes its tables
shows up as drift instead of a failure on the first publish.
"""

from kombu.transport.sqlalchemy.models import Message, ModelBase, Queue, class_registry, metadata
from sqlalchemy import Engine, text

from config import get_settings
from db.session import make_engine

# Chunks of Kafka messages to store. Apart from the periodic jobs, so that a backlog of
# chunks does not hold them up: a worker takes from its queues in turn.
INGEST_QUEUE = "ingest"
# Periodic jobs from beat: rollups, upkeep, alert checks.
MAINTENANCE_QUEUE = "maintenance"
QUEUES = (INGEST_QUEUE, MAINTENANCE_QUEUE)

# tasks/ingest.py's store_chunk(chunk_id, items): what the processor sends.
STORE_CHUNK = "ingest.store_chunk"

QUEUE_TABLE = "kombu_queue"
MESSAGE_TABLE = "kombu_message"


def _register(name: str, base: type, table: str) -> type:
    if name not in class_registry:
        type(name, (base, ModelBase), {"__tablename__": table})
    return class_registry[name]


_register("Queue", Queue, QUEUE_TABLE)
_register("Message", Message, MESSAGE_TABLE)

broker_metadata = metadata


def queue_depths(connection) -> dict[str, int]:
    """Messages waiting in each queue (visible: not yet fetched by a worker); every queue
    of the app is named, at 0 when the transport has not created it yet."""
    rows = connection.execute(
        text(
            f"SELECT q.name, count(m.id) FROM {QUEUE_TABLE} q"
            f" LEFT JOIN {MESSAGE_TABLE} m ON m.queue_id = q.id AND m.visible"
            " GROUP BY q.name"
        )
    ).all()
    return dict.fromkeys(QUEUES, 0) | {name: count for name, count in rows}


def broker_engine(application_name: str) -> Engine:
    """A one-connection engine on the broker's database (CELERY_BROKER_URL without kombu's
    `sqla+`), for reading its tables beside the transport."""
    url = get_settings().celery_broker_url.removeprefix("sqla+")
    return make_engine(url, pool_size=1, application_name=application_name)
