#!/usr/bin/env bash
# The official postgres image's start-up, as far as docker-compose.yml relies on it:
# on an empty PGDATA, initdb with POSTGRES_USER / POSTGRES_PASSWORD, create POSTGRES_DB,
# run /docker-entrypoint-initdb.d/* against a server that listens on its socket only;
# then run the server on every address, with passwords (scram-sha-256) over TCP.
set -euo pipefail

if [ "${1:0:1}" = "-" ]; then
    set -- postgres "$@"
fi
if [ "$1" != "postgres" ]; then
    exec "$@"
fi

# Started as root: own the data folder, then run again as postgres.
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

export POSTGRES_USER=${POSTGRES_USER:-postgres}
export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "error: the database is not initialised and POSTGRES_PASSWORD is not set" >&2
        exit 1
    fi
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 \
        ${POSTGRES_INITDB_ARGS:-} >/dev/null
    printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -p 5432" start >/dev/null
    if [ "$POSTGRES_DB" != postgres ]; then
        psql -v ON_ERROR_STOP=1 -qX --username "$POSTGRES_USER" --dbname postgres \
            -v db="$POSTGRES_DB" <<< 'CREATE DATABASE :"db"'
    fi
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sh)
                if [ -x "$script" ]; then "$script"; else . "$script"; fi ;;
            *.sql)
                psql -v ON_ERROR_STOP=1 -qX --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
                    -f "$script" ;;
            *) ;;
        esac
        echo "ran $script"
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "PostgreSQL initialised in $PGDATA"
fi

exec postgres -c listen_addresses='*' "${@:2}"
