"""marshmallow fields for the API's inputs: strict, exact, with messages that say how to fix."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from marshmallow import ValidationError, fields, validate

IDENTIFIER_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(minutes=5)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DECIMAL_STRING = re.compile(r"^\d+(\.\d+)?$")


class Identifier(fields.String):
    def __init__(self, **kwargs):
        super().__init__(
            validate=validate.Regexp(
                IDENTIFIER_PATTERN,
                error="must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'",
            ),
            **kwargs,
        )


class Text(fields.String):
    """Printable text: no control characters (NUL breaks PostgreSQL) and valid Unicode."""

    def __init__(self, max_length: int, **kwargs):
        super().__init__(
            validate=validate.Length(
                min=1, max=max_length, error=f"must be 1 to {max_length} characters long"
            ),
            **kwargs,
        )

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if _CONTROL.search(text):
            raise ValidationError("must not contain control characters such as NUL or newline")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("must be valid Unicode (it contains a lone surrogate)") from None
        if text.strip() != text:
            raise ValidationError("must not start or end with white space")
        return text


class Money(fields.Field):
    """A non-negative amount with at most 2 decimal places, as a JSON number or string.

    JSON numbers arrive as floats; their shortest representation (`repr`) is exactly the
    digits the client wrote whenever those have 2 decimals or fewer, so nothing is rounded.
    """

    def __init__(self, maximum: Decimal, **kwargs):
        self.maximum = maximum
        super().__init__(**kwargs)
        self.metadata.setdefault("type", "string")
        self.metadata.setdefault("pattern", r"^\d+(\.\d{1,2})?$")

    def _deserialize(self, value, attr, data, **kwargs):
        how = "a number or numeric string with at most 2 decimal places, e.g. 19.99"
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValidationError(f"must be {how}")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValidationError(f"must be {how}")
            value = repr(value)
        elif isinstance(value, str) and not _DECIMAL_STRING.match(value):
            raise ValidationError(f"must be {how}")
        try:
            amount = Decimal(value)
        except InvalidOperation:
            raise ValidationError(f"must be {how}") from None
        if amount < 0:
            raise ValidationError("must not be negative")
        if amount.as_tuple().exponent < -2 and amount != amount.quantize(Decimal("0.01")):
            raise ValidationError(f"has more than 2 decimal places; send {how}")
        if amount > self.maximum:
            raise ValidationError(f"must be at most {self.maximum}")
        return amount.quantize(Decimal("0.01"))


class StrictInteger(fields.Integer):
    """An integer written as a JSON integer: not true/false, not 2.0, not "2"."""

    def __init__(self, minimum: int, maximum: int, **kwargs):
        super().__init__(
            strict=True,
            validate=validate.Range(
                min=minimum, max=maximum, error=f"must be between {minimum} and {maximum}"
            ),
            **kwargs,
        )

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("must be a whole number written without quotes or decimals")
        return super()._deserialize(value, attr, data, **kwargs)


class SaleTime(fields.AwareDateTime):
    """ISO 8601; without an offset it means UTC. Not before 2000, not over 5 minutes ahead."""

    def __init__(self, **kwargs):
        super().__init__(format="iso", default_timezone=UTC, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs).astimezone(UTC)
        if moment < EARLIEST_TIMESTAMP:
            raise ValidationError("must not be before 2000-01-01T00:00:00Z")
        if moment > datetime.now(UTC) + FUTURE_TOLERANCE:
            raise ValidationError("must not be more than 5 minutes in the future (check the clock)")
        return moment
