"""Settings for every process of the system, read from the environment and `.env`.

One class, validated once at start-up. A missing or malformed variable stops the
process with one line per variable naming it and what is wrong (exit code 1).
Real environment variables win over `.env`; `.env.example` documents each one.
`ENV_FILE` names another file to read instead of the project's `.env`.
"""

from __future__ import annotations

import itertools
import os
import sys
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

PROJECT_ROOT = Path(__file__).resolve().parent
# The local stack's state on a host: servers' data, sockets, logs and downloaded tools.
STATE_DIR = PROJECT_ROOT / ".local"


def _postgres_url(value: str) -> str:
    """A SQLAlchemy URL for PostgreSQL through psycopg2.

    `postgresql://` alone would make SQLAlchemy 2.1 look for psycopg 3, which is
    not installed, so the driver is named explicitly.
    """
    try:
        url = make_url(value)
    except Exception as exc:  # sqlalchemy raises ArgumentError with the offending text
        raise ValueError(f"not a database URL ({exc})") from None
    backend, _, driver = url.drivername.partition("+")
    if backend != "postgresql":
        raise ValueError(
            f"expected postgresql+psycopg2://user:password@host:port/db, got {backend}://"
        )
    if driver not in ("", "psycopg2"):
        raise ValueError(f"driver {driver!r} is not installed; use postgresql+psycopg2://")
    if not url.host or not url.database:
        raise ValueError(
            "must name a host and a database: postgresql+psycopg2://user:password@host:port/db"
        )
    return url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def _celery_broker_url(value: str) -> str:
    """The Celery broker: kombu's SQLAlchemy transport on PostgreSQL (`sqla+postgresql…`)."""
    prefix = "sqla+"
    if not value.startswith(prefix):
        raise ValueError("expected sqla+postgresql+psycopg2://user:password@host:port/db")
    return prefix + _postgres_url(value[len(prefix) :])


