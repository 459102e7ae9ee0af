"""``/notifications on|off``: customers opt out of (and back into) broadcasts and
non-essential parcel updates; ``/autorefund on|off``: unused labels refunded on their
last refund day."""

from __future__ import annotations

from telegram import Update
from telegram.ext import BaseHandler, CommandHandler

from bot.context import BotContext
from handlers.common import lang_of, reply


async def notifications(update: Update, context: BotContext) -> None:
    user = update.effective_user
    assert user is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    users = context.services.users
    choice = context.args[0].lower() if context.args else ""
    if choice not in ("on", "off"):
        enabled = await users.notifications_enabled(user.id)
        state = i18n.t(lang, "notifications.state_on" if enabled else "notifications.state_off")
        await reply(update, context, i18n.t(lang, "notifications.usage", state=state))
        return
    await users.set_notifications(user.id, choice == "on")
    await reply(update, context, i18n.t(lang, f"notifications.{choice}"))


async def autorefund(update: Update, context: BotContext) -> None:
    user = update.effective_user
    assert user is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    users = context.services.users
    choice = context.args[0].lower() if context.args else ""
    if choice not in ("on", "off"):
        enabled = await users.auto_refund_enabled(user.id)
        state = i18n.t(lang, "autorefund.state_on" if enabled else "autorefund.state_off")
        await reply(update, context, i18n.t(lang, "autorefund.usage", state=state))
        return
    await users.set_auto_refund(user.id, choice == "on")
    await reply(update, context, i18n.t(lang, f"autorefund.{choice}"))


def build_handlers() -> list[BaseHandler[Update, BotContext, None]]:
    return [
        CommandHandler("notifications", notifications),
        CommandHandler("autorefund", autorefund),
    ]
