#!/usr/bin/env bash
# The Data Collector under gunicorn. prometheus_client's multiprocess mode lets /metrics
# add up the counts of every worker; its folder must start empty.
set -euo pipefail
cd "$(dirname "$0")/.."
export PROMETHEUS_MULTIPROC_DIR="${STACK_LOCAL:-.local}/metrics/collector"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
exec "${VENV_ABS:-.venv}/bin/gunicorn" --config web/gunicorn_conf.py \
    --bind "127.0.0.1:${COLLECTOR_PORT:-8001}" "web.ingestion.app:create_app()"
