"""Writes a new .env from .env.example for Docker Compose: every key and password fresh.

The example's API keys are public, and the services refuse them outside development;
the passwords docker-compose.yml requires are commented out in the example. Here each
gets a new random value, and the rest of the file stays as the example has it.

    python3 stack/new_env.py .env.example .env
"""

import re
import secrets
import sys
from pathlib import Path

FRESH = (
    "INGEST_API_KEYS",
    "ADMIN_API_KEYS",
    "GRAFANA_DB_PASSWORD",
    "POSTGRES_PASSWORD",
    "POSTGRES_ADMIN_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
)


def render(example: str) -> str:
    def fresh(match: re.Match) -> str:
        return f"{match['name']}={secrets.token_urlsafe(32)}"

    names = "|".join(FRESH)
    return re.sub(rf"^(?:# )?(?P<name>{names})=.*$", fresh, example, flags=re.M)


def main() -> None:
    source, target = map(Path, sys.argv[1:3])
    target.write_text(render(source.read_text()))
    target.chmod(0o600)


if __name__ == "__main__":
    main()
