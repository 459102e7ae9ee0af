"""Exact conversions between provider decimal amounts and integer cents.

Providers send money as JSON numbers ("12.34"); we parse those as `Decimal` and
store integer cents. Floats are refused everywhere: they cannot represent most
cent values exactly.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

__all__ = [
    "CENT",
    "cents_to_decimal",
    "decimal_to_cents",
    "format_cents",
    "to_decimal",
]

CENT = Decimal("0.01")


def to_decimal(value: Decimal | int | str) -> Decimal:
    """Returns `value` as a finite Decimal; floats and bools are refused."""
    if isinstance(value, bool):
        raise TypeError("a bool is not an amount")
    if isinstance(value, float):
        raise TypeError("floats are not accepted for money; pass a Decimal or str")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a decimal amount: {value!r}") from None
    else:
        raise TypeError(f"unsupported amount type: {type(value).__name__}")
    if not result.is_finite():
        raise ValueError("amount must be finite")
    return result


def decimal_to_cents(value: Decimal | int | str) -> int:
    """Converts a decimal amount in major units to integer cents (ROUND_HALF_UP)."""
    quantized = to_decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)
    return int(quantized.scaleb(2))


def cents_to_decimal(cents: int) -> Decimal:
    """Converts integer cents to a Decimal with exactly two places (1234 -> 12.34)."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError("cents must be an int")
    return Decimal(cents).scaleb(-2).quantize(CENT)


def format_cents(cents: int) -> str:
    """Formats cents as a plain decimal string, e.g. 1234 -> '12.34', -5 -> '-0.05'."""
    return format(cents_to_decimal(cents), "f")
