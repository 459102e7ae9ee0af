"""``/terms``, ``/privacy``, ``/paysupport`` and "Delete my data" (``/delete_my_data``)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot.context import BotContext
from bot.i18n import Html
from bot.keyboards import inline
from handlers.common import ack, lang_of, reply

_DOCUMENTS = r"(terms|privacy|paysupport)"


async def show_document(update: Update, context: BotContext) -> None:
    """Sends one legal text: ``/terms`` or the ``legal:show:terms`` button."""
    await ack(update)
    query = update.callback_query
    message = update.effective_message
    if query is not None and query.data:
        document = query.data.rsplit(":", 1)[-1]
    else:
        assert message is not None and message.text is not None
        document = message.text.split()[0].lstrip("/").split("@")[0].lower()
    lang = lang_of(update, context)
    i18n = context.i18n
    markup = None
    if document == "paysupport":
        markup = inline([[(i18n.t(lang, "menu.support"), "menu:support")]])
    await reply(update, context, context.legal.render(document, lang), markup)


async def ask_deletion(update: Update, context: BotContext) -> None:
    """Says what would be erased and kept (or why not now) and asks to confirm."""
    user = update.effective_user
    assert user is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    offer = await context.services.privacy.offer_deletion(user.id)
    if offer.blockers:
        await reply(update, context, _blocked_text(context, lang, offer.blockers))
        return
    text = i18n.t(
        lang,
        "privacy.delete.confirm",
        templates=offer.templates,
        orders=offer.orders,
        balance=i18n.money(lang, offer.balance_cents),
    )
    deletion = offer.deletion_id
    markup = inline(
        [
            [(i18n.t(lang, "privacy.delete.confirm_button"), f"privacy:delete:{deletion}")],
            [(i18n.t(lang, "privacy.delete.keep_button"), f"privacy:keep:{deletion}")],
        ]
    )
    await reply(update, context, text, markup)


def _blocked_text(context: BotContext, lang: str, blockers: tuple[str, ...]) -> str:
    i18n = context.i18n
    reasons = "\n".join(i18n.t(lang, f"privacy.delete.reason.{code}") for code in blockers)
    return i18n.t(lang, "privacy.delete.blocked", reasons=Html(reasons))


async def confirm_deletion(update: Update, context: BotContext) -> None:
    """Runs the confirmed deletion once; the confirmation message becomes the result."""
    query = update.callback_query
    user, chat = update.effective_user, update.effective_chat
    assert query is not None and query.data is not None and user is not None
    await ack(update)
    lang = lang_of(update, context)
    i18n = context.i18n
    deletion = query.data.rsplit(":", 1)[-1]
    outcome = await context.services.privacy.confirm_deletion(user.id, deletion)
    if outcome.status == "done":
        if chat is not None:
            # The conversations' positions go with the data they were collecting.
            for conversation in context.bot_data.conversations.values():
                conversation.forget((chat.id, user.id))
        text = i18n.t(
            lang,
            "privacy.delete.done",
            templates=outcome.counts.get("templates", 0),
            orders=outcome.counts.get("orders", 0),
            balance=i18n.money(lang, outcome.balance_cents),
        )
    elif outcome.status == "blocked":
        text = _blocked_text(context, lang, outcome.blockers)
    elif outcome.status == "already":
        text = i18n.t(lang, "privacy.delete.already")
    else:
        text = i18n.t(lang, "privacy.delete.expired")
    await reply(update, context, text, edit=True)


async def keep_data(update: Update, context: BotContext) -> None:
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    await ack(update)
    await context.services.privacy.cancel_deletion(user.id, query.data.rsplit(":", 1)[-1])
    lang = lang_of(update, context)
    await reply(update, context, context.i18n.t(lang, "privacy.delete.kept"), edit=True)


def build_handlers() -> list[BaseHandler[Update, BotContext, None]]:
    return [
        CommandHandler(["terms", "privacy", "paysupport"], show_document),
        CallbackQueryHandler(show_document, pattern=rf"^legal:show:{_DOCUMENTS}$"),
        CommandHandler("delete_my_data", ask_deletion),
        CallbackQueryHandler(confirm_deletion, pattern=r"^privacy:delete:[0-9a-f]{24}$"),
        CallbackQueryHandler(keep_data, pattern=r"^privacy:keep:[0-9a-f]{24}$"),
    ]
