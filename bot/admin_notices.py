"""Renders admin actions into localized outbox messages (implements ``AdminNotices``)."""

from __future__ import annotations

from bot.i18n import I18n
from services.notifications import Notifier
from services.users import UserService


class BotAdminNotices:
    def __init__(
        self, i18n: I18n, notifier: Notifier, users: UserService, *, support_contact: str
    ) -> None:
        self._i18n = i18n
        self._notifier = notifier
        self._users = users
        self._support = support_contact

    async def _lang(self, user_id: int) -> str:
        return await self._users.language_of(user_id, self._i18n.default)

    async def account_blocked(self, user_id: int, blocked: bool, key: str) -> None:
        lang = await self._lang(user_id)
        message = "notice.account_blocked" if blocked else "notice.account_unblocked"
        text = self._i18n.t(lang, message, support=self._support)
        await self._notifier.notify_user(user_id, text, dedup_key=key)

    async def balance_adjusted(
        self, user_id: int, amount_cents: int, balance_cents: int, reason: str, key: str
    ) -> None:
        lang = await self._lang(user_id)
        i18n = self._i18n
        message = "notice.balance_credited" if amount_cents > 0 else "notice.balance_debited"
        text = i18n.t(
            lang,
            message,
            amount=i18n.money(lang, abs(amount_cents)),
            balance=i18n.money(lang, balance_cents),
            reason=reason,
        )
        await self._notifier.notify_user(user_id, text, dedup_key=key)

    async def discount_changed(self, user_id: int, percent: int, key: str) -> None:
        lang = await self._lang(user_id)
        text = self._i18n.t(lang, "notice.discount", percent=percent)
        await self._notifier.notify_user(user_id, text, dedup_key=key)

    async def api_mode_changed(self, actor: int, before: str, after: str, key: str) -> None:
        text = self._i18n.t(
            self._i18n.default, "admin.apimode.alert", actor=actor, before=before, after=after
        )
        await self._notifier.alert_admins(text, dedup_key=key)

    def maintenance_texts(self, enabled: bool, message: str | None) -> dict[str, str]:
        i18n = self._i18n
        if not enabled:
            return {code: i18n.t(code, "maintenance.over") for code in i18n.languages}
        return {
            code: i18n.t(
                code,
                "gate.maintenance",
                message=message or i18n.t(code, "gate.maintenance_default"),
            )
            for code in i18n.languages
        }
