# Shared by stack/*.sh: installation and readiness steps of the local stack.
# Every step checks before it acts, so that running it again changes nothing.

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
# The Prometheus JMX exporter agent the broker loads (the Dockerfile's JMX_AGENT_VERSION too).
JMX_AGENT_VERSION=1.0.1
# The local stack is a development machine: .env.example's API keys are allowed here, and
# only here (config.py refuses them elsewhere). An explicit value in the environment wins.
export ALLOW_EXAMPLE_KEYS=${ALLOW_EXAMPLE_KEYS:-true}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

install_system_packages() {
    local missing=()
    [ -n "$(pg_bindir)" ] || missing+=(postgresql postgresql-contrib)
    command -v prometheus >/dev/null || missing+=(prometheus)
    command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
    command -v prometheus-postgres-exporter >/dev/null || missing+=(prometheus-postgres-exporter)
    command -v prometheus-process-exporter >/dev/null || missing+=(prometheus-process-exporter)
    command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || missing+=(maven)
    command -v curl >/dev/null || missing+=(curl)
    command -v envsubst >/dev/null || missing+=(gettext-base)
    command -v wrk >/dev/null || missing+=(wrk)  # make bench-ingest: the single endpoint
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# Headless Chromium and its driver from Debian, for the browser test of /docs.
install_browser() {
    if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
        say "installing chromium and chromium-driver"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            chromium chromium-driver >/dev/null
    fi
}

install_python_env() {
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating the virtualenv $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    # Reinstall only when the package definition changed.
    if [ ! -f "$VENV/.installed" ] || [ setup.cfg -nt "$VENV/.installed" ]; then
        say "installing Python dependencies"
        "$VENV/bin/pip" install -q --upgrade pip
        "$VENV/bin/pip" install -q -e '.[test,bench]'
        touch "$VENV/.installed"
    fi
}

load_stack_env() {
    STACK_EXPORTS=$("$VENV/bin/python" stack/env.py) || exit 1
    eval "$STACK_EXPORTS"
    PG_BINDIR=$(pg_bindir)
    VENV_ABS=$(cd "$VENV" && pwd)
    export PG_BINDIR VENV_ABS
}

install_kafka_libs() {
    local libs="$STACK_LOCAL/kafka/libs"
    if [ ! -f "$libs/.resolved" ] || [ stack/kafka/pom.xml -nt "$libs/.resolved" ]; then
        say "resolving Apache Kafka from Maven Central"
        rm -rf "$libs"
        mvn -q -B -Dstyle.color=never -f stack/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory="$libs"
        touch "$libs/.resolved"
    fi
    # The Prometheus JMX exporter, loaded into the broker's JVM as an agent.
    local agent="$STACK_LOCAL/kafka/agent"
    if [ "$(cat "$agent/.version" 2>/dev/null)" != "$JMX_AGENT_VERSION" ]; then
        rm -rf "$agent"
        mvn -q -B -Dstyle.color=never dependency:copy -Dmdep.stripVersion=true \
            -Dartifact="io.prometheus.jmx:jmx_prometheus_javaagent:$JMX_AGENT_VERSION" \
            -DoutputDirectory="$agent"
        echo "$JMX_AGENT_VERSION" > "$agent/.version"
    fi
}

init_postgres() {
    local data="$STACK_LOCAL/pgdata" sock="$STACK_LOCAL/pgsock"
    mkdir -p "$sock"
    chown postgres:postgres "$sock"
    if [ ! -f "$data/PG_VERSION" ]; then
        say "initialising a PostgreSQL cluster in $data"
        mkdir -p "$data"
        chown postgres:postgres "$data"
        # Local socket: trust (only root and postgres can reach it); TCP: passwords.
        runuser -u postgres -- "$PG_BINDIR/initdb" -D "$data" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    fi
}

psql_admin() { "$PG_BINDIR/psql" -h "$STACK_LOCAL/pgsock" -p "$PGPORT" -U postgres -v ON_ERROR_STOP=1 -qtA "$@"; }

ensure_database() {
    [ "$PGUSER_APP" != postgres ] || die "DATABASE_URL must name the application's own role, not postgres"
    # psql variables (:"user", :'password') quote the values from .env safely.
    psql_admin -d postgres -v user="$PGUSER_APP" -v password="$PGPASSWORD_APP" \
        -v grafana_user="$PGUSER_GRAFANA" -v grafana_password="$PGPASSWORD_GRAFANA" <<'SQL'
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') AS missing \gset
\if :missing
CREATE ROLE :"user" LOGIN;
\endif
-- The application owns its tables but is no superuser, and may not create roles (on
-- PostgreSQL 15 CREATEROLE could grant itself pg_execute_server_program: a shell).
-- CREATEDB: the tests give every test module a database of its own.
ALTER ROLE :"user" LOGIN NOSUPERUSER NOCREATEROLE CREATEDB PASSWORD :'password';
-- Lets the rollup job see every session's transaction id (db/reports/rollups.py).
GRANT pg_read_all_stats TO :"user";
-- Grafana's read-only role: created here because the application's role cannot;
-- revision 0012 grants it what the dashboards read. Without GRAFANA_DB_PASSWORD it has
-- no password and cannot log in.
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'grafana_user') AS missing \gset
\if :missing
CREATE ROLE :"grafana_user" LOGIN;
\endif
SELECT :'grafana_password' = '' AS no_password \gset
\if :no_password
ALTER ROLE :"grafana_user" LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD NULL;
\else
ALTER ROLE :"grafana_user" LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD :'grafana_password';
\endif
SQL
    if [ -z "$(psql_admin -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$PGDATABASE_APP'")" ]; then
        say "creating database $PGDATABASE_APP"
        psql_admin -d postgres -v db="$PGDATABASE_APP" -v user="$PGUSER_APP" <<< 'CREATE DATABASE :"db" OWNER :"user"' 
    fi
}

