"""Least privilege on the real PostgreSQL and sockets: the application's role is no
superuser and owns its tables; Grafana's role (revision 0012) reads exactly what the
dashboards read; the metrics endpoints listen on HTTP_BIND_HOST only."""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psutil
import pytest
import requests
from alembic import command
from psycopg2 import errorcodes
from psycopg2.extras import execute_values
from sqlalchemy import URL, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

import db.models  # noqa: F401  (every table of the application)
from config import PROJECT_ROOT, Settings, get_settings
from db.base import Base
from db.broker import broker_metadata
from db.reports.rollups import rollup
from db.session import make_engine
from tests.conftest import alembic_config, create_database, drop_database
from tests.helpers import wait_until
from tests.integration.pipeline import Pipeline
from tests.integration.test_dashboards import (
    DASHBOARDS,
    FIRST_DAY,
    grafana_sql,
    insert_transactions,
    sql_of,
)

# Every statement of the dashboards that read PostgreSQL.
DASHBOARD_SQL = [
    sql for name in ("sales-by-product", "sales-trends") for sql in sql_of(DASHBOARDS[name])
]
# What the reader must not do: raw rows, payloads, Celery's messages, any write.
REFUSED = [
    "SELECT * FROM transactions",
    "SELECT * FROM rejected_transactions",
    "SELECT * FROM parked_transactions",
    "SELECT * FROM kombu_message",
    "SELECT * FROM outbox_events",
    "SELECT * FROM notification_log",
    "SELECT price FROM products",
    "INSERT INTO transactions (transaction_id) VALUES ('x')",
    "UPDATE transactions SET quantity = 1",
    "DELETE FROM transactions",
    "UPDATE products SET name = 'x'",
    "DELETE FROM products",
    "UPDATE rollup_state SET timezone = 'UTC'",
    "TRUNCATE sales_daily",
    "CREATE TABLE public.grafana_was_here (id int)",
]


def test_the_application_role_is_no_superuser_and_owns_every_table(engine: Engine):
    with engine.connect() as conn:
        me = conn.execute(
            text("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user")
        ).one()
        assert tuple(me) == (False, False)
        owners = dict(
            conn.execute(
                text(
                    "SELECT c.relname, pg_get_userbyid(c.relowner) = current_user"
                    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')"
                )
            ).all()
        )
    tables = set(Base.metadata.tables) | set(broker_metadata.tables)
    assert tables <= set(owners), tables - set(owners)
    assert {name for name, mine in owners.items() if not mine} == set()


def test_grafana_role_may_read_what_the_dashboards_read_and_nothing_more(engine, settings):
    """As migrated by the application's role (which cannot create roles: the role exists
    from `make up`), the privileges are in place."""
    role = settings.grafana_db_user
    may = {
        ("sales_by_day", "SELECT"): True,
        ("sales_by_day_and_product", "SELECT"): True,
        ("transactions", "SELECT"): False,
        ("rejected_transactions", "SELECT"): False,
        ("kombu_message", "SELECT"): False,
        ("products", "UPDATE"): False,
    }
    with engine.connect() as conn:
        got = {
            (table, privilege): conn.execute(
                text("SELECT has_table_privilege(:role, :table, :privilege)"),
                {"role": role, "table": table, "privilege": privilege},
            ).scalar_one()
            for table, privilege in may
        }
        columns = conn.execute(
            text(
                "SELECT has_column_privilege(:role, 'products', 'name', 'SELECT'),"
                " has_column_privilege(:role, 'products', 'price', 'SELECT')"
            ),
            {"role": role},
        ).one()
    assert got == may
    assert tuple(columns) == (True, False)


# --- revision 0012 run by a role that may manage roles (as under Compose) ---------------
def superuser_url(settings: Settings, database: str) -> str:
    """The server's superuser over the local stack's socket (trust, as stack/lib.sh uses)."""
    return URL.create(
        "postgresql+psycopg2",
        username="postgres",
        database=database,
        query={
            "host": str(PROJECT_ROOT / ".local" / "pgsock"),
            "port": str(settings.database.port),
        },
    ).render_as_string(hide_password=False)


