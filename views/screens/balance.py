"""The balance screen: balance, a pending top-up, and the ledger a page at a time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.balance import HistoryPage
from views.callbacks import BalancePage, MenuMain, MenuTopUp
from views.keyboards import keyboard, pager
from views.screen import Screen
from views.translator import Translator


@dataclass(frozen=True)
class Pending:
    amount_cents: int
    provider: str
    expires_at: datetime


def balance(
    tr: Translator, balance_cents: int, pending: Pending | None, history: HistoryPage
) -> Screen:
    lines = [tr.t("balance.title", balance=tr.money(balance_cents))]
    if pending is not None:
        lines.append(
            tr.t(
                "balance.pending",
                amount=tr.money(pending.amount_cents),
                provider=pending.provider,
                expires=tr.when(pending.expires_at),
            )
        )
    lines.append("")
    if not history.entries:
        lines.append(tr.t("balance.history_empty"))
    else:
        lines.append(tr.t("balance.history_title", page=history.page, pages=history.pages))
        for entry in history.entries:
            sign = "+" if entry.amount_cents > 0 else "−"
            lines.append(
                tr.t(
                    "balance.entry",
                    date=tr.when(entry.created_at),
                    amount=sign + tr.money(abs(entry.amount_cents)),
                    kind=tr.t(f"ledger.kind.{entry.kind}"),
                )
            )
    nav = pager(
        history.page,
        history.pages,
        BalancePage,
        prev_label=tr.t("common.prev"),
        next_label=tr.t("common.next"),
    )
    markup = keyboard(
        [nav, [(tr.t("menu.topup"), MenuTopUp()), (tr.t("common.menu"), MenuMain())]]
    )
    return Screen("\n".join(lines), markup)
