#!/usr/bin/env bash
# The project's test command (`make test`): starts the local stack when it is not
# running (the tests use its PostgreSQL and Kafka), checks lint, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
stack/up.sh
source stack/lib.sh
install_browser
say "lint"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
say "tests"
exec "$VENV/bin/pytest" "$@"
