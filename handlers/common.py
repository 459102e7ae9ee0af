"""Small helpers shared by handlers and conversations."""

from __future__ import annotations

from telegram import InlineKeyboardMarkup, Update
from telegram.error import BadRequest

from bot.context import BotContext
from bot.current import current_user
from bot.telegram_errors import NOT_MODIFIED, is_bad_request


def lang_of(update: Update, context: BotContext) -> str:
    """The language of the current user (set by the gates), else Telegram's hint."""
    view = current_user()
    if view is not None:
        return view.language
    user = update.effective_user
    return context.i18n.resolve_language(user.language_code if user else None)


async def reply(
    update: Update,
    context: BotContext,
    text: str,
    markup: InlineKeyboardMarkup | None = None,
    *,
    edit: bool = False,
) -> None:
    """Answers in the chat; from a button press, edits that message when ``edit``."""
    query = update.callback_query
    if query is not None and edit and query.message is not None:
        try:
            await query.edit_message_text(text, reply_markup=markup)
            return
        except BadRequest as exc:
            if is_bad_request(exc, NOT_MODIFIED):
                return
            raise
    chat = update.effective_chat
    assert chat is not None
    await context.bot.send_message(chat.id, text, reply_markup=markup)


async def ack(update: Update, text: str | None = None, *, alert: bool = False) -> None:
    """Answers a button press at once so the client stops its progress indicator."""
    if update.callback_query is not None:
        await update.callback_query.answer(text, show_alert=alert)
