"""The user of the update being handled, set by the gates for the rest of the update.

Each update runs in its own asyncio task, so a ``ContextVar`` is naturally scoped to one
update; this keeps per-update facts out of PTB's ever-growing ``user_data`` dicts.
"""

from __future__ import annotations

from contextvars import ContextVar

from services.users import UserView

_current_user: ContextVar[UserView | None] = ContextVar("current_user", default=None)


def set_current_user(user: UserView | None) -> None:
    _current_user.set(user)


def current_user() -> UserView | None:
    return _current_user.get()
