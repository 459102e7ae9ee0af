"""Every top-up, balance and payment screen renders from sample data, without a bot, in
en, ru and uk: within Telegram's limits, no double spaces, no untranslated keys, every
button's callback data within 64 bytes."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from bot.i18n import I18n
from services.balance import HistoryPage
from storage.ledger import LedgerEntry
from views.screen import CAPTION_LIMIT, TEXT_LIMIT, Screen
from views.screens import balance, order, topup
from views.translator import Translator

LANGUAGES = ("en", "ru", "uk")
WHEN = datetime(2026, 12, 2, 18, 30, tzinfo=UTC)
PAYMENT = "65a1b2c3d4e5f60718293a4b"
INVOICE = topup.Invoice(PAYMENT, 2500, "https://pay.example/abc", WHEN)
METHODS = [topup.Method("card"), topup.Method("crypto"), topup.Method("stars", 1250)]
_KEY = re.compile(r"\b[a-z_]+(\.[a-z_]+){1,}\b")  # a catalog key left in the text


def _entry(n: int, cents: int, kind: str) -> LedgerEntry:
    return LedgerEntry(
        key=f"k{n}", user_id=1, amount_cents=cents, kind=kind, seq=n, created_at=WHEN, meta={}
    )


HISTORY = HistoryPage(
    [_entry(1, 2500, "topup"), _entry(2, -902, "label"), _entry(3, 902, "refund")], 2, 3
)

SCREENS: dict[str, Callable[[Translator], Screen]] = {
    "unavailable": lambda tr: topup.unavailable(tr, "@support"),
    "terms": lambda tr: topup.terms(tr, "2025-01", again=False),
    "terms_again": lambda tr: topup.terms(tr, "2025-01", again=True),
    "terms_accepted": lambda tr: topup.terms_accepted(tr, "2025-01"),
    "amount_prompt": lambda tr: topup.amount_prompt(tr, 1000, 100_000, [1000, 2500, 5000]),
    "amount_prompt_plain": lambda tr: topup.amount_prompt(tr, 1000, 100_000),
    **{
        f"amount_error_{code}": (lambda c: lambda tr: topup.amount_error(tr, c, 1000, 100_000))(
            code
        )
        for code in (
            "not_a_number", "negative", "too_many_decimals", "too_small", "too_large", "use_dot"
        )
    },
    "amount_expected": topup.amount_expected,
    "method_choice": lambda tr: topup.method_choice(tr, 2500, METHODS),
    "method_off": topup.method_off,
    "provider_unavailable": topup.provider_unavailable,
    "pending_exists": lambda tr: topup.pending_exists(tr, INVOICE),
    "crypto_invoice": lambda tr: topup.crypto_invoice(tr, INVOICE, back_to_order=True),
    "crypto_invoice_no_link": lambda tr: topup.crypto_invoice(
        tr, topup.Invoice(PAYMENT, 2500, None, None), back_to_order=False
    ),
    "card_sent": lambda tr: topup.telegram_invoice_sent(tr, INVOICE, "card", back_to_order=True),
    "stars_sent": lambda tr: topup.telegram_invoice_sent(
        tr, INVOICE, "stars", back_to_order=False
    ),
    "cancelled": topup.cancelled,
    "credited": lambda tr: topup.credited(tr, 2500, 3402, back_to_order=True),
    "credited_plain": lambda tr: topup.credited(tr, 2500, 3402),
    **{
        f"invoice_{outcome}": (lambda o: lambda tr: Screen(topup.invoice_status(tr, 2500, o)))(
            outcome
        )
        for outcome in ("paid", "expired", "cancelled")
    },
    "cancel_failed": lambda tr: Screen(topup.cancel_failed(tr)),
    "balance": lambda tr: balance.balance(
        tr, 3402, balance.Pending(2500, "oxapay", WHEN), HISTORY
    ),
    "balance_empty": lambda tr: balance.balance(tr, 0, None, HistoryPage([], 1, 1)),
    "order_insufficient": lambda tr: order.insufficient(tr, 98, 902, 1000),
}


@pytest.fixture(scope="module")
def catalogs() -> I18n:
    return I18n.load(LANGUAGES)


def strict(i18n: I18n, lang: str) -> Translator:
    """Only this language's catalog: a key it lacks raises instead of falling back."""
    return Translator(I18n({lang: i18n.catalogs[lang]}, default=lang), lang)


def _callback_data(screen: Screen) -> list[str]:
    if screen.markup is None:
        return []
    return [
        str(b.callback_data)
        for row in screen.markup.inline_keyboard
        for b in row
        if b.callback_data is not None
    ]


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", sorted(SCREENS))
def test_screen_renders(catalogs: I18n, lang: str, name: str) -> None:
    screen = SCREENS[name](strict(catalogs, lang))
    assert screen.text.strip()
    assert len(screen.text) <= TEXT_LIMIT
    assert "  " not in screen.text, screen.text
    assert "{" not in screen.text and "}" not in screen.text  # every placeholder filled
    plain = re.sub(r"<[^>]+>", "", screen.text)
    keys = catalogs.catalogs["en"].messages.keys()
    assert not [w.group() for w in _KEY.finditer(plain) if w.group() in keys], plain
    for data in _callback_data(screen):
        assert 1 <= len(data.encode()) <= 64
    if screen.markup is not None:
        for row in screen.markup.inline_keyboard:
            for button in row:
                assert button.text.strip() and "  " not in button.text
                assert button.text not in keys, button.text


@pytest.mark.parametrize("lang", ("ru", "uk"))
def test_screens_are_translated(catalogs: I18n, lang: str) -> None:
    """ru and uk are not the English text (money and links aside)."""
    english = strict(catalogs, "en")
    other = strict(catalogs, lang)
    same = [name for name, build in SCREENS.items() if build(english).text == build(other).text]
    assert same == [], same


def test_invoice_texts_fit_telegram(catalogs: I18n) -> None:
    for lang in LANGUAGES:
        tr = strict(catalogs, lang)
        for title, description in (
            topup.card_invoice_texts(tr, 100_000),
            topup.stars_invoice_texts(tr, 100_000),
        ):
            assert 1 <= len(title) <= 32 and 1 <= len(description) <= 255
            assert len(description) <= CAPTION_LIMIT


def test_ready_amounts_lead_with_what_the_order_needs(catalogs: I18n) -> None:
    screen = topup.amount_prompt(strict(catalogs, "en"), 1000, 100_000, [1100, 2500, 5000])
    assert _callback_data(screen) == [
        "topup:amount:1100", "topup:amount:2500", "topup:amount:5000", "topup:cancel"
    ]


def test_balance_pager(catalogs: I18n) -> None:
    screen = SCREENS["balance"](strict(catalogs, "en"))
    assert _callback_data(screen) == ["bal:page:1", "bal:page:3", "menu:topup", "menu:main"]
    single = SCREENS["balance_empty"](strict(catalogs, "en"))
    assert _callback_data(single) == ["menu:topup", "menu:main"]
