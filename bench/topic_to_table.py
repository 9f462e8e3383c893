"""The topic-to-table stage of the ingestion bench, ours beside a peer's, on the same
transactions waiting on a topic:

- ours: the processor and the worker storing records in the collector's wire format,
  written to the transactions topic while the processor was stopped;
- the peer: Kafka Connect (standalone, one task) with Debezium's JDBC sink, loading the same
  transactions, one JSON-with-schema record each, into a copy of the transactions table
  (same indexes and checks), upserting on the transaction id.

Both are timed the same way: a look at the table's count every 0.1 s, from the moment the
consumer was started (its start-up included) and from the first row stored to the last.
The peer does less than ours: its records already carry the prices and the content hash,
nothing is checked or looked up, no record is ever set aside.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from base64 import b64encode
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaProducer
from sqlalchemy import text
from tqdm import tqdm

from config import PROJECT_ROOT, STATE_DIR
from streams.messages import TRANSACTION
from streams.topics import admin_client, client_options
from web.ingestion.publisher import batch_by_partition, write_options

CONNECT = PROJECT_ROOT / "bench" / "connect"
LIBS = STATE_DIR / "connect" / "libs"
PEER_TABLE = "bench_peer"

# The peer's record, as Kafka Connect's JSON converter reads it with schemas: the key holds
# the transaction id (the upsert's key), the value the row's other columns.
KEY_SCHEMA = (
    b'{"type":"struct","optional":false,"fields":[{"field":"transaction_id","type":"string"}]}'
)
_DECIMAL = (
    '"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","version":1,'
    '"parameters":{"scale":"2"}'
)
_TIMESTAMP = '"type":"int64","name":"org.apache.kafka.connect.data.Timestamp","version":1'
VALUE_SCHEMA = (
    '{"type":"struct","optional":false,"fields":['
    '{"field":"product_id","type":"string"},'
    '{"field":"quantity","type":"int32"},'
    f'{{"field":"unit_price",{_DECIMAL}}},'
    f'{{"field":"list_amount",{_DECIMAL}}},'
    f'{{"field":"total_amount",{_DECIMAL}}},'
    f'{{"field":"occurred_at",{_TIMESTAMP}}},'
    f'{{"field":"received_at",{_TIMESTAMP}}},'
    '{"field":"content_hash","type":"bytes"}]}'
).encode()


def transactions(prefix: str, products: list[str], count: int, now: datetime):
    """The bench's transactions as the collector publishes them (checked and normalised):
    new ids, products in turn, quantities 1 to 5."""
    return [
        {
            "transaction_id": f"{prefix}-{i}",
            "product_id": products[i % len(products)],
            "quantity": 1 + i % 5,
            "timestamp": now,
        }
        for i in range(count)
    ]


def stage_ours(settings, engine, products: list[str], count: int) -> dict:
    """The processor and worker storing `count` transactions that wait on the topic."""
    now = datetime.now(UTC)
    items = transactions(f"stage-{uuid.uuid4().hex[:8]}", products, count, now)
    with engine.connect() as conn:
        after_id = conn.execute(text("SELECT coalesce(max(id), 0) FROM transactions")).scalar()
    _processor("stop")
    try:
        producer = KafkaProducer(**client_options(settings, "bench"), **write_options())
        topic = settings.kafka_topic_transactions
        partitions = sorted(producer.partitions_for(topic))
        for start in range(0, count, 1000):
            for m in batch_by_partition(TRANSACTION, items[start : start + 1000], now, partitions):
                producer.send(topic, value=m.value, headers=m.headers, partition=m.partition)
        producer.flush()
        producer.close()
    finally:
        launched = time.monotonic()
        _processor("start")
    return _watch(
        engine,
        "SELECT count(*) FROM transactions WHERE id > :after",
        {"after": after_id},
        count,
        launched,
        "ours",
    )


def stage_peer(settings, engine, products: list[str], count: int) -> dict:
    """Kafka Connect with Debezium's JDBC sink loading the same transactions into a copy of
    the table (dropped afterwards, with its topic)."""
    classpath = _resolve()
    now = datetime.now(UTC)
    items = transactions(f"peer-{uuid.uuid4().hex[:8]}", products, count, now)
    with engine.connect() as conn:
        prices = dict(conn.execute(text("SELECT product_id, price FROM products")).all())
    topic = f"bench-peer-{uuid.uuid4().hex[:8]}"
    admin = admin_client(settings)
    admin.create_topics(
        {topic: {"num_partitions": settings.kafka_transactions_partitions}},
        wait_for_metadata=True,
    )
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {PEER_TABLE}"))
        conn.execute(text(f"CREATE TABLE {PEER_TABLE} (LIKE transactions INCLUDING ALL)"))
    connect = None
    try:
        _write_peer_records(settings, topic, items, prices)
        with tempfile.TemporaryDirectory(prefix="bench-connect-") as scratch:
            worker, connector = _properties(settings, Path(scratch), topic)
            log_path = settings.log_dir / "bench-connect.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("ab") as log:
                launched = time.monotonic()
                connect = subprocess.Popen(
                    [
                        "java",
                        "-Xms512m",
                        "-Xmx512m",
                        "-Djava.awt.headless=true",
                        f"-Dlog4j2.configurationFile={PROJECT_ROOT}/stack/kafka/log4j2.xml",
                        "-cp",
                        classpath,
                        "org.apache.kafka.connect.cli.ConnectStandalone",
                        str(worker),
                        str(connector),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                figures = _watch(
                    engine,
                    f"SELECT count(*) FROM {PEER_TABLE}",
                    {},
                    count,
                    launched,
                    "peer",
                    alive=lambda: connect.poll() is None,
                )
        _check_peer(engine, items, prices)
        return figures
    finally:
        if connect is not None:
            connect.terminate()
            connect.wait(timeout=60)
        admin.delete_topics([topic])
        admin.close()
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {PEER_TABLE}"))


def _processor(action: str) -> None:
    """Stops or starts the local stack's processor (`make up` runs it under supervisord)."""
    command = f"source stack/lib.sh && load_stack_env && supervisorctl_ {action} services:processor"
    subprocess.run(
        ["bash", "-c", command],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )


