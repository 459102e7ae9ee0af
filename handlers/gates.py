"""Gatekeeping that runs before any feature handler, in this order:

1. ``bind_context``: log fields for the update; skip an update that was already handled
   (except a successful payment: its credit is idempotent and it may be the only signal).
2. payments (``handlers/payments.py``): pre-checkout queries and successful payments are
   handled here, before any gate below can swallow them, and end the update.
3. ``flood_gate``: a user over the rate gets one "slow down" notice, then is ignored.
4. ``register_user``: create or refresh the account; remember it for this update.
5. ``edit_gate``: an edited message is never input; in a conversation the user is told.
6. ``blocked_gate``: a blocked user gets a polite refusal and nothing else.
7. ``maintenance_gate``: in maintenance mode customers get the notice; admins pass.
8. ``session_gate``: extend the session; tell the user when it had expired.

Each raises ``ApplicationHandlerStop`` to end processing of the update.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from telegram import Bot, Update
from telegram.constants import ChatType
from telegram.ext import Application, ApplicationHandlerStop, BaseHandler, TypeHandler

from bot.context import BotContext
from bot.current import current_user, set_current_user
from bot.i18n import I18n
from bot.logging import bind_update_context
from bot.metrics import UPDATES_SKIPPED
from bot.update_processor import Listener
from handlers.common import lang_of

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
        if _reports_a_payment(update):
            # Claimed by a worker that may have died before crediting it; for a card the
            # update is the only signal (no Bot API call lists provider payments). The
            # credit is idempotent by the charge id, so handling it again is safe.
            _LOGGER.info("handling a successful payment again (idempotent by its charge id)")
            return
        UPDATES_SKIPPED.labels(reason="duplicate").inc()
        _LOGGER.info("skipping an update that was already handled")
        raise ApplicationHandlerStop


def _reports_a_payment(update: Update) -> bool:
    return update.message is not None and update.message.successful_payment is not None


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
        await _slow_down(update, context.bot, context.i18n)
    elif update.callback_query is not None:
        await update.callback_query.answer()
    raise ApplicationHandlerStop


async def _slow_down(update: Update, bot: Bot, i18n: I18n) -> None:
    user = update.effective_user
    text = i18n.t(i18n.resolve_language(user.language_code if user else None), "gate.slow_down")
    if update.callback_query is not None:
        await update.callback_query.answer(text[:200], show_alert=True)
    elif update.effective_chat is not None:
        await bot.send_message(update.effective_chat.id, text)


def on_chat_queue_full(application: Application[Any, Any, Any, Any, Any, Any]) -> Listener:
    """For ``PerChatUpdateProcessor.drop_listeners``: the chat had too many updates queued,
    so this one was dropped. The user gets the flood notice once per episode
    (``FloodControl.overflow``), from a task: the listener must not block. The updates
    still queued go through ``flood_gate`` as usual."""

    def dropped(update: object) -> None:
        data = application.bot_data
        if not isinstance(update, Update) or data.flood is None or data.i18n is None:
            return
        user = update.effective_user
        if user is None or not data.flood.overflow(user.id):
            return
        application.create_task(_slow_down(update, application.bot, data.i18n), update=update)

    return dropped


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


async def edit_gate(update: Update, context: BotContext) -> None:
    """An edited message is not new input (PTB's message filters match edits too, so an
    edit would otherwise answer whatever the bot is asking now). Nothing reads it; during a
    conversation the user is told to send the correction as a new message, at most once
    per ``updates.edit_notice_seconds`` per chat. Outside a conversation it is ignored."""
    if update.edited_message is None and update.edited_business_message is None:
        return
    UPDATES_SKIPPED.labels(reason="edited").inc()
    user = update.effective_user
    chat = update.effective_chat
    cooldown = context.bot_data.edit_notices
    if (
        update.edited_message is not None
        and user is not None
        and chat is not None
        and cooldown is not None
        and _in_conversation(context, (chat.id, user.id))
        and cooldown.ready(chat.id)
    ):
        await context.bot.send_message(
            chat.id, context.i18n.t(lang_of(update, context), "gate.edit_ignored")
        )
    raise ApplicationHandlerStop


def _in_conversation(context: BotContext, key: tuple[int, int]) -> bool:
    return any(h.state_of(key) is not None for h in context.bot_data.conversations.values())


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
    query = update.callback_query
    if query is not None and query.data and SELF_CONTAINED_BUTTON.match(query.data):
        # A notice's button (the refund reminder's "Refund it", "Track") starts its own
        # flow and needs no old position: pressed days later it does what it says, and
        # the flow the customer left long ago is dropped without a word about it.
        return
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


# Buttons of notices sent by jobs (refund reminder, tracking): they name their label and
# need no conversation position.
SELF_CONTAINED_BUTTON = re.compile(r"^(rf:one|lbl:trk):[0-9a-f]{24}$")

# Payments run right after deduplication, before any gate that could swallow them.
PAYMENTS_OFFSET = 1


def build_handlers() -> list[tuple[int, BaseHandler[Update, BotContext, None]]]:
    """(relative order, handler) pairs; the application puts them in the gate groups."""
    return [
        (0, TypeHandler(Update, bind_context)),
        # PAYMENTS_OFFSET (1): handlers/payments.py build_priority_handlers
        (2, TypeHandler(Update, flood_gate)),
        (3, TypeHandler(Update, register_user)),
        (4, TypeHandler(Update, edit_gate)),
        (5, TypeHandler(Update, blocked_gate)),
        (6, TypeHandler(Update, maintenance_gate)),
        (7, TypeHandler(Update, session_gate)),
    ]
