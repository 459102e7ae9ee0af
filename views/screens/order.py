"""Order screens (phase 1: only the insufficient-balance reply; the rest moves here from
``conversations/order.py`` in phase 2)."""

from __future__ import annotations

from views.callbacks import OrderSummary, OrderTopUp
from views.keyboards import keyboard
from views.screen import Screen
from views.translator import Translator


def insufficient(tr: Translator, balance_cents: int, price_cents: int, topup_cents: int) -> Screen:
    """The balance does not cover the label: top up ``topup_cents`` (the shortfall, but at
    least the minimum top-up: ``PaymentService.topup_for_shortfall``) or go back."""
    text = tr.t(
        "order.insufficient",
        balance=tr.money(balance_cents),
        price=tr.money(price_cents),
        shortfall=tr.money(topup_cents),
    )
    markup = keyboard(
        [
            [(tr.t("order.topup_button"), OrderTopUp())],
            [(tr.t("order.back_to_summary"), OrderSummary())],
        ]
    )
    return Screen(text, markup)
