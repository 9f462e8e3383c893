"""Fills the database with a realistic catalog and sales history, fast (bulk COPY).

    python -m bench.generate --products 1000 --transactions 10000000 --days 730

Categories and products with log-normal prices; a few products sell far more than the
rest; sales follow the hour of the day and the day of the week (in REPORT_TIMEZONE),
grow over the period, and have a few quiet days; some sales carry a discount. The rows
go straight into `transactions` (kafka_partition -1 marks them as generated), and the
rollups are brought up to date at the end.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session
from tqdm import tqdm

from config import get_settings
from db.session import default_engine
from streams.messages import content_hash

CATEGORIES = [
    "Kitchen",
    "Garden",
    "Toys",
    "Books",
    "Electronics",
    "Sports",
    "Beauty",
    "Grocery",
    "Clothing",
    "Shoes",
    "Office",
    "Pets",
    "Music",
    "Tools",
    "Health",
    "Automotive",
    "Baby",
    "Furniture",
    "Jewelry",
    "Outdoor",
    "Games",
    "Crafts",
    "Travel",
    "Lighting",
]
ADJECTIVES = [
    "Classic",
    "Smart",
    "Eco",
    "Mini",
    "Pro",
    "Soft",
    "Bright",
    "Compact",
    "Deluxe",
    "Basic",
]
NOUNS = ["Cup", "Lamp", "Chair", "Kit", "Set", "Box", "Bag", "Case", "Pack", "Tray", "Board", "Pad"]
# Share of a day's sales per local hour: quiet nights, lunch and evening peaks.
HOURS = np.array(
    [1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 2, 3, 4, 5, 6, 7, 6.5, 5, 4.5, 5, 6, 7, 6.5, 5, 4, 3, 2]
)
# Monday .. Sunday.
WEEKDAYS = np.array([0.85, 0.9, 0.95, 1.0, 1.15, 1.35, 1.25])
CHUNK = 200_000


def make_catalog(rng: np.random.Generator, products: int, categories: int) -> list[tuple]:
    names = CATEGORIES[:categories] + [f"Category {i}" for i in range(len(CATEGORIES), categories)]
    prices = np.clip(np.round(rng.lognormal(np.log(25), 0.9, products), 2), 0.5, 5000)
    return [
        (
            f"sku-{i:05d}",
            f"{ADJECTIVES[i % len(ADJECTIVES)]} {NOUNS[i % len(NOUNS)]} {i}",
            names[int(rng.integers(categories))],
            Decimal(f"{prices[i]:.2f}"),
        )
        for i in range(products)
    ]


def day_weights(
    rng: np.random.Generator, first_day: datetime, days: int, growth: float
) -> np.ndarray:
    dates = [first_day + timedelta(days=d) for d in range(days)]
    trend = 1 + growth * np.arange(days) / max(days - 1, 1)
    weekly = np.array([WEEKDAYS[d.weekday()] for d in dates])
    quiet = np.where(rng.random(days) < 0.01, 0.1, 1.0)  # about one quiet day in a hundred
    noise = rng.normal(1, 0.08, days).clip(0.6, 1.4)
    weights = trend * weekly * quiet * noise
    return weights / weights.sum()


def generate(
    engine: Engine,
    *,
    products: int,
    transactions: int,
    days: int,
    categories: int,
    seed: int,
    growth: float = 0.6,
    progress: bool = True,
) -> int:
    settings = get_settings()
    zone = ZoneInfo(settings.report_timezone)
    rng = np.random.default_rng(seed)
    catalog = make_catalog(rng, products, categories)
    now = datetime.now(UTC)
    # Each chunk is committed on its own: a load of millions of rows never holds back the
    # rollups' horizon (the oldest running transaction) for long.
    connection = engine.raw_connection()
    cursor = connection.cursor()
    cursor.executemany(
        "INSERT INTO products (product_id, name, category, price, received_at)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (product_id) DO NOTHING",
        [(*row, now) for row in catalog],
    )
    cursor.execute(
        "SELECT product_id, price FROM products WHERE product_id = ANY(%s) ORDER BY product_id",
        ([row[0] for row in catalog],),
    )
    ids, prices = zip(*cursor.fetchall(), strict=True)
    connection.commit()
    popularity = 1 / np.arange(1, len(ids) + 1) ** 0.8
    popularity = rng.permutation(popularity / popularity.sum())

    today = now.astimezone(zone).date()
    first_day = datetime.combine(today - timedelta(days=days - 1), datetime.min.time(), zone)
    per_day = rng.multinomial(transactions, day_weights(rng, first_day, days, growth))
    run = f"gen{int(time.time())}"
    n = 0
    bar = tqdm(total=transactions, unit="tx", disable=not progress, unit_scale=True)
    day = 0
    while day < days:
        # Whole days per COPY, about CHUNK rows at a time.
        chunk_days = [day]
        while day + 1 < days and per_day[chunk_days].sum() + per_day[day + 1] <= CHUNK:
            day += 1
            chunk_days.append(day)
        day += 1
        size = int(per_day[chunk_days].sum())
        if not size:
            continue
        day_index = np.repeat(chunk_days, per_day[chunk_days])
        seconds = rng.choice(24, size=size, p=HOURS / HOURS.sum()) * 3600 + rng.integers(
            0, 3600, size
        )
        product = rng.choice(len(ids), size=size, p=popularity)
        quantity = np.minimum(rng.geometric(0.6, size), 10)
        discount = np.where(rng.random(size) < 0.15, rng.integers(5, 21, size), 0)
        buffer = io.StringIO()
        for i in range(size):
            local = first_day + timedelta(days=int(day_index[i]), seconds=int(seconds[i]))
            moment = local.astimezone(UTC)
            if moment > now:
                moment = now - timedelta(seconds=int(rng.integers(1, 3600)))
            price = prices[product[i]]
            qty = int(quantity[i])
            list_amount = price * qty
            total = (list_amount * (100 - int(discount[i])) / 100).quantize(Decimal("0.01"))
            n += 1
            tid = f"{run}-{n}"
            body = {
                "transaction_id": tid,
                "product_id": ids[product[i]],
                "quantity": qty,
                "total_amount": str(total) if discount[i] else None,
                "timestamp": moment.isoformat(),
            }
            received = moment + timedelta(seconds=1)
            buffer.write(
                f"{tid}\t{ids[product[i]]}\t{qty}\t{price}\t{list_amount}\t{total}"
                f"\t{moment.isoformat()}\t{received.isoformat()}\t-1\t{n}"
                f"\t\\\\x{content_hash(body).hex()}\n"
            )
        buffer.seek(0)
        cursor.copy_expert(
            "COPY transactions (transaction_id, product_id, quantity, unit_price, list_amount,"
            " total_amount, occurred_at, received_at, kafka_partition, kafka_offset, content_hash)"
            " FROM STDIN",
            buffer,
        )
        connection.commit()
        bar.update(size)
    bar.close()
    connection.close()
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--transactions", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--categories", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--if-empty", action="store_true", help="do nothing if any transaction exists"
    )
    args = parser.parse_args(argv)
    for name in ("products", "transactions", "days", "categories"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    engine = default_engine()
    with engine.connect() as conn:
        exists = conn.execute(text("SELECT EXISTS (SELECT 1 FROM transactions)")).scalar()
    if args.if_empty and exists:
        print("transactions exist already; nothing generated")
        return 0
    started = time.monotonic()
    count = generate(
        engine,
        products=args.products,
        transactions=args.transactions,
        days=args.days,
        categories=args.categories,
        seed=args.seed,
    )
    from db.reports.rollups import rollup

    with Session(engine) as session, session.begin():
        rollup(session)
    print(
        f"generated {count} transactions in {time.monotonic() - started:.1f}s; rollups up to date"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
