"""Ingestion benchmark: how many transactions per second the running system accepts and
stores, next to ceilings measured in the same run on the same machine: kafka-python alone
writing and reading the same records, and PostgreSQL alone taking the same rows by COPY
into a copy of the transactions table (same indexes). In the same run: the topic-to-table
stage alone (the processor and worker storing transactions that wait on the topic) beside
a peer doing the same, Kafka Connect with Debezium's JDBC sink (bench/topic_to_table.py);
the single-transaction endpoint under wrk (requests per second, p50 and p99); the
accepted→stored latency at a steady 1,000 transactions per second; the rate stored under
a steady 20,000 per second for a minute (both from the rows' own times); and each Python
service's peak resident and proportional memory (its processes summed, children included,
as Prometheus's `processes` job sees them; proportional shares each shared page out among
the processes that map it). Prints a Markdown table and writes
bench/results/ingest.json, ingest.md and ingest.png (throughput and latency over the run).

    make bench-ingest                                   # 8 users, batches of 1,000, 20 s
    .venv/bin/python bench/ingestion.py --users 4 --seconds 30 --batch 500

The load comes from Locust (bench/locustfile.py) against the collector that `make up`
runs; every transaction it sends is new and valid, for products that exist.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from tqdm import tqdm

from bench.topic_to_table import stage_ours, stage_peer, transactions
from config import PROJECT_ROOT, get_settings
from db.session import default_engine
from streams.messages import TRANSACTION, items_in
from streams.topics import admin_client, client_options
from web.ingestion.publisher import batch_by_partition, write_options

BIN = Path(sys.executable).parent
RESULTS = PROJECT_ROOT / "bench" / "results" / "ingest.json"
TABLE = RESULTS.with_suffix(".md")
PLOT = RESULTS.with_suffix(".png")
PYTHON_SERVICES = ("collector", "processor", "worker", "beat", "analytics", "notifications")


def peak_memory_mb(settings, seconds: float, memtype: str) -> dict[str, float]:
    """Each Python service's largest memory over the last `seconds`, its processes summed:
    `resident` counts the pages a forked child shares with its parent once in each;
    `proportionalResident` shares each page out among the processes mapping it."""
    window = max(int(seconds), 30)
    query = f'max_over_time(namedprocess_namegroup_memory_bytes{{memtype="{memtype}"}}[{window}s])'
    answer = requests.get(
        f"http://127.0.0.1:{settings.prometheus_port}/api/v1/query",
        params={"query": query},
        timeout=10,
    )
    answer.raise_for_status()
    found = {
        r["metric"]["groupname"]: round(float(r["value"][1]) / 2**20, 1)
        for r in answer.json()["data"]["result"]
    }
    return {name: found[name] for name in PYTHON_SERVICES if name in found}


def accepted_so_far(settings) -> int:
    """The collector's own count of transactions it answered 202 for (all its workers)."""
    answer = requests.get(f"http://127.0.0.1:{settings.collector_port}/metrics", timeout=10)
    answer.raise_for_status()
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == "collector_items_total" and sample.labels == {
                "kind": "transaction",
                "outcome": "accepted",
            }:
                return int(sample.value)
    raise SystemExit("the collector exposes no collector_items_total: is it running?")


