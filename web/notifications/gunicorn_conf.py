"""gunicorn settings of the Notification Service:
`gunicorn -c web/notifications/gunicorn_conf.py`."""

from config import get_settings
from web.gunicorn_base import gunicorn_settings

_settings = get_settings()
globals().update(
    gunicorn_settings(
        "notifications",
        "web.notifications.app:create_app()",
        _settings.notifications_port,
        _settings.notifications_workers,
    )
)
