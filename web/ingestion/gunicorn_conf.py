"""gunicorn settings of the Data Collector: `gunicorn -c web/ingestion/gunicorn_conf.py`."""

from config import get_settings
from web.gunicorn_base import gunicorn_settings

_settings = get_settings()
globals().update(
    gunicorn_settings(
        "collector",
        "web.ingestion.app:create_app()",
        _settings.collector_port,
        _settings.collector_workers,
    )
)
