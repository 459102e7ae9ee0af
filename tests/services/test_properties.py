"""Property tests: arbitrary text never escapes as anything but ``FieldError``; normalised
values re-validate to themselves; prices are monotonic in cost and never below it."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.addresses import (
    ADDRESS_FIELDS,
    FIELD_LIMITS,
    WHOLE_ADDRESS,
    FieldError,
    parse_address,
    validate_city,
    validate_field,
    validate_name,
    validate_phone,
    validate_state,
    validate_street1,
    validate_street2,
    validate_template_name,
    validate_zip,
)
from services.parcel import parse_dimensions, parse_weight
from services.pricing import PricingRules, customer_price_cents

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Arbitrary Unicode, plus text biased toward the shapes the parsers look for.
ANY_TEXT = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from("0123456789 .,-xX*#lbozkgin\n\"'"), max_size=30),
    st.text(
        alphabet=st.characters(
            codec="utf-8", categories=["Cc", "Cf", "Zs", "Zl", "So", "Mn", "Lo", "Nd"]
        )
    ),
)
ADDRESS_TEXT = st.one_of(
    ANY_TEXT,
    st.lists(
        st.sampled_from(
            [
                "John Smith",
                "123 Main St",
                "Apt 4",
                "Springfield",
                "IL 62704",
                "New York, NY 10001-1234",
                "(212) 555-0123",
                "PO Box 9",
                "<b>",
                "\U0001f600",
                "Suite",
                "Washington DC",
                "phone: 12",
            ]
        ),
        max_size=8,
    ).map(lambda parts: ", ".join(parts)),
)

VALIDATORS: dict[str, Callable[[str], str | None]] = {
    "name": validate_name,
    "street1": validate_street1,
    "street2": validate_street2,
    "city": validate_city,
    "state": validate_state,
    "postal_code": validate_zip,
    "phone": validate_phone,
    "template": validate_template_name,
}


def check_validator(name: str, text: str) -> None:
    validator = VALIDATORS[name]
    try:
        value = validator(text)
    except FieldError as error:
        assert isinstance(error.code, str) and error.code
        return
    if value is None:
        assert name in {"street2", "phone"}
        return
    assert validator(value) == value  # idempotent
    if name in FIELD_LIMITS:
        assert 0 < len(value) <= FIELD_LIMITS[name]
    if name != "template":
        assert value.isascii() and not set(value) & set("<>{}\x00")


@SETTINGS
@given(ANY_TEXT)
def test_name_never_raises_anything_else(text: str) -> None:
    check_validator("name", text)


@SETTINGS
@given(ANY_TEXT)
def test_street1_never_raises_anything_else(text: str) -> None:
    check_validator("street1", text)


@SETTINGS
@given(ANY_TEXT)
def test_street2_never_raises_anything_else(text: str) -> None:
    check_validator("street2", text)


@SETTINGS
@given(ANY_TEXT)
def test_city_never_raises_anything_else(text: str) -> None:
    check_validator("city", text)


@SETTINGS
@given(st.one_of(ANY_TEXT, st.sampled_from(["ny", "New York", "d.c.", "Guam", "ae"])))
def test_state_never_raises_anything_else(text: str) -> None:
    check_validator("state", text)


@SETTINGS
@given(st.one_of(ANY_TEXT, st.from_regex(r"\A ?[0-9]{5}(-? ?[0-9]{4})? ?\Z")))
def test_zip_never_raises_anything_else(text: str) -> None:
    check_validator("postal_code", text)


@SETTINGS
@given(
    st.one_of(ANY_TEXT, st.from_regex(r"\A\+?1? ?\(?[2-9][0-9]{2}\)?[ .-]?[0-9]{3}-?[0-9]{4}\Z"))
)
def test_phone_never_raises_anything_else(text: str) -> None:
    check_validator("phone", text)


@SETTINGS
@given(ANY_TEXT)
def test_template_name_never_raises_anything_else(text: str) -> None:
    check_validator("template", text)


@SETTINGS
@given(ADDRESS_TEXT)
def test_parse_address_never_raises(text: str) -> None:
    parsed = parse_address(text)
    for field, value in parsed.values.items():
        assert field in ADDRESS_FIELDS
        assert validate_field(field, value) == value  # stored values re-validate
    for field, error in parsed.errors.items():
        assert field in (*ADDRESS_FIELDS, WHOLE_ADDRESS)
        assert isinstance(error, FieldError) and error.field == field
    assert set(parsed.missing).isdisjoint(parsed.values)
    try:
        address = parsed.to_address()
    except FieldError:
        assert not parsed.is_complete
    else:
        assert parsed.is_complete and address.name == parsed.values["name"]


WEIGHT_TEXT = st.one_of(
    ANY_TEXT,
    st.builds(
        lambda number, unit: f"{number}{unit}",
        st.decimals(min_value=-10, max_value=500, places=3, allow_nan=False),
        st.sampled_from(["", " lb", "lbs", " oz", " kg", "g", " stone"]),
    ),
)


@SETTINGS
@given(WEIGHT_TEXT)
def test_parse_weight_never_raises_anything_else(text: str) -> None:
    try:
        ounces = parse_weight(text)
    except FieldError as error:
        assert error.field == "weight"
        assert error.code in {"required", "invalid_number", "too_small", "too_large"}
        return
    assert isinstance(ounces, int) and 2 <= ounces <= 2400
    assert parse_weight(f"{ounces} oz") == ounces  # idempotent through its own format


DIMENSIONS_TEXT = st.one_of(
    ANY_TEXT,
    st.builds(
        lambda sides, sep: sep.join(str(side) for side in sides),
        st.lists(
            st.decimals(min_value=-1, max_value=200, places=2, allow_nan=False),
            min_size=2,
            max_size=4,
        ),
        st.sampled_from(["x", " x ", "*", " ", "×", ", "]),
    ),
)


@SETTINGS
@given(DIMENSIONS_TEXT)
def test_parse_dimensions_never_raises_anything_else(text: str) -> None:
    try:
        sides = parse_dimensions(text)
    except FieldError as error:
        assert error.field == "dimensions"
        assert error.code in {
            "required",
            "invalid_format",
            "invalid_number",
            "too_small",
            "too_large",
            "too_large_girth",
        }
        return
    assert len(sides) == 3
    assert all(isinstance(s, Decimal) and Decimal(0) < s <= 108 for s in sides)
    assert parse_dimensions("x".join(str(s) for s in sides)) == sides  # idempotent


PERCENT = st.decimals(min_value=0, max_value=500, places=2, allow_nan=False)
DISCOUNT = st.decimals(min_value=-50, max_value=150, places=2, allow_nan=False)
RULES = st.builds(
    PricingRules,
    markup_percent=PERCENT,
    markup_fixed_cents=st.integers(0, 10_000),
    min_price_cents=st.integers(0, 5_000),
)
COST = st.integers(min_value=0, max_value=10**9)


@SETTINGS
@given(COST, COST, RULES, DISCOUNT)
def test_price_is_monotonic_in_cost(
    a: int, b: int, rules: PricingRules, discount: Decimal
) -> None:
    low, high = sorted((a, b))
    assert customer_price_cents(low, rules, discount) <= customer_price_cents(
        high, rules, discount
    )


@SETTINGS
@given(COST, RULES, DISCOUNT)
def test_price_never_below_cost(cost: int, rules: PricingRules, discount: Decimal) -> None:
    price = customer_price_cents(cost, rules, discount)
    assert isinstance(price, int)
    assert price >= cost and price >= rules.min_price_cents
    assert price <= customer_price_cents(cost, rules, Decimal(0))  # a discount never raises it
