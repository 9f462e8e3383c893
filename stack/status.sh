#!/usr/bin/env bash
# Shows each process of the local stack.
set -euo pipefail
cd "$(dirname "$0")/.."
source stack/lib.sh
load_stack_env
supervisor_running || { say "not running (make up starts it)"; exit 3; }
supervisorctl_ status
