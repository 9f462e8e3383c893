"""Sales reports without Flask or Celery: periods, range planning, the rollup tables and
their upkeep, the report and catalog queries. The Analytics API, the beat tasks, the alert
checks and the benchmark all read reports through here."""
