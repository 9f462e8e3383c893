"""The Notification Service's HTTP API: alert rules, test messages, the alert history."""
