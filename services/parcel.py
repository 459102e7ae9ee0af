"""Parsing the parcel the customer types: weight and dimensions (pure, ``Decimal`` only).

Weight (``parse_weight``) returns whole ounces, rounded *up* (carriers bill every started
ounce). A bare number is pounds ("2.5" = 40 oz); units: ``lb``/``lbs``/``pound(s)``/``#``,
``oz``/``ounce(s)``, a pound-and-ounce pair ("2 lb 4 oz", "2lb4oz"), and, for customers
who think in metric, ``kg`` and ``g`` (converted exactly, then rounded up). A comma is a
decimal separator ("2,5", as ru/uk users type). Bounds are checked on the rounded ounces.

Dimensions (``parse_dimensions``) return inches as ``Decimal``; separators ``x``, ``X``,
``×``, Cyrillic ``х``, ``*`` or spaces ("10 8 4"), optional ``in``/``"`` units or ``cm``
(converted, rounded up to 0.01 in). Each side must be > 0 and <= ``max_side`` (108 in,
the longest side USPS, UPS and FedEx accept); length + girth (longest side + 2 × the other
two) must be <= ``max_length_plus_girth`` (165 in: the UPS/FedEx ground maximum, and the
largest any of our carriers accepts; USPS services are stricter, 108-130 in, and the
carrier itself rejects those at rating time). Pass ``None`` to skip the girth check.

Numbers may have at most 2 decimal places where it matters ("2.500" is fine, "2.555" is
not); exponents, ``nan``, ``inf`` and negatives are refused. Errors are
``services.addresses.FieldError`` with field ``weight`` or ``dimensions``.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import ROUND_CEILING, Decimal, InvalidOperation

from services.addresses import FieldError, scrub_text

__all__ = [
    "DEFAULT_MAX_LENGTH_PLUS_GIRTH",
    "DEFAULT_MAX_OZ",
    "DEFAULT_MAX_SIDE",
    "DEFAULT_MIN_OZ",
    "MIN_SIDE",
    "format_inches",
    "format_ounces",
    "parse_dimensions",
    "parse_weight",
]

DEFAULT_MIN_OZ = 2  # 0.1 lb = 1.6 oz, rounded up
DEFAULT_MAX_OZ = 2400  # 150 lb
DEFAULT_MAX_SIDE = Decimal(108)
DEFAULT_MAX_LENGTH_PLUS_GIRTH = Decimal(165)
MIN_SIDE = Decimal("0.01")
MAX_DECIMALS = 2
INPUT_CAP = 64

_OZ_PER_LB = Decimal(16)
_GRAMS_PER_OZ = Decimal("28.349523125")  # exact, by definition of the avoirdupois pound
_CM_PER_IN = Decimal("2.54")  # exact
_CENTI = Decimal("0.01")

_NUMBER = r"(?:[0-9]+(?:[.,][0-9]+)?|[.,][0-9]+)"
_PART = re.compile(rf"\s*({_NUMBER})\s*([^\s0-9.,]+\.?)?\s*,?")
_UNITS: dict[str, str] = {}
for _unit, _names in {
    "lb": "lb lbs lb. lbs. pound pounds # фунт фунта фунтов фунты ф",
    "oz": "oz oz. ozs ounce ounces унц унц. унция унции унций",
    "kg": "kg kg. kgs kilo kilos kilogram kilograms кг кг.",
    "g": "g g. gr gr. gram grams г г. гр гр.",
}.items():
    for _name in _names.split():
        _UNITS[_name] = _unit
_NEGATIVE = re.compile(r"(?:^|[\s x*])-\s*[.,]?[0-9]")


def format_ounces(ounces: int) -> str:
    """``2 oz``, ``2 lb 4 oz``, ``150 lb`` (for error messages)."""
    pounds, rest = divmod(int(ounces), 16)
    if pounds and rest:
        return f"{pounds} lb {rest} oz"
    return f"{pounds} lb" if pounds else f"{rest} oz"


def format_inches(value: Decimal) -> str:
    return f"{_plain(value)} in"


def _plain(value: Decimal) -> Decimal:
    """``Decimal("10.50")`` -> ``10.5``, ``Decimal("1E+2")`` -> ``100`` (no exponent)."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def _number(text: str, field: str) -> Decimal:
    try:
        value = Decimal(text.replace(",", "."))
    except InvalidOperation:
        raise FieldError(field, "invalid_number") from None
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or sign:
        raise FieldError(field, "invalid_number")
    # Decimal places that matter (trailing zeros do not), counted exactly (no context).
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    places = -exponent - trailing_zeros
    if places > MAX_DECIMALS:
        raise FieldError(field, "invalid_number", max_decimals=MAX_DECIMALS)
    return value


def _prepare(text: str, field: str, code: str) -> str:
    if not isinstance(text, str):
        raise FieldError(field, code)
    try:
        cleaned = scrub_text(text, field, INPUT_CAP, cap=INPUT_CAP)
    except FieldError:
        raise FieldError(field, code) from None
    cleaned = unicodedata.normalize("NFKC", cleaned).casefold()
    return cleaned.replace("−", "-").replace("–", "-")


