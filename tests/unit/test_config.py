"""Settings: every bad variable is named on one line; good ones are normalised."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values
from pydantic import ValidationError

from config import EXAMPLE_API_KEYS, PROJECT_ROOT, Settings, describe
from tests.helpers import service_environment

GOOD = {
    "DATABASE_URL": "postgresql+psycopg2://u:p@db.example:5432/sales",
    "CELERY_BROKER_URL": "sqla+postgresql+psycopg2://u:p@db.example:5432/sales",
    "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
    "INGEST_API_KEYS": "ingest-key-0123456789",
    "ADMIN_API_KEYS": "admin-key-0123456789",
}
BIN = Path(sys.executable).parent

# Every long-running service and command, as it is started in production.
SERVICE_COMMANDS = [
    [str(BIN / "gunicorn"), "--config", "web/ingestion/gunicorn_conf.py"],
    [sys.executable, "-m", "web.ingestion.app"],
    [str(BIN / "gunicorn"), "--config", "web/analytics/gunicorn_conf.py"],
    [sys.executable, "-m", "web.analytics.app"],
    [sys.executable, "-m", "tasks.rollups", "run"],
    [sys.executable, "-m", "consumers.processor"],
    [sys.executable, "-m", "consumers.notifier"],
    [str(BIN / "celery"), "-A", "tasks.worker", "worker"],
    [str(BIN / "celery"), "-A", "tasks.celery_app", "beat"],
    [sys.executable, "-m", "streams.topics"],
    [sys.executable, "-m", "streams.replay", "list"],
]


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name in list(os.environ):
        if name in Settings.model_fields or name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    for name, value in (GOOD | env).items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def errors(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        load(monkeypatch, **env)
    return [describe(e) for e in info.value.errors()]


def test_good_settings_are_normalised(monkeypatch):
    s = load(
        monkeypatch, DATABASE_URL="postgresql://u:p@h/db", KAFKA_BOOTSTRAP_SERVERS=" a:1 ,b:2 "
    )
    assert s.database_url == "postgresql+psycopg2://u:p@h/db"
    assert s.kafka_bootstrap_servers == ["a:1", "b:2"]
    assert s.log_dir.is_absolute() and s.log_dir.is_relative_to(PROJECT_ROOT)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DATABASE_URL", "mysql://u:p@h/db", "expected postgresql+psycopg2://"),
        ("DATABASE_URL", "not a url", "not a database URL"),
        ("DATABASE_URL", "postgresql+asyncpg://u:p@h/db", "driver 'asyncpg' is not installed"),
        ("DATABASE_URL", "postgresql+psycopg2://u:p@h", "must name a host and a database"),
        ("CELERY_BROKER_URL", "redis://h:6379/0", "expected sqla+postgresql"),
        ("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2", "'k2' is not host:port"),
        ("KAFKA_BOOTSTRAP_SERVERS", "k1:99999", "'k1:99999' is not host:port"),
        ("REPORT_TIMEZONE", "Mars/Olympus", "not an IANA time zone"),
        ("COLLECTOR_PORT", "70000", "less than 65536"),
        ("KAFKA_TRANSACTIONS_PARTITIONS", "zero", "valid integer"),
        ("LOG_LEVEL", "LOUD", "should match pattern"),
    ],
)
def test_bad_variable_is_named_with_its_problem(monkeypatch, name, value, expected):
    lines = errors(monkeypatch, **{name: value})
    assert len(lines) == 1
    assert lines[0].startswith(f"config error: {name} is invalid: ")
    assert expected in lines[0]


def test_every_missing_variable_gets_its_own_line(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for name in GOOD:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None)
    lines = sorted(describe(e) for e in info.value.errors())
    assert [line.split()[2] for line in lines] == sorted(GOOD)
    assert all("is not set" in line and ".env.example" in line for line in lines)


def test_env_example_is_complete_and_valid(monkeypatch):
    """Every setting is documented in .env.example, and the file as shipped is valid."""
    text = (PROJECT_ROOT / ".env.example").read_text()
    documented = {
        line.split("=", 1)[0].lower()
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert documented == set(Settings.model_fields)
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    # Its keys are public examples: refused, unless on a development machine.
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=PROJECT_ROOT / ".env.example")
    assert sorted(describe(e).split()[2] for e in info.value.errors()) == [
        "ADMIN_API_KEYS",
        "INGEST_API_KEYS",
    ]
    monkeypatch.setenv("ALLOW_EXAMPLE_KEYS", "true")
    Settings(_env_file=PROJECT_ROOT / ".env.example")


def start(tmp_path, command: list[str], settings: dict[str, str], **environment: str):
    """Runs a service command with these settings in its env file and `environment` as
    real environment variables (no other settings inherited); returns when it exits."""
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    return subprocess.run(
        command,
        env=service_environment(env_file, **environment),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", SERVICE_COMMANDS, ids=lambda c: " ".join(c[1:]))
@pytest.mark.parametrize("value", [None, "mysql://nope"], ids=["unset", "malformed"])
def test_service_refuses_to_start_without_a_good_database_url(tmp_path, command, value):
    settings = {k: v for k, v in GOOD.items() if k != "DATABASE_URL"}
    environment = {} if value is None else {"DATABASE_URL": value}
    result = start(tmp_path, command, settings, **environment)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("config error: DATABASE_URL is ")


CONFIGURATION_PAGE = PROJECT_ROOT / "docs" / "configuration.md"


def test_configuration_page_documents_every_setting():
    page = CONFIGURATION_PAGE.read_text()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in page]
    assert missing == []


def test_configuration_page_documents_every_variable_of_env_example():
    """Every variable .env.example names, set (`NAME=`) or for Compose alone (`# NAME=`),
    has its row in docs/configuration.md. (That every setting is in .env.example is
    test_env_example_is_complete_and_valid's.)"""
    text = (PROJECT_ROOT / ".env.example").read_text()
    named = re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE)
    assert len(named) > len(Settings.model_fields)  # the Compose-only ones are found too
    page = CONFIGURATION_PAGE.read_text()
    assert [name for name in named if f"| `{name}` |" not in page] == []


