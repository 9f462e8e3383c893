"""The one registry of the rollup tables, read from their models: the rollup job writes
what it lists, the reports read it.

A table's family is what its rows are per (`product`, `category`, or `total` over all
products) and its bucket is its time column (`quarter`, `hour` in UTC; `day`, `month`,
`year` in the report zone); both come from its primary key, so a new rollup model is
registered by being defined.
"""

from __future__ import annotations

from db.models.rollups import Figures

BUCKETS = ("quarter", "hour", "day", "month", "year")
FAMILIES = ("product", "category", "total")


def _family_and_bucket(model: type[Figures]) -> tuple[str, str]:
    key = {column.name for column in model.__table__.primary_key}
    family = "product" if "product_id" in key else "category" if "category" in key else "total"
    (bucket,) = key.intersection(BUCKETS)
    return family, bucket


# (family, bucket) -> table name
TABLES: dict[tuple[str, str], str] = {
    _family_and_bucket(model): model.__tablename__ for model in Figures.__subclasses__()
}


def tables_of(*, family: str | None = None, bucket: str | None = None) -> list[str]:
    """The tables of one family, or of one bucket, or all of them."""
    return [
        table for (f, b), table in TABLES.items() if family in (None, f) and bucket in (None, b)
    ]
