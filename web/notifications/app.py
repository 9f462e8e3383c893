"""The Notification Service: `create_app()` for gunicorn, `python -m web.notifications.app`
to run. Its delivery side is the notifier (consumers/notifier.py)."""

from __future__ import annotations

from flask import Flask

from config import Settings, get_settings
from logs import configure_logging
from web.common import (
    ADMIN_KEY_SCHEME,
    ANALYTICS_KEY_SCHEME,
    create_api,
    database_ready,
    register_database,
    register_health,
    register_metrics,
)
from web.notifications import routes

SERVICE = "notifications"


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    app = Flask(__name__)
    app.config.update(
        ANALYTICS_API_KEYS=settings.analytics_api_keys,
        ADMIN_API_KEYS=settings.admin_api_keys,
        WEBHOOK_ALLOWED_HOSTS=settings.notify_webhook_allowed_hosts,
        NOTIFICATIONS_TOPIC=settings.kafka_topic_notifications,
    )
    api = create_api(
        app,
        title="Notification Service",
        description="Alert rules over the sales (per product, category or all), where their"
        " alerts go (Telegram, webhooks), and the history of what was sent.",
        security_schemes=(ANALYTICS_KEY_SCHEME, ADMIN_KEY_SCHEME),
    )
    api.register_blueprint(routes.rules_blp)
    api.register_blueprint(routes.alerts_blp)
    register_database(app, settings.database_url, SERVICE)
    register_health(app, database_ready(app))
    register_metrics(app, SERVICE)
    return app


def main() -> None:
    """Development server; production runs gunicorn (web/notifications/gunicorn_conf.py)."""
    settings = get_settings()
    configure_logging(SERVICE)
    create_app(settings).run(host=settings.http_bind_host, port=settings.notifications_port)


if __name__ == "__main__":
    main()
