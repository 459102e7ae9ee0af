from __future__ import annotations

from decimal import Decimal

import pytest

from models.money import cents_to_decimal, decimal_to_cents, format_cents, to_decimal
from models.shipping import Address, Parcel, VoidResult


@pytest.mark.parametrize(
    ("amount", "cents"),
    [
        (Decimal("12.34"), 1234),
        ("0.10", 10),
        (Decimal("0.1") + Decimal("0.2"), 30),
        ("2.675", 268),  # float(2.675) is 2.67499..., Decimal is exact
        ("0.005", 1),
        ("0.0049", 0),
        ("-0.005", -1),  # half away from zero
        (15, 1500),
        ("1E+2", 10000),
    ],
)
def test_decimal_to_cents_is_exact_half_up(amount: Decimal | str | int, cents: int) -> None:
    assert decimal_to_cents(amount) == cents


def test_floats_and_bools_are_refused() -> None:
    with pytest.raises(TypeError):
        decimal_to_cents(0.1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        to_decimal(True)
    with pytest.raises(ValueError):
        to_decimal("NaN")
    with pytest.raises(ValueError):
        to_decimal("twelve")


def test_cents_round_trip() -> None:
    assert cents_to_decimal(1234) == Decimal("12.34")
    assert str(cents_to_decimal(5)) == "0.05"
    assert format_cents(-5) == "-0.05"
    assert format_cents(100000) == "1000.00"
    for cents in (0, 1, 99, 101, 123456789):
        assert decimal_to_cents(cents_to_decimal(cents)) == cents


def test_address_normalises_codes_and_validates() -> None:
    address = Address(
        name="A", street1="1 Main St", city="Austin", state="tx", postal_code="78701"
    )
    assert address.state == "TX"
    assert address.country == "US"
    with pytest.raises(ValueError):
        Address(name="A", street1="x", city="y", state="Texas", postal_code="78701")


def test_parcel_refuses_floats() -> None:
    parcel = Parcel(
        weight_oz=20, length_in=Decimal("10.5"), width_in=Decimal(8), height_in=Decimal(4)
    )
    assert parcel.width_in == Decimal(8)
    with pytest.raises(TypeError):
        Parcel(weight_oz=20, length_in=10.5, width_in=8, height_in=4)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Parcel(weight_oz=0, length_in=Decimal(1), width_in=Decimal(1), height_in=Decimal(1))


def test_void_result_already_voided_counts_as_voided() -> None:
    assert VoidResult(approved=False, message="", reason_code="label_already_voided").is_voided
    assert not VoidResult(approved=False, message="", reason_code="label_already_used").is_voided
