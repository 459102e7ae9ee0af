"""Session housekeeping: expire idle conversations, purge for the in-memory database."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.context import BotContext
from bot.metrics import ACTIVE_SESSIONS, SESSIONS_EXPIRED
from storage.sessions import session_id

_LOGGER = logging.getLogger(__name__)


async def expire_sessions_job(context: BotContext) -> None:
    """Ends conversations idle past the TTL and tells their users (once, via the outbox)."""
    services = context.services
    i18n = context.i18n
    minutes = context.settings.sessions.ttl_minutes
    for expired in await services.sessions.claim_expired():
        for name in expired.states:
            handler = context.bot_data.conversations.get(name)
            if handler is not None:
                handler.forget(expired.key)
        chat_id, user_id = int(expired.key[0]), int(expired.key[-1])
        lang = await services.users.language_of(user_id, i18n.default)
        await services.notifier.notify_user(
            chat_id,
            i18n.t(lang, "session.expired", minutes=minutes),
            dedup_key=f"session-expired:{session_id(expired.key)}:{context.bot_data.clock():%s}",
        )
        SESSIONS_EXPIRED.labels(path="sweeper").inc()
    ACTIVE_SESSIONS.set(sum(h.live_count() for h in context.bot_data.conversations.values()))


async def purge_expired_job(context: BotContext) -> None:
    """In-memory MongoDB only: remove expired documents as MongoDB's TTL monitor would."""
    grace = timedelta(seconds=context.settings.sessions.purge_grace_seconds)
    removed = await context.services.sessions.purge_expired(grace=grace)
    if removed:
        _LOGGER.debug("purged %d expired documents", removed)
