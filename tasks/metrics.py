"""Prometheus metrics of the Celery tasks (served by the worker, see tasks/worker.py)."""

from prometheus_client import Counter, Histogram

TASKS = Counter("celery_tasks_total", "Finished task runs", ["task", "outcome"])
TASK_SECONDS = Histogram(
    "celery_task_duration_seconds",
    "Task run time",
    ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TRANSACTIONS = Counter(
    "ingest_transactions_total",
    "Transactions processed, by outcome (stored, duplicate, parked, rejected)",
    ["outcome"],
)
REJECTIONS = Counter("ingest_rejections_total", "Rejected messages, by reason", ["reason"])
PRODUCTS = Counter("ingest_products_total", "Product versions applied to the catalog")
