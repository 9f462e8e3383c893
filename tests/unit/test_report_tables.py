"""The registry of rollup tables: read from the models, it lists every table that holds
rollup figures, once, under the family and bucket its primary key says."""

import db.models  # noqa: F401  (every table of the application)
from db.base import Base
from db.reports.tables import BUCKETS, FAMILIES, TABLES, tables_of

FIGURES = {"revenue", "list_revenue", "quantity", "transactions"}


def test_every_table_of_rollup_figures_is_registered_once():
    with_figures = {
        name for name, table in Base.metadata.tables.items() if set(table.columns.keys()) >= FIGURES
    }
    assert sorted(TABLES.values()) == sorted(with_figures)


def test_each_table_is_per_its_family_and_bucket():
    for (family, bucket), name in TABLES.items():
        key = {column.name for column in Base.metadata.tables[name].primary_key}
        per = {"product": {"product_id"}, "category": {"category"}, "total": set()}[family]
        assert key == per | {bucket}, name


def test_every_family_has_every_bucket_but_quarters_per_product():
    expected = {(f, b) for f in FAMILIES for b in BUCKETS} - {("product", "quarter")}
    assert set(TABLES) == expected


def test_tables_of_selects_by_family_or_bucket():
    assert tables_of(family="category") == [t for (f, _), t in TABLES.items() if f == "category"]
    assert sorted(tables_of(bucket="year")) == sorted(
        ["sales_yearly", "sales_yearly_by_category", "sales_yearly_totals"]
    )
    assert sorted(tables_of()) == sorted(TABLES.values())
