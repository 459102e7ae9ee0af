"""Customer accounts: registration, language, blocked state."""

from __future__ import annotations

from dataclasses import dataclass

from models.shipping import LABEL_FORMATS, label_format
from services.clock import Clock, utc_now
from storage.users import UsersRepo


@dataclass(frozen=True)
class UserView:
    user_id: int
    language: str
    blocked: bool
    created: bool
    balance_cents: int


class UserService:
    def __init__(self, users: UsersRepo, *, clock: Clock = utc_now) -> None:
        self._users = users
        self._clock = clock

    async def register(
        self, user_id: int, *, language: str, username: str | None, first_name: str
    ) -> UserView:
        """Creates the account on first contact; later calls refresh the profile."""
        result = await self._users.register(
            user_id,
            language=language,
            username=username,
            first_name=first_name[:64],
            now=self._clock(),
        )
        doc = result.user
        if doc.get("bot_blocked_at") is not None:
            # The user wrote to us, so they have unblocked the bot.
            await self._users.mark_bot_blocked(user_id, None)
        return UserView(
            user_id=user_id,
            language=doc.get("language", language),
            blocked=bool(doc.get("blocked")),
            created=result.created,
            balance_cents=int(doc.get("balance_cents", 0)),
        )

    async def set_language(self, user_id: int, language: str) -> None:
        await self._users.set_language(user_id, language)

    async def mark_bot_blocked(self, user_id: int) -> None:
        await self._users.mark_bot_blocked(user_id, self._clock())

    async def language_of(self, user_id: int, default: str) -> str:
        doc = await self._users.get(user_id)
        return str(doc.get("language", default)) if doc else default

    async def set_notifications(self, user_id: int, enabled: bool) -> None:
        """``/notifications on|off``: broadcasts skip users who opted out."""
        await self._users.set_notify_opt_out(user_id, not enabled)

    async def notifications_enabled(self, user_id: int) -> bool:
        doc = await self._users.get(user_id)
        return not (doc or {}).get("notify_opt_out", False)

    async def set_auto_refund(self, user_id: int, enabled: bool) -> None:
        """``/autorefund on|off``: unused labels are refunded on their last refund day."""
        await self._users.set_auto_refund(user_id, enabled)

    async def auto_refund_enabled(self, user_id: int) -> bool:
        doc = await self._users.get(user_id)
        return bool((doc or {}).get("auto_refund", False))

    async def set_label_format(self, user_id: int, key: str) -> bool:
        """``/format``: the label format of the customer's next labels; False (nothing
        stored) for a key that is not one of ``LABEL_FORMATS``."""
        if key not in LABEL_FORMATS:
            return False
        await self._users.set_label_format(user_id, key)
        return True

    async def label_format_of(self, user_id: int) -> str:
        """The customer's label format key (``pdf_4x6`` unless they chose another)."""
        doc = await self._users.get(user_id)
        return label_format((doc or {}).get("label_format")).key
