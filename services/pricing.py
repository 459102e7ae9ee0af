"""Customer prices from carrier costs (exact ``Decimal`` arithmetic, integer cents).

    markup   = cost × markup_percent / 100 + markup_fixed_cents
    price    = cost + markup × (1 − discount_percent / 100)
    price    = max(round_half_up(price), min_price_cents, cost)

Decision: a per-user discount reduces *our markup only*, never the carrier cost, so a
discount (clamped to 0-100 %) can never make a label cost less than we pay for it; 100 %
sells at cost. ``min_price_cents`` is a floor on the final price (0 = none). Rounding is
half-up to the cent, once, at the end. Floats are refused everywhere.

Extras (insurance, delivery confirmation) quoted inside a rate are priced with the same
percentage markup and discount, but without the fixed fee and the minimum (those are per
label, already in the postage price):

    extra_price = max(round_half_up(extra + extra × markup_percent / 100 × (1 − discount)),
                      extra)

so a rate's price = postage price + insurance price + confirmation price, each shown on
its own and their sum charged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from models.shipping import Rate

__all__ = [
    "PricedRate",
    "PricingRules",
    "customer_price_cents",
    "extra_price_cents",
    "price_rates",
]

_HUNDRED = Decimal(100)


def _decimal(value: Decimal | int | str, name: str) -> Decimal:
    if isinstance(value, bool | float):
        raise TypeError(f"{name} must be a Decimal, int or str (no floats)")
    if not isinstance(value, Decimal | int | str):
        raise TypeError(f"{name} must be a Decimal, int or str")
    result = Decimal(value)
    if not result.is_finite():
        raise ValueError(f"{name} must be finite")
    return result


def _cents(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int number of cents")
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return value


@dataclass(frozen=True, slots=True)
class PricingRules:
    """Markup rules; ``markup_percent`` >= 0 (``Decimal``/int/str), cents are ints >= 0."""

    markup_percent: Decimal
    markup_fixed_cents: int
    min_price_cents: int = 0

    def __post_init__(self) -> None:
        percent = _decimal(self.markup_percent, "markup_percent")
        if percent < 0:
            raise ValueError("markup_percent must not be negative")
        object.__setattr__(self, "markup_percent", percent)
        _cents(self.markup_fixed_cents, "markup_fixed_cents")
        _cents(self.min_price_cents, "min_price_cents")


def _discount(value: Decimal | int | str) -> Decimal:
    """The discount percent clamped to 0..100 (a bad stored value can only help the user
    up to "sell at cost", never below it)."""
    discount = _decimal(value, "discount_percent")
    return min(max(discount, Decimal(0)), _HUNDRED)


def customer_price_cents(
    carrier_cost_cents: int,
    rules: PricingRules,
    discount_percent: Decimal | int | str = Decimal(0),
) -> int:
    """The price the customer pays, in cents; never below ``carrier_cost_cents``.

    Monotonic (non-decreasing) in the cost. Raises ``TypeError`` for a float or non-int
    cost and ``ValueError`` for a negative cost or a non-finite discount.
    """
    cost = _cents(carrier_cost_cents, "carrier_cost_cents")
    discount = _discount(discount_percent)
    markup = Decimal(cost) * rules.markup_percent / _HUNDRED + rules.markup_fixed_cents
    kept = markup * (_HUNDRED - discount) / _HUNDRED
    price = int((cost + kept).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return max(price, rules.min_price_cents, cost)


def extra_price_cents(
    extra_cost_cents: int,
    rules: PricingRules,
    discount_percent: Decimal | int | str = Decimal(0),
) -> int:
    """The price of an extra (insurance, confirmation) costing ``extra_cost_cents``: the
    percentage markup less the discount, no fixed fee; never below the cost; 0 for 0."""
    cost = _cents(extra_cost_cents, "extra_cost_cents")
    discount = _discount(discount_percent)
    kept = Decimal(cost) * rules.markup_percent / _HUNDRED * (_HUNDRED - discount) / _HUNDRED
    return max(int((cost + kept).quantize(Decimal(1), rounding=ROUND_HALF_UP)), cost)


@dataclass(frozen=True, slots=True)
class PricedRate:
    """A carrier ``Rate`` with what the customer pays for it: ``price_cents`` is the total,
    of which ``insurance_price_cents`` and ``confirmation_price_cents`` are the extras."""

    rate: Rate
    price_cents: int
    insurance_price_cents: int = 0
    confirmation_price_cents: int = 0

    @property
    def cost_cents(self) -> int:
        return self.rate.amount_cents

    @property
    def markup_cents(self) -> int:
        return self.price_cents - self.rate.amount_cents


def price_rates(
    rates: Iterable[Rate],
    rules: PricingRules,
    discount_percent: Decimal | int | str = Decimal(0),
) -> list[PricedRate]:
    """Prices every rate, cheapest first, then fastest (unknown delivery days last).

    Rates we cannot sell safely are left out: a currency other than USD or a negative
    amount (a provider glitch must not become a label sold at a wrong price).
    """
    priced = [
        _priced(rate, rules, discount_percent)
        for rate in rates
        if rate.currency.lower() == "usd"
        and all(
            not isinstance(value, bool) and isinstance(value, int) and value >= 0
            for value in (rate.amount_cents, rate.insurance_cents, rate.confirmation_cents)
        )
        and rate.amount_cents >= rate.insurance_cents + rate.confirmation_cents
    ]
    priced.sort(
        key=lambda p: (
            p.price_cents,
            p.rate.delivery_days is None,
            p.rate.delivery_days or 0,
            p.rate.carrier_name,
            p.rate.service_name,
            p.rate.rate_id,
        )
    )
    return priced


def _priced(rate: Rate, rules: PricingRules, discount_percent: Decimal | int | str) -> PricedRate:
    postage = rate.amount_cents - rate.insurance_cents - rate.confirmation_cents
    insurance = extra_price_cents(rate.insurance_cents, rules, discount_percent)
    confirmation = extra_price_cents(rate.confirmation_cents, rules, discount_percent)
    return PricedRate(
        rate,
        customer_price_cents(postage, rules, discount_percent) + insurance + confirmation,
        insurance_price_cents=insurance,
        confirmation_price_cents=confirmation,
    )
