"""Retention settings: the notification log may not be purged sooner than Kafka keeps the
events it guards against sending twice."""

import pytest
from pydantic import ValidationError

from config import PROJECT_ROOT, Settings


def settings(**values) -> Settings:
    return Settings(_env_file=PROJECT_ROOT / ".env.example", **values)


def test_the_log_may_not_be_kept_shorter_than_the_notifications_topic():
    with pytest.raises(ValidationError) as refused:
        settings(notification_log_retention_days=1, kafka_notifications_retention_hours=25)
    message = str(refused.value)
    assert "NOTIFICATION_LOG_RETENTION_DAYS" in message
    assert "KAFKA_NOTIFICATIONS_RETENTION_HOURS" in message
    kept = settings(notification_log_retention_days=1, kafka_notifications_retention_hours=24)
    assert kept.notification_log_retention_days * 24 == kept.kafka_notifications_retention_hours


@pytest.mark.parametrize(
    "name", ["outbox_retention_days", "notification_log_retention_days", "rejected_retention_days"]
)
def test_a_retention_of_zero_days_is_refused(name):
    with pytest.raises(ValidationError, match=name):
        settings(**{name: 0})
