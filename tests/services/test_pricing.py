"""Customer prices from carrier costs (table tests)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from models.shipping import Rate
from services.pricing import (
    PricedRate,
    PricingRules,
    customer_price_cents,
    extra_price_cents,
    price_rates,
)

RULES = PricingRules(markup_percent=Decimal("15"), markup_fixed_cents=50)


@pytest.mark.parametrize(
    ("cost", "rules", "discount", "price"),
    [
        (1000, RULES, Decimal(0), 1200),  # 1000 + 150 + 50
        (999, RULES, Decimal(0), 1199),  # 999 + 149.85 + 50 = 1198.85 -> 1199
        (1, RULES, Decimal(0), 51),  # 1 + 0.15 + 50 = 51.15 -> 51
        (10, RULES, Decimal(0), 62),  # 10 + 1.5 + 50 = 61.5 -> 62 (half up)
        (0, RULES, Decimal(0), 50),
        (1000, RULES, Decimal(50), 1100),  # half of the 200 markup
        (1000, RULES, Decimal(100), 1000),  # sells at cost
        (1000, RULES, Decimal(150), 1000),  # clamped: never below cost
        (1000, RULES, Decimal(-20), 1200),  # clamped to no discount
        (1000, RULES, Decimal("12.5"), 1175),  # 200 * 0.875 = 175
        (1000, RULES, 10, 1180),
        (1000, RULES, "10", 1180),
        (1000, PricingRules(Decimal(0), 0), Decimal(0), 1000),
        (1000, PricingRules(Decimal("7.25"), 0), Decimal(0), 1073),  # 1072.5 -> 1073
        (100, PricingRules(Decimal(0), 0, min_price_cents=300), Decimal(0), 300),
        (100, PricingRules(Decimal(0), 0, min_price_cents=300), Decimal(100), 300),
        (
            12_345_678,
            PricingRules(Decimal("33.33"), 1),
            Decimal(0),
            16_460_493,
        ),  # +4114814.4774 +1
    ],
)
def test_customer_price(cost: int, rules: PricingRules, discount: Decimal, price: int) -> None:
    assert customer_price_cents(cost, rules, discount) == price


def test_rules_are_validated() -> None:
    assert PricingRules(markup_percent="15", markup_fixed_cents=0).markup_percent == 15  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PricingRules(markup_percent=15.0, markup_fixed_cents=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        PricingRules(markup_percent=Decimal(-1), markup_fixed_cents=0)
    with pytest.raises(ValueError, match="finite"):
        PricingRules(markup_percent=Decimal("NaN"), markup_fixed_cents=0)
    with pytest.raises(ValueError, match="negative"):
        PricingRules(markup_percent=Decimal(1), markup_fixed_cents=-1)
    with pytest.raises(TypeError):
        PricingRules(markup_percent=Decimal(1), markup_fixed_cents=1.5)  # type: ignore[arg-type]


def test_bad_costs_and_discounts_are_refused() -> None:
    with pytest.raises(TypeError):
        customer_price_cents(10.0, RULES)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        customer_price_cents(True, RULES)
    with pytest.raises(ValueError, match="negative"):
        customer_price_cents(-1, RULES)
    with pytest.raises(TypeError):
        customer_price_cents(1000, RULES, 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        customer_price_cents(1000, RULES, Decimal("Infinity"))


def rate(rate_id: str, cents: int, days: int | None, currency: str = "usd") -> Rate:
    return Rate(
        rate_id=rate_id,
        carrier_id="se-1",
        carrier_code="usps",
        carrier_name="USPS",
        service_code=f"svc_{rate_id}",
        service_name=f"Service {rate_id}",
        amount_cents=cents,
        delivery_days=days,
        currency=currency,
    )


def test_price_rates_sorted_by_price_then_days() -> None:
    rates = [
        rate("slow", 1000, 5),
        rate("unknown", 1000, None),
        rate("fast", 1000, 1),
        rate("cheap", 500, 7),
        rate("dear", 3000, 1),
    ]
    priced = price_rates(rates, RULES, Decimal(0))
    assert [p.rate.rate_id for p in priced] == ["cheap", "fast", "slow", "unknown", "dear"]
    assert priced[0] == PricedRate(rate=rates[3], price_cents=625)  # 500 + 75 + 50
    assert priced[0].cost_cents == 500 and priced[0].markup_cents == 125


def test_price_rates_applies_the_discount_and_skips_unsellable_rates() -> None:
    rates = [rate("ok", 1000, 2), rate("eur", 900, 2, currency="eur"), rate("neg", -5, 2)]
    priced = price_rates(rates, RULES, Decimal(100))
    assert [(p.rate.rate_id, p.price_cents) for p in priced] == [("ok", 1000)]
    assert price_rates([], RULES) == []


def _rate_with_extras(amount: int, insurance: int, confirmation: int) -> Rate:
    return Rate(
        rate_id="se-9",
        carrier_id="se-1",
        carrier_code="stamps_com",
        carrier_name="USPS",
        service_code="usps_ground_advantage",
        service_name="USPS Ground Advantage",
        amount_cents=amount,
        insurance_cents=insurance,
        confirmation_cents=confirmation,
    )


@pytest.mark.parametrize(
    ("cost", "discount", "price"),
    [
        (0, Decimal(0), 0),  # no extra, no fee
        (330, Decimal(0), 380),  # 330 + 49.5 -> 380 (half up), no fixed fee
        (445, Decimal(0), 512),  # 445 + 66.75 -> 512
        (445, Decimal(100), 445),  # a full discount sells the extra at cost
        (445, Decimal(50), 478),  # 445 + 33.375 -> 478
    ],
)
def test_extras_carry_the_percentage_markup_only(cost: int, discount: Decimal, price: int) -> None:
    assert extra_price_cents(cost, RULES, discount) == price


def test_a_rate_price_is_postage_plus_extras() -> None:
    # 1000 postage + 330 insurance + 445 signature.
    [priced] = price_rates([_rate_with_extras(1775, 330, 445)], RULES)
    assert priced.insurance_price_cents == 380 and priced.confirmation_price_cents == 512
    assert priced.price_cents == customer_price_cents(1000, RULES) + 380 + 512 == 2092
    assert priced.cost_cents == 1775  # the carrier's total, for the margin
    # A rate whose extras exceed its total is a provider glitch: not sold.
    assert price_rates([_rate_with_extras(100, 330, 0)], RULES) == []
    assert price_rates([_rate_with_extras(1000, -1, 0)], RULES) == []
