"""The product catalog."""

from sqlalchemy import CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.types import CreatedAt, Identifier, Price, Timestamp


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price >= 0", name="price_not_negative"),
        Index("ix_products_category_product_id", "category", "product_id"),
    )

    product_id: Mapped[Identifier] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(100))
    price: Mapped[Price]
    # When the collector accepted this version; a newer one wins, an older one is ignored.
    received_at: Mapped[Timestamp]
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]
