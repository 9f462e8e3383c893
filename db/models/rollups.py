"""Pre-aggregated sales that the reports read instead of scanning every transaction."""

from datetime import date

from sqlalchemy import BigInteger, CheckConstraint, Date, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base
from db.types import Identifier, MoneyTotal, Timestamp


class Figures:
    """What every rollup row holds: paid and list revenue, quantity, transactions."""

    revenue: Mapped[MoneyTotal]
    list_revenue: Mapped[MoneyTotal]
    quantity: Mapped[int] = mapped_column(BigInteger)
    transactions: Mapped[int] = mapped_column(BigInteger)


class SalesHourly(Figures, Base):
    """Sales per product per UTC hour: exact for every time zone whose offset is whole hours."""

    __tablename__ = "sales_hourly"
    __table_args__ = (
        CheckConstraint("transactions >= 0 AND quantity >= 0", name="counts_not_negative"),
        Index("ix_sales_hourly_product_id_hour", "product_id", "hour"),
    )

    hour: Mapped[Timestamp] = mapped_column(primary_key=True)
    product_id: Mapped[Identifier] = mapped_column(primary_key=True)


class SalesDaily(Figures, Base):
    """Sales per product per calendar day in the report time zone."""

    __tablename__ = "sales_daily"
    __table_args__ = (
        CheckConstraint("transactions >= 0 AND quantity >= 0", name="counts_not_negative"),
        Index("ix_sales_daily_product_id_day", "product_id", "day"),
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    product_id: Mapped[Identifier] = mapped_column(primary_key=True)


class SalesMonthly(Figures, Base):
    """Sales per product per calendar month (its first day) in the report time zone."""

    __tablename__ = "sales_monthly"
    __table_args__ = (
        CheckConstraint("transactions >= 0 AND quantity >= 0", name="counts_not_negative"),
        Index("ix_sales_monthly_product_id_month", "product_id", "month"),
    )

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    product_id: Mapped[Identifier] = mapped_column(primary_key=True)


class SalesYearly(Figures, Base):
    """Sales per product per calendar year (its first day) in the report time zone."""

    __tablename__ = "sales_yearly"
    __table_args__ = (
        CheckConstraint("transactions >= 0 AND quantity >= 0", name="counts_not_negative"),
        Index("ix_sales_yearly_product_id_year", "product_id", "year"),
    )

    year: Mapped[date] = mapped_column(Date, primary_key=True)
    product_id: Mapped[Identifier] = mapped_column(primary_key=True)


# The same figures summed over all products: what unfiltered reports read.
class SalesHourlyTotals(Figures, Base):
    __tablename__ = "sales_hourly_totals"

    hour: Mapped[Timestamp] = mapped_column(primary_key=True)


class SalesQuarterHourTotals(Figures, Base):
    """Per quarter of an hour (UTC): every zone's periods are whole quarters, also where
    the offset is not whole hours (India, Nepal, ...)."""

    __tablename__ = "sales_quarter_hour_totals"

    quarter: Mapped[Timestamp] = mapped_column(primary_key=True)


class SalesDailyTotals(Figures, Base):
    __tablename__ = "sales_daily_totals"

    day: Mapped[date] = mapped_column(Date, primary_key=True)


class SalesMonthlyTotals(Figures, Base):
    __tablename__ = "sales_monthly_totals"

    month: Mapped[date] = mapped_column(Date, primary_key=True)


class SalesYearlyTotals(Figures, Base):
    __tablename__ = "sales_yearly_totals"

    year: Mapped[date] = mapped_column(Date, primary_key=True)


# The same figures summed per category: what reports filtered by a category read. A
# product's sales count under the category it had when they were rolled up (recorded in
# `rollup_categories`); the rollup job moves them when the product changes category.
class RollupCategory(Base):
    """The category under which each product's rolled-up sales are counted."""

    __tablename__ = "rollup_categories"

    product_id: Mapped[Identifier] = mapped_column(primary_key=True)
    category: Mapped[str] = mapped_column(String(100))


class SalesQuarterHourByCategory(Figures, Base):
    __tablename__ = "sales_quarter_hour_by_category"

    category: Mapped[str] = mapped_column(String(100), primary_key=True)
    quarter: Mapped[Timestamp] = mapped_column(primary_key=True)


class SalesHourlyByCategory(Figures, Base):
    __tablename__ = "sales_hourly_by_category"

    category: Mapped[str] = mapped_column(String(100), primary_key=True)
    hour: Mapped[Timestamp] = mapped_column(primary_key=True)


class SalesDailyByCategory(Figures, Base):
    __tablename__ = "sales_daily_by_category"

    category: Mapped[str] = mapped_column(String(100), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)


class SalesMonthlyByCategory(Figures, Base):
    __tablename__ = "sales_monthly_by_category"

    category: Mapped[str] = mapped_column(String(100), primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)


class SalesYearlyByCategory(Figures, Base):
    __tablename__ = "sales_yearly_by_category"

    category: Mapped[str] = mapped_column(String(100), primary_key=True)
    year: Mapped[date] = mapped_column(Date, primary_key=True)


# The row of `rollup_state` that the sales rollups keep.
SALES_ROLLUP = "sales"


class RollupState(Base):
    """How far each rollup has read the transactions table."""

    __tablename__ = "rollup_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Every transaction stored by a database transaction whose id (ingest_xid) is below
    # the watermark is in the rollups; the others are read live from `transactions`.
    watermark: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # The highest transactions.id when the last run ended: how many rows wait, roughly.
    last_row_id: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # The time zone the rollup's days are in; a change means a rebuild.
    timezone: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[Timestamp]
