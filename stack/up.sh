#!/usr/bin/env bash
# Starts the whole system as local processes on real servers: PostgreSQL, Kafka (KRaft),
# Prometheus and every service, under supervisord. Installs what is missing first.
# Safe to run again: what is already installed, formatted or running is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
source stack/lib.sh

[ -f .env ] || { cp .env.example .env; say "created .env from .env.example"; }

install_system_packages
install_python_env
load_stack_env
mkdir -p "$STACK_LOCAL" "$LOG_DIR"
install_kafka_libs
init_postgres
init_kafka
render_prometheus

# supervisord expands %(ENV_...)s from its own environment: when the settings change,
# it has to start again to see them; otherwise it only picks up edits of its config.
stamp="$STACK_LOCAL/supervisord.env"
if supervisor_running && ! cmp -s <(echo "$STACK_EXPORTS") "$stamp"; then
    say "settings changed: restarting the process manager"
    stack/down.sh
fi
echo "$STACK_EXPORTS" > "$stamp"
if supervisor_running; then
    say "supervisord already running: applying configuration changes"
    supervisorctl_ update >/dev/null
    supervisorctl_ start all >/dev/null || true
else
    say "starting supervisord"
    "$VENV/bin/supervisord" -c stack/supervisord.conf
fi

wait_for "PostgreSQL" 60 pg_ready
ensure_database
wait_for "Kafka" 90 kafka_ready
wait_for "Prometheus" 30 prometheus_ready
wait_for "Alertmanager" 30 alertmanager_ready
curl -fsS -X POST "http://127.0.0.1:$PROMETHEUS_PORT/-/reload" >/dev/null

say "migrating the database"
"$VENV/bin/alembic" upgrade head
say "creating Kafka topics"
"$VENV/bin/python" -m streams.topics
say "seeding demo data (only into an empty database)"
"$VENV/bin/python" -m bench.generate --products 200 --transactions 200000 --days 400 --if-empty
# One rollup run now: the reports and report views are fast and know the zone from the start.
"$VENV/bin/python" -m tasks.rollups run >/dev/null
# Services run the code as it was when they started: restart them when it changed.
code_stamp="$STACK_LOCAL/services.stamp"
if [ -f "$code_stamp" ] && [ -n "$(find config.py logs.py web tasks consumers db -name '*.py' -newer "$code_stamp" | head -n 1)" ]; then
    say "code changed: restarting the services"
    supervisorctl_ restart services:* >/dev/null
else
    say "starting the services"
    supervisorctl_ start services:* >/dev/null
fi
touch "$code_stamp"

supervisorctl_ status
cat <<URLS

The system is up.
  Data Collector  http://127.0.0.1:$COLLECTOR_PORT/docs   (API: /api/v1, OpenAPI: /openapi.json)
  Analytics       http://127.0.0.1:$ANALYTICS_PORT/docs   (API: /api/v1, OpenAPI: /openapi.json)
  Notifications   http://127.0.0.1:$NOTIFICATIONS_PORT/docs   (alert rules and the alert history)
  Prometheus      http://127.0.0.1:$PROMETHEUS_PORT
  Alertmanager    http://127.0.0.1:$ALERTMANAGER_PORT
  PostgreSQL      $PGHOST:$PGPORT  (database $PGDATABASE_APP)
  Kafka           127.0.0.1:$KAFKA_PORT
  Logs            $LOG_DIR
  make status     shows every process; make down stops them.
URLS
