"""Top-up screens: terms, amount, method, invoice, and the messages after it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from telegram import InlineKeyboardButton

from views.callbacks import (
    CancelInvoice,
    LegalShow,
    OrderSummary,
    TopUpAmount,
    TopUpCancel,
    TopUpMethod,
    TopUpTerms,
)
from views.keyboards import AnyButton, keyboard
from views.screen import Screen
from views.translator import Translator


@dataclass(frozen=True)
class Invoice:
    """What an invoice screen shows of a payment."""

    payment_id: str
    amount_cents: int
    payment_url: str | None = None
    expires_at: datetime | None = None


def _cancel(tr: Translator) -> list[AnyButton]:
    return [(tr.t("common.cancel"), TopUpCancel())]


def _back_to_order(tr: Translator) -> list[AnyButton]:
    return [(tr.t("order.back_to_summary"), OrderSummary())]


def unavailable(tr: Translator, support: str) -> Screen:
    return Screen(tr.t("topup.unavailable", support=support))


def terms(tr: Translator, version: str, *, again: bool) -> Screen:
    text = tr.t("legal.accept.ask_again" if again else "legal.accept.ask", version=version)
    return Screen(
        text,
        keyboard(
            [
                [(tr.t("legal.accept.button"), TopUpTerms(version))],
                [(tr.t("legal.accept.read_button"), LegalShow("terms"))],
                _cancel(tr),
            ]
        ),
    )


def terms_accepted(tr: Translator, version: str) -> Screen:
    return Screen(tr.t("legal.accept.done", version=version))


def _limits(tr: Translator, min_cents: int, max_cents: int) -> dict[str, str]:
    return {"min": tr.money(min_cents), "max": tr.money(max_cents)}


def amount_prompt(
    tr: Translator, min_cents: int, max_cents: int, amounts: Sequence[int] = ()
) -> Screen:
    """Step 1: how much; ready amounts as buttons (at most three a row)."""
    text = tr.t("topup.ask_amount", **_limits(tr, min_cents, max_cents))
    text += "\n\n" + tr.t("legal.topup_links")
    buttons: list[AnyButton] = [(tr.money(cents), TopUpAmount(cents)) for cents in amounts]
    rows = [buttons[i : i + 3] for i in range(0, len(buttons), 3)]
    return Screen(text, keyboard([*rows, _cancel(tr)]))


def amount_error(tr: Translator, code: str, min_cents: int, max_cents: int) -> Screen:
    text = tr.t(f"topup.error.{code}", **_limits(tr, min_cents, max_cents))
    return Screen(text, keyboard([_cancel(tr)]))


def amount_expected(tr: Translator) -> Screen:
    return Screen(tr.t("topup.error.not_a_number"))


@dataclass(frozen=True)
class Method:
    name: str  # card, crypto, stars
    stars: int = 0  # the Stars price, for ``stars``


def method_choice(tr: Translator, amount_cents: int, methods: Sequence[Method]) -> Screen:
    """Step 2: how to pay, one button per rail the operator enabled."""
    rows: list[list[AnyButton]] = [
        [(tr.t(f"topup.method.{m.name}", stars=m.stars), TopUpMethod(m.name))] for m in methods
    ]
    rows.append(_cancel(tr))
    return Screen(tr.t("topup.ask_method", amount=tr.money(amount_cents)), keyboard(rows))


def method_off(tr: Translator) -> Screen:
    return Screen(tr.t("topup.method_off"))


def provider_unavailable(tr: Translator) -> Screen:
    return Screen(tr.t("topup.provider_unavailable"))


def _expires(tr: Translator, invoice: Invoice) -> str:
    return tr.when(invoice.expires_at) if invoice.expires_at else "-"


def _invoice_rows(tr: Translator, invoice: Invoice) -> list[list[AnyButton]]:
    rows: list[list[AnyButton]] = []
    if invoice.payment_url:
        label = tr.t("topup.pay_button", amount=tr.money(invoice.amount_cents))
        rows.append([InlineKeyboardButton(label, url=invoice.payment_url)])
    rows.append([(tr.t("topup.cancel_invoice"), CancelInvoice(invoice.payment_id))])
    return rows


def pending_exists(tr: Translator, invoice: Invoice) -> Screen:
    """A top-up is already waiting: pay it or cancel it."""
    text = tr.t("topup.pending_exists", amount=tr.money(invoice.amount_cents))
    return Screen(text, keyboard(_invoice_rows(tr, invoice)))


def crypto_invoice(tr: Translator, invoice: Invoice, *, back_to_order: bool) -> Screen:
    """The OxaPay invoice: Pay (a link), Cancel invoice, and the way back to the order."""
    key = "topup.invoice" if invoice.payment_url else "topup.invoice_no_link"
    text = tr.t(key, amount=tr.money(invoice.amount_cents), expires=_expires(tr, invoice))
    rows = _invoice_rows(tr, invoice)
    if back_to_order:
        rows.append(_back_to_order(tr))
    return Screen(text, keyboard(rows))


def telegram_invoice_sent(
    tr: Translator, invoice: Invoice, method: str, *, back_to_order: bool
) -> Screen:
    """Below a card or Stars invoice (Telegram shows its Pay button): when it expires."""
    key = "topup.card_sent" if method == "card" else "topup.stars_sent"
    text = tr.t(key, expires=_expires(tr, invoice))
    return Screen(text, keyboard([_back_to_order(tr)]) if back_to_order else None)


def card_invoice_texts(tr: Translator, amount_cents: int) -> tuple[str, str]:
    """(title, description) of a card invoice (Telegram: 1-32 and 1-255 characters)."""
    return tr.t("topup.card_title"), tr.t("topup.card_description", amount=tr.money(amount_cents))


def stars_invoice_texts(tr: Translator, amount_cents: int) -> tuple[str, str]:
    return tr.t("topup.stars_title"), tr.t(
        "topup.stars_description", amount=tr.money(amount_cents)
    )


def cancelled(tr: Translator) -> Screen:
    return Screen(tr.t("topup.cancelled"))


def cancel_failed(tr: Translator) -> str:
    return tr.t("topup.cancel_failed")


def credited(
    tr: Translator, amount_cents: int, balance_cents: int, *, back_to_order: bool = False
) -> Screen:
    """The payment confirmation; a top-up started from an order offers the way back."""
    text = tr.t("topup.credited", amount=tr.money(amount_cents), balance=tr.money(balance_cents))
    return Screen(text, keyboard([_back_to_order(tr)]) if back_to_order else None)


def invoice_status(tr: Translator, amount_cents: int, outcome: str) -> str:
    """What an invoice message says once settled: paid, expired or cancelled."""
    return tr.t(f"topup.invoice_status.{outcome}", amount=tr.money(amount_cents))
