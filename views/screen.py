"""A screen is a value: its text, its keyboard and its parse mode. ``show`` puts one in
the chat (editing the pressed message for a button, else sending a new one); ``disarm``
takes the keyboard off a superseded one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from telegram import Bot, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest

from bot.telegram_errors import NOT_MODIFIED, TO_EDIT_NOT_FOUND, is_bad_request

CANT_EDIT = "message can't be edited"
# What a message to disarm may have become meanwhile: already without keyboard, deleted,
# or too old to edit. Nothing is left to disarm then.
GONE = (NOT_MODIFIED, TO_EDIT_NOT_FOUND, CANT_EDIT)
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024


@dataclass(frozen=True)
class Screen:
    text: str
    markup: InlineKeyboardMarkup | None = None
    parse_mode: str | None = None  # None: the bot's default (HTML, bot/application.py)

    def kwargs(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"reply_markup": self.markup}
        if self.parse_mode is not None:
            extra["parse_mode"] = self.parse_mode
        return extra


async def show(update: Update, context: Any, screen: Screen, *, edit: bool = False) -> Message:
    """From a button press with ``edit``: the pressed message becomes ``screen`` (unchanged
    is fine); otherwise, or when that message can no longer be edited, a new message."""
    query = update.callback_query
    if edit and query is not None and isinstance(query.message, Message):
        try:
            edited = await query.edit_message_text(screen.text, **screen.kwargs())
        except BadRequest as exc:
            if is_bad_request(exc, NOT_MODIFIED):
                return query.message
            if not is_bad_request(exc, TO_EDIT_NOT_FOUND, CANT_EDIT):
                raise
        else:
            if isinstance(edited, Message):
                return edited
            return query.message
    chat = update.effective_chat
    assert chat is not None
    bot: Bot = context.bot
    return await bot.send_message(chat.id, screen.text, **screen.kwargs())


async def disarm(bot: Bot, chat_id: int, message_id: int, status: str | None = None) -> bool:
    """The message loses its keyboard (and, with ``status``, its text becomes that short
    status). False when there was nothing left to disarm (see ``GONE``)."""
    try:
        if status:
            await bot.edit_message_text(status, chat_id=chat_id, message_id=message_id,
                                        reply_markup=None)
        else:
            await bot.edit_message_reply_markup(chat_id=chat_id, message_id=message_id,
                                                reply_markup=None)
    except BadRequest as exc:
        if is_bad_request(exc, *GONE):
            return False
        raise
    return True
