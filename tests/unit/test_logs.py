"""Logging: JSON lines per service; the Kafka client's own level is a setting of its own."""

import json
import subprocess
import sys

import pytest

from config import PROJECT_ROOT
from tests.helpers import service_environment

SCRIPT = """
import logging
from logs import configure_logging
configure_logging("svc")
for name in ("kafka.consumer.fetcher", "kombu.transport", "salesflow"):
    for level in (logging.DEBUG, logging.INFO, logging.WARNING):
        logging.getLogger(name).log(level, "%s at %s", name, logging.getLevelName(level))
"""


def logged(tmp_path, **env: str) -> set[tuple[str, str]]:
    environment = service_environment(PROJECT_ROOT / ".env.example", LOG_DIR=str(tmp_path), **env)
    subprocess.run([sys.executable, "-c", SCRIPT], env=environment, cwd=PROJECT_ROOT, check=True)
    lines = (tmp_path / "svc.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert all(r["service"] == "svc" for r in records)
    return {(r["logger"], r["level"]) for r in records}


def test_the_kafka_client_speaks_at_warning_unless_asked(tmp_path):
    assert logged(tmp_path) == {
        ("kafka.consumer.fetcher", "WARNING"),
        ("kombu.transport", "WARNING"),
        ("salesflow", "INFO"),
        ("salesflow", "WARNING"),
    }


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_the_kafka_client_level_is_its_own(tmp_path, level):
    kafka = {("kafka.consumer.fetcher", lvl) for lvl in ("DEBUG", "INFO", "WARNING")}
    if level == "INFO":
        kafka.discard(("kafka.consumer.fetcher", "DEBUG"))
    # The services' own level and the other clients' stay as they were.
    assert logged(tmp_path, KAFKA_LOG_LEVEL=level, LOG_LEVEL="WARNING") == kafka | {
        ("kombu.transport", "WARNING"),
        ("salesflow", "WARNING"),
    }
