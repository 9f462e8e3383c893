"""The Analytics service: `create_app()` for gunicorn, `python -m web.analytics.app` to run."""

from __future__ import annotations

from flask import Flask

from config import Settings, get_settings
from logs import configure_logging
from web.analytics import admin, routes
from web.common import (
    ADMIN_KEY_SCHEME,
    ANALYTICS_KEY_SCHEME,
    create_api,
    database_ready,
    register_database,
    register_health,
    register_metrics,
)

SERVICE = "analytics"


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    app = Flask(__name__)
    app.config.update(
        ANALYTICS_API_KEYS=settings.analytics_api_keys,
        ADMIN_API_KEYS=settings.admin_api_keys,
        REPORT_TIMEZONE=settings.report_timezone,
        MAX_PERIODS=settings.analytics_max_periods,
        MAX_LIMIT=settings.analytics_max_limit,
        STATEMENT_TIMEOUT_MS=settings.analytics_statement_timeout_ms,
        MAX_RAW_DAYS=settings.analytics_max_raw_days,
    )
    api = create_api(
        app,
        title="Analytics API",
        description="Sales reports: totals, periods, products, categories, trends; JSON or CSV.",
        security_schemes=(ANALYTICS_KEY_SCHEME, ADMIN_KEY_SCHEME),
    )
    # The document is built in the app's context: bounds that are settings (the largest
    # `limit`) are declared with this app's values.
    with app.app_context():
        api.register_blueprint(routes.blp)
        api.register_blueprint(admin.blp)
    register_database(app, settings.database_url, SERVICE)
    register_health(app, database_ready(app))
    register_metrics(app, SERVICE)
    return app


def main() -> None:
    """Development server; production runs gunicorn (web/analytics/gunicorn_conf.py)."""
    settings = get_settings()
    configure_logging(SERVICE)
    create_app(settings).run(host=settings.http_bind_host, port=settings.analytics_port)


if __name__ == "__main__":
    main()
