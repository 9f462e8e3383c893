"""Locust users for the ingestion benchmark: each posts batches of new transactions to the
collector as fast as it answers, or at a steady rate. Driven by bench/ingestion.py, which
passes the run's settings through the environment:

    BENCH_RUN       prefix of this run's transaction ids
    BENCH_BATCH     transactions per request
    BENCH_PRODUCTS  comma-separated product ids that exist
    BENCH_API_KEY   an ingest API key
    BENCH_RATE      requests per second per user (unset: as fast as the collector answers)
"""

from __future__ import annotations

import itertools
import os
import random
from datetime import UTC, datetime

from locust import FastHttpUser, constant_throughput, task

RUN = os.environ["BENCH_RUN"]
BATCH = int(os.environ["BENCH_BATCH"])
PRODUCTS = os.environ["BENCH_PRODUCTS"].split(",")
KEY = {"X-API-Key": os.environ["BENCH_API_KEY"]}
RATE = float(os.environ.get("BENCH_RATE") or 0)
COUNTER = itertools.count()


class Shop(FastHttpUser):
    # Many requests in flight per user: the collector is the one being measured.
    connection_timeout = 30
    network_timeout = 60
    if RATE:
        wait_time = constant_throughput(RATE)

    @task
    def post_batch(self) -> None:
        now = datetime.now(UTC).isoformat()
        batch = [
            {
                "transaction_id": f"{RUN}-{next(COUNTER)}",
                "product_id": random.choice(PRODUCTS),
                "quantity": random.randint(1, 5),
                "timestamp": now,
            }
            for _ in range(BATCH)
        ]
        with self.client.post(
            "/api/v1/transactions/batch",
            json={"transactions": batch},
            headers=KEY,
            catch_response=True,
        ) as answer:
            if answer.status_code != 202 or answer.json()["accepted"] != BATCH:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")