def _watch(engine, query, params, count, launched, name, alive=lambda: True) -> dict:
    """Looks at the count until `count` rows are there; the stage's rates and times."""
    first = None
    stored = 0
    deadline = launched + 900
    with tqdm(total=count, desc=f"stored ({name})", unit="tx", file=sys.stderr) as bar:
        while stored < count:
            if time.monotonic() > deadline or not alive():
                raise SystemExit(f"{name}: {stored} of {count} stored; see the logs in LOG_DIR")
            time.sleep(0.1)
            with engine.connect() as conn:
                now_stored = conn.execute(text(query), params).scalar()
            looked = time.monotonic()
            if now_stored and first is None:
                first = looked
            bar.update(now_stored - stored)
            stored = now_stored
    done = time.monotonic()
    if stored != count:
        raise SystemExit(f"{name}: {stored} rows for {count} transactions")
    return {
        "transactions": count,
        "per_s": count / (done - first) if done > first else float("inf"),
        "with_start_per_s": count / (done - launched),
        "start_s": first - launched,
        "seconds": done - launched,
    }


def _check_peer(engine, items: list[dict], prices: dict) -> None:
    """The peer stored what it was given: every id once, the same money to the cent."""
    expected = sum(prices[i["product_id"]] * i["quantity"] for i in items)
    with engine.connect() as conn:
        ids, total = conn.execute(
            text(f"SELECT count(DISTINCT transaction_id), sum(total_amount) FROM {PEER_TABLE}")
        ).one()
    if ids != len(items) or total != expected:
        raise SystemExit(f"the peer stored {ids} ids and {total} for {len(items)} and {expected}")


