"""The product catalog as the reports show it: a page of products, and one product."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

_COLUMNS = "product_id, name, category, price, updated_at"
_IN_CATEGORY = "WHERE (CAST(:category AS text) IS NULL OR category = :category)"


def product_page(
    conn: Connection, *, category: str | None, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]]]:
    """Products by product_id (of one category, or all): how many there are, and the
    `limit` from `offset` on."""
    params = {"category": category, "limit": limit, "offset": offset}
    total = conn.execute(text(f"SELECT count(*) FROM products {_IN_CATEGORY}"), params).scalar()
    rows = conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM products {_IN_CATEGORY}"
            " ORDER BY product_id LIMIT :limit OFFSET :offset"
        ),
        params,
    ).mappings()
    return int(total), [dict(row) for row in rows]


def product(conn: Connection, product_id: str) -> dict[str, Any] | None:
    row = (
        conn.execute(
            text(f"SELECT {_COLUMNS} FROM products WHERE product_id = :id"), {"id": product_id}
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)
