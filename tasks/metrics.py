"""Prometheus metrics of the Celery tasks (served by the worker, see tasks/worker.py)."""

from prometheus_client import Counter, Gauge, Histogram

from db.rejections import REASONS

TASKS = Counter("celery_tasks_total", "Finished task runs", ["task", "outcome"])
TASK_SECONDS = Histogram(
    "celery_task_duration_seconds",
    "Task run time",
    ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TASK_LAST_SUCCESS = Gauge(
    "celery_task_last_success_timestamp_seconds",
    "When a run of the task last succeeded (the periodic ones: beat's schedule)",
    ["task"],
    multiprocess_mode="max",
)
TRANSACTIONS = Counter(
    "ingest_transactions_total",
    "Transactions processed, by outcome (stored, duplicate, parked, rejected)",
    ["outcome"],
)
# Per stored transaction: from the collector's acceptance (the row's received_at) to its
# insert, through Kafka, the processor, the broker and the worker.
ACCEPTED_TO_STORED = Histogram(
    "ingest_accepted_to_stored_seconds",
    "Time from the collector's acceptance of a transaction to its insert",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
REJECTIONS = Counter("ingest_rejections_total", "Rejected messages, by reason", ["reason"])
# Every series exists from the start (at 0), so that rates and alerts see its first change.
for _outcome in ("stored", "duplicate", "parked", "rejected"):
    TRANSACTIONS.labels(_outcome).inc(0)
for _reason in REASONS:
    REJECTIONS.labels(_reason).inc(0)
PRODUCTS = Counter("ingest_products_total", "Product versions applied to the catalog")
ROLLUP_ROWS = Counter("rollup_rows_total", "Transactions added to the rollups")
ROLLUP_SECONDS = Histogram(
    "rollup_run_seconds", "Time of one rollup run", buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
)
ROLLUP_LAST_RUN = Gauge(
    "rollup_last_run_timestamp_seconds",
    "When the last rollup run finished",
    multiprocess_mode="max",
)
# Settings that alert rules compare with, so that their thresholds follow .env (set at
# the worker's start): RollupStale and RejectionsRising.
ROLLUP_INTERVAL = Gauge(
    "rollup_interval_seconds",
    "Seconds between rollup runs (ROLLUP_INTERVAL_SECONDS)",
    multiprocess_mode="max",
)
REJECTION_BURST_THRESHOLD = Gauge(
    "rejection_burst_threshold",
    "Rejections in a window that make a burst (REJECTION_BURST_THRESHOLD)",
    multiprocess_mode="max",
)
REJECTION_BURST_WINDOW = Gauge(
    "rejection_burst_window_seconds",
    "The window of a rejection burst (REJECTION_BURST_WINDOW_SECONDS)",
    multiprocess_mode="max",
)
