"""Every table the application owns; importing this registers them all on `Base.metadata`."""

from db.models.alerts import AlertEvent, AlertRule, AlertState
from db.models.catalog import Product
from db.models.ingest import IngestChunk, ParkedTransaction
from db.models.notifications import NotificationLog
from db.models.outbox import OutboxEvent
from db.models.rollups import (
    RollupCategory,
    RollupState,
    SalesDaily,
    SalesDailyByCategory,
    SalesDailyTotals,
    SalesHourly,
    SalesHourlyByCategory,
    SalesHourlyTotals,
    SalesMonthly,
    SalesMonthlyByCategory,
    SalesMonthlyTotals,
    SalesQuarterHourByCategory,
    SalesQuarterHourTotals,
    SalesYearly,
    SalesYearlyByCategory,
    SalesYearlyTotals,
)
from db.models.sales import RejectedTransaction, Transaction

__all__ = [
    "AlertEvent",
    "AlertRule",
    "AlertState",
    "IngestChunk",
    "NotificationLog",
    "OutboxEvent",
    "ParkedTransaction",
    "Product",
    "RejectedTransaction",
    "RollupCategory",
    "RollupState",
    "SalesDaily",
    "SalesDailyByCategory",
    "SalesDailyTotals",
    "SalesHourly",
    "SalesHourlyByCategory",
    "SalesHourlyTotals",
    "SalesMonthly",
    "SalesMonthlyByCategory",
    "SalesMonthlyTotals",
    "SalesQuarterHourByCategory",
    "SalesQuarterHourTotals",
    "SalesYearly",
    "SalesYearlyByCategory",
    "SalesYearlyTotals",
    "Transaction",
]