def load(
    settings, products: list[str], run: str, *, users: int, batch: int, seconds: int, rate=None
) -> tuple[int, float, float]:
    """Runs Locust against the collector for the given time (each user as fast as it is
    answered, or `rate` requests per second), watching the collector's count four times a
    second. Returns the transactions accepted, the last moment before the first of them,
    and the rate at which they came (between the first look that saw some and the first
    look that saw all)."""
    env = os.environ | {
        "BENCH_RUN": run,
        "BENCH_BATCH": str(batch),
        "BENCH_PRODUCTS": ",".join(products),
        "BENCH_API_KEY": settings.ingest_api_keys[0],
        "BENCH_RATE": str(rate or ""),
    }
    before = accepted_so_far(settings)
    looked = time.monotonic()
    start = first = last = None
    count = counted_first = before
    locust = subprocess.Popen(
        [
            str(BIN / "locust"),
            "-f",
            str(PROJECT_ROOT / "bench" / "locustfile.py"),
            "--headless",
            "--only-summary",
            "--users",
            str(users),
            "--spawn-rate",
            str(users),
            "--run-time",
            f"{seconds}s",
            "--stop-timeout",
            "30",
            "--host",
            f"http://127.0.0.1:{settings.collector_port}",
            "--loglevel",
            "WARNING",
        ],
        env=env,
        stdout=subprocess.DEVNULL,  # its summary goes to stderr; it exits 1 if a request failed
    )
    while True:
        running = locust.poll() is None
        now, now_count = time.monotonic(), accepted_so_far(settings)
        if now_count != count:
            if first is None:
                start, first, counted_first = looked, now, now_count
            last, count = now, now_count
        looked = now
        if not running:
            break
        time.sleep(0.25)
    if first is None or last == first:
        raise SystemExit("the collector accepted (almost) nothing: see Locust's summary above")
    return count - before, start, (count - counted_first) / (last - first)


def wait_stored(engine, run: str, after_id: int, expected: int, timeout: float) -> float:
    """Waits until this run's `expected` transactions are stored; returns when (monotonic)."""
    deadline = time.monotonic() + timeout
    stored = 0
    with tqdm(total=expected, desc="stored", unit="tx", file=sys.stderr) as bar:
        while stored < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {stored} of {expected} stored after {timeout:.0f}s")
            time.sleep(0.2)
            with engine.connect() as conn:
                now_stored = conn.execute(
                    text(
                        "SELECT count(*) FROM transactions"
                        " WHERE id > :id AND transaction_id LIKE :p"
                    ),
                    {"id": after_id, "p": f"{run}-%"},
                ).scalar()
            bar.update(now_stored - stored)
            stored = now_stored
    if stored != expected:
        raise SystemExit(f"{stored} stored for {expected} accepted: see the collector's log")
    return time.monotonic()


