"""US address validation and parsing of a pasted address (pure functions, no I/O).

Every validator returns the normalised value or raises ``FieldError(field, code, **params)``;
``code`` is stable and selects a localized message (``field.error.<code>``), ``params`` fill it.

Decisions (carrier norms: labels are printed in Latin script, ShipStation/UPS address lines
hold 35 characters):

* Field limits: name, street1, street2 <= 35 characters; city <= 30 (UPS allows 30, FedEx
  35 and USPS Publication 28 city names fit in 28, so 30 is accepted by every carrier we
  sell; the longest US city names are about 22 characters).
* Hygiene for every text field, in this order: input longer than ``HARD_CAP`` (200)
  characters is refused at once (``too_long``, before any other work); invisible
  copy-paste artefacts (zero-width space/joiners, word joiner, BOM, soft hyphen) are
  *stripped*; every other control or format character (NUL, C0/C1 controls, bidi
  embeddings/overrides/isolates such as U+202E, private use, unassigned) is *rejected*
  with ``invalid_characters`` (they are never legitimate on a label and bidi overrides
  can disguise what an admin reads); all whitespace (tabs, newlines, NBSP, ...) collapses
  to single spaces and the ends are stripped.
* Labels are ASCII: accents are transliterated (NFKD, combining marks dropped, plus a small
  table: ß→ss, æ→ae, ø→o, ł→l, curly quotes → ', dashes → -); whatever is still not ASCII
  (Cyrillic, CJK, emoji, ...) is rejected with ``invalid_characters``. Only letters, digits,
  space and ``. , ' - # / & ( )`` are accepted, so HTML/markup such as ``<b>`` (``< > { }
  [ ] \\ | ` ~ ^ $ % * = + ; : " ! ? @ _``) is rejected, never stored.
* Optional fields (street2, phone): ``None``, empty text and a skip word (``-``, ``none``,
  ``n/a``, ``skip``, ``нет``, ``ні``, ...) mean "no value" and return ``None``.
* Phone: parsed with ``phonenumbers`` (region US), must be a valid North American
  number (country code 1: US, territories, Canada, Caribbean); normalised to E.164
  (``+12125550123``); an extension is dropped (E.164 has none).
* Template names are for the customer only (never printed), so any script is allowed
  there; the control/bidi rules above still apply.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import phonenumbers
import usaddress

from models.shipping import Address

__all__ = [
    "ADDRESS_FIELDS",
    "ADDRESS_MAX_CHARS",
    "CITY_MAX",
    "FIELD_LIMITS",
    "HARD_CAP",
    "NAME_MAX",
    "REQUIRED_FIELDS",
    "SKIPPABLE_FIELDS",
    "STATE_NAMES",
    "STREET_MAX",
    "TEMPLATE_NAME_MAX",
    "US_STATES",
    "WHOLE_ADDRESS",
    "FieldError",
    "ParsedAddress",
    "clean_text",
    "scrub_text",
    "looks_like_full_address",
    "parse_address",
    "step_of",
    "validate_city",
    "validate_field",
    "validate_name",
    "validate_phone",
    "validate_postal_code",
    "validate_state",
    "validate_street1",
    "validate_street2",
    "validate_template_name",
    "validate_zip",
]


class FieldError(ValueError):
    """A value the customer typed is not acceptable.

    ``field`` names the input (an ``ADDRESS_FIELDS`` name, ``weight``, ``dimensions``,
    ``template`` or ``WHOLE_ADDRESS``); ``code`` is stable and selects the message;
    ``params`` are the values the message needs (e.g. ``limit=35``).
    """

    def __init__(self, field: str, code: str, **params: object) -> None:
        super().__init__(f"{field}: {code}")
        self.field = field
        self.code = code
        self.params: dict[str, object] = params

    def __repr__(self) -> str:
        extra = "".join(f", {key}={value!r}" for key, value in self.params.items())
        return f"FieldError({self.field!r}, {self.code!r}{extra})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FieldError):
            return NotImplemented
        return (self.field, self.code, self.params) == (other.field, other.code, other.params)

    def __hash__(self) -> int:
        return hash((self.field, self.code))


# -- fields -----------------------------------------------------------------------------

ADDRESS_FIELDS: tuple[str, ...] = (
    "name",
    "street1",
    "street2",
    "city",
    "state",
    "postal_code",
    "phone",
)
SKIPPABLE_FIELDS: frozenset[str] = frozenset({"street2", "phone"})
REQUIRED_FIELDS: tuple[str, ...] = tuple(f for f in ADDRESS_FIELDS if f not in SKIPPABLE_FIELDS)
WHOLE_ADDRESS = "address"  # ``FieldError.field`` for a problem with a whole pasted address

HARD_CAP = 200  # characters of raw input, checked before anything else
ADDRESS_MAX_CHARS = 500  # a whole pasted address
NAME_MAX = 35
STREET_MAX = 35
CITY_MAX = 30
TEMPLATE_NAME_MAX = 32
FIELD_LIMITS: Mapping[str, int] = {
    "name": NAME_MAX,
    "street1": STREET_MAX,
    "street2": STREET_MAX,
    "city": CITY_MAX,
}


def step_of(field: str) -> int:
    """1-based position of an address field, for "Step N of len(ADDRESS_FIELDS)"."""
    return ADDRESS_FIELDS.index(field) + 1


# -- hygiene ----------------------------------------------------------------------------

# Invisible characters that copy-paste from web pages and messengers leaves behind.
_STRIPPED = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e")
_REJECTED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_TRANSLIT = str.maketrans(
    {
        "ß": "ss",
        "ẞ": "SS",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ø": "o",
        "Ø": "O",
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "Ð": "D",
        "ł": "l",
        "Ł": "L",
        "þ": "th",
        "Þ": "Th",
        "ı": "i",
        "ħ": "h",
        "Ħ": "H",
        "‘": "'",
        "’": "'",
        "‚": "'",
        "‛": "'",
        "ʼ": "'",
        "`": "'",
        "´": "'",
        "‐": "-",
        "‑": "-",
        "‒": "-",
        "–": "-",
        "—": "-",
        "−": "-",
        "⁄": "/",
        "№": "#",
    }
)
_LABEL_TEXT = re.compile(r"[A-Za-z0-9 .,'\-#/&()]+")
_SKIP_WORDS = frozenset({"-", "--", "none", "n/a", "skip", "нет", "немає", "ні", "пропустить"})


def scrub_text(raw: str, field: str, limit: int, *, cap: int = HARD_CAP) -> str:
    """Cap, strip invisibles, reject controls/bidi, collapse whitespace (no transliteration).

    Raises ``FieldError(field, "too_long", limit=limit)`` over ``cap`` characters and
    ``FieldError(field, "invalid_characters")`` for a control or format character.
    """
    if len(raw) > cap:
        raise FieldError(field, "too_long", limit=limit)
    kept: list[str] = []
    for char in raw:
        if char in _STRIPPED:
            continue
        if char.isspace():
            kept.append(" ")
            continue
        if unicodedata.category(char) in _REJECTED_CATEGORIES:
            raise FieldError(field, "invalid_characters")
        kept.append(char)
    return " ".join("".join(kept).split())


def _to_ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLIT))
    without_marks = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(without_marks.translate(_TRANSLIT).split())


def clean_text(raw: str | None, field: str, limit: int) -> str:
    """Hygiene shared by the label text fields; returns ASCII label text (may raise)."""
    if raw is None or not isinstance(raw, str):
        raise FieldError(field, "required")
    text = scrub_text(raw, field, limit)
    if not text:
        raise FieldError(field, "required")
    text = _to_ascii(text)
    if not text.isascii() or not _LABEL_TEXT.fullmatch(text):
        raise FieldError(field, "invalid_characters")
    if len(text) > limit:
        raise FieldError(field, "too_long", limit=limit)
    return text


def _is_skip(raw: str | None) -> bool:
    if raw is None:
        return True
    if len(raw) > HARD_CAP:
        return False
    return " ".join(raw.split()).casefold() in _SKIP_WORDS or not raw.strip()


# -- validators -------------------------------------------------------------------------


def validate_name(raw: str | None) -> str:
    """Recipient or sender name: 1-35 Latin characters with at least one letter
    (``name_letters`` when there is none, e.g. only digits)."""
    text = clean_text(raw, "name", NAME_MAX)
    if not any(c.isalpha() for c in text):
        raise FieldError("name", "name_letters")
    return text


STREET_MIN_CHARS = 3  # letters and digits: "A" or "12" alone is no street line


def validate_street1(raw: str | None) -> str:
    """At least ``STREET_MIN_CHARS`` letters or digits (``street_too_short``: a house
    number and a street name, "A" alone is no street)."""
    text = clean_text(raw, "street1", STREET_MAX)
    if not any(c.isalnum() for c in text):
        raise FieldError("street1", "invalid")
    if sum(c.isalnum() for c in text) < STREET_MIN_CHARS:
        raise FieldError("street1", "street_too_short", min=STREET_MIN_CHARS)
    return text


def validate_street2(raw: str | None) -> str | None:
    """Apartment, suite, unit; optional (``None`` when skipped)."""
    if _is_skip(raw):
        return None
    text = clean_text(raw, "street2", STREET_MAX)
    if text.casefold() in _SKIP_WORDS:  # "Nóne" transliterates to a skip word
        return None
    if not any(c.isalnum() for c in text):
        raise FieldError("street2", "invalid")
    return text


def validate_city(raw: str | None) -> str:
    text = clean_text(raw, "city", CITY_MAX)
    if not any(c.isalpha() for c in text):
        raise FieldError("city", "invalid")
    return text


US_STATES: Mapping[str, str] = {
    "AL": "Alabama",
    "AK": "Alaska",
    "AZ": "Arizona",
    "AR": "Arkansas",
    "CA": "California",
    "CO": "Colorado",
    "CT": "Connecticut",
    "DE": "Delaware",
    "FL": "Florida",
    "GA": "Georgia",
    "HI": "Hawaii",
    "ID": "Idaho",
    "IL": "Illinois",
    "IN": "Indiana",
    "IA": "Iowa",
    "KS": "Kansas",
    "KY": "Kentucky",
    "LA": "Louisiana",
    "ME": "Maine",
    "MD": "Maryland",
    "MA": "Massachusetts",
    "MI": "Michigan",
    "MN": "Minnesota",
    "MS": "Mississippi",
    "MO": "Missouri",
    "MT": "Montana",
    "NE": "Nebraska",
    "NV": "Nevada",
    "NH": "New Hampshire",
    "NJ": "New Jersey",
    "NM": "New Mexico",
    "NY": "New York",
    "NC": "North Carolina",
    "ND": "North Dakota",
    "OH": "Ohio",
    "OK": "Oklahoma",
    "OR": "Oregon",
    "PA": "Pennsylvania",
    "RI": "Rhode Island",
    "SC": "South Carolina",
    "SD": "South Dakota",
    "TN": "Tennessee",
    "TX": "Texas",
    "UT": "Utah",
    "VT": "Vermont",
    "VA": "Virginia",
    "WA": "Washington",
    "WV": "West Virginia",
    "WI": "Wisconsin",
    "WY": "Wyoming",
    "DC": "District of Columbia",
    # Territories and freely associated states served by USPS as domestic mail.
    "PR": "Puerto Rico",
    "VI": "Virgin Islands",
    "GU": "Guam",
    "AS": "American Samoa",
    "MP": "Northern Mariana Islands",
    "FM": "Federated States of Micronesia",
    "MH": "Marshall Islands",
    "PW": "Palau",
    # Military (APO/FPO/DPO).
    "AA": "Armed Forces Americas",
    "AE": "Armed Forces Europe",
    "AP": "Armed Forces Pacific",
}
_STATE_ALIASES: Mapping[str, str] = {
    "Washington DC": "DC",
    "Washington D.C.": "DC",
    "Wash DC": "DC",
    "US Virgin Islands": "VI",
    "USVI": "VI",
    "Virgin Islands of the United States": "VI",
    "United States Virgin Islands": "VI",
    "CNMI": "MP",
    "Northern Marianas": "MP",
    "Commonwealth of the Northern Mariana Islands": "MP",
    "Micronesia": "FM",
    "Republic of Palau": "PW",
    "Armed Forces Africa": "AE",
    "Armed Forces Canada": "AE",
    "Armed Forces Middle East": "AE",
}


def _state_key(text: str) -> str:
    return "".join(c for c in text.casefold() if c.isalpha())


STATE_NAMES: Mapping[str, str] = {
    _state_key(name): code
    for name, code in [*((n, c) for c, n in US_STATES.items()), *_STATE_ALIASES.items()]
}


def validate_state(raw: str | None) -> str:
    """A USPS state code ("NY"), or a full name in any case ("new york", "D.C.") -> code."""
    try:
        text = clean_text(raw, "state", 60)
    except FieldError as error:
        if error.code == "required":
            raise
        raise FieldError("state", "invalid_state") from None
    key = _state_key(text)
    if len(key) == 2 and key.upper() in US_STATES:
        return key.upper()
    code = STATE_NAMES.get(key)
    if code is None:
        raise FieldError("state", "invalid_state")
    return code


_ZIP = re.compile(r"([0-9]{5})(?:\s*-\s*|\s)?([0-9]{4})?", re.ASCII)


def validate_zip(raw: str | None) -> str:
    """``12345``, ``12345-6789``, ``123456789`` or ``12345 6789`` -> ``12345`` / ``12345-6789``."""
    try:
        text = _to_ascii(scrub_text(raw, "postal_code", 10)) if isinstance(raw, str) else ""
    except FieldError:
        raise FieldError("postal_code", "invalid_zip") from None
    if not text:
        raise FieldError("postal_code", "required")
    match = _ZIP.fullmatch(text)
    if match is None or match.group(1) == "00000":
        raise FieldError("postal_code", "invalid_zip")
    zip5, plus4 = match.groups()
    if plus4 is None:
        if text != zip5:  # a separator with no +4 ("12345-")
            raise FieldError("postal_code", "invalid_zip")
        return zip5
    return f"{zip5}-{plus4}"


validate_postal_code = validate_zip


def validate_phone(raw: str | None) -> str | None:
    """Optional; a valid North American number in E.164 (``+12125550123``) or ``None``."""
    if _is_skip(raw):
        return None
    try:
        text = _to_ascii(scrub_text(raw or "", "phone", 32))
    except FieldError:
        raise FieldError("phone", "invalid_phone") from None
    if not text:
        return None
    if len(text) > 40 or not text.isascii():
        raise FieldError("phone", "invalid_phone")
    try:
        number = phonenumbers.parse(text, "US")
    except phonenumbers.NumberParseException:
        raise FieldError("phone", "invalid_phone") from None
    if number.country_code != 1 or not phonenumbers.is_valid_number(number):
        raise FieldError("phone", "invalid_phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def validate_template_name(raw: str | None) -> str:
    """A template name (any script, 1-32 characters; no control or bidi characters)."""
    if raw is None or not isinstance(raw, str):
        raise FieldError("template", "required")
    text = unicodedata.normalize("NFC", scrub_text(raw, "template", TEMPLATE_NAME_MAX))
    if not text:
        raise FieldError("template", "required")
    if len(text) > TEMPLATE_NAME_MAX:
        raise FieldError("template", "too_long", limit=TEMPLATE_NAME_MAX)
    return text


_VALIDATORS: Mapping[str, Callable[[str | None], str | None]] = {
    "name": validate_name,
    "street1": validate_street1,
    "street2": validate_street2,
    "city": validate_city,
    "state": validate_state,
    "postal_code": validate_zip,
    "phone": validate_phone,
}


def validate_field(field: str, raw: str | None) -> str | None:
    """Validates one ``ADDRESS_FIELDS`` value; ``None`` (skip) is accepted for skippable ones.

    An unknown ``field`` is a programming error (``KeyError``).
    """
    return _VALIDATORS[field](raw)


# -- parsing a pasted address -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedAddress:
    """What was understood from a pasted address.

    ``values`` holds validated, normalised fields; ``errors`` the fields found but invalid
    (key ``WHOLE_ADDRESS`` when the text as a whole was refused); ``raw`` what was
    extracted for each field before validation. Optional fields appear only when found.
    """

    values: Mapping[str, str] = field(default_factory=dict)
    errors: Mapping[str, FieldError] = field(default_factory=dict)
    raw: Mapping[str, str] = field(default_factory=dict)

    @property
    def missing(self) -> tuple[str, ...]:
        """Required fields neither understood nor found invalid, in ``ADDRESS_FIELDS`` order
        (none when the text as a whole was refused: that is the one thing to say)."""
        if WHOLE_ADDRESS in self.errors:
            return ()
        return tuple(f for f in REQUIRED_FIELDS if f not in self.values and f not in self.errors)

    @property
    def needs(self) -> tuple[str, ...]:
        """Fields the UI still has to ask: invalid or missing, in ``ADDRESS_FIELDS`` order."""
        return tuple(
            f
            for f in ADDRESS_FIELDS
            if f in self.errors or (f in REQUIRED_FIELDS and f not in self.values)
        )

    @property
    def is_complete(self) -> bool:
        return not self.errors and not self.missing

    def to_address(self) -> Address:
        """The ``Address``; raises the first ``FieldError`` (``required`` if missing)."""
        if WHOLE_ADDRESS in self.errors:
            raise self.errors[WHOLE_ADDRESS]
        for name in ADDRESS_FIELDS:
            if name in self.errors:
                raise self.errors[name]
            if name in REQUIRED_FIELDS and name not in self.values:
                raise FieldError(name, "required")
        return Address(
            name=self.values["name"],
            street1=self.values["street1"],
            street2=self.values.get("street2"),
            city=self.values["city"],
            state=self.values["state"],
            postal_code=self.values["postal_code"],
            phone=self.values.get("phone", ""),
        )


_STREET_LABELS = frozenset(
    {
        "AddressNumberPrefix",
        "AddressNumber",
        "AddressNumberSuffix",
        "StreetNamePreModifier",
        "StreetNamePreDirectional",
        "StreetNamePreType",
        "StreetName",
        "StreetNamePostType",
        "StreetNamePostDirectional",
        "USPSBoxType",
        "USPSBoxID",
        "USPSBoxGroupType",
        "USPSBoxGroupID",
        "IntersectionSeparator",
        "SecondStreetNamePreModifier",
        "SecondStreetNamePreDirectional",
        "SecondStreetNamePreType",
        "SecondStreetName",
        "SecondStreetNamePostType",
        "SecondStreetNamePostDirectional",
    }
)
_UNIT_LABELS = ("OccupancyType", "OccupancyIdentifier", "SubaddressType", "SubaddressIdentifier")
_PHONE_LINE = re.compile(
    r"(?:(?:tel|phone|ph|mob|mobile|cell|телефон|тел)\.?\s*:?\s*)?[+()0-9][0-9()+.\- ]{5,}",
    re.IGNORECASE,
)
_PHONE_LABEL_BEFORE = re.compile(
    r"(?:tel|phone|ph|mob|mobile|cell|телефон|тел)\.?\s*:?\s*$", re.IGNORECASE
)
_PHONE_LABEL_AFTER = re.compile(
    r"^(?:tel|phone|ph|mob|mobile|cell|телефон|тел)\.?\s*:?\s*", re.IGNORECASE
)
_STREET_START = re.compile(
    r"^\s*(?:[0-9]+[A-Za-z]?\b|p\.?\s*o\.?\s*box\b|(?:unit|psc|cmr)\s+[0-9])", re.IGNORECASE
)
_ZIP_ANYWHERE = re.compile(r"(?<![0-9])[0-9]{5}(?:-[0-9]{4})?(?![0-9])")
_ZIP_TAIL = re.compile(r"^(.*?)[\s,]*([0-9]{5}(?:\s*-\s*[0-9]{4})?)\s*$")


def _is_state(text: str) -> bool:
    key = _state_key(text)
    return (len(key) == 2 and key.upper() in US_STATES) or key in STATE_NAMES


def _state_before_zip(line: str) -> tuple[str, str] | None:
    """``("IL", "62704")`` from "... Springfield, IL 62704" (the longest state name wins)."""
    match = _ZIP_TAIL.match(line)
    if match is None:
        return None
    words = match.group(1).replace(",", " ").split()
    for size in range(min(6, len(words)), 0, -1):
        candidate = " ".join(words[-size:])
        if _is_state(candidate):
            return candidate, match.group(2)
    return None


def _segments(text: str) -> list[str]:
    lines = [line.strip(" ,;") for line in text.splitlines()]
    lines = [line for line in lines if line]
    if len(lines) > 1:
        return lines
    return [part.strip() for part in text.split(",") if part.strip()]


def _extract_phone(text: str) -> tuple[str | None, str]:
    """Finds a phone number anywhere; returns it and the text without it."""
    try:
        match = next(iter(phonenumbers.PhoneNumberMatcher(text, "US")), None)
    except Exception:  # a third-party parser must not break the conversation
        match = None
    if match is not None:
        before = _PHONE_LABEL_BEFORE.sub("", text[: match.start])
        return match.raw_string, before + " " + text[match.end :]
    # A line or comma part that is only a (possibly invalid) phone: keep it as the phone so
    # that the customer gets "invalid phone" instead of a mangled street.
    for part in _segments(text):
        if _PHONE_LINE.fullmatch(part) and sum(c.isdigit() for c in part) >= 7:
            if _ZIP_ANYWHERE.fullmatch(part.strip()):
                continue
            index = text.find(part)
            number = _PHONE_LABEL_AFTER.sub("", part).strip()
            return number, text[:index] + text[index + len(part) :]
    return None, text


Run = tuple[str, str, int]  # (usaddress label, text, index of the comma part)


def _runs(body: str) -> list[Run]:
    """``usaddress.tag`` as ordered runs of one label, each with its comma part.

    A ``RepeatedLabelError`` (a label in two places, e.g. "Floor 21" read as a second
    street name) is not fatal: its token list is used instead, run by run.
    """
    pairs: list[tuple[str, str]] = []
    try:
        tagged, _kind = usaddress.tag(body)
        pairs = [(str(label), str(value)) for label, value in tagged.items()]
    except usaddress.RepeatedLabelError as error:
        for token, label in error.parsed_string:
            token, label = str(token), str(label)
            if pairs and pairs[-1][0] == label and not pairs[-1][1].endswith((",", ";")):
                pairs[-1] = (label, f"{pairs[-1][1]} {token}")
            else:
                pairs.append((label, token))
    except Exception:  # usaddress must never break the conversation
        return []
    runs: list[Run] = []
    cursor = 0
    for label, value in pairs:
        text = " ".join(value.split()).strip(" ,;")
        if not text:
            continue
        position = body.find(text.split()[0], cursor)
        if position >= 0:
            cursor = position + len(text.split()[0])
        runs.append((label, text, body.count(",", 0, position if position >= 0 else cursor)))
    return runs


def _first(runs: list[Run], label: str) -> str | None:
    return next((text for run_label, text, _ in runs if run_label == label), None)


def _streets(runs: list[Run]) -> tuple[str | None, str | None]:
    """street1 and street2 (apartment, suite, unit, floor, building ...)."""
    street: list[str] = []
    unit: list[str] = []
    unit_parts: set[int] = set()
    for label, text, part in runs:
        if label in _UNIT_LABELS:
            unit.append(text)
            unit_parts.add(part)
        elif label in _STREET_LABELS:
            # After a unit word in the same part it is the unit's number ("Floor 21").
            (unit if part in unit_parts else street).append(text)
    if not unit and street:
        unit = [text for label, text, _ in runs if label == "BuildingName"][:1]
    street1 = " ".join(street) or None
    street2 = re.sub(r"#\s+", "#", " ".join(unit)) or None
    if street1 is None:  # military "Unit 2050 Box 4190", "PSC 1234 Box 5678": one line
        street1, street2 = street2, None
    return street1, street2


def _split(text: str) -> dict[str, str]:
    """Raw (unvalidated) field values found in ``text``."""
    found: dict[str, str] = {}
    phone, text = _extract_phone(text)
    if phone:
        found["phone"] = phone.strip()
    segments = _segments(text)
    # A first part with no digits followed by a house number / PO Box is the name.
    if (
        len(segments) >= 2
        and not any(c.isdigit() for c in segments[0])
        and _STREET_START.match(segments[1])
    ):
        found["name"] = segments[0]
        segments = segments[1:]
    body = ", ".join(segments)
    if not body:
        return found
    runs = _runs(body)
    recipient = _first(runs, "Recipient")
    if "name" not in found and recipient:
        found["name"] = recipient
    street1, street2 = _streets(runs)
    if street1:
        found["street1"] = street1
    if street2:
        found["street2"] = street2
    for field_name, label in (("city", "PlaceName"), ("state", "StateName")):
        value = _first(runs, label)
        if value:
            found[field_name] = value
    zip_code = _first(runs, "ZipCode")
    if zip_code:
        plus4 = _first(runs, "ZipPlus4")
        found["postal_code"] = f"{zip_code}-{plus4}" if plus4 else zip_code
    if "state" not in found or "postal_code" not in found:
        tail = _state_before_zip(segments[-1])
        if tail is not None:
            found.setdefault("state", tail[0])
            found.setdefault("postal_code", tail[1])
    return found


# -- addresses outside the US ------------------------------------------------------------

_COUNTRY_NAMES = frozenset((
    "germany", "deutschland", "united kingdom", "great britain", "england", "scotland",
    "wales", "northern ireland", "france", "canada", "mexico", "spain", "italy",
    "netherlands", "poland", "austria", "switzerland", "ukraine", "russia", "israel",
    "australia", "japan", "china", "india", "brazil",
    "германия", "великобритания", "англия", "франция", "канада", "украина", "россия",
    "німеччина", "велика британія", "англія", "франція", "україна",
))  # fmt: skip
# Codes only as a whole last line or comma part: "DE", "CA", "IN" are US states too.
_COUNTRY_CODES = frozenset({"uk", "u.k.", "gb", "gbr", "deu", "d", "fr", "fra", "ua", "ukr"})
# A UK postcode: "SW1A 1AA", "M1 1AE", "EC1A 1BB" (outward code, inward code).
_UK_POSTCODE = re.compile(r"(?<![A-Z0-9])[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}(?![A-Z0-9])")
# German (and most of Europe's) order: "Unter den Linden 5" then "10115 Berlin".
_POSTCODE_FIRST = re.compile(r"^[0-9]{4,5}\s+[^\W\d_][^\d]*$")
_NUMBER_LAST = re.compile(r"^[^\W\d_][^\d]*\s[0-9]+[a-z]?$", re.IGNORECASE)


def foreign_country(text: str) -> bool:
    """Whether a pasted address is plainly outside the US: a line (or comma part) that is
    a country name ("Germany", "Deutschland", "United Kingdom"; a whole part only, so
    "New Mexico" or "France Ave" are no countries), a country code as the last part ("UK",
    "GB"), a UK postcode ("SW1A 1AA"), or the European "street number" / "postcode city"
    order ("Unter den Linden 5", "10115 Berlin") with no US state before a ZIP."""
    if not isinstance(text, str):
        return False
    parts = _segments(text)
    folded = [" ".join(unicodedata.normalize("NFKC", p).casefold().split()) for p in parts]
    if not folded:
        return False
    if any(part.strip(".") in _COUNTRY_NAMES for part in folded):
        return True
    if folded[-1] in _COUNTRY_CODES:
        return True
    if any(_state_before_zip(part) is not None for part in parts):
        return False
    if any(_UK_POSTCODE.search(part.upper()) for part in parts[1:]):
        return True
    return any(_POSTCODE_FIRST.match(part) for part in parts) and any(
        _NUMBER_LAST.match(part) for part in parts
    )


def parse_address(text: str) -> ParsedAddress:
    """Splits a pasted address into fields; never raises.

    Accepts one line with commas or several lines; the name may be on its own first line
    and a phone number anywhere. Apartment/suite/unit goes to ``street2``.
    """
    if not isinstance(text, str) or not text.strip():
        return ParsedAddress()
    if len(text) > ADDRESS_MAX_CHARS:
        error = FieldError(WHOLE_ADDRESS, "too_long", limit=ADDRESS_MAX_CHARS)
        return ParsedAddress(errors={WHOLE_ADDRESS: error})
    for char in text:
        if char.isspace() or char in _STRIPPED:
            continue
        if unicodedata.category(char) in _REJECTED_CATEGORIES:
            return ParsedAddress(
                errors={WHOLE_ADDRESS: FieldError(WHOLE_ADDRESS, "invalid_characters")}
            )
    text = "".join(c for c in text if c not in _STRIPPED)
    if foreign_country(text):
        return ParsedAddress(errors={WHOLE_ADDRESS: FieldError(WHOLE_ADDRESS, "not_us")})
    raw = _split(text)
    values: dict[str, str] = {}
    errors: dict[str, FieldError] = {}
    for name in ADDRESS_FIELDS:
        if name not in raw:
            continue
        try:
            value = validate_field(name, raw[name])
        except FieldError as error:
            errors[name] = error
            continue
        if value is not None:
            values[name] = value
    return ParsedAddress(values=values, errors=errors, raw=raw)


def looks_like_full_address(text: str) -> bool:
    """Heuristic: does a message look like a whole pasted address (not a single field)?

    True when at least two of: several lines or >= 2 commas; a ZIP code; a state before
    the ZIP; a line starting with a house number. Text over ``ADDRESS_MAX_CHARS`` is not
    treated as an address (the field validator then answers ``too_long``).
    """
    if not isinstance(text, str) or len(text) > ADDRESS_MAX_CHARS:
        return False
    score = 0
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1 or text.count(",") >= 2:
        score += 1
    if _ZIP_ANYWHERE.search(text):
        score += 1
    if lines and _state_before_zip(lines[-1]) is not None:
        score += 1
    if any(_STREET_START.match(part) and re.search(r"[A-Za-z]", part) for part in _segments(text)):
        score += 1
    if score >= 1 and foreign_country(text):
        score += 1  # several parts and a country or postcode: an address, if not a US one
    return score >= 2


# -- carrier validation ("did you mean") ---------------------------------------------------

CHECKED_FIELDS: tuple[str, ...] = ("street1", "street2", "city", "state", "postal_code")


def _fold(value: object) -> str:
    return " ".join(str(value or "").split()).casefold()


def carrier_correction(typed: Mapping[str, object], matched: Address) -> dict[str, str | None]:
    """The fields the carrier's matched form changes, as the customer would store them
    (empty when it only differs in letter case or spacing, which is no correction).

    A matched value our own rules would refuse (too long, odd characters) is no
    suggestion either: the carrier's form must be one the customer could have typed."""
    suggested = {
        "street1": matched.street1,
        "street2": matched.street2,
        "city": matched.city,
        "state": matched.state,
        "postal_code": matched.postal_code,
    }
    changed: dict[str, str | None] = {}
    for name in CHECKED_FIELDS:
        if _fold(typed.get(name)) == _fold(suggested[name]):
            continue
        if name == "street2" and not suggested[name]:
            continue  # the carrier dropped a line: keep the customer's
        try:
            changed[name] = validate_field(name, suggested[name])
        except FieldError:
            return {}
    return changed
