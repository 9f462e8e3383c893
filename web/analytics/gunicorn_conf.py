"""gunicorn settings of the Analytics API: `gunicorn -c web/analytics/gunicorn_conf.py`."""

from config import get_settings
from web.gunicorn_base import gunicorn_settings

_settings = get_settings()
globals().update(
    gunicorn_settings(
        "analytics",
        "web.analytics.app:create_app()",
        _settings.analytics_port,
        _settings.analytics_workers,
    )
)
