"""The Celery broker's tables, as kombu's SQLAlchemy transport declares them.

kombu would create `kombu_queue` and `kombu_message` itself at run time; here they
come from an Alembic revision instead. Registering kombu's own model classes (the
way its channel does, under the same names) gives the drift check kombu's exact
shape to compare the database with, so an upgrade of kombu that changes its tables
shows up as drift instead of a failure on the first publish.
"""

from kombu.transport.sqlalchemy.models import Message, ModelBase, Queue, class_registry, metadata

QUEUE_TABLE = "kombu_queue"
MESSAGE_TABLE = "kombu_message"


def _register(name: str, base: type, table: str) -> type:
    if name not in class_registry:
        type(name, (base, ModelBase), {"__tablename__": table})
    return class_registry[name]


_register("Queue", Queue, QUEUE_TABLE)
_register("Message", Message, MESSAGE_TABLE)

broker_metadata = metadata
