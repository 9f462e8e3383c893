#!/usr/bin/env bash
# Stops every process of the local stack (data stays in .local/).
set -euo pipefail
cd "$(dirname "$0")/.."
source stack/lib.sh
load_stack_env
pidfile="$STACK_LOCAL/supervisord.pid"
if supervisor_running; then
    pid=$(cat "$pidfile")
    supervisorctl_ shutdown >/dev/null
    # Wait for supervisord itself to exit (it stops its children first); a zombie
    # left to a parent that does not reap it counts as gone.
    while ps -o stat= -p "$pid" 2>/dev/null | grep -qv '^Z'; do sleep 0.2; done
    say "stopped"
else
    say "not running"
fi
