"""Parsing money the customer types: "10", "10.5", "$10.50", "10,50" (ru/uk)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from babel import Locale
from babel.numbers import NumberFormatError, parse_decimal

MAX_INPUT = 32
_CURRENCY = re.compile(r"^\s*(?:\$|usd)?\s*(.*?)\s*(?:\$|usd|дол+\.?|доларів|долларов)?\s*$", re.I)


class AmountError(ValueError):
    """``code`` selects the message: not_a_number, negative, too_many_decimals,
    too_small, too_large, use_dot."""

    def __init__(self, code: str, **params: object) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


@dataclass(frozen=True)
class AmountLimits:
    min_cents: int
    max_cents: int


def parse_amount(text: str, language: str, limits: AmountLimits) -> int:
    """Returns integer cents or raises ``AmountError`` with a reason the user can act on."""
    raw = (text or "").strip()
    if not raw or len(raw) > MAX_INPUT:
        raise AmountError("not_a_number")
    match = _CURRENCY.match(raw)
    body = (match.group(1) if match else raw).replace("\u00a0", " ").replace(" ", "")
    if body.startswith("-") or body.startswith("−"):
        raise AmountError("negative")
    if not re.fullmatch(r"[0-9.,]+", body):
        raise AmountError("not_a_number")  # letters, exponents ("1e9"), "inf", "nan"
    try:
        value = parse_decimal(body, locale=Locale.parse(language), strict=True)
    except NumberFormatError as exc:
        if "," in body and language == "en":
            raise AmountError("use_dot") from exc
        raise AmountError("not_a_number") from exc
    except InvalidOperation as exc:
        raise AmountError("not_a_number") from exc
    if not value.is_finite():
        raise AmountError("not_a_number")
    if value * 100 > limits.max_cents:
        raise AmountError("too_large", max_cents=limits.max_cents)
    if value != value.quantize(Decimal("0.01")):
        raise AmountError("too_many_decimals")
    cents = int(value * 100)
    if cents < limits.min_cents:
        raise AmountError("too_small", min_cents=limits.min_cents)
    if cents > limits.max_cents:
        raise AmountError("too_large", max_cents=limits.max_cents)
    return cents


# Ready amounts on the top-up prompt, in cents (those outside the limits are left out).
READY_AMOUNTS = (1_000, 2_500, 5_000)


def topup_for_shortfall(shortfall_cents: int, limits: AmountLimits) -> int:
    """The least top-up that covers ``shortfall_cents``: never below the minimum top-up."""
    return max(shortfall_cents, limits.min_cents)


def suggested_amounts(limits: AmountLimits, shortfall_cents: int | None = None) -> list[int]:
    """Ready amounts: the top-up a shortfall needs, rounded up to whole dollars, first;
    then the usual amounts above it; all within the limits, each once."""
    amounts: list[int] = []
    if shortfall_cents is not None and shortfall_cents > 0:
        needed = topup_for_shortfall(shortfall_cents, limits)
        amounts.append(-(-needed // 100) * 100)
    floor = amounts[0] if amounts else 0
    amounts.extend(a for a in READY_AMOUNTS if a > floor)
    return [a for a in amounts if limits.min_cents <= a <= limits.max_cents]
