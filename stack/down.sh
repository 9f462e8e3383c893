#!/usr/bin/env bash
# Stops every process of the local stack (data stays in .local/).
set -euo pipefail
cd "$(dirname "$0")/.."
source stack/lib.sh
load_stack_env
if supervisor_running; then
    supervisorctl_ shutdown >/dev/null
    while supervisor_running; do sleep 0.2; done
    say "stopped"
else
    say "not running"
fi
