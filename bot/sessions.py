"""Conversation handlers whose positions live in MongoDB and expire with the session."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from telegram.ext import BaseHandler, ConversationHandler
from telegram.warnings import PTBUserWarning

# Our conversations are per chat and user on purpose: buttons of an old message are
# checked against the stored draft, not tracked per message.
warnings.filterwarnings("ignore", message=".*per_message=False.*", category=PTBUserWarning)


class SessionConversationHandler(ConversationHandler[Any]):
    """A persistent, per-chat-and-user ``ConversationHandler`` that can drop one key.

    Session expiry is decided from MongoDB (``sessions.expires_at``) by the session gate
    and the sweeper job, not by PTB's in-memory ``conversation_timeout`` jobs, which are
    lost on restart and cost memory per live conversation.
    """

    def __init__(
        self,
        *,
        name: str,
        entry_points: list[BaseHandler[Any, Any, Any]],
        states: dict[object, list[BaseHandler[Any, Any, Any]]],
        fallbacks: list[BaseHandler[Any, Any, Any]],
        allow_reentry: bool = True,
    ) -> None:
        super().__init__(
            entry_points=entry_points,
            states=states,
            fallbacks=fallbacks,
            allow_reentry=allow_reentry,
            per_chat=True,
            per_user=True,
            per_message=False,
            name=name,
            persistent=True,
        )

    def state_of(self, key: Sequence[int | str]) -> object | None:
        return self._conversations.get(tuple(key))

    def forget(self, key: Sequence[int | str]) -> bool:
        """Ends the conversation for ``key`` (the change is flushed to MongoDB)."""
        key = tuple(key)
        if key not in self._conversations:
            return False
        self._update_state(self.END, key)  # type: ignore[arg-type]
        return True

    def live_count(self) -> int:
        return len(self._conversations)