def plot(engine, run: str, after_id: int, path: Path) -> None:
    """Throughput and latency over the run, second by second, from the stored rows' own
    times: transactions accepted (received_at) and stored (stored_at) per second, and the
    accepted→stored p50 and p99 of the transactions stored in each second."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    with engine.connect() as conn:
        rows = conn.execute(
            text(
                """
                WITH run AS (
                    SELECT received_at, stored_at FROM transactions
                    WHERE id > :id AND transaction_id LIKE :p),
                t0 AS (SELECT min(received_at) AS t0 FROM run),
                accepted AS (
                    SELECT floor(extract(epoch FROM received_at - t0))::int AS s, count(*) AS n
                    FROM run, t0 GROUP BY 1),
                stored AS (
                    SELECT floor(extract(epoch FROM stored_at - t0))::int AS s, count(*) AS n,
                        percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP
                            (ORDER BY extract(epoch FROM stored_at - received_at)) AS q
                    FROM run, t0 GROUP BY 1)
                SELECT s, coalesce(a.n, 0), coalesce(st.n, 0), st.q
                FROM accepted a FULL JOIN stored st USING (s) ORDER BY s
                """
            ),
            {"id": after_id, "p": f"{run}-%"},
        ).all()
    seconds = [r[0] for r in rows]
    figure, (rate, latency) = pyplot.subplots(2, 1, sharex=True, figsize=(9, 6))
    rate.plot(seconds, [r[1] for r in rows], label="accepted by the collector")
    rate.plot(seconds, [r[2] for r in rows], label="stored")
    rate.set_ylabel("transactions per second")
    rate.legend()
    stored = [r for r in rows if r[3]]
    latency.plot([r[0] for r in stored], [r[3][0] for r in stored], label="p50")
    latency.plot([r[0] for r in stored], [r[3][1] for r in stored], label="p99")
    latency.set_ylabel("accepted → stored, s")
    latency.set_xlabel("seconds since the first transaction was accepted")
    latency.legend()
    figure.suptitle("make bench-ingest: one run")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def steady(
    settings, engine, products: list[str], *, rate: int, seconds: int, users: int, batch: int
) -> dict:
    """A steady offered load of `rate` transactions per second (Locust users each posting
    batches of `batch` at an equal share of it): what was stored per second end to end,
    and the accepted→stored latency from the stored rows' own times (p50, p99 and the
    longest, over every transaction)."""
    run = f"steady-{uuid.uuid4().hex[:8]}"
    with engine.connect() as conn:
        after_id = conn.execute(text("SELECT coalesce(max(id), 0) FROM transactions")).scalar()
    accepted, start, _ = load(
        settings,
        products,
        run,
        users=users,
        batch=batch,
        seconds=seconds,
        rate=rate / (users * batch),
    )
    stored_at = wait_stored(engine, run, after_id, accepted, timeout=300)
    with engine.connect() as conn:
        (p50, p99), longest = conn.execute(
            text(
                "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP"
                " (ORDER BY extract(epoch FROM stored_at - received_at)),"
                " max(extract(epoch FROM stored_at - received_at))::float8"
                " FROM transactions WHERE id > :id AND transaction_id LIKE :p"
            ),
            {"id": after_id, "p": f"{run}-%"},
        ).one()
    return {
        "transactions": accepted,
        "stored_per_s": accepted / (stored_at - start),
        "p50_ms": p50 * 1000,
        "p99_ms": p99 * 1000,
        "max_ms": longest * 1000,
    }


def single_endpoint(settings, products: list[str], seconds: int, connections: int) -> dict:
    """wrk against POST /api/v1/transactions, every request a new transaction
    (bench/single.lua): requests per second and latency p50/p99, checked against the
    collector's own count of what it accepted."""
    run = f"single-{uuid.uuid4().hex[:8]}"
    env = os.environ | {
        "BENCH_RUN": run,
        "BENCH_PRODUCTS": ",".join(products),
        "BENCH_API_KEY": settings.ingest_api_keys[0],
    }
    before = accepted_so_far(settings)
    done = subprocess.run(
        [
            "wrk",
            "--threads",
            "2",
            "--connections",
            str(connections),
            "--duration",
            f"{seconds}s",
            "--timeout",
            "10s",
            "--script",
            str(PROJECT_ROOT / "bench" / "single.lua"),
            f"http://127.0.0.1:{settings.collector_port}",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    accepted = accepted_so_far(settings) - before
    answered = figures["requests"] - figures["not_202"] - figures["errors"]
    if figures["errors"] or figures["not_202"] or accepted < answered:
        raise SystemExit(f"the single endpoint refused or lost requests: {figures}, {accepted}")
    return figures | {"per_s": figures["requests"] / figures["seconds"]}


def kafka_ceilings(settings, products: list[str], seconds: float) -> tuple[float, float]:
    """Transactions per second kafka-python alone writes and then reads, configured as the
    collector's producer and the processor's consumer, in records built as the collector
    builds them from requests of 1,000 (on a scratch topic)."""
    topic = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    admin = admin_client(settings)
    admin.create_topics(
        {topic: {"num_partitions": settings.kafka_transactions_partitions}},
        wait_for_metadata=True,
    )
    producer = KafkaProducer(**client_options(settings, "bench"), **write_options())
    try:
        now = datetime.now(UTC)
        partitions = sorted(producer.partitions_for(topic))
        sent, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            items = transactions(f"ceiling-{sent}", products, 1000, now)
            for m in batch_by_partition(TRANSACTION, items, now, partitions):
                producer.send(topic, value=m.value, headers=m.headers, partition=m.partition)
            producer.flush()
            sent += 1000
        producing = sent / (time.monotonic() - started)
        consumer = KafkaConsumer(
            **client_options(settings, "bench"),
            enable_auto_commit=False,
            max_poll_records=settings.processor_chunk_size,
            fetch_max_bytes=64 * 1024 * 1024,
        )
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        consumer.seek_to_beginning()
        read, started = 0, time.monotonic()
        while read < sent:
            for records in consumer.poll(timeout_ms=1000).values():
                read += sum(items_in(r.headers) for r in records)
        consuming = read / (time.monotonic() - started)
        consumer.close()
        return producing, consuming
    finally:
        producer.close()
        admin.delete_topics([topic])
        admin.close()


def postgres_ceiling(engine, products: list[str], rows: int) -> float:
    """Rows per second PostgreSQL alone takes by COPY into a copy of the transactions
    table with the same indexes: a logged table (its writes go through the WAL, as the
    real table's do), created in a transaction that is rolled back, so nothing is kept."""
    now = datetime.now(UTC).isoformat()
    buffer = io.StringIO()
    for i in range(rows):
        buffer.write(
            f"ceiling-{i}\t{products[i % len(products)]}\t1\t9.99\t9.99\t9.99\t{now}\t{now}"
            f"\t0\t{i}\t\\\\x{i:064x}\n"
        )
    with engine.connect() as conn:
        conn.execute(text("CREATE TABLE bench_ceiling (LIKE transactions INCLUDING ALL)"))
        cursor = conn.connection.cursor()
        buffer.seek(0)
        started = time.monotonic()
        cursor.copy_expert(
            "COPY bench_ceiling (transaction_id, product_id, quantity, unit_price, list_amount,"
            " total_amount, occurred_at, received_at, kafka_partition, kafka_offset,"
            " content_hash) FROM STDIN",
            buffer,
        )
        elapsed = time.monotonic() - started
        conn.rollback()
    return rows / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8, help="Locust users posting at once")
    parser.add_argument("--batch", type=int, default=1000, help="transactions per request")
    parser.add_argument("--seconds", type=int, default=20, help="how long the load lasts")
    parser.add_argument("--products", type=int, default=200, help="products the load uses")
    parser.add_argument(
        "--stage", type=int, default=300_000, help="transactions of the topic-to-table runs"
    )
    args = parser.parse_args(argv)

    settings = get_settings()
    engine = default_engine()
    with engine.connect() as conn:
        products = list(
            conn.execute(
                text("SELECT product_id FROM products ORDER BY product_id LIMIT :n"),
                {"n": args.products},
            ).scalars()
        )
        after_id = conn.execute(text("SELECT coalesce(max(id), 0) FROM transactions")).scalar()
    if not products:
        raise SystemExit("no products: run `make up` (it seeds the demo catalog) first")

    run = f"bench-{uuid.uuid4().hex[:8]}"
    print(f"load: {args.users} users, batches of {args.batch}, {args.seconds} s", file=sys.stderr)
    accepted, start, taking = load(
        settings, products, run, users=args.users, batch=args.batch, seconds=args.seconds
    )
    stored_at = wait_stored(engine, run, after_id, accepted, timeout=600)
    end_to_end = accepted / (stored_at - start)
    rss = peak_memory_mb(settings, time.monotonic() - start + 15, "resident")
    pss = peak_memory_mb(settings, time.monotonic() - start + 15, "proportionalResident")
    single = single_endpoint(settings, products, seconds=20, connections=16)
    steady_1k = steady(settings, engine, products, rate=1000, seconds=30, users=4, batch=100)
    sustained = steady(settings, engine, products, rate=20_000, seconds=60, users=8, batch=1000)
    ours = stage_ours(settings, engine, products, args.stage)
    peer = stage_peer(settings, engine, products, args.stage)
    kafka, consuming = kafka_ceilings(settings, products, seconds=10)
    postgres = postgres_ceiling(engine, products, rows=max(accepted, 100_000))
    figures = {
        "transactions": accepted,
        "users": args.users,
        "batch": args.batch,
        "accepted_per_s": round(taking),
        "end_to_end_per_s": round(end_to_end),
        "ceiling_producer_per_s": round(kafka),
        "ceiling_consumer_per_s": round(consuming),
        "ceiling_copy_per_s": round(postgres),
        "accepted_ratio_to_producer": round(taking / kafka, 3),
        "end_to_end_ratio_to_copy": round(end_to_end / postgres, 3),
        "stage_transactions": args.stage,
        "stage_per_s": round(ours["per_s"]),
        "stage_with_start_per_s": round(ours["with_start_per_s"]),
        "peer_kafka_connect_per_s": round(peer["per_s"]),
        "peer_kafka_connect_with_start_per_s": round(peer["with_start_per_s"]),
        "stage_ratio_to_peer": round(ours["per_s"] / peer["per_s"], 3),
        "stage_ratio_to_consumer": round(ours["per_s"] / consuming, 3),
        "stage_ratio_to_copy": round(ours["per_s"] / postgres, 3),
        "single_per_s": round(single["per_s"]),
        "single_p50_ms": round(single["p50_ms"], 1),
        "single_p99_ms": round(single["p99_ms"], 1),
        "latency_p50_ms_at_1000_per_s": round(steady_1k["p50_ms"], 1),
        "latency_p99_ms_at_1000_per_s": round(steady_1k["p99_ms"], 1),
        "sustained_offered_per_s": 20_000,
        "sustained_transactions": sustained["transactions"],
        "sustained_stored_per_s": round(sustained["stored_per_s"]),
        "sustained_latency_p99_ms": round(sustained["p99_ms"], 1),
        "sustained_latency_max_ms": round(sustained["max_ms"], 1),
        "rss_mb": rss,
        "pss_mb": pss,
        "cpus": os.cpu_count(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    plot(engine, run, after_id, PLOT)
    lines = [
        "| figure | transactions/s | beside, measured in the same run | share |",
        "|---|---|---|---|",
        f"| accepted by the collector ({accepted:,}) | {taking:,.0f} "
        f"| kafka-python's producer alone, same records: {kafka:,.0f} | {taking / kafka:.0%} |",
        f"| stored end to end (all {accepted:,} stored {stored_at - start:.1f} s after the "
        f"load began) | {end_to_end:,.0f} "
        f"| PostgreSQL COPY alone, same table and indexes: {postgres:,.0f} "
        f"| {end_to_end / postgres:.0%} |",
        f"| topic to table: processor and worker storing {args.stage:,} waiting on the topic "
        f"(with start-up: {ours['with_start_per_s']:,.0f}) | {ours['per_s']:,.0f} "
        f"| Kafka Connect with Debezium's JDBC sink, same transactions and table: "
        f"{peer['per_s']:,.0f} (with start-up: {peer['with_start_per_s']:,.0f}) "
        f"| {ours['per_s'] / peer['per_s']:.0%} |",
        f"| topic to table, beside reading alone and COPY alone | {ours['per_s']:,.0f} "
        f"| kafka-python's consumer alone: {consuming:,.0f}; COPY: {postgres:,.0f} "
        f"| {ours['per_s'] / consuming:.0%}; {ours['per_s'] / postgres:.0%} |",
        f"| single-transaction endpoint (wrk, 16 connections, 20 s) | {single['per_s']:,.0f} "
        f"| p50 {single['p50_ms']:.1f} ms, p99 {single['p99_ms']:.1f} ms | |",
        f"| accepted→stored at a steady 1,000/s ({steady_1k['transactions']:,}) | 1,000 "
        f"| p50 {steady_1k['p50_ms']:.0f} ms, p99 {steady_1k['p99_ms']:.0f} ms | |",
        f"| stored end to end under a steady 20,000/s for 60 s "
        f"({sustained['transactions']:,}) | {sustained['stored_per_s']:,.0f} "
        f"| accepted→stored p50 {sustained['p50_ms']:.0f} ms, p99 {sustained['p99_ms']:.0f} ms,"
        f" longest {sustained['max_ms']:.0f} ms | |",
        "",
        "Peak memory, each service's processes summed (MB), resident (proportional: shared"
        " pages shared out): "
        + ", ".join(f"{name} {mb:,.0f} ({pss.get(name, 0):,.0f})" for name, mb in rss.items())
        + f". {os.cpu_count()} CPUs, {figures['measured_at']}.",
    ]
    TABLE.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    written = ", ".join(str(p.relative_to(PROJECT_ROOT)) for p in (RESULTS, TABLE, PLOT))
    print(f"\nwritten: {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