init_kafka() {
    local dir="$STACK_LOCAL/kafka"
    export KAFKA_DATA_DIR="$dir/data"
    envsubst < stack/kafka/server.properties.in > "$dir/server.properties"
    if [ ! -f "$KAFKA_DATA_DIR/meta.properties" ]; then
        say "formatting Kafka storage in $KAFKA_DATA_DIR"
        local cluster_id
        cluster_id=$(java -cp "$dir/libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
        java -cp "$dir/libs/*" -Dlog4j2.configurationFile=stack/kafka/log4j2.xml \
            kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" >/dev/null
    fi
}

render_prometheus() {
    local dir="$STACK_LOCAL/prometheus"
    mkdir -p "$dir/data" "$dir/targets"
    rm -rf "$dir/rules"
    cp -r monitoring/prometheus/rules "$dir/rules"
    cp monitoring/prometheus/prometheus.yml "$dir/prometheus.yml"
    envsubst < monitoring/prometheus/targets-local.json.in > "$dir/targets/local.json"
    mkdir -p "$dir/alertmanagers" "$STACK_LOCAL/alertmanager/data"
    envsubst < monitoring/prometheus/alertmanagers-local.json.in > "$dir/alertmanagers/local.json"
    # The notifier's webhook at its local address.
    sed "s#http://notifier:9103/#http://127.0.0.1:$NOTIFIER_METRICS_PORT/#" \
        monitoring/alertmanager/alertmanager.yml > "$STACK_LOCAL/alertmanager/alertmanager.yml"
}

supervisorctl_() { "$VENV/bin/supervisorctl" -c stack/supervisord.conf "$@"; }

supervisor_running() { [ -S "$STACK_LOCAL/supervisor.sock" ] && supervisorctl_ pid >/dev/null 2>&1; }

pg_ready() { "$PG_BINDIR/pg_isready" -q -h "$PGHOST" -p "$PGPORT"; }

kafka_ready() { "$VENV/bin/python" -m streams.topics --check >/dev/null 2>&1; }

prometheus_ready() { curl -fsS "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" >/dev/null 2>&1; }

alertmanager_ready() { curl -fsS "http://127.0.0.1:$ALERTMANAGER_PORT/-/ready" >/dev/null 2>&1; }

wait_for() {
    local name=$1 timeout=$2 check=$3 start=$SECONDS
    until $check; do
        if (( SECONDS - start > timeout )); then
            die "$name is not ready after ${timeout}s; see $LOG_DIR/ and 'make status'"
        fi
        sleep 0.5
    done
    say "$name is ready ($(( SECONDS - start ))s)"
}
