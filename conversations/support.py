"""Contact support: topic → message → the admins get it through the outbox.

State diagram: ``support.mmd``.
"""

from __future__ import annotations

from enum import StrEnum

from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot.context import BotContext
from bot.keyboards import cancel_button, inline, main_menu
from bot.sessions import SessionConversationHandler
from conversations.common import cancel_handlers, conversation_key
from handlers.common import ack, lang_of, reply

NAME = "support"
MESSAGE_LIMIT = 2000
TOPICS = ("order", "payment", "other")


class SupportState(StrEnum):
    AWAITING_TOPIC = "awaiting_topic"
    AWAITING_MESSAGE = "awaiting_message"


async def ask_topic(update: Update, context: BotContext) -> SupportState:
    """Asks what the question is about."""
    await ack(update)
    lang = lang_of(update, context)
    i18n = context.i18n
    rows = [
        [(i18n.t(lang, f"support.topic.{topic}"), f"support:topic:{topic}")] for topic in TOPICS
    ]
    rows.append(cancel_button(i18n, lang, "support:cancel"))
    await reply(update, context, i18n.t(lang, "support.choose_topic"), inline(rows))
    return SupportState.AWAITING_TOPIC


async def store_topic(update: Update, context: BotContext) -> SupportState:
    """Stores the topic with the session and asks for the message."""
    query = update.callback_query
    assert query is not None and query.data is not None
    topic = query.data.rsplit(":", 1)[-1]
    lang = lang_of(update, context)
    if topic not in TOPICS:
        await ack(update, context.i18n.t(lang, "errors.stale_button"))
        return SupportState.AWAITING_TOPIC
    await ack(update)
    await context.services.sessions.set_data(conversation_key(update), NAME, {"topic": topic})
    i18n = context.i18n
    topic_name = i18n.t(lang, f"support.topic.{topic}")
    text = i18n.t(lang, "support.ask_message", topic=topic_name, limit=MESSAGE_LIMIT)
    await reply(update, context, text, inline([cancel_button(i18n, lang, "support:cancel")]))
    return SupportState.AWAITING_MESSAGE


async def topic_expected(update: Update, context: BotContext) -> SupportState:
    """Typed text while a topic button was expected: ask again."""
    return await ask_topic(update, context)


async def send_message(update: Update, context: BotContext) -> SupportState | int:
    """Forwards the question to the admins and ends the conversation."""
    message = update.effective_message
    user = update.effective_user
    assert message is not None and message.text is not None and user is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    text = message.text.strip()
    if len(text) > MESSAGE_LIMIT:
        too_long = i18n.t(lang, "support.too_long", length=len(text), limit=MESSAGE_LIMIT)
        await reply(update, context, too_long)
        return SupportState.AWAITING_MESSAGE
    data = await context.services.sessions.get_data(conversation_key(update), NAME)
    topic = str(data.get("topic", "other"))
    default = i18n.default
    alert = i18n.t(
        default,
        "support.admin_alert",
        user=user.full_name,
        user_id=user.id,
        topic=i18n.t(default, f"support.topic.{topic}"),
        text=text,
    )
    await context.services.notifier.alert_admins(alert, dedup_key=f"support:{update.update_id}")
    await reply(update, context, i18n.t(lang, "support.sent"), main_menu(i18n, lang))
    return SessionConversationHandler.END


async def text_expected(update: Update, context: BotContext) -> SupportState:
    await reply(update, context, context.i18n.t(lang_of(update, context), "support.text_only"))
    return SupportState.AWAITING_MESSAGE


def build_support_conversation() -> SessionConversationHandler:
    return SessionConversationHandler(
        name=NAME,
        entry_points=[
            CommandHandler("support", ask_topic),
            CallbackQueryHandler(ask_topic, pattern=r"^menu:support$"),
        ],
        states={
            SupportState.AWAITING_TOPIC: [
                CallbackQueryHandler(store_topic, pattern=r"^support:topic:"),
                MessageHandler(filters.TEXT & ~filters.COMMAND, topic_expected),
            ],
            SupportState.AWAITING_MESSAGE: [
                MessageHandler(filters.TEXT & ~filters.COMMAND, send_message),
                MessageHandler(~filters.COMMAND & ~filters.StatusUpdate.ALL, text_expected),
            ],
        },
        fallbacks=cancel_handlers(NAME),
    )
