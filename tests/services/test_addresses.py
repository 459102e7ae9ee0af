"""Address field validators and the pasted-address parser (table tests)."""

from __future__ import annotations

import pytest

from models.shipping import Address
from services import addresses
from services.addresses import (
    ADDRESS_FIELDS,
    REQUIRED_FIELDS,
    SKIPPABLE_FIELDS,
    WHOLE_ADDRESS,
    FieldError,
    looks_like_full_address,
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
from services.orders import validate_address_option

HOSTILE = [
    ("<b>x</b>", "invalid_characters"),
    ("John {Smith}", "invalid_characters"),
    ("John \U0001f600", "invalid_characters"),
    ("\u202eJohn", "invalid_characters"),
    ("Jo\u2066hn", "invalid_characters"),
    ("Jo\x00hn", "invalid_characters"),
    ("Jo\x1bhn", "invalid_characters"),
    ("Jo\x85hn Smith", None),  # NEL is whitespace: collapses to a space
    ("Иван Петров", "invalid_characters"),
    ("J" * 5000, "too_long"),
    ("", "required"),
    ("   \t\n ", "required"),
]


def test_field_order_and_skippable() -> None:
    assert ADDRESS_FIELDS == (
        "name",
        "street1",
        "street2",
        "city",
        "state",
        "postal_code",
        "phone",
    )
    assert sorted(SKIPPABLE_FIELDS) == ["phone", "street2"]
    assert REQUIRED_FIELDS == ("name", "street1", "city", "state", "postal_code")
    assert addresses.step_of("name") == 1 and addresses.step_of("phone") == 7


def test_field_error_shape() -> None:
    error = FieldError("name", "too_long", limit=35)
    assert isinstance(error, ValueError)
    assert (error.field, error.code, error.params) == ("name", "too_long", {"limit": 35})
    assert error == FieldError("name", "too_long", limit=35)
    assert "too_long" in repr(error)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("John Smith", "John Smith"),
        ("  John \t  Smith  ", "John Smith"),
        ("José Müller", "Jose Muller"),
        ("Zoë O’Brien-Łukasz", "Zoe O'Brien-Lukasz"),
        ("Jürgen Straße", "Jurgen Strasse"),
        ("Anne & Bob (c/o Acme)", "Anne & Bob (c/o Acme)"),
        ("John\u200bSmith", "JohnSmith"),  # zero-width space is stripped
        ("\ufeffJane", "Jane"),
        ("Ｊａｎｅ", "Jane"),  # fullwidth -> ASCII
        ("A" * 35, "A" * 35),
    ],
)
def test_name_valid(raw: str, expected: str) -> None:
    assert validate_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code", "params"),
    [
        *((raw, code, {}) for raw, code in HOSTILE if code and code != "too_long"),
        ("J" * 5000, "too_long", {"limit": 35}),
        ("A" * 36, "too_long", {"limit": 35}),
        ("A" * 201, "too_long", {"limit": 35}),
        ("12345", "name_letters", {}),
        ("...", "name_letters", {}),
        ("john@example.com", "invalid_characters", {}),
        ("a; DROP TABLE", "invalid_characters", {}),
        ('"quoted"', "invalid_characters", {}),
        (None, "required", {}),
    ],
)
def test_name_invalid(raw: str | None, code: str, params: dict[str, object]) -> None:
    with pytest.raises(FieldError) as info:
        validate_name(raw)
    assert (info.value.field, info.value.code, info.value.params) == ("name", code, params)


