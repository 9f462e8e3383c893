"""Lists rejected transactions and replays them once their cause is fixed.

Replaying puts the message, byte for byte, back on the transactions topic (with a
`replay_of` header), keyed and partitioned as the collector would have written it, and
marks the rejection `replayed`; the processor then treats it like any other message, so
a transaction whose product has arrived since is stored, and one that is still wrong is
rejected again with a new row.

    python -m streams.replay list [--reason unknown_product]
    python -m streams.replay replay --reason unknown_product
    python -m streams.replay replay --id 12 --id 13
"""

from __future__ import annotations

import argparse
import base64
import sys
from typing import Any

import orjson
from kafka import KafkaProducer
from sqlalchemy import Engine, text

from config import get_settings
from streams.messages import KEY
from streams.partitioning import Crc32Partitioner
from streams.topics import client_options

REPLAY_HEADER = "replay_of"


def list_rejected(
    engine: Engine, *, reason: str | None = None, status: str = "open", limit: int = 100
) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, transaction_id, reason, details, stage, kind, status, rejected_at,"
                " replayed_at, raw_payload"
                " FROM rejected_transactions"
                " WHERE (CAST(:reason AS text) IS NULL OR reason = :reason) AND status = :status"
                " ORDER BY id LIMIT :limit"
            ),
            {"reason": reason, "status": status, "limit": limit},
        ).mappings()
        return [_readable(dict(r)) for r in rows]


def _readable(row: dict[str, Any]) -> dict[str, Any]:
    """The payload as text when it is UTF-8, else as base64."""
    raw = bytes(row.pop("raw_payload"))
    try:
        row["payload"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        row["payload_base64"] = base64.b64encode(raw).decode()
    return row


def key_of(kind: str, raw: bytes) -> bytes | None:
    """The key the collector gives the record: its item's id (transaction_id or
    product_id). A payload that cannot be read has none, and goes to any partition."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    key = body.get(KEY.get(kind, "")) if isinstance(body, dict) else None
    return key.encode() if isinstance(key, str) and key else None


def replay(
    engine: Engine,
    producer: KafkaProducer,
    topic: str,
    *,
    ids: list[int] | None = None,
    reason: str | None = None,
    limit: int = 10_000,
    timeout: float = 30,
) -> list[int]:
    """Replays open rejections (by id, or by reason); returns the ids replayed.

    The rows stay locked until Kafka has acknowledged every message, and are marked
    replayed in the same transaction, so a failed replay leaves them open.
    """
    if not ids and not reason:
        raise ValueError("name the rejections to replay: ids or a reason")
    with engine.begin() as conn:
        rows = conn.execute(
            text(
                "SELECT id, kind, raw_payload FROM rejected_transactions"
                " WHERE status = 'open'"
                " AND (CAST(:ids AS bigint[]) IS NULL OR id = ANY(:ids))"
                " AND (CAST(:reason AS text) IS NULL OR reason = :reason)"
                " ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
            ),
            {"ids": ids or None, "reason": reason, "limit": limit},
        ).all()
        futures = [
            producer.send(
                topic,
                key=key_of(kind, bytes(raw)),
                value=bytes(raw),
                headers=[("kind", kind.encode()), (REPLAY_HEADER, str(row_id).encode())],
            )
            for row_id, kind, raw in rows
        ]
        producer.flush(timeout=timeout)
        for future in futures:
            future.get(timeout=timeout)
        replayed = [row_id for row_id, *_ in rows]
        conn.execute(
            text(
                "UPDATE rejected_transactions SET status = 'replayed', replayed_at = now()"
                " WHERE id = ANY(:ids)"
            ),
            {"ids": replayed},
        )
    return replayed


def make_producer(settings) -> KafkaProducer:
    return KafkaProducer(
        **client_options(settings, "replay"), acks="all", partitioner=Crc32Partitioner()
    )


def main(argv: list[str] | None = None) -> int:
    from db.session import default_engine

    parser = argparse.ArgumentParser(description="List or replay rejected transactions.")
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="show open rejections")
    listing.add_argument("--reason")
    listing.add_argument("--limit", type=int, default=100)
    again = sub.add_parser("replay", help="put rejections back on the transactions topic")
    again.add_argument("--reason")
    again.add_argument("--id", type=int, action="append", dest="ids")
    args = parser.parse_args(argv)
    settings = get_settings()
    engine = default_engine()
    if args.command == "list":
        for row in list_rejected(engine, reason=args.reason, limit=args.limit):
            print(
                f"{row['id']}\t{row['rejected_at']:%Y-%m-%d %H:%M:%S}\t{row['reason']}\t"
                f"{row['transaction_id'] or '-'}\t{row['details']}"
            )
        return 0
    if not args.ids and not args.reason:
        parser.error("replay needs --reason or at least one --id")
    producer = make_producer(settings)
    try:
        done = replay(
            engine, producer, settings.kafka_topic_transactions, ids=args.ids, reason=args.reason
        )
    finally:
        producer.close()
    print(f"replayed {len(done)} rejected transactions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
