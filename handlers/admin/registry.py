"""The admin console's handlers in registration order (the application adds them)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler

from bot.context import BotContext
from bot.sessions import SessionConversationHandler
from bot.settings import Settings
from handlers.admin import broadcast, bulk, console, export, payments, stats, users


def build_handlers(settings: Settings) -> list[BaseHandler[Update, BotContext, None]]:
    """Conversations (balance adjustment, discount, received amount, broadcast) first,
    then commands."""
    return [
        *users.build_handlers(settings),
        *payments.build_handlers(settings),
        *broadcast.build_handlers(settings),
        *console.build_handlers(settings),
        *stats.build_handlers(settings),
        *export.build_handlers(settings),
        *bulk.build_handlers(settings),
    ]


def conversations(
    handlers: list[BaseHandler[Update, BotContext, None]],
) -> list[SessionConversationHandler]:
    """The persistent conversations among ``handlers`` (session expiry must know them)."""
    return [h for h in handlers if isinstance(h, SessionConversationHandler)]
