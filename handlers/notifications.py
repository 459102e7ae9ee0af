"""``/notifications on|off``: customers opt out of (and back into) broadcasts and
non-essential parcel updates; ``/autorefund on|off``: unused labels refunded on their
last refund day."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update
from telegram.ext import BaseHandler, CommandHandler

from bot.context import BotContext
from handlers.common import lang_of, reply


async def _toggle(
    update: Update,
    context: BotContext,
    key: str,
    enabled: Callable[[int], Awaitable[bool]],
    set_enabled: Callable[[int, bool], Awaitable[Any]],
) -> None:
    """``/<key> on|off`` stores the choice; anything else shows the current state."""
    user = update.effective_user
    assert user is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    choice = context.args[0].lower() if context.args else ""
    if choice not in ("on", "off"):
        on = await enabled(user.id)
        state = i18n.t(lang, f"{key}.state_on" if on else f"{key}.state_off")
        await reply(update, context, i18n.t(lang, f"{key}.usage", state=state))
        return
    await set_enabled(user.id, choice == "on")
    await reply(update, context, i18n.t(lang, f"{key}.{choice}"))


async def notifications(update: Update, context: BotContext) -> None:
    users = context.services.users
    await _toggle(
        update, context, "notifications", users.notifications_enabled, users.set_notifications
    )


async def autorefund(update: Update, context: BotContext) -> None:
    users = context.services.users
    await _toggle(update, context, "autorefund", users.auto_refund_enabled, users.set_auto_refund)


def build_handlers() -> list[BaseHandler[Update, BotContext, None]]:
    return [
        CommandHandler("notifications", notifications),
        CommandHandler("autorefund", autorefund),
    ]