def test_nel_is_whitespace() -> None:
    assert validate_name("Jo\x85hn Smith") == "Jo hn Smith"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("123 Main St", "123 Main St"),
        ("500  W 5th   Ave", "500 W 5th Ave"),
        ("1600 Pennsylvania Ave NW", "1600 Pennsylvania Ave NW"),
        ("PO Box 123", "PO Box 123"),
        ("12 Rue Élysée", "12 Rue Elysee"),
        ("221B Baker St #4", "221B Baker St #4"),
        ("12 1/2 Oak St", "12 1/2 Oak St"),
    ],
)
def test_street1_valid(raw: str, expected: str) -> None:
    assert validate_street1(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("<script>alert(1)</script>", "invalid_characters"),
        ("123 Main St \U0001f3e0", "invalid_characters"),
        ("123 Main St\u202e", "invalid_characters"),
        ("1 " + "x" * 40, "too_long"),
        ("", "required"),
        ("---", "invalid"),
        ("123\x00 Main", "invalid_characters"),
    ],
)
def test_street1_invalid(raw: str, code: str) -> None:
    with pytest.raises(FieldError) as info:
        validate_street1(raw)
    assert (info.value.field, info.value.code) == ("street1", code)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("-", None),
        ("none", None),
        ("N/A", None),
        ("Nóne", None),
        ("нет", None),
        ("Apt 4", "Apt 4"),
        ("Suite  200", "Suite 200"),
        ("#4B", "#4B"),
    ],
)
def test_street2(raw: str | None, expected: str | None) -> None:
    assert validate_street2(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("Apt <4>", "invalid_characters"),
        ("A" * 36, "too_long"),
        ("Apt\u202e4", "invalid_characters"),
    ],
)
def test_street2_invalid(raw: str, code: str) -> None:
    with pytest.raises(FieldError) as info:
        validate_street2(raw)
    assert (info.value.field, info.value.code) == ("street2", code)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Springfield", "Springfield"),
        ("St. Louis", "St. Louis"),
        ("Coeur d'Alene", "Coeur d'Alene"),
        ("Winston-Salem", "Winston-Salem"),
        ("Cañon City", "Canon City"),
        ("A" * 30, "A" * 30),
    ],
)
def test_city_valid(raw: str, expected: str) -> None:
    assert validate_city(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code", "params"),
    [
        ("A" * 31, "too_long", {"limit": 30}),
        ("12345", "invalid", {}),
        ("Нью-Йорк", "invalid_characters", {}),
        ("", "required", {}),
    ],
)
def test_city_invalid(raw: str, code: str, params: dict[str, object]) -> None:
    with pytest.raises(FieldError) as info:
        validate_city(raw)
    assert (info.value.field, info.value.code, info.value.params) == ("city", code, params)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("NY", "NY"),
        ("ny", "NY"),
        (" il ", "IL"),
        ("new york", "NY"),
        ("NEW   YORK", "NY"),
        ("New-York", "NY"),
        ("N.Y.", "NY"),
        ("California", "CA"),
        ("west virginia", "WV"),
        ("Washington", "WA"),
        ("Washington DC", "DC"),
        ("Washington, D.C.", "DC"),
        ("D.C.", "DC"),
        ("District of Columbia", "DC"),
        ("district  of columbia", "DC"),
        ("PR", "PR"),
        ("Puerto Rico", "PR"),
        ("VI", "VI"),
        ("U.S. Virgin Islands", "VI"),
        ("GU", "GU"),
        ("American Samoa", "AS"),
        ("Northern Mariana Islands", "MP"),
        ("AA", "AA"),
        ("AE", "AE"),
        ("ap", "AP"),
        ("Armed Forces Pacific", "AP"),
    ],
)
def test_state_valid(raw: str, expected: str) -> None:
    assert validate_state(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("XX", "invalid_state"),
        ("Ontario", "invalid_state"),
        ("N", "invalid_state"),
        ("New Yrok", "invalid_state"),
        ("<b>NY</b>", "invalid_state"),
        ("NY\u202e", "invalid_state"),
        ("N" * 5000, "invalid_state"),
        ("", "required"),
        (None, "required"),
    ],
)
def test_state_invalid(raw: str | None, code: str) -> None:
    with pytest.raises(FieldError) as info:
        validate_state(raw)
    assert (info.value.field, info.value.code) == ("state", code)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("62704", "62704"),
        (" 10001 ", "10001"),
        ("12345-6789", "12345-6789"),
        ("123456789", "12345-6789"),
        ("12345 6789", "12345-6789"),
        ("12345 - 6789", "12345-6789"),
        ("12345–6789", "12345-6789"),  # en dash
        ("００５０１", "00501"),  # fullwidth digits
    ],
)
def test_zip_valid(raw: str, expected: str) -> None:
    assert validate_zip(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("1234", "invalid_zip"),
        ("123456", "invalid_zip"),
        ("12345-", "invalid_zip"),
        ("12345-678", "invalid_zip"),
        ("1234567890", "invalid_zip"),
        ("00000", "invalid_zip"),
        ("ABCDE", "invalid_zip"),
        ("١٢٣٤٥", "invalid_zip"),  # Arabic-Indic digits are not ZIP digits
        ("12345\x00", "invalid_zip"),
        ("1" * 5000, "invalid_zip"),
        ("", "required"),
    ],
)
def test_zip_invalid(raw: str, code: str) -> None:
    with pytest.raises(FieldError) as info:
        validate_zip(raw)
    assert (info.value.field, info.value.code) == ("postal_code", code)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("(212) 555-0123", "+12125550123"),
        ("212-555-0123", "+12125550123"),
        ("212.555.0123", "+12125550123"),
        ("+1 212 555 0123", "+12125550123"),
        ("1 (212) 555-0123", "+12125550123"),
        ("2125550123", "+12125550123"),
        ("+12125550123", "+12125550123"),
        ("212-555-0123 ext 45", "+12125550123"),
        (None, None),
        ("", None),
        ("-", None),
        ("skip", None),
    ],
)
def test_phone_valid(raw: str | None, expected: str | None) -> None:
    assert validate_phone(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "555-0123",  # no area code
        "123",
        "+44 20 7946 0958",  # valid, but not North American
        "(000) 555-0123",
        "call me",
        "212\u202e5550123",
        "2" * 5000,
        "<b>2125550123</b>",
    ],
)
def test_phone_invalid(raw: str) -> None:
    with pytest.raises(FieldError) as info:
        validate_phone(raw)
    assert (info.value.field, info.value.code, info.value.params) == ("phone", "invalid_phone", {})


