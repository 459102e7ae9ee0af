"""``/broadcast``: compose (text, optional photo) → preview → confirm → background delivery.

The confirmed broadcast is delivered by ``jobs/broadcast.py``; the confirmation message
becomes the progress message the job edits.
"""

from __future__ import annotations

from enum import StrEnum

from telegram import Update
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.context import BotContext
from bot.keyboards import inline
from bot.sessions import SessionConversationHandler
from bot.settings import Settings
from conversations.common import cancel_handlers, conversation_key, leave_others
from handlers.admin.access import MANAGERS, admin_filter, requires, role_of
from handlers.common import ack, lang_of, reply
from services.broadcast import BroadcastError

NAME = "admin_broadcast"


class BroadcastState(StrEnum):
    AWAITING_CONTENT = "awaiting_content"


async def ask_content(update: Update, context: BotContext) -> BroadcastState | None:
    """Asks for the message to send (text, or a photo with a caption)."""
    if role_of(update, context) not in MANAGERS:
        await ack(update)
        return None
    await ack(update)
    leave_others(context, conversation_key(update), keep={NAME})
    lang = lang_of(update, context)
    i18n = context.i18n
    limit = context.services.broadcasts.config.max_text_length
    text = i18n.t(lang, "admin.broadcast.ask", limit=limit)
    cancel = inline([[(i18n.t(lang, "admin.cancel"), f"{NAME}:cancel")]])
    await reply(update, context, text, cancel)
    return BroadcastState.AWAITING_CONTENT


async def receive_content(update: Update, context: BotContext) -> BroadcastState | int:
    """Stores a draft and shows it exactly as customers will see it, then the buttons."""
    message = update.effective_message
    admin = update.effective_user
    chat = update.effective_chat
    assert message is not None and admin is not None and chat is not None
    if role_of(update, context) not in MANAGERS:
        return SessionConversationHandler.END
    lang = lang_of(update, context)
    i18n = context.i18n
    service = context.services.broadcasts
    photo = message.photo[-1].file_id if message.photo else None
    plain = message.caption if photo else message.text
    html = (message.caption_html if photo else message.text_html) or ""
    try:
        service.check_text(plain or "", with_photo=photo is not None)
    except BroadcastError as exc:
        await reply(update, context, i18n.t(lang, f"admin.broadcast.{exc.code}", **exc.params))
        return BroadcastState.AWAITING_CONTENT
    draft = await service.create_draft(
        admin.id, texts={"*": html}, photo_file_id=photo, admin_language=lang
    )
    await reply(update, context, i18n.t(lang, "admin.broadcast.preview"))
    if photo:
        await context.bot.send_photo(chat.id, photo, caption=html or None)
    else:
        await context.bot.send_message(chat.id, html)
    bid = str(draft["_id"])
    rows = [
        [(i18n.t(lang, "admin.broadcast.send"), f"adm:bc:ok:{bid}")],
        [(i18n.t(lang, "admin.cancel"), f"adm:bc:no:{bid}")],
    ]
    await reply(update, context, i18n.t(lang, "admin.broadcast.confirm"), inline(rows))
    return SessionConversationHandler.END


async def content_expected(update: Update, context: BotContext) -> None:
    text = context.i18n.t(lang_of(update, context), "admin.broadcast.content_expected")
    await reply(update, context, text)


@requires(MANAGERS)
async def decide(update: Update, context: BotContext) -> None:
    """Confirm starts the delivery (once: a second tap finds it started); cancel drops it."""
    query = update.callback_query
    admin = update.effective_user
    chat = update.effective_chat
    assert query is not None and query.data is not None and admin is not None
    assert chat is not None and query.message is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    _, _, action, bid = query.data.split(":")
    service = context.services.broadcasts
    if action == "no":
        cancelled = await service.cancel(bid)
        await ack(update)
        if cancelled is not None:
            await reply(update, context, i18n.t(lang, "admin.broadcast.cancelled"), edit=True)
        return
    started = await service.confirm(
        admin.id, bid, progress_chat_id=chat.id, progress_message_id=query.message.message_id
    )
    if started is None:
        await ack(update, i18n.t(lang, "admin.broadcast.not_draft"), alert=True)
        return
    await ack(update)
    await reply(update, context, i18n.t(lang, "admin.broadcast.queued"), edit=True)


def build_handlers(settings: Settings) -> list[BaseHandler[Update, BotContext, None]]:
    content = (filters.TEXT & ~filters.COMMAND) | filters.PHOTO
    other = ~filters.COMMAND & ~filters.StatusUpdate.ALL & ~filters.TEXT & ~filters.PHOTO
    conversation = SessionConversationHandler(
        name=NAME,
        entry_points=[
            CommandHandler("broadcast", ask_content, filters=admin_filter(settings, MANAGERS)),
            CallbackQueryHandler(ask_content, pattern=r"^adm:menu:broadcast$"),
        ],
        states={
            BroadcastState.AWAITING_CONTENT: [
                MessageHandler(content, receive_content),
                MessageHandler(other, content_expected),
            ],
        },
        fallbacks=cancel_handlers(NAME),
    )
    return [
        conversation,
        CallbackQueryHandler(decide, pattern=r"^adm:bc:(ok|no):[0-9a-f]{24}$"),
    ]
