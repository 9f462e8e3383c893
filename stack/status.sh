#!/usr/bin/env bash
# Shows each process of the local stack, then asks every service whether it is ready
# (the same /ready answers the containers' healthchecks ask under Compose).
set -euo pipefail
cd "$(dirname "$0")/.."
source stack/lib.sh
load_stack_env
supervisor_running || { say "not running (make up starts it)"; exit 3; }
supervisorctl_ status || true
echo
"$VENV/bin/python" -m health status
