"""Alembic environment: the application's models plus the Celery broker's tables."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, text

import db.models  # noqa: F401  (registers every table on Base.metadata)
from config import get_settings
from db.base import Base
from db.broker import broker_metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# Both sets of tables live in the database and both are compared by autogenerate,
# so kombu's tables are neither dropped nor left unchecked.
target_metadata = [Base.metadata, broker_metadata]


def database_url() -> str:
    # Tests pass the URL of their own database; everything else uses the settings.
    return config.attributes.get("database_url") or get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(database_url())
    with engine.connect() as connection:
        # Never wait behind a long-running query for a lock, never hang forever.
        connection.execute(text("SET lock_timeout = '10s'"))
        connection.execute(text("SET statement_timeout = '10min'"))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            compare_type=True,
            compare_server_default=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
