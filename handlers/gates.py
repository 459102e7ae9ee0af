"""Gatekeeping that runs before any feature handler, in this order:

1. ``bind_context``: log fields for the update; skip an update that was already handled.
2. ``flood_gate``: a user over the rate gets one "slow down" notice, then is ignored.
3. ``register_user``: create or refresh the account; remember it for this update.
4. ``blocked_gate``: a blocked user gets a polite refusal and nothing else.
5. ``maintenance_gate``: in maintenance mode customers get the notice; admins pass.
6. ``session_gate``: extend the session; tell the user when it had expired.

Each raises ``ApplicationHandlerStop`` to end processing of the update.
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import ApplicationHandlerStop, BaseHandler, TypeHandler

from bot.context import BotContext
from bot.current import current_user, set_current_user
from bot.logging import bind_update_context
from bot.metrics import UPDATES_SKIPPED

_LOGGER = logging.getLogger(__name__)


async def bind_context(update: Update, context: BotContext) -> None:
    """Binds ``update_id``/``user_id``/``chat_id`` and claims the update id exactly once."""
    user = update.effective_user
    chat = update.effective_chat
    bind_update_context(
        update_id=update.update_id,
        user_id=user.id if user else None,
        chat_id=chat.id if chat else None,
    )
    set_current_user(None)
    if chat is not None and chat.type != ChatType.PRIVATE:
        # The shop works in private chats only; ignore groups and channels.
        raise ApplicationHandlerStop
    if not await context.services.sessions.claim_update(update.update_id):
        UPDATES_SKIPPED.labels(reason="duplicate").inc()
        _LOGGER.info("skipping an update that was already handled")
        raise ApplicationHandlerStop


async def flood_gate(update: Update, context: BotContext) -> None:
    """Drops a flood from one user without slowing anyone else down."""
    user = update.effective_user
    flood = context.bot_data.flood
    if user is None or flood is None or context.settings.admin_role(user.id):
        return
    verdict = flood.check(user.id)
    if verdict == "ok":
        return
    UPDATES_SKIPPED.labels(reason="flood").inc()
    if verdict == "notice":
        lang = context.i18n.resolve_language(user.language_code)
        text = context.i18n.t(lang, "gate.slow_down")
        if update.callback_query is not None:
            await update.callback_query.answer(text[:200], show_alert=True)
        elif update.effective_chat is not None:
            await context.bot.send_message(update.effective_chat.id, text)
    elif update.callback_query is not None:
        await update.callback_query.answer()
    raise ApplicationHandlerStop


async def register_user(update: Update, context: BotContext) -> None:
    """Creates or refreshes the account of whoever sent the update."""
    user = update.effective_user
    if user is None or user.is_bot:
        return
    view = await context.services.users.register(
        user.id,
        language=context.i18n.resolve_language(user.language_code),
        username=user.username,
        first_name=user.first_name,
    )
    set_current_user(view)


async def _refuse(update: Update, context: BotContext, text: str) -> None:
    if update.callback_query is not None:
        await update.callback_query.answer(text[:200], show_alert=True)
    elif update.pre_checkout_query is not None:
        await update.pre_checkout_query.answer(ok=False, error_message=text[:255])
    elif update.effective_chat is not None:
        await context.bot.send_message(update.effective_chat.id, text)
    raise ApplicationHandlerStop


async def blocked_gate(update: Update, context: BotContext) -> None:
    """A blocked user gets one polite refusal per update and no service."""
    view = current_user()
    if view is None or not view.blocked or context.settings.admin_role(view.user_id):
        return
    text = context.i18n.t(view.language, "gate.blocked", support=context.settings.support_contact)
    UPDATES_SKIPPED.labels(reason="blocked").inc()
    await _refuse(update, context, text)


async def maintenance_gate(update: Update, context: BotContext) -> None:
    """In maintenance mode customers get the notice; conversations stay where they were."""
    view = current_user()
    if view is None or context.settings.admin_role(view.user_id):
        return
    maintenance = await context.services.runtime.maintenance()
    if not maintenance.enabled:
        return
    i18n = context.i18n
    message = maintenance.message or i18n.t(view.language, "gate.maintenance_default")
    UPDATES_SKIPPED.labels(reason="maintenance").inc()
    await _refuse(update, context, i18n.t(view.language, "gate.maintenance", message=message))


async def session_gate(update: Update, context: BotContext) -> None:
    """Extends the session on activity; an expired one is dropped and the user told."""
    view = current_user()
    chat = update.effective_chat
    if view is None or chat is None:
        return
    key = (chat.id, view.user_id)
    expired = await context.services.sessions.touch(key)
    if expired is None:
        return
    for name in expired.states:
        handler = context.bot_data.conversations.get(name)
        if handler is not None:
            handler.forget(key)
    minutes = context.settings.sessions.ttl_minutes
    await context.bot.send_message(
        chat.id, context.i18n.t(view.language, "session.expired", minutes=minutes)
    )
    message = update.effective_message
    is_command = bool(message and message.text and message.text.startswith("/"))
    if not is_command:
        if update.callback_query is not None:
            await update.callback_query.answer()
        raise ApplicationHandlerStop


def build_handlers() -> list[tuple[int, BaseHandler[Update, BotContext, None]]]:
    """(relative order, handler) pairs; the application puts them in the gate groups."""
    return [
        (0, TypeHandler(Update, bind_context)),
        (1, TypeHandler(Update, flood_gate)),
        (2, TypeHandler(Update, register_user)),
        (3, TypeHandler(Update, blocked_gate)),
        (4, TypeHandler(Update, maintenance_gate)),
        (5, TypeHandler(Update, session_gate)),
    ]
