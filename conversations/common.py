"""Pieces every conversation shares: /cancel and the cancel button."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, ConversationHandler

from bot.context import BotContext
from bot.keyboards import main_menu
from handlers.common import ack, lang_of, reply


def conversation_key(update: Update) -> tuple[int, int]:
    chat, user = update.effective_chat, update.effective_user
    assert chat is not None and user is not None
    return (chat.id, user.id)


async def cancel(update: Update, context: BotContext) -> int:
    """Leaves the conversation and shows the main menu."""
    await ack(update)
    lang = lang_of(update, context)
    i18n = context.i18n
    await reply(update, context, i18n.t(lang, "cancel.done"), main_menu(i18n, lang))
    return ConversationHandler.END


def cancel_handlers(name: str) -> list[BaseHandler[Any, Any, Any]]:
    return [
        CommandHandler("cancel", cancel),
        CallbackQueryHandler(cancel, pattern=rf"^{name}:cancel$"),
    ]


def leave_others(context: BotContext, key: tuple[int, int], keep: set[str]) -> None:
    """Ends the user's other conversations so one message never feeds two flows."""
    for name, handler in context.bot_data.conversations.items():
        if name not in keep:
            handler.forget(key)
