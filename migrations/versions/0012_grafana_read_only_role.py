"""Grafana's read-only role: SELECT on what the dashboards read, and nothing else.

The role (GRAFANA_DB_USER, password GRAFANA_DB_PASSWORD) may read the report views
`sales_by_day` and `sales_by_day_and_product`, the product names and categories, and the
report time zone that `report_day()` looks up (a SQL function reads with its caller's
rights). Transactions one by one, rejected payloads, Celery's messages and the outbox
stay out of its reach.

Roles are server-wide and only a superuser or a CREATEROLE role may create them. A
migrating role that may (Compose's) creates the role or, when it exists already, sets its
password; one that may not (the local stack's, see stack/lib.sh) needs the role to
exist. Downgrade revokes the grants and drops the role once no database uses it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 10:00:00+00:00

"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from psycopg2 import errorcodes

from config import get_settings

# revision identifiers, used by Alembic.
revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger(__name__)

# What the dashboards' SQL panels read (monitoring/grafana/dashboards/*.json).
PRIVILEGES = [
    "USAGE ON SCHEMA public",
    "SELECT ON sales_by_day, sales_by_day_and_product",
    "SELECT (product_id, name, category) ON products",
    "SELECT (name, timezone) ON rollup_state",
    "EXECUTE ON FUNCTION report_day(timestamptz)",
]


def _role() -> tuple[str, str, str]:
    """The role's name, its name quoted for SQL, and its password."""
    settings = get_settings()
    name = settings.grafana_db_user
    quoted = op.get_bind().dialect.identifier_preparer.quote_identifier(name)
    return name, quoted, settings.grafana_db_password


def _may_manage_roles(conn: sa.Connection) -> bool:
    return conn.execute(
        sa.text("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
    ).scalar_one()


def _create_or_update(conn: sa.Connection, name: str, quoted: str, password: str) -> None:
    """Creates the role, or sets the password of the one that exists (in another database,
    or created at the same moment by another migration)."""
    try:
        with conn.begin_nested():
            conn.execute(sa.text(f"CREATE ROLE {quoted} LOGIN"))
    except sa.exc.DBAPIError as exc:
        codes = (errorcodes.DUPLICATE_OBJECT, errorcodes.UNIQUE_VIOLATION)
        if getattr(exc.orig, "pgcode", None) not in codes:
            raise
    if password:
        alter = sa.text(f"ALTER ROLE {quoted} LOGIN PASSWORD :password")
        conn.execute(alter, {"password": password})
    else:
        logger.warning("GRAFANA_DB_PASSWORD is empty: role %s keeps its password, if any", name)


def _exists(conn: sa.Connection, name: str) -> bool:
    query = sa.text("SELECT 1 FROM pg_roles WHERE rolname = :name")
    return conn.execute(query, {"name": name}).first() is not None


def upgrade() -> None:
    conn = op.get_bind()
    name, quoted, password = _role()
    powerful = conn.execute(
        sa.text("SELECT rolsuper OR rolname = current_user FROM pg_roles WHERE rolname = :name"),
        {"name": name},
    ).scalar()
    if powerful:  # granting it SELECT would change nothing, setting its password a lot
        raise RuntimeError(
            f"GRAFANA_DB_USER {name!r} is a superuser or the migrating role; name a role of"
            " Grafana's own"
        )
    if _may_manage_roles(conn):
        _create_or_update(conn, name, quoted, password)
    elif not _exists(conn, name):
        raise RuntimeError(
            f"role {name!r} (GRAFANA_DB_USER) does not exist and the migrating role may not"
            f" create roles; create it as an administrator: CREATE ROLE {quoted} LOGIN"
            " PASSWORD '...' (make up does)"
        )
    for privilege in PRIVILEGES:
        op.execute(f"GRANT {privilege} TO {quoted}")


def downgrade() -> None:
    conn = op.get_bind()
    name, quoted, _ = _role()
    if not _exists(conn, name):
        return
    for privilege in reversed(PRIVILEGES):
        op.execute(f"REVOKE {privilege} FROM {quoted}")
    # Privileges and ownership in every database of the server are recorded in pg_shdepend.
    used = conn.execute(
        sa.text(
            "SELECT EXISTS (SELECT 1 FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid"
            " WHERE d.refclassid = 'pg_authid'::regclass AND r.rolname = :name)"
        ),
        {"name": name},
    ).scalar_one()
    if used:
        logger.info("role %s is still used by another database: kept", name)
    elif _may_manage_roles(conn):
        conn.execute(sa.text(f"DROP ROLE {quoted}"))
