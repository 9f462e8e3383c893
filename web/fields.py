"""marshmallow fields for the collector's bodies: each applies one rule of `db/rules.py`
(the worker applies the same ones) and tells the OpenAPI document what that rule enforces."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from marshmallow import ValidationError, fields

from db import rules


class RuleField(fields.Field):
    """A field whose value is checked and normalised by one rule; its ValueError becomes
    the field's message."""

    def rule(self, value):
        raise NotImplementedError

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return self.rule(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class Identifier(RuleField):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.metadata.update(
            type="string",
            pattern=f"^[{rules.IDENTIFIER_ALPHABET}]+$",
            minLength=1,
            maxLength=rules.IDENTIFIER_MAX,
        )

    def rule(self, value):
        return rules.identifier(value)


class Text(RuleField):
    """Printable text: no control characters (NUL breaks PostgreSQL) and valid Unicode."""

    def __init__(self, max_length: int, **kwargs):
        self.max_length = max_length
        super().__init__(**kwargs)
        self.metadata.update(
            type="string", minLength=1, maxLength=max_length, pattern=r"^[^\x00-\x1f\x7f]+$"
        )

    def rule(self, value):
        return rules.text(value, self.max_length)


class Money(RuleField):
    """A non-negative amount with at most 2 decimal places, as a JSON number or string."""

    def __init__(self, maximum: Decimal, **kwargs):
        self.maximum = maximum
        super().__init__(**kwargs)
        # As many whole digits as the maximum has: the pattern is exactly the bound.
        digits = len(str(int(maximum)))
        self.metadata.update(type="string", pattern=rf"^\d{{1,{digits}}}(\.\d{{1,2}})?$")

    def rule(self, value):
        return rules.money(value, self.maximum)


class Quantity(RuleField):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.metadata.update(type="integer", minimum=rules.QUANTITY_MIN, maximum=rules.QUANTITY_MAX)

    def rule(self, value):
        return rules.quantity(value)


class SaleTime(RuleField):
    """ISO 8601; without an offset it means UTC. Not before 2000, not over 5 minutes ahead."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # The years the rules accept (db.rules.TIME_RANGE); a JSON number cannot say
        # "not more than 5 minutes ahead".
        self.metadata.update(type="string", format="date-time", pattern=r"^20\d\d-")

    def rule(self, value):
        return rules.sale_time(value, datetime.now(UTC))
