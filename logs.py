"""One logging set-up for every process: JSON lines to stdout and to LOG_DIR/<service>.log."""

import logging
import logging.handlers

from pythonjsonlogger.json import JsonFormatter

from config import get_settings


def configure_logging(service: str) -> None:
    settings = get_settings()
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    formatter = JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        static_fields={"service": service},
    )
    # WatchedFileHandler reopens the file after logrotate moves it.
    handlers = [
        logging.StreamHandler(),
        logging.handlers.WatchedFileHandler(settings.log_dir / f"{service}.log"),
    ]
    root = logging.getLogger()
    root.handlers.clear()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(settings.log_level)
    # Client libraries are chatty at INFO; the Kafka client's level is a setting of its own.
    for noisy in ("kombu", "amqp"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("kafka").setLevel(settings.kafka_log_level)