def test_validate_field_dispatch() -> None:
    assert validate_field("state", "texas") == "TX"
    assert validate_field("postal_code", "123456789") == "12345-6789"
    assert validate_field("street2", None) is None
    assert validate_field("phone", None) is None
    with pytest.raises(FieldError) as info:
        validate_field("name", None)
    assert info.value.code == "required"
    with pytest.raises(KeyError):
        validate_field("nope", "x")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Home", "Home"), ("  Дом  мамы ", "Дом мамы"), ("Office 🏢", "Office 🏢")],
)
def test_template_name_valid(raw: str, expected: str) -> None:
    assert validate_template_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", "required"),
        ("x" * 33, "too_long"),
        ("Home\u202e", "invalid_characters"),
        ("a\x00", "invalid_characters"),
    ],
)
def test_template_name_invalid(raw: str, code: str) -> None:
    with pytest.raises(FieldError) as info:
        validate_template_name(raw)
    assert (info.value.field, info.value.code) == ("template", code)


# -- parse_address ----------------------------------------------------------------------


def test_parse_one_line_with_commas() -> None:
    parsed = parse_address("John Smith, 123 Main St Apt 4, Springfield, IL 62704")
    assert dict(parsed.values) == {
        "name": "John Smith",
        "street1": "123 Main St",
        "street2": "Apt 4",
        "city": "Springfield",
        "state": "IL",
        "postal_code": "62704",
    }
    assert parsed.errors == {} and parsed.missing == () and parsed.is_complete
    assert parsed.to_address() == Address(
        name="John Smith",
        street1="123 Main St",
        street2="Apt 4",
        city="Springfield",
        state="IL",
        postal_code="62704",
    )


def test_parse_several_lines_with_phone() -> None:
    parsed = parse_address("Jane Doe\n500 W 5th Ave Suite 200\nNew York, NY 10001\n(212) 555-0123")
    assert dict(parsed.values) == {
        "name": "Jane Doe",
        "street1": "500 W 5th Ave",
        "street2": "Suite 200",
        "city": "New York",
        "state": "NY",
        "postal_code": "10001",
        "phone": "+12125550123",
    }
    address = parsed.to_address()
    assert address.phone == "+12125550123" and address.street2 == "Suite 200"