def parse_weight(text: str, *, min_oz: int = DEFAULT_MIN_OZ, max_oz: int = DEFAULT_MAX_OZ) -> int:
    """Whole ounces (rounded up) or ``FieldError("weight", code)``.

    Codes: ``required``; ``invalid_number`` (``max_decimals=2`` when there are too many
    decimals); ``too_small`` (``min`` e.g. "2 oz", ``min_oz``); ``too_large`` (``max`` e.g.
    "150 lb", ``max_oz``).
    """
    cleaned = _prepare(text, "weight", "invalid_number")
    if not cleaned:
        raise FieldError("weight", "required")
    too_small = FieldError("weight", "too_small", min=format_ounces(min_oz), min_oz=min_oz)
    if _NEGATIVE.search(cleaned):
        raise too_small
    parts: list[tuple[Decimal, str | None]] = []
    position = 0
    for match in _PART.finditer(cleaned):
        if match.start() != position:
            raise FieldError("weight", "invalid_number")
        position = match.end()
        unit_text = match.group(2)
        unit = None if unit_text is None else _UNITS.get(unit_text)
        if unit_text is not None and unit is None:
            raise FieldError("weight", "invalid_number")
        parts.append((_number(match.group(1), "weight"), unit))
    if position != len(cleaned) or not parts:
        raise FieldError("weight", "invalid_number")
    units = tuple(unit for _, unit in parts)
    if units in ((None,), ("lb",)):
        ounces = parts[0][0] * _OZ_PER_LB
    elif units == ("oz",):
        ounces = parts[0][0]
    elif units == ("lb", "oz"):
        ounces = parts[0][0] * _OZ_PER_LB + parts[1][0]
    elif units == ("kg",):
        ounces = parts[0][0] * 1000 / _GRAMS_PER_OZ
    elif units == ("g",):
        ounces = parts[0][0] / _GRAMS_PER_OZ
    elif units == ("kg", "g"):
        ounces = (parts[0][0] * 1000 + parts[1][0]) / _GRAMS_PER_OZ
    else:
        raise FieldError("weight", "invalid_number")
    if ounces > max_oz:  # before rounding: no huge integers from absurd input
        raise FieldError("weight", "too_large", max=format_ounces(max_oz), max_oz=max_oz)
    whole = int(ounces.to_integral_value(rounding=ROUND_CEILING))
    if whole < min_oz or whole <= 0:
        raise too_small
    if whole > max_oz:
        raise FieldError("weight", "too_large", max=format_ounces(max_oz), max_oz=max_oz)
    return whole


_SEPARATORS = re.compile(r"\s*[x×х*]\s*")  # Latin x, ×, Cyrillic х
_INCH_UNITS = re.compile(r"(?:inches|inch|in\.?|дюймов|дюйма|дюйм|\"|'')")
_CM_UNITS = re.compile(r"(?:cm\.?|см\.?)")
_SIDE = re.compile(_NUMBER)


def parse_dimensions(
    text: str,
    *,
    max_side: Decimal | int = DEFAULT_MAX_SIDE,
    max_length_plus_girth: Decimal | int | None = DEFAULT_MAX_LENGTH_PLUS_GIRTH,
) -> tuple[Decimal, Decimal, Decimal]:
    """Length, width, height in inches, in the order typed, or ``FieldError("dimensions")``.

    Codes: ``required``; ``invalid_format`` (not three numbers); ``invalid_number``
    (``max_decimals=2``); ``too_small`` (``min`` "0.01 in"); ``too_large`` (``max`` e.g.
    "108 in", ``max_in``); ``too_large_girth`` (``max`` e.g. "165 in", ``max_in``,
    ``value`` e.g. "170 in": length + girth over the limit).
    """
    cleaned = _prepare(text, "dimensions", "invalid_format")
    if not cleaned:
        raise FieldError("dimensions", "required")
    if _NEGATIVE.search(cleaned):
        raise FieldError("dimensions", "too_small", min=format_inches(MIN_SIDE))
    metric = bool(_CM_UNITS.search(cleaned))
    body = _CM_UNITS.sub(" ", _INCH_UNITS.sub(" ", cleaned))
    body = " ".join(body.split())
    if _SEPARATORS.search(body):
        parts = _SEPARATORS.split(body.strip(" x×х*"))
    else:
        parts = re.sub(r",\s+", " ", body).split()
        if len(parts) == 1 and parts[0].count(",") == 2:
            parts = parts[0].split(",")
    parts = [part.strip() for part in parts]
    if len(parts) != 3 or not all(_SIDE.fullmatch(part) for part in parts):
        raise FieldError("dimensions", "invalid_format")
    sides = [_number(part, "dimensions") for part in parts]
    if metric:
        sides = [(side / _CM_PER_IN).quantize(_CENTI, rounding=ROUND_CEILING) for side in sides]
    limit = Decimal(max_side)
    for side in sides:
        if side < MIN_SIDE:
            raise FieldError("dimensions", "too_small", min=format_inches(MIN_SIDE))
        if side > limit:
            raise FieldError("dimensions", "too_large", max=format_inches(limit), max_in=limit)
    length, width, height = (_plain(side) for side in sides)
    if max_length_plus_girth is not None:
        longest = max(sides)
        total = longest + 2 * (sum(sides) - longest)
        girth_limit = Decimal(max_length_plus_girth)
        if total > girth_limit:
            raise FieldError(
                "dimensions",
                "too_large_girth",
                max=format_inches(girth_limit),
                max_in=girth_limit,
                value=format_inches(total),
            )
    return length, width, height