def _bootstrap_servers(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("expected host:port[,host:port...]")
    for server in value:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{server!r} is not host:port")
    return value


def _long_keys(value: list[str]) -> list[str]:
    if any(len(key) < 16 for key in value):
        raise ValueError("every key must be at least 16 characters long")
    return value


def _nonempty_keys(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("give at least one key (comma-separated)")
    return _long_keys(value)


# The API keys .env.example ships with: public, so refused unless ALLOW_EXAMPLE_KEYS is set.
EXAMPLE_API_KEYS = frozenset({"local-dev-ingest-key-change-me", "local-dev-admin-key-change-me"})
GENERATE_SECRET = 'generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'


def _password(value: str) -> str:
    if value and len(value) < 12:
        raise ValueError(f"use at least 12 characters; {GENERATE_SECRET}")
    return value


def _timezone(value: str) -> str:
    # Looked up in the list of zones: ZoneInfo("America") would open a folder.
    if value not in available_timezones():
        raise ValueError(f"{value!r} is not an IANA time zone such as UTC or Europe/Berlin")
    return value


def _http_url_or_empty(value: str) -> str:
    return _http_url(value) if value else value


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or value.endswith("://"):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _split_commas(value: object) -> object:
    """`a:1, b:2` in the environment becomes `["a:1", "b:2"]`."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


Port = Annotated[int, Field(gt=0, lt=65536)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        case_sensitive=False,
    )

    # Connections
    database_url: Annotated[str, AfterValidator(_postgres_url)]
    celery_broker_url: Annotated[str, AfterValidator(_celery_broker_url)]
    kafka_bootstrap_servers: Annotated[
        list[str], NoDecode, BeforeValidator(_split_commas), AfterValidator(_bootstrap_servers)
    ]

    # Kafka topics
    kafka_topic_transactions: str = Field("transactions", min_length=1, max_length=249)
    kafka_topic_notifications: str = Field("notifications", min_length=1, max_length=249)
    kafka_transactions_partitions: int = Field(6, ge=1, le=1000)
    kafka_notifications_partitions: int = Field(1, ge=1, le=1000)
    # How long Kafka keeps each topic's messages (retention.ms, set on create and on an
    # existing topic): long enough to replay transactions from Kafka after an outage.
    kafka_transactions_retention_hours: int = Field(168, ge=1, le=87_600)
    kafka_notifications_retention_hours: int = Field(168, ge=1, le=87_600)

    # Local stack only (`make up`): the KRaft controller's port and the broker's heap.
    kafka_controller_port: Port = 9093
    kafka_heap: str = Field("512m", pattern=r"^\d+[mg]$")

    # HTTP services: the address they listen on (0.0.0.0 in containers) and their ports.
    http_bind_host: str = "127.0.0.1"
    collector_port: Port = 8001
    analytics_port: Port = 8002
    notifications_port: Port = 8003
    prometheus_port: Port = 9090
    # The local stack's Alertmanager (not 9093: the local Kafka's controller has it).
    alertmanager_port: Port = 9193
    # The local stack's PostgreSQL exporter (its /metrics, for Prometheus).
    postgres_exporter_port: Port = 9187
    # Kafka's metrics: the JMX exporter agent inside the broker's JVM.
    kafka_metrics_port: Port = 9105
    # The local stack's process exporter: CPU and memory of each component's processes.
    process_exporter_port: Port = 9256

    # Grafana's read-only database role (revision 0012 grants it what the dashboards read)
    # and its password; empty: the role cannot log in. Compose requires the password.
    grafana_db_user: str = Field("grafana_reader", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    grafana_db_password: Annotated[str, AfterValidator(_password)] = ""

    # Development only: accept the public keys of .env.example (the local stack sets it).
    allow_example_keys: bool = False

    # Data Collector
    # Keys accepted in X-API-Key by the ingestion endpoints (comma-separated).
    ingest_api_keys: Annotated[
        list[str], NoDecode, BeforeValidator(_split_commas), AfterValidator(_nonempty_keys)
    ]
    # Keys for the admin endpoints (listing and replaying rejected transactions).
    admin_api_keys: Annotated[
        list[str], NoDecode, BeforeValidator(_split_commas), AfterValidator(_nonempty_keys)
    ]
    collector_workers: int = Field(2, ge=1, le=64)
    collector_batch_max_items: int = Field(1000, ge=1, le=100_000)
    collector_kafka_timeout_seconds: float = Field(5.0, gt=0, le=120)

    # Processor (Kafka consumer) and Celery worker
    processor_group: str = Field("processor", min_length=1, max_length=255)
    processor_chunk_size: int = Field(2000, ge=1, le=50_000)
    processor_max_inflight_chunks: int = Field(8, ge=1, le=1000)
    processor_chunk_timeout_seconds: float = Field(60.0, gt=0)
    # Attempts a worker may start on a chunk, or fail, before it is given up (its
    # messages are then rejected as chunk_failed, replayable).
    processor_chunk_max_attempts: int = Field(5, ge=1, le=100)
    processor_metrics_port: Port = 9101
    worker_concurrency: int = Field(2, ge=1, le=64)
    worker_metrics_port: Port = 9102
    unknown_product_window_seconds: float = Field(300.0, ge=0)
    # The first alert rules, seeded on migration: high_value_sale (0015, when above 0),
    # rejections (0015; Prometheus's RejectionsRising reads the same two), low_sales
    # (0014, when above 0).
    high_value_threshold: Decimal = Field(Decimal("10000"), ge=0)
    rejection_burst_threshold: int = Field(100, ge=1)
    rejection_burst_window_seconds: float = Field(300.0, gt=0)
    low_sales_threshold: Decimal = Field(Decimal("0"), ge=0)
    low_sales_window_minutes: int = Field(60, ge=1, le=10_080)

    # Notifier (Telegram)
    # The bot's token from @BotFather and the chat it writes to; without a token, events
    # are recorded as suppressed instead of sent.
    telegram_bot_token: str = Field("", pattern=r"^(\d+:[A-Za-z0-9_-]{20,})?$")
    telegram_chat_id: str = Field("", pattern=r"^(-?\d+|@[A-Za-z0-9_]{5,})?$")
    telegram_api_url: Annotated[str, AfterValidator(_http_url)] = "https://api.telegram.org"
    notify_min_severity: str = Field("info", pattern="^(info|warning|critical)$")
    # Where people reach the Analytics API and Grafana: a rule's alert links to its report
    # and dashboard when set (empty: no links).
    analytics_public_url: Annotated[str, AfterValidator(_http_url_or_empty)] = ""
    grafana_public_url: Annotated[str, AfterValidator(_http_url_or_empty)] = ""
    notifier_group: str = Field("notifier", min_length=1, max_length=255)
    # Notification Service (its API: alert rules and their history)
    notifications_workers: int = Field(1, ge=1, le=64)
    # Hosts a rule's webhook may call (comma-separated; `*.example.com` for a domain).
    notify_webhook_allowed_hosts: Annotated[list[str], NoDecode, BeforeValidator(_split_commas)] = [
        "localhost",
        "127.0.0.1",
        "::1",
    ]
    notifier_metrics_port: Port = 9103
    beat_metrics_port: Port = 9104

    # Analytics
    # Keys for X-API-Key on the analytics endpoints; empty: reads need no key.
    analytics_api_keys: Annotated[
        list[str], NoDecode, BeforeValidator(_split_commas), AfterValidator(_long_keys)
    ] = []
    analytics_workers: int = Field(2, ge=1, le=64)
    analytics_max_periods: int = Field(1000, ge=1, le=100_000)
    analytics_max_limit: int = Field(1000, ge=1, le=100_000)
    # Each database statement of an analytics request is cancelled after this (503).
    analytics_statement_timeout_ms: int = Field(5000, ge=1, le=600_000)
    # Most days of raw transactions one answer may read where no rollup fits (more: 422).
    analytics_max_raw_days: int = Field(731, ge=1, le=36_890)
    rollup_interval_seconds: float = Field(60.0, gt=0)
    rollup_max_pending_rows: int = Field(50_000, ge=1)

    # Retention of bookkeeping rows, purged hourly by beat: published outbox events, final
    # notification_log rows (by created_at) and replayed rejections (by replayed_at).
    outbox_retention_days: int = Field(7, ge=1, le=3650)
    notification_log_retention_days: int = Field(90, ge=1, le=3650)
    rejected_retention_days: int = Field(30, ge=1, le=3650)

    # Behaviour
    report_timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"
    log_dir: Annotated[
        Path, AfterValidator(lambda p: p if p.is_absolute() else PROJECT_ROOT / p)
    ] = STATE_DIR / "logs"
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    # Each service's log file is rotated at this size; this many older files are kept.
    log_max_bytes: int = Field(50 * 1024 * 1024, ge=1024)
    log_backup_count: int = Field(5, ge=1, le=100)
    kafka_log_level: str = Field("WARNING", pattern="^(DEBUG|INFO|WARNING|ERROR)$")

    @field_validator("ingest_api_keys", "admin_api_keys", "analytics_api_keys")
    @classmethod
    def _no_example_keys(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if EXAMPLE_API_KEYS.intersection(value) and not info.data.get("allow_example_keys"):
            raise ValueError(f"it holds the example key from .env.example; {GENERATE_SECRET}")
        return value

    @model_validator(mode="after")
    def _keys_of_their_own(self) -> Settings:
        # An ingest key must not open the admin endpoints, nor the reports, and so on.
        keys = {
            "INGEST_API_KEYS": self.ingest_api_keys,
            "ADMIN_API_KEYS": self.admin_api_keys,
            "ANALYTICS_API_KEYS": self.analytics_api_keys,
        }
        for (first, a), (second, b) in itertools.combinations(keys.items(), 2):
            if set(a) & set(b):
                raise ValueError(f"{first} and {second} share a key; give each its own keys")
        return self

    @model_validator(mode="after")
    def _grafana_role_of_its_own(self) -> Settings:
        if self.grafana_db_user == self.database.username:
            raise ValueError(
                "GRAFANA_DB_USER names the role of DATABASE_URL; Grafana's read-only role"
                " needs a name of its own"
            )
        return self

    @model_validator(mode="after")
    def _chat_for_the_bot(self) -> Settings:
        if self.telegram_bot_token and not self.telegram_chat_id:
            raise ValueError("TELEGRAM_CHAT_ID is not set; a bot token needs the chat to write to")
        return self

    @model_validator(mode="after")
    def _log_outlives_the_notifications_topic(self) -> Settings:
        # The log's row is what keeps an event Kafka delivers again from being sent twice.
        if self.notification_log_retention_days * 24 < self.kafka_notifications_retention_hours:
            raise ValueError(
                "NOTIFICATION_LOG_RETENTION_DAYS is shorter than"
                " KAFKA_NOTIFICATIONS_RETENTION_HOURS; keep the log at least as long as the"
                " topic, or a re-read event is sent again"
            )
        return self

    @property
    def database(self) -> URL:
        return make_url(self.database_url)


def describe(error: dict) -> str:
    """One line for one invalid variable: its name, what is wrong, how to fix it."""
    name = str(error["loc"][0]).upper() if error["loc"] else ""
    if error["type"] == "missing":
        return (
            f"config error: {name} is not set; add it to the environment or .env (see .env.example)"
        )
    reason = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:  # a rule across variables: the reason names them
        return f"config error: {reason}"
    return f"config error: {name} is invalid: {reason}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; exits with one line per bad variable if any is wrong."""
    env_file = os.environ.get("ENV_FILE") or PROJECT_ROOT / ".env"
    try:
        return Settings(_env_file=env_file)
    except ValidationError as exc:
        sys.exit("\n".join(describe(error) for error in exc.errors()))