def test_parse_without_name() -> None:
    parsed = parse_address("1600 Pennsylvania Ave NW, Washington, DC 20500")
    assert dict(parsed.values) == {
        "street1": "1600 Pennsylvania Ave NW",
        "city": "Washington",
        "state": "DC",
        "postal_code": "20500",
    }
    assert parsed.missing == ("name",)
    assert parsed.needs == ("name",)
    assert not parsed.is_complete
    with pytest.raises(FieldError) as info:
        parsed.to_address()
    assert (info.value.field, info.value.code) == ("name", "required")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "John Smith 123 Main St Springfield IL 62704",
            {"name": "John Smith", "street1": "123 Main St", "city": "Springfield"},
        ),
        (
            "PO Box 123, Austin, TX 78701-1234",
            {"street1": "PO Box 123", "state": "TX", "postal_code": "78701-1234"},
        ),
        (
            "José Müller\n12 Straße Rd\nMiami FL 33101",
            {"name": "Jose Muller", "street1": "12 Strasse Rd", "city": "Miami"},
        ),
        (
            "Bob, 1 Elm St, Unit 5, Salt Lake City, UT 84101, +1 801 555 1234",
            {
                "name": "Bob",
                "street2": "Unit 5",
                "city": "Salt Lake City",
                "phone": "+18015551234",
            },
        ),
        (
            "Jane Doe, 500 W 5th Ave, New York, New York 10001-1234",
            {"state": "NY", "postal_code": "10001-1234"},
        ),
        (
            "123 Main St Apt 4B, Los Angeles, California 90001",
            {"street2": "Apt 4B", "city": "Los Angeles", "state": "CA"},
        ),
    ],
)
def test_parse_variants(text: str, expected: dict[str, str]) -> None:
    parsed = parse_address(text)
    assert {key: parsed.values.get(key) for key in expected} == expected


def test_parse_reports_invalid_fields_and_keeps_the_rest() -> None:
    parsed = parse_address("😀 Smith, 123 Main St, Austin, XX 78701, phone: 555-0123")
    assert parsed.errors["name"].code == "invalid_characters"
    assert parsed.errors["phone"].code == "invalid_phone"
    assert parsed.values["street1"] == "123 Main St"
    assert parsed.values["postal_code"] == "78701"
    assert "name" in parsed.needs and "phone" in parsed.needs
    with pytest.raises(FieldError) as info:
        parsed.to_address()
    assert info.value.field == "name"


def test_parse_html_in_a_field() -> None:
    parsed = parse_address("John <b>Smith</b>, 123 Main St, Austin, TX 78701")
    assert "name" not in parsed.values
    assert all(not set(v) & set("<>") for v in parsed.values.values())


@pytest.mark.parametrize(
    "text",
    ["hello world this is garbage", "", "   ", ",,,,", "12345", "<b>x</b>", "🙂🙂🙂", "\n\n"],
)
def test_parse_garbage_is_mostly_missing(text: str) -> None:
    parsed = parse_address(text)
    assert len(parsed.missing) + len(parsed.errors) >= 4
    assert not parsed.is_complete


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("1" * 5000, "too_long"),
        ("John Smith, 123 Main St, Austin, TX 78701 " * 200, "too_long"),
        ("John\u202e Smith, 123 Main St, Austin, TX 78701", "invalid_characters"),
        ("John\x00 Smith, 123 Main St, Austin, TX 78701", "invalid_characters"),
    ],
)
def test_parse_refuses_hostile_text_as_a_whole(text: str, code: str) -> None:
    parsed = parse_address(text)
    assert parsed.errors[WHOLE_ADDRESS].code == code
    assert parsed.values == {}
    with pytest.raises(FieldError):
        parsed.to_address()


def test_parse_strips_zero_width_characters() -> None:
    parsed = parse_address("John\u200b Smith, 123 Main St, Austin, TX 78701")
    assert parsed.values["name"] == "John Smith"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("John Smith, 123 Main St Apt 4, Springfield, IL 62704", True),
        ("Jane Doe\n500 W 5th Ave\nNew York, NY 10001", True),
        ("Washington, DC 20500", True),
        ("123 Main St, Austin TX 78701", True),
        ("John Smith", False),
        ("Smith, John", False),
        ("123 Main St", False),
        ("62704", False),
        ("Apt 4", False),
        ("x" * 5000, False),
    ],
)
def test_looks_like_full_address(text: str, expected: bool) -> None:
    assert looks_like_full_address(text) is expected


