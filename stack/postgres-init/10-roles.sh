#!/usr/bin/env bash
# Compose's PostgreSQL, first start only (the official image runs the scripts of
# /docker-entrypoint-initdb.d once, as its superuser, on an empty data folder): the
# application's role, which owns the database and its schema but is no superuser and may
# not create roles, and Grafana's read-only role, to which revision 0012 grants what the
# dashboards read.
set -euo pipefail

for name in APP_DB_USER APP_DB_PASSWORD GRAFANA_DB_USER GRAFANA_DB_PASSWORD; do
    [ -n "${!name:-}" ] || { echo "postgres-init: $name is not set" >&2; exit 1; }
done
if [ "$APP_DB_USER" = "$POSTGRES_USER" ]; then
    echo "postgres-init: the application's role must not be the superuser $POSTGRES_USER" >&2
    exit 1
fi

# psql variables (:"name", :'value') quote what comes from .env safely.
psql -v ON_ERROR_STOP=1 -qX --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v db="$POSTGRES_DB" -v app="$APP_DB_USER" -v app_password="$APP_DB_PASSWORD" \
    -v reader="$GRAFANA_DB_USER" -v reader_password="$GRAFANA_DB_PASSWORD" <<'SQL'
CREATE ROLE :"app" LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD :'app_password';
-- Lets the rollup job see every session's transaction id (db/reports/rollups.py).
GRANT pg_read_all_stats TO :"app";
ALTER DATABASE :"db" OWNER TO :"app";
ALTER SCHEMA public OWNER TO :"app";
CREATE ROLE :"reader" LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD :'reader_password';
SQL
