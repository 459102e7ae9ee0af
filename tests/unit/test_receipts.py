"""The receipt rendered without a bot, from sample orders, in every language."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
from bson import ObjectId

from bot.i18n import I18n
from bot.receipts import fits_caption, render_receipt, visible_length
from services.receipts import margin_cents, receipt_of, service_label, short_order_id

LANGUAGES = ("en", "ru", "uk")
ORDER_ID = ObjectId("6b106073b48ac0705d580806")
# English words of the receipt that a translation must not keep.
ENGLISH = r"Receipt|Service:|Tracking|Total|Insurance|Postage|Purchased|Balance|Refunded"
BOUGHT = datetime(2026, 9, 28, 16, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def i18n() -> I18n:
    return I18n.load(LANGUAGES)


def _order(**fields: object) -> dict[str, object]:
    order: dict[str, object] = {
        "_id": ORDER_ID,
        "status": "purchased",
        "rate": {"carrier": "USPS", "service": "USPS Ground Advantage"},
        "tracking_number": "9400147584243098853185",
        "price_cents": 1033,
        "carrier_cost_cents": 782,
        "purchased_at": BOUGHT,
    }
    order.update(fields)
    return order


FULL = _order(
    rate={"carrier": "United Parcel Service", "service": "UPS® Ground Saver Residential"},
    price_cents=1_234_567,
    insured_value_cents=500_000,
    insurance_price_cents=6_550,
    confirmation="adult_signature",
    confirmation_price_cents=925,
    status="refunded",
)


def _assert_clean(i18n: I18n, lang: str, text: str) -> None:
    assert "  " not in text, text
    assert " \n" not in text and "\n " not in text, text
    assert "{" not in text and "}" not in text, text
    # No message id left untranslated (a key looks like "receipt.total").
    assert not re.search(r"\b(receipt|labels|order)\.[a-z_]+", text), text
    if lang != "en":
        assert not re.search(ENGLISH, text), text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_plain_receipt_has_the_essentials_and_no_empty_lines(i18n: I18n, lang: str) -> None:
    text = render_receipt(i18n, lang, receipt_of(_order(), balance_after_cents=8967))
    _assert_clean(i18n, lang, text)
    lines = text.splitlines()
    assert len(lines) == 6  # title, service, tracking, total, date, balance
    assert "5D580806" in lines[0]
    assert lines[1].endswith(": USPS Ground Advantage")  # the carrier not repeated
    assert "9400147584243098853185" in lines[2]
    assert i18n.money(lang, 1033) in lines[3]
    assert i18n.date(lang, date(2026, 9, 28)) in lines[4] and "UTC" in lines[4]
    assert i18n.money(lang, 8967) in lines[5]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_full_receipt_shows_insurance_confirmation_and_postage(i18n: I18n, lang: str) -> None:
    text = render_receipt(i18n, lang, receipt_of(FULL))
    _assert_clean(i18n, lang, text)
    money = i18n.money
    assert money(lang, 500_000) in text and money(lang, 6_550) in text  # value, insurance
    assert money(lang, 925) in text  # adult signature
    assert money(lang, 1_234_567 - 6_550 - 925) in text  # postage alone
    assert money(lang, 1_234_567) in text  # total
    assert i18n.t(lang, "receipt.refunded") in text
    assert "United Parcel Service UPS® Ground Saver Residential" in text
    # What the purchase sends: head, receipt, refund window, within a caption's limit.
    caption = "\n".join(
        [
            i18n.t(lang, "receipt.bought"),
            render_receipt(i18n, lang, receipt_of(FULL, balance_after_cents=99_999_999)),
            i18n.t(
                lang,
                "refund.window_from",
                first_day=i18n.date(lang, date(2026, 9, 30)),
                last_day=i18n.date(lang, date(2026, 10, 25)),
            ),
        ]
    )
    assert fits_caption(caption), visible_length(caption)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_confirmation_without_a_price_says_included(i18n: I18n, lang: str) -> None:
    text = render_receipt(i18n, lang, receipt_of(_order(confirmation="signature")))
    _assert_clean(i18n, lang, text)
    assert i18n.t(lang, "receipt.confirmation.signature", price=i18n.t(lang, "receipt.included"))
    assert i18n.t(lang, "receipt.included") in text
    # "none", unknown kinds and zero amounts leave their lines out.
    for extra in (
        {"confirmation": "none", "confirmation_price_cents": 300},
        {"confirmation": "carrier_default"},
        {"insured_value_cents": 0, "insurance_price_cents": 0},
    ):
        plain = render_receipt(i18n, lang, receipt_of(_order(**extra)))
        assert len(plain.splitlines()) == 5, plain


def test_service_label_never_doubles_spaces() -> None:
    assert service_label({"carrier": "", "service": "Ground Advantage"}) == "Ground Advantage"
    assert service_label({"carrier": "UPS", "service": ""}) == "UPS"
    assert service_label({"carrier": "USPS", "service": "USPS Priority"}) == "USPS Priority"
    assert service_label({"carrier": "FedEx ", "service": " Ground"}) == "FedEx Ground"
    assert service_label({}) == ""


def test_receipt_without_service_or_tracking_leaves_the_lines_out(i18n: I18n) -> None:
    text = render_receipt(i18n, "en", receipt_of(_order(rate={}, tracking_number=None)))
    assert "Service" not in text and "Tracking" not in text and "  " not in text


def test_short_id_and_margin() -> None:
    assert short_order_id(ORDER_ID) == "5D580806"
    assert margin_cents(_order()) == 1033 - 782
    assert margin_cents(_order(carrier_cost_cents=None)) is None