def migrate(url: str, revision: str, *, user: str, password: str = "", down: bool = False):
    """Runs the migrations with GRAFANA_DB_USER and GRAFANA_DB_PASSWORD set so."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAFANA_DB_USER", user)
        patch.setenv("GRAFANA_DB_PASSWORD", password)
        get_settings.cache_clear()
        try:
            (command.downgrade if down else command.upgrade)(alembic_config(url), revision)
        finally:
            get_settings.cache_clear()


@pytest.fixture(scope="module")
def template_0011(settings, admin_engine) -> Iterator[str]:
    """A database at revision 0011, copied by each test here."""
    name = f"salesflow_test_security_{uuid.uuid4().hex[:8]}"
    create_database(admin_engine, name)
    url = settings.database.set(database=name).render_as_string(hide_password=False)
    migrate(url, "0011", user=settings.grafana_db_user)
    yield name
    drop_database(admin_engine, name)


class Scratch:
    """Databases at 0011 and roles of one test, dropped afterwards (databases first: their
    grants keep a role from being dropped)."""

    def __init__(self, settings: Settings, admin_engine: Engine, template: str):
        self.settings, self.admin_engine, self.template = settings, admin_engine, template
        self.databases: list[str] = []
        self.roles: list[str] = []
        self.superuser = create_engine(superuser_url(settings, "postgres"))

    def database(self) -> str:
        name = f"salesflow_test_{uuid.uuid4().hex[:12]}"
        create_database(self.admin_engine, name, template=self.template)
        self.databases.append(name)
        return name

    def role(self) -> str:
        name = f"test_reader_{uuid.uuid4().hex[:10]}"
        self.roles.append(name)
        return name

    def app_url(self, database: str) -> str:
        return self.settings.database.set(database=database).render_as_string(hide_password=False)

    def login(self, role: str, password: str, database: str) -> Engine:
        url = self.settings.database.set(username=role, password=password, database=database)
        return create_engine(url, poolclass=NullPool)

    def role_exists(self, role: str) -> bool:
        with self.superuser.connect() as conn:
            query = text("SELECT 1 FROM pg_roles WHERE rolname = :r")
            return conn.execute(query, {"r": role}).first() is not None

    def close(self) -> None:
        for name in self.databases:
            drop_database(self.admin_engine, name)
        with self.superuser.connect() as conn:
            for role in self.roles:
                conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
            conn.commit()
        self.superuser.dispose()


@pytest.fixture
def scratch(settings, admin_engine, template_0011) -> Iterator[Scratch]:
    s = Scratch(settings, admin_engine, template_0011)
    yield s
    s.close()


def pgcode(error: DBAPIError) -> str | None:
    return getattr(error.orig, "pgcode", None)


SALES = 60


def seed_sales(url: str) -> None:
    """Products and SALES sales within the dashboards' test range, some rolled up and some
    not yet (both parts of the views)."""
    engine = make_engine(url)
    now = datetime.fromisoformat(FIRST_DAY).replace(hour=12, tzinfo=UTC) + timedelta(days=5)

    def insert(start: int, count: int) -> None:
        rows = []
        for n in range(start, start + count):
            price, quantity = Decimal(f"{3 + n % 5}.50"), 1 + n % 3
            moment = now - timedelta(days=n % 4, minutes=n)
            amount = price * quantity
            pid = f"s{n % 5}"
            rows.append(
                (f"t{n}", pid, quantity, price, amount, amount, moment, moment, 0, n, b"0" * 32)
            )
        insert_transactions(engine, rows)

    with engine.begin() as conn:
        execute_values(
            conn.connection.cursor(),
            "INSERT INTO products (product_id, name, category, price, received_at) VALUES %s",
            [
                (f"s{i}", f"Product {i}", f"cat{i % 2}", Decimal(f"{3 + i}.50"), now)
                for i in range(5)
            ],
        )
    insert(0, SALES * 2 // 3)
    with Session(engine) as session, session.begin():
        rollup(session, "UTC")
    insert(SALES * 2 // 3, SALES - SALES * 2 // 3)
    engine.dispose()


def dashboard_answers(engine: Engine) -> list[list[tuple]]:
    with engine.connect() as conn:
        return [[tuple(r) for r in conn.execute(text(grafana_sql(sql)))] for sql in DASHBOARD_SQL]


def test_grafana_role_sees_every_dashboard_figure_and_nothing_else(scratch, settings):
    database, role, password = scratch.database(), scratch.role(), uuid.uuid4().hex
    seed_sales(scratch.app_url(database))
    migrate(superuser_url(settings, database), "0012", user=role, password=password)
    owner = make_engine(scratch.app_url(database))
    reader = scratch.login(role, password, database)
    try:
        # Every panel of the Sales dashboard shows the reader what it shows the owner.
        assert dashboard_answers(reader) == dashboard_answers(owner)
        with reader.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar_one() == role
            total = conn.execute(text("SELECT sum(transactions) FROM sales_by_day"))
            assert total.scalar_one() == SALES
        for sql in REFUSED:
            with reader.connect() as conn, pytest.raises(DBAPIError) as refused:
                conn.execute(text(sql))
            assert pgcode(refused.value) == errorcodes.INSUFFICIENT_PRIVILEGE, sql
    finally:
        owner.dispose()
        reader.dispose()


def test_an_existing_role_gets_the_new_password_and_stays_while_a_database_uses_it(
    scratch, settings
):
    first, second, role = scratch.database(), scratch.database(), scratch.role()
    migrate(superuser_url(settings, first), "0012", user=role, password="first-password-1")
    # The role exists now, server-wide: the second database's migration takes it as it is
    # and sets the password it is given.
    migrate(superuser_url(settings, second), "0012", user=role, password="second-password-2")
    with scratch.login(role, "second-password-2", first).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sales_by_day")).scalar_one() == 0
    with pytest.raises(OperationalError, match="password authentication failed"):
        scratch.login(role, "first-password-1", first).connect()

    migrate(superuser_url(settings, second), "0011", user=role, down=True)
    assert scratch.role_exists(role), "dropped while the first database still grants to it"
    with scratch.login(role, "second-password-2", second).connect() as conn:
        with pytest.raises(DBAPIError) as refused:
            conn.execute(text("SELECT count(*) FROM sales_by_day"))
        assert pgcode(refused.value) == errorcodes.INSUFFICIENT_PRIVILEGE

    migrate(superuser_url(settings, first), "0011", user=role, down=True)
    assert not scratch.role_exists(role), "nothing uses the role any more"


def test_a_migrating_role_that_may_not_create_roles_needs_the_role_to_exist(scratch):
    database, role = scratch.database(), scratch.role()
    with pytest.raises(RuntimeError, match=f"role '{role}' .* does not exist .* CREATE ROLE"):
        migrate(scratch.app_url(database), "0012", user=role, password="a-password-123")
    assert not scratch.role_exists(role)


def test_the_migration_refuses_a_superuser_as_grafana_role(scratch):
    database = scratch.database()
    with pytest.raises(RuntimeError, match="'postgres' is a superuser or the migrating role"):
        migrate(scratch.app_url(database), "0012", user="postgres")


# --- metrics endpoints ------------------------------------------------------------------
def listening(pid: int) -> set[tuple[str, int]]:
    """The TCP addresses a process and its children listen on."""
    process = psutil.Process(pid)
    return {
        (c.laddr.ip, c.laddr.port)
        for p in [process, *process.children(recursive=True)]
        for c in p.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }


def test_metrics_endpoints_listen_on_http_bind_host_only(
    settings, admin_engine, migrated_template, tmp_path
):
    """Bound to 127.0.0.2, each answers there and nowhere else (127.0.0.1 is refused)."""
    services = ("processor", "worker", "notifier")
    pipeline = Pipeline(
        settings, admin_engine, migrated_template, tmp_path, http_bind_host="127.0.0.2"
    )
    try:
        pipeline.start(*services)
        for name in services:
            pid = pipeline.processes[name].pid
            sockets = wait_until(lambda pid=pid: listening(pid), timeout=60, what=name)
            assert {host for host, _ in sockets} == {"127.0.0.2"}, (name, sockets)
            for _, port in sockets:
                answer = requests.get(f"http://127.0.0.2:{port}/metrics", timeout=10)
                assert answer.status_code == 200 and "# TYPE" in answer.text, name
                with pytest.raises(ConnectionRefusedError):
                    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        pipeline.close()


# --- Compose's first start: stack/postgres-init/10-roles.sh -----------------------------
INIT = PROJECT_ROOT / "stack" / "postgres-init" / "10-roles.sh"


def run_init(settings: Settings, database: str, **environment: str):
    """The script as the postgres image runs it: as the superuser, with psql on PATH."""
    bindir = max(glob.glob("/usr/lib/postgresql/*/bin"))
    env = os.environ | {
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "PGHOST": str(PROJECT_ROOT / ".local" / "pgsock"),
        "PGPORT": str(settings.database.port),
        "POSTGRES_USER": "postgres",
        "POSTGRES_DB": database,
    }
    return subprocess.run(
        ["bash", str(INIT)], env=env | environment, capture_output=True, text=True, timeout=60
    )


def test_composes_first_start_makes_roles_that_are_no_superusers(settings):
    suffix = uuid.uuid4().hex[:10]
    database, app, reader = (
        f"salesflow_test_init_{suffix}",
        f"test_app_{suffix}",
        f"test_reader_{suffix}",
    )
    superuser = create_engine(superuser_url(settings, "postgres"), isolation_level="AUTOCOMMIT")
    with superuser.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    try:
        done = run_init(
            settings,
            database,
            APP_DB_USER=app,
            APP_DB_PASSWORD="app-password-0123",
            GRAFANA_DB_USER=reader,
            GRAFANA_DB_PASSWORD="reader-password-0123",
        )
        assert done.returncode == 0, done.stderr
        with superuser.connect() as conn:
            roles = dict(
                conn.execute(
                    text(
                        "SELECT rolname, rolsuper OR rolcreaterole OR rolcreatedb"
                        " FROM pg_roles WHERE rolname IN (:app, :reader)"
                    ),
                    {"app": app, "reader": reader},
                ).all()
            )
            assert roles == {app: False, reader: False}
            owner = conn.execute(
                text("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :d"),
                {"d": database},
            ).scalar_one()
            assert owner == app
            assert conn.execute(
                text("SELECT pg_has_role(:app, 'pg_read_all_stats', 'MEMBER')"), {"app": app}
            ).scalar_one()
        # The services' role migrates the database (revision 0012 finds the reader made),
        # and the reader reads the report views.
        app_url = settings.database.set(
            username=app, password="app-password-0123", database=database
        ).render_as_string(hide_password=False)
        migrate(app_url, "head", user=reader)
        reader_engine = create_engine(
            settings.database.set(
                username=reader, password="reader-password-0123", database=database
            ),
            poolclass=NullPool,
        )
        with reader_engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM sales_by_day")).scalar_one() == 0
        reader_engine.dispose()
    finally:
        with superuser.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            for role in (app, reader):
                conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        superuser.dispose()


def test_composes_first_start_refuses_the_superuser_as_the_services_role(settings):
    done = run_init(
        settings,
        "postgres",
        APP_DB_USER="postgres",
        APP_DB_PASSWORD="x" * 16,
        GRAFANA_DB_USER="grafana_reader",
        GRAFANA_DB_PASSWORD="y" * 16,
    )
    assert done.returncode == 1
    assert "must not be the superuser postgres" in done.stderr