def test_a_bot_token_without_a_chat_stops_the_notifier_with_one_line(tmp_path):
    settings = GOOD | {"TELEGRAM_BOT_TOKEN": "123456:abcdefghijklmnopqrstuvwxyz"}
    result = start(tmp_path, [sys.executable, "-m", "consumers.notifier"], settings)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "config error: TELEGRAM_CHAT_ID is not set; a bot token needs the chat to write to"
    ]


EXAMPLE_KEY_LINE = (
    "is invalid: it holds the example key from .env.example; generate one with: "
    'python -c "import secrets; print(secrets.token_urlsafe(32))"'
)


def test_the_example_keys_are_the_ones_env_example_ships():
    shipped = dotenv_values(PROJECT_ROOT / ".env.example")
    keys = {
        key
        for name, value in shipped.items()
        if name.endswith("_API_KEYS") and value
        for key in value.split(",")
    }
    assert keys and keys == EXAMPLE_API_KEYS


@pytest.mark.parametrize("name", ["INGEST_API_KEYS", "ADMIN_API_KEYS", "ANALYTICS_API_KEYS"])
@pytest.mark.parametrize("example", sorted(EXAMPLE_API_KEYS))
def test_an_example_key_is_refused_unless_allowed(monkeypatch, name, example):
    value = f"{example},another-key-0123456789"
    assert errors(monkeypatch, **{name: value}) == [f"config error: {name} {EXAMPLE_KEY_LINE}"]
    assert errors(monkeypatch, ALLOW_EXAMPLE_KEYS="false", **{name: value}) == [
        f"config error: {name} {EXAMPLE_KEY_LINE}"
    ]
    allowed = load(monkeypatch, ALLOW_EXAMPLE_KEYS="true", **{name: value})
    assert example in getattr(allowed, name.lower())


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("INGEST_API_KEYS", "ADMIN_API_KEYS"),
        ("INGEST_API_KEYS", "ANALYTICS_API_KEYS"),
        ("ADMIN_API_KEYS", "ANALYTICS_API_KEYS"),
    ],
)
def test_the_key_variables_may_not_share_a_key(monkeypatch, first, second):
    shared = "shared-key-0123456789"
    env = {first: f"own-key-0123456789,{shared}", second: shared}
    assert errors(monkeypatch, **env) == [
        f"config error: {first} and {second} share a key; give each its own keys"
    ]


def test_grafana_needs_a_role_and_a_password_of_its_own(monkeypatch):
    # DATABASE_URL's role is "u".
    assert errors(monkeypatch, GRAFANA_DB_USER="u") == [
        "config error: GRAFANA_DB_USER names the role of DATABASE_URL; Grafana's read-only"
        " role needs a name of its own"
    ]
    (line,) = errors(monkeypatch, GRAFANA_DB_PASSWORD="short")
    assert line.startswith("config error: GRAFANA_DB_PASSWORD is invalid: use at least 12")
    assert load(monkeypatch, GRAFANA_DB_PASSWORD="x" * 12).grafana_db_password == "x" * 12


@pytest.mark.parametrize("command", SERVICE_COMMANDS, ids=lambda c: " ".join(c[1:]))
def test_service_refuses_to_start_with_the_example_keys(command):
    """Every service, started with .env.example as it ships, stops naming both keys."""
    result = subprocess.run(
        command,
        env=service_environment(PROJECT_ROOT / ".env.example", ALLOW_EXAMPLE_KEYS="false"),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert sorted(result.stderr.strip().splitlines()) == [
        f"config error: ADMIN_API_KEYS {EXAMPLE_KEY_LINE}",
        f"config error: INGEST_API_KEYS {EXAMPLE_KEY_LINE}",
    ], result.stderr
