"""The one inline keyboard builder: every button's ``callback_data`` is checked against
Telegram's 1-64 byte limit where it is built, and a pager for lists.

A button is ``(label, data)`` where ``data`` is a string or a typed ``CallbackData``
(``views/callbacks.py``), or an ``InlineKeyboardButton`` built elsewhere (a URL button).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from views.callbacks import CallbackData, check_size

Button = tuple[str, str]  # (label, callback_data)
AnyButton = tuple[str, "str | CallbackData"] | InlineKeyboardButton
Rows = Sequence[Sequence[AnyButton]]


def _button(button: AnyButton) -> InlineKeyboardButton:
    if isinstance(button, InlineKeyboardButton):
        if button.callback_data is not None:
            check_size(str(button.callback_data))
        return button
    label, data = button
    packed = data.pack() if isinstance(data, CallbackData) else check_size(data)
    return InlineKeyboardButton(label, callback_data=packed)


def keyboard(rows: Rows) -> InlineKeyboardMarkup:
    """An inline keyboard; empty rows are dropped. Raises ``ValueError`` for callback data
    Telegram would refuse."""
    return InlineKeyboardMarkup([[_button(b) for b in row] for row in rows if row])


def keyboard_dict(rows: Rows) -> dict[str, Any]:
    """The same keyboard as Bot API JSON, for messages queued in the outbox."""
    return keyboard(rows).to_dict()


def pager(
    page: int,
    pages: int,
    data: Callable[[int], str | CallbackData],
    *,
    prev_label: str,
    next_label: str,
    position: bool = False,
) -> list[AnyButton]:
    """One row: ◀️ previous, (``page/pages`` when ``position``), next ▶️; empty when there
    is one page. The position button shows the same page again."""
    if pages <= 1:
        return []
    row: list[AnyButton] = []
    if page > 1:
        row.append((prev_label, data(page - 1)))
    if position:
        row.append((f"{page}/{pages}", data(page)))
    if page < pages:
        row.append((next_label, data(page + 1)))
    return row
