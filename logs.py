"""One logging set-up for every process: JSON lines to stdout and to LOG_DIR/<service>.log.

The file rotates at LOG_MAX_BYTES, keeping LOG_BACKUP_COUNT older files (`<service>.log.1`
is the newest). Several processes write one service's file (gunicorn workers, Celery's
pool), so the standard library's RotatingFileHandler would not do: each process would
rotate on its own, renaming the file under the others, which then go on writing into a
backup and rotate it again, losing the oldest files early. concurrent-log-handler's
drop-in replacement takes a lock file (`.__<service>.lock`) around each write and each
rotation, and reopens the file when another process has rotated it.

Secrets never reach a log line: the Telegram bot token (part of the Bot API's URL, which
HTTP libraries put into their exception messages) is replaced in every formatted line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from concurrent_log_handler import ConcurrentRotatingFileHandler
from pythonjsonlogger.json import JsonFormatter

from config import get_settings

# The Bot API's URL holds the token as /bot<digits>:<token characters>/.
BOT_TOKEN_IN_URL = re.compile(r"bot\d+:[A-Za-z0-9_-]+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without the bot token in any URL, and without any of `secrets`."""
    text = BOT_TOKEN_IN_URL.sub("bot<redacted>", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


class RedactingJsonFormatter(JsonFormatter):
    """JSON lines with secrets redacted from the whole line: message, arguments, extras
    and tracebacks alike (token characters need no escaping in JSON)."""

    def __init__(self, *args, secrets: Iterable[str] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


def configure_logging(service: str) -> None:
    settings = get_settings()
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    formatter = RedactingJsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        static_fields={"service": service},
        secrets=[settings.telegram_bot_token],
    )
    handlers = [
        logging.StreamHandler(),
        ConcurrentRotatingFileHandler(
            settings.log_dir / f"{service}.log",
            maxBytes=settings.log_max_bytes,
            backupCount=settings.log_backup_count,
            encoding="utf-8",
        ),
    ]
    root = logging.getLogger()
    root.handlers.clear()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(settings.log_level)
    # Client libraries are chatty at INFO; urllib3 at DEBUG prints each request's URL,
    # which holds the bot token: redacted anyway, but kept out. The Kafka client's level
    # is a setting of its own.
    for noisy in ("kombu", "amqp", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("kafka").setLevel(settings.kafka_log_level)
