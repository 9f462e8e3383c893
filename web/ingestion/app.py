"""The Data Collector service: `create_app()` for gunicorn, `python -m web.ingestion.app` to run."""

from __future__ import annotations

from flask import Flask

from config import Settings, get_settings
from logs import configure_logging
from web.common import (
    ADMIN_KEY_SCHEME,
    API_KEY_SCHEME,
    create_api,
    register_database,
    register_health,
    register_metrics,
)
from web.ingestion import admin, routes
from web.ingestion.publisher import Publisher

SERVICE = "collector"


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    app = Flask(__name__)
    app.config["BATCH_MAX_ITEMS"] = settings.collector_batch_max_items
    # A full batch of long items stays far below this; anything larger is refused with 413.
    app.config["MAX_CONTENT_LENGTH"] = settings.collector_batch_max_items * 4096 + 65536
    api = create_api(
        app,
        title="Data Collector API",
        description="Sales transactions and products in; answered 202 once Kafka has them.",
        security_schemes=(API_KEY_SCHEME, ADMIN_KEY_SCHEME),
    )
    app.config["INGEST_API_KEYS"] = settings.ingest_api_keys
    app.config["ADMIN_API_KEYS"] = settings.admin_api_keys
    api.register_blueprint(routes.blp)
    api.register_blueprint(admin.blp)
    publisher = Publisher(settings)
    app.extensions["publisher"] = publisher
    register_database(app, settings.database_url, SERVICE)

    def ready():
        ok = publisher.ready()
        return ok, {"kafka": "ok" if ok else "unreachable"}

    register_health(app, ready)
    register_metrics(app, SERVICE)
    return app


def main() -> None:
    """Development server; production runs gunicorn (see stack/supervisord.conf)."""
    settings = get_settings()
    configure_logging(SERVICE)
    create_app(settings).run(host=settings.http_bind_host, port=settings.collector_port)


if __name__ == "__main__":
    main()
