"""Weight and dimension parsing (table tests)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.addresses import FieldError
from services.parcel import format_ounces, parse_dimensions, parse_weight


@pytest.mark.parametrize(
    ("text", "ounces"),
    [
        ("2", 32),
        ("2.5", 40),
        ("2 lb", 32),
        ("2lb", 32),
        ("2 lbs", 32),
        ("2 LB", 32),
        ("2 pounds", 32),
        ("2#", 32),
        ("2lb 4oz", 36),
        ("2 lb 4 oz", 36),
        ("2 lb, 4 oz", 36),
        ("2 lbs. 4 oz.", 36),
        ("36 oz", 36),
        ("36oz", 36),
        ("2,5", 40),
        ("2,5 lb", 40),
        ("1.25 lbs", 20),
        ("2.500", 40),
        ("0.1", 2),  # 1.6 oz rounds up
        ("1.7 oz", 2),
        ("150", 2400),
        ("150 lb", 2400),
        ("1 kg", 36),  # 35.27 oz
        ("500 g", 18),  # 17.64 oz
        ("1 kg 500 g", 53),
        ("2 фунта", 32),
        ("１０ oz", 10),  # fullwidth digits
        ("  3  ", 48),
    ],
)
def test_weight_valid(text: str, ounces: int) -> None:
    assert parse_weight(text) == ounces


@pytest.mark.parametrize(
    ("text", "code", "params"),
    [
        ("", "required", {}),
        ("   ", "required", {}),
        ("abc", "invalid_number", {}),
        ("two", "invalid_number", {}),
        ("nan", "invalid_number", {}),
        ("NaN", "invalid_number", {}),
        ("inf", "invalid_number", {}),
        ("-inf", "invalid_number", {}),
        ("1e9", "invalid_number", {}),
        ("1E3", "invalid_number", {}),
        ("2.555", "invalid_number", {"max_decimals": 2}),
        ("2 stone", "invalid_number", {}),
        ("2 oz 1 lb", "invalid_number", {}),
        ("2 3", "invalid_number", {}),
        ("2..5", "invalid_number", {}),
        ("0x10", "invalid_number", {}),
        ("2\x00", "invalid_number", {}),
        ("2\u202e", "invalid_number", {}),
        ("<b>2</b>", "invalid_number", {}),
        ("2" * 5000, "invalid_number", {}),
        ("-2", "too_small", {"min": "2 oz", "min_oz": 2}),
        ("−2", "too_small", {"min": "2 oz", "min_oz": 2}),
        ("0", "too_small", {"min": "2 oz", "min_oz": 2}),
        ("1 oz", "too_small", {"min": "2 oz", "min_oz": 2}),
        ("150.01", "too_large", {"max": "150 lb", "max_oz": 2400}),
        ("2401 oz", "too_large", {"max": "150 lb", "max_oz": 2400}),
        ("9" * 60, "too_large", {"max": "150 lb", "max_oz": 2400}),
    ],
)
def test_weight_invalid(text: str, code: str, params: dict[str, object]) -> None:
    with pytest.raises(FieldError) as info:
        parse_weight(text)
    assert (info.value.field, info.value.code, info.value.params) == ("weight", code, params)


def test_weight_bounds_from_arguments() -> None:
    assert parse_weight("1 oz", min_oz=1) == 1
    with pytest.raises(FieldError) as info:
        parse_weight("5", max_oz=70)
    assert info.value.params == {"max": "4 lb 6 oz", "max_oz": 70}


def test_format_ounces() -> None:
    assert [format_ounces(n) for n in (2, 16, 36, 2400)] == ["2 oz", "1 lb", "2 lb 4 oz", "150 lb"]


D = Decimal


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10x8x4", (D(10), D(8), D(4))),
        ("10 x 8 x 4", (D(10), D(8), D(4))),
        ("10X8X4", (D(10), D(8), D(4))),
        ("10*8*4", (D(10), D(8), D(4))),
        ("10×8×4", (D(10), D(8), D(4))),
        ("10х8х4", (D(10), D(8), D(4))),  # Cyrillic х, as ru/uk keyboards type
        ("10 8 4", (D(10), D(8), D(4))),
        ("10,5x8x4", (D("10.5"), D(8), D(4))),
        ("10,5 8 4", (D("10.5"), D(8), D(4))),
        ("10, 8, 4", (D(10), D(8), D(4))),
        ("10,8,4", (D(10), D(8), D(4))),
        ("10.50x8.25x4", (D("10.5"), D("8.25"), D(4))),
        ("10x8x4 in", (D(10), D(8), D(4))),
        ('10"x8"x4"', (D(10), D(8), D(4))),
        ("10 in x 8 in x 4 in", (D(10), D(8), D(4))),
        ("25x20x10 cm", (D("9.85"), D("7.88"), D("3.94"))),
        ("108x10x10", (D(108), D(10), D(10))),
        ("0.01x1x1", (D("0.01"), D(1), D(1))),
    ],
)
def test_dimensions_valid(text: str, expected: tuple[Decimal, Decimal, Decimal]) -> None:
    result = parse_dimensions(text)
    assert result == expected
    assert all(isinstance(side, Decimal) for side in result)
    assert all("E" not in str(side) for side in result)


@pytest.mark.parametrize(
    ("text", "code", "params"),
    [
        ("", "required", {}),
        ("10x8", "invalid_format", {}),
        ("10x8x4x2", "invalid_format", {}),
        ("10", "invalid_format", {}),
        ("big box", "invalid_format", {}),
        ("a x b x c", "invalid_format", {}),
        ("1e2x1x1", "invalid_format", {}),
        ("nanxnanxnan", "invalid_format", {}),
        ("infxinfxinf", "invalid_format", {}),
        ("10x8x4\x00", "invalid_format", {}),
        ("10x8x4\u202e", "invalid_format", {}),
        ("<b>10x8x4</b>", "invalid_format", {}),
        ("1" * 5000, "invalid_format", {}),
        ("10.555x8x4", "invalid_number", {"max_decimals": 2}),
        ("0x8x4", "too_small", {"min": "0.01 in"}),
        ("10x0x4", "too_small", {"min": "0.01 in"}),
        ("-10x8x4", "too_small", {"min": "0.01 in"}),
        ("109x1x1", "too_large", {"max": "108 in", "max_in": D(108)}),
        (
            "100x20x20",
            "too_large_girth",
            {"max": "165 in", "max_in": D(165), "value": "180 in"},
        ),
    ],
)
def test_dimensions_invalid(text: str, code: str, params: dict[str, object]) -> None:
    with pytest.raises(FieldError) as info:
        parse_dimensions(text)
    assert (info.value.field, info.value.code, info.value.params) == ("dimensions", code, params)


def test_dimensions_limits_from_arguments() -> None:
    assert parse_dimensions("100x20x20", max_length_plus_girth=None) == (D(100), D(20), D(20))
    with pytest.raises(FieldError) as info:
        parse_dimensions("30x1x1", max_side=D(24))
    assert info.value.code == "too_large" and info.value.params["max"] == "24 in"
    with pytest.raises(FieldError) as info:
        parse_dimensions("30x20x20", max_length_plus_girth=100)
    assert info.value.code == "too_large_girth"
