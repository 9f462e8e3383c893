"""Column types used across the models: money is exact, times carry their zone."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from sqlalchemy import DateTime, Numeric, String, func
from sqlalchemy.orm import mapped_column

# Client-supplied identifiers: 1-64 characters of A-Za-z0-9._:-
Identifier = Annotated[str, mapped_column(String(64))]
# Catalog prices (below ten billion) and amounts (price x up to a million), to the cent.
Price = Annotated[Decimal, mapped_column(Numeric(12, 2))]
Money = Annotated[Decimal, mapped_column(Numeric(20, 2))]
# Sums over many transactions: 10^20 of the largest totals (db/rules.py MAX_AMOUNT).
MoneyTotal = Annotated[Decimal, mapped_column(Numeric(38, 2))]
Timestamp = Annotated[datetime, mapped_column(DateTime(timezone=True))]
CreatedAt = Annotated[datetime, mapped_column(DateTime(timezone=True), server_default=func.now())]