def _write_peer_records(settings, topic: str, items: list[dict], prices: dict) -> None:
    """The transactions as the peer reads them: one JSON-with-schema record each, keyed by
    the transaction id, carrying the row ours computes (prices, amounts, hash)."""
    producer = KafkaProducer(
        **client_options(settings, "bench"),
        acks="all",
        linger_ms=5,
        batch_size=256 * 1024,
        compression_type="lz4",
    )
    millis = int(items[0]["timestamp"].timestamp() * 1000)
    for item in items:
        price = prices[item["product_id"]]
        amount = price * item["quantity"]
        digest = b64encode(hashlib.sha256(item["transaction_id"].encode()).digest()).decode()
        key = item["transaction_id"].encode()
        value = (
            f'{{"product_id":"{item["product_id"]}","quantity":{item["quantity"]},'
            f'"unit_price":{price},"list_amount":{amount},"total_amount":{amount},'
            f'"occurred_at":{millis},"received_at":{millis},"content_hash":"{digest}"}}'
        ).encode()
        producer.send(
            topic,
            key=b'{"schema":' + KEY_SCHEMA + b',"payload":{"transaction_id":"' + key + b'"}}',
            value=b'{"schema":' + VALUE_SCHEMA + b',"payload":' + value + b"}",
        )
    producer.flush()
    producer.close()


def _properties(settings, scratch: Path, topic: str) -> tuple[Path, Path]:
    """The standalone worker's and the connector's configuration files."""
    db = settings.database
    with socket.socket() as s:  # a free port for the worker's REST listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = {
        "bootstrap.servers": ",".join(settings.kafka_bootstrap_servers),
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "true",
        "value.converter.schemas.enable": "true",
        "value.converter.decimal.format": "NUMERIC",
        "offset.storage.file.filename": str(scratch / "offsets"),
        "listeners": f"http://127.0.0.1:{port}",
        # Its plugins declare themselves: no scan of the classpath at start.
        "plugin.discovery": "service_load",
        # As large as the connector's batches (500 by default).
        "consumer.max.poll.records": "2000",
    }
    connector = {
        "name": "bench-peer",
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": "1",
        "topics": topic,
        "connection.url": f"jdbc:postgresql://{db.host}:{db.port or 5432}/{db.database}"
        # The driver sends a batch as multi-row INSERTs, not one statement per row.
        "?reWriteBatchedInserts=true",
        "connection.username": db.username,
        "connection.password": db.password or "",
        "insert.mode": "upsert",
        "primary.key.mode": "record_key",
        "primary.key.fields": "transaction_id",
        "schema.evolution": "none",
        "collection.name.format": PEER_TABLE,
        "batch.size": "2000",
        # Where each row came from, as ours records it.
        "transforms": "source",
        "transforms.source.type": "org.apache.kafka.connect.transforms.InsertField$Value",
        "transforms.source.partition.field": "kafka_partition",
        "transforms.source.offset.field": "kafka_offset",
    }
    paths = scratch / "worker.properties", scratch / "connector.properties"
    for path, values in zip(paths, (worker, connector), strict=True):
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return paths


def _resolve() -> str:
    """The peer's classpath, resolved from Maven Central into .local/connect/libs once
    (again when bench/connect/pom.xml changes)."""
    stamp = LIBS / ".resolved"
    pom = CONNECT / "pom.xml"
    if not stamp.exists() or pom.stat().st_mtime > stamp.stat().st_mtime:
        print("resolving Kafka Connect and Debezium's JDBC sink (Maven Central)", file=sys.stderr)
        shutil.rmtree(LIBS, ignore_errors=True)
        maven = ["mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(pom)]
        goal = ["dependency:copy-dependencies", f"-DoutputDirectory={LIBS}"]
        subprocess.run([*maven, *goal], check=True)
        stamp.touch()
    return os.path.join(LIBS, "*")
