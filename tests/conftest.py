"""Shared fixtures. Integration tests get a database of their own, built by the real
migrations, on the PostgreSQL that `make up` runs; unit tests need nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import ProgrammingError

from config import PROJECT_ROOT, Settings, get_settings
from db.session import make_engine
from tests import helpers  # noqa: F401  (allows .env.example's keys in every test process)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["configure_logger"] = False
    return cfg


@pytest.fixture(scope="session")
def admin_engine(settings: Settings) -> Iterator[Engine]:
    """Connected to the server's maintenance database, to create and drop test databases."""
    url = settings.database.set(database="postgres")
    # pool_pre_ping: a test may restart the server under it (tests/integration/test_faults.py).
    engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    yield engine
    engine.dispose()


def _database_url(settings: Settings, name: str) -> str:
    return settings.database.set(database=name).render_as_string(hide_password=False)


def create_database(admin_engine: Engine, name: str, template: str | None = None) -> None:
    with admin_engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        suffix = f' TEMPLATE "{template}"' if template else ""
        conn.execute(text(f'CREATE DATABASE "{name}"{suffix}'))


def drop_database(admin_engine: Engine, name: str) -> None:
    # FORCE cannot end an autovacuum worker (it runs as the server's superuser), which
    # may be busy in a database whose tables were just made and dropped: wait for it.
    for attempt in range(50):
        try:
            with admin_engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except ProgrammingError as exc:
            if "pg_signal_backend" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def migrated_template(settings: Settings, admin_engine: Engine) -> Iterator[str]:
    """A database migrated to head once per run; each test copies it (fast) instead of migrating."""
    # Named after this run, so that two test runs on one server do not share it.
    name = f"salesflow_test_template_{uuid.uuid4().hex[:8]}"
    create_database(admin_engine, name)
    command.upgrade(alembic_config(_database_url(settings, name)), "head")
    # Without the alert rules the settings seeded: each test writes the rules it is about
    # (test_migrations.py checks the seeding on databases of its own).
    engine = create_engine(_database_url(settings, name))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alert_rules"))
    engine.dispose()
    yield name
    drop_database(admin_engine, name)


@pytest.fixture
def empty_database_url(settings: Settings, admin_engine: Engine) -> Iterator[str]:
    """A new, empty database, dropped afterwards."""
    name = f"salesflow_test_{uuid.uuid4().hex[:12]}"
    create_database(admin_engine, name)
    yield _database_url(settings, name)
    drop_database(admin_engine, name)


@pytest.fixture
def database_url(settings: Settings, admin_engine: Engine, migrated_template: str) -> Iterator[str]:
    """A database of this test's own at the head revision, dropped afterwards."""
    name = f"salesflow_test_{uuid.uuid4().hex[:12]}"
    create_database(admin_engine, name, template=migrated_template)
    yield _database_url(settings, name)
    drop_database(admin_engine, name)


@pytest.fixture(scope="module")
def module_database_url(
    request, settings: Settings, admin_engine: Engine, migrated_template: str
) -> Iterator[str]:
    """A database at the head revision shared by one test module, dropped afterwards."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    name = f"salesflow_test_{module}_{uuid.uuid4().hex[:8]}"
    create_database(admin_engine, name, template=migrated_template)
    yield _database_url(settings, name)
    drop_database(admin_engine, name)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()
