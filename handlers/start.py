"""/start, the main menu, /help, /language and the catch-all replies."""

from __future__ import annotations

from telegram import Update
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.context import BotContext
from bot.current import current_user
from bot.keyboards import language_menu, main_menu
from conversations.order import open_draft_markup
from handlers.common import ack, lang_of, reply
from services.orders import has_progress


async def start(update: Update, context: BotContext) -> None:
    """Greets the user (registered by the gates) and shows the main menu."""
    view = current_user()
    lang = lang_of(update, context)
    name = update.effective_user.first_name if update.effective_user else ""
    key = "start.welcome" if view is None or view.created else "start.welcome_back"
    i18n = context.i18n
    await reply(update, context, i18n.t(lang, key, name=name))
    await reply(update, context, i18n.t(lang, "menu.title"), main_menu(i18n, lang))
    user = update.effective_user
    draft = await context.services.orders.draft(user.id) if user else None
    if draft is not None and has_progress(draft):  # an order left in the middle
        text = i18n.t(lang, "order.open_draft")
        await reply(update, context, text, open_draft_markup(i18n, lang))


async def show_menu(update: Update, context: BotContext) -> None:
    await ack(update)
    lang = lang_of(update, context)
    await reply(update, context, context.i18n.t(lang, "menu.title"), main_menu(context.i18n, lang))


async def show_help(update: Update, context: BotContext) -> None:
    await ack(update)
    lang = lang_of(update, context)
    text = context.i18n.t(lang, "help.text", support=context.settings.support_contact)
    await reply(update, context, text, main_menu(context.i18n, lang))


async def choose_language(update: Update, context: BotContext) -> None:
    await ack(update)
    lang = lang_of(update, context)
    text = context.i18n.t(lang, "language.choose")
    await reply(update, context, text, language_menu(context.i18n))


async def set_language(update: Update, context: BotContext) -> None:
    """Stores the chosen language and confirms in it."""
    query = update.callback_query
    assert query is not None and query.data is not None and update.effective_user is not None
    code = query.data.removeprefix("lang:")
    if code not in context.i18n.languages:
        await ack(update, context.i18n.t(lang_of(update, context), "errors.stale_button"))
        return
    await ack(update)
    await context.services.users.set_language(update.effective_user.id, code)
    i18n = context.i18n
    await reply(update, context, i18n.t(code, "language.changed"), edit=True)
    await reply(update, context, i18n.t(code, "menu.title"), main_menu(i18n, code))


async def nothing_to_cancel(update: Update, context: BotContext) -> None:
    await reply(update, context, context.i18n.t(lang_of(update, context), "cancel.nothing"))


async def not_understood(update: Update, context: BotContext) -> None:
    lang = lang_of(update, context)
    text = context.i18n.t(lang, "errors.not_understood")
    await reply(update, context, text, main_menu(context.i18n, lang))


async def stale_button(update: Update, context: BotContext) -> None:
    """A button nobody handles: from an old message, or forged."""
    await ack(update, context.i18n.t(lang_of(update, context), "errors.stale_button"))


def build_handlers() -> list[BaseHandler[Update, BotContext, None]]:
    return [
        CommandHandler("start", start),
        CommandHandler("help", show_help),
        CommandHandler("language", choose_language),
        CommandHandler("menu", show_menu),
        CallbackQueryHandler(show_menu, pattern=r"^menu:main$"),
        CallbackQueryHandler(show_help, pattern=r"^menu:help$"),
        CallbackQueryHandler(choose_language, pattern=r"^menu:language$"),
        CallbackQueryHandler(set_language, pattern=r"^lang:[a-z]{2}$"),
    ]


def build_fallback_handlers() -> list[BaseHandler[Update, BotContext, None]]:
    """Replies for whatever no feature handled (registered in the last feature group)."""
    return [
        CommandHandler("cancel", nothing_to_cancel),
        MessageHandler(filters.ALL & ~filters.StatusUpdate.ALL, not_understood),
        CallbackQueryHandler(stale_button),
    ]
