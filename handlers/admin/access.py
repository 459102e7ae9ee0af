"""Admin access: an admin command from anyone else behaves like an unknown command."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from functools import wraps
from typing import Any

from telegram import Update
from telegram.ext import filters

from bot.context import BotContext
from bot.settings import Role, Settings

ALL_ROLES = frozenset(Role)
MANAGERS = frozenset({Role.OWNER, Role.ADMIN})
OWNER_ONLY = frozenset({Role.OWNER})

Callback = Callable[[Update, BotContext], Coroutine[Any, Any, Any]]


def admin_filter(settings: Settings, roles: Iterable[Role]) -> filters.BaseFilter:
    allowed = set(roles)
    ids = [entry.user_id for entry in settings.admins if entry.role in allowed]
    return filters.User(user_id=ids) & filters.ChatType.PRIVATE


def role_of(update: Update, context: BotContext) -> Role | None:
    user = update.effective_user
    return context.settings.admin_role(user.id) if user else None


def requires(roles: Iterable[Role]) -> Callable[[Callback], Callback]:
    """Re-checks the role when the callback runs (buttons outlive role changes)."""
    allowed = frozenset(roles)

    def wrap(callback: Callback) -> Callback:
        @wraps(callback)
        async def checked(update: Update, context: BotContext) -> Any:
            if role_of(update, context) not in allowed:
                if update.callback_query is not None:
                    await update.callback_query.answer()
                return None
            return await callback(update, context)

        return checked

    return wrap
