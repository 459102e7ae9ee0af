from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.amounts import AmountError, AmountLimits, parse_amount

LIMITS = AmountLimits(1000, 100000)


@pytest.mark.parametrize(
    ("language", "text", "cents"),
    [("en", "10", 1000), ("en", "$10.50", 1050), ("ru", "10,50", 1050), ("uk", "10,5", 1050),
     ("en", "1,000", 100000), ("ru", "25.25", 2525)],
)
def test_valid_amounts(language: str, text: str, cents: int) -> None:
    assert parse_amount(text, language, LIMITS) == cents


@pytest.mark.parametrize(
    ("language", "text", "code"),
    [("en", "abc", "not_a_number"), ("en", "-5", "negative"), ("en", "1e9", "not_a_number"),
     ("en", "10,50", "use_dot"), ("en", "9.99", "too_small"), ("en", "1000.01", "too_large"),
     ("en", "10.001", "too_many_decimals"), ("en", "inf", "not_a_number"),
     ("en", "NaN", "not_a_number"), ("en", "", "not_a_number"), ("en", "9" * 40, "not_a_number")],
)
def test_invalid_amounts(language: str, text: str, code: str) -> None:
    with pytest.raises(AmountError) as info:
        parse_amount(text, language, LIMITS)
    assert info.value.code == code


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40), language=st.sampled_from(["en", "ru", "uk"]))
def test_any_text_gives_cents_in_range_or_amount_error(text: str, language: str) -> None:
    try:
        cents = parse_amount(text, language, LIMITS)
    except AmountError:
        return
    assert isinstance(cents, int) and LIMITS.min_cents <= cents <= LIMITS.max_cents


@settings(max_examples=200, deadline=None)
@given(cents=st.integers(min_value=1000, max_value=100000))
def test_round_trip_of_formatted_amounts(cents: int) -> None:
    value = Decimal(cents) / 100
    assert parse_amount(f"{value:.2f}", "en", LIMITS) == cents
    assert parse_amount(f"{value:.2f}".replace(".", ","), "ru", LIMITS) == cents


def test_a_shortfall_below_the_minimum_asks_for_the_minimum() -> None:
    from services.amounts import topup_for_shortfall

    assert topup_for_shortfall(804, LIMITS) == 1000
    assert topup_for_shortfall(1033, LIMITS) == 1033


def test_ready_amounts_lead_with_the_shortfall_rounded_up() -> None:
    from services.amounts import suggested_amounts

    assert suggested_amounts(LIMITS) == [1000, 2500, 5000]
    assert suggested_amounts(LIMITS, 804) == [1000, 2500, 5000]
    assert suggested_amounts(LIMITS, 1033) == [1100, 2500, 5000]
    assert suggested_amounts(LIMITS, 3001) == [3100, 5000]
    assert suggested_amounts(AmountLimits(1000, 3000), 2999) == [3000]
    assert suggested_amounts(AmountLimits(1000, 3000), 5000) == []  # above the maximum