# -- the carrier's correction ----------------------------------------------------------


def _matched(**changes: object) -> Address:
    fields: dict[str, object] = {
        "name": "John Smith",
        "street1": "123 MAIN ST",
        "city": "SPRINGFIELD",
        "state": "IL",
        "postal_code": "62704-1234",
        "residential": True,
    }
    fields.update(changes)
    return Address(**fields)  # type: ignore[arg-type]


TYPED_ADDRESS = {
    "name": "John Smith",
    "street1": "123 Main Street",
    "street2": "Apt 4",
    "city": "Springfield",
    "state": "IL",
    "postal_code": "62704",
}


def test_carrier_correction_lists_real_changes_only() -> None:
    assert addresses.carrier_correction(TYPED_ADDRESS, _matched()) == {
        "street1": "123 MAIN ST",
        "postal_code": "62704-1234",
    }  # the city differs in case only; the dropped line 2 stays the customer's
    same = {**TYPED_ADDRESS, "street1": "123 main st", "postal_code": "62704-1234"}
    assert addresses.carrier_correction(same, _matched()) == {}


def test_a_carrier_form_our_rules_refuse_is_no_suggestion() -> None:
    assert addresses.carrier_correction(TYPED_ADDRESS, _matched(street1="1" * 40)) == {}
    assert addresses.carrier_correction(TYPED_ADDRESS, _matched(street1="123 Main St <b>")) == {}
    assert addresses.carrier_correction(TYPED_ADDRESS, _matched(postal_code="6270")) == {}


def test_validate_and_clean_only_when_a_correction_was_accepted_and_none_kept() -> None:
    def draft(sender: str | None, recipient: str | None) -> dict[str, object]:
        return {
            "from_validation": {"decision": sender},
            "to_validation": {"decision": recipient},
        }

    assert validate_address_option(draft(None, "accepted")) == "validate_and_clean"
    assert validate_address_option(draft("accepted", "accepted")) == "validate_and_clean"
    assert validate_address_option(draft("kept", "accepted")) == "no_validation"
    assert validate_address_option(draft(None, None)) == "no_validation"
    assert validate_address_option({}) == "no_validation"


@pytest.mark.parametrize(
    "text",
    [
        "Hans Müller\nUnter den Linden 5\n10115 Berlin\nDeutschland",
        "Hans Müller, Unter den Linden 5, 10115 Berlin",
        "John Smith\n10 Downing Street\nLondon SW1A 2AA",
        "John Smith, 10 Downing Street, London, UK",
        "Jane Roe, 1 Rue de Rivoli, 75001 Paris, France",
    ],
)
def test_addresses_outside_the_us_are_refused_as_such(text: str) -> None:
    assert addresses.foreign_country(text)
    parsed = addresses.parse_address(text)
    assert parsed.errors == {
        addresses.WHOLE_ADDRESS: FieldError(addresses.WHOLE_ADDRESS, "not_us")
    }


@pytest.mark.parametrize(
    "text",
    [
        "Jane Doe\n500 W 5th Ave Suite 200\nNew York, NY 10001",
        "John Smith, 12345 Broadway Apt 4, Springfield, IL 62704",
        "Bob Roe, 1 Paris Rd, Paris, TX 75460",
        "Jo Roe, 5 France Ave, Santa Fe, New Mexico 87501",
        "Jo Roe, 5 Main St, Dover, DE 19901",
    ],
)
def test_us_addresses_with_foreign_looking_words_stay_us(text: str) -> None:
    assert not addresses.foreign_country(text)


@pytest.mark.parametrize("street", ["A", "12", "A-"])
def test_a_street_of_a_letter_or_two_is_too_short(street: str) -> None:
    with pytest.raises(FieldError) as caught:
        addresses.validate_street1(street)
    assert caught.value.code == "street_too_short"
