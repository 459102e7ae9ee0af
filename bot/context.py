"""Typed dependencies for handlers: ``BotData`` (filled in ``post_init``) and ``BotContext``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from telegram import Update
from telegram.ext import Application, CallbackContext, ExtBot

from bot.current import current_user
from bot.i18n import I18n
from bot.settings import Settings
from services.clock import Clock, utc_now
from views.translator import Translator

if TYPE_CHECKING:
    from bot.flood import Cooldown, FloodControl
    from bot.legal import LegalTexts
    from bot.sessions import SessionConversationHandler
    from services.admin import AdminService
    from services.audit import AuditService
    from services.balance import BalanceService
    from services.broadcast import BroadcastService
    from services.bulk import BulkService
    from services.export import ExportService
    from services.notifications import Notifier, OutboxDelivery
    from services.orders import OrderService
    from services.payments import PaymentService
    from services.presets import PresetService
    from services.privacy import PrivacyService
    from services.purchase import PurchaseService
    from services.refunds import RefundService
    from services.runtime import RuntimeFlags
    from services.sessions import SessionService
    from services.stats import StatsService
    from services.tracking import TrackingService
    from services.users import UserService
    from storage.repos import Storage


class NotReady(RuntimeError):
    """A dependency was used before ``post_init`` provided it."""


@dataclass
class Services:
    users: UserService
    runtime: RuntimeFlags
    notifier: Notifier
    outbox: OutboxDelivery
    sessions: SessionService
    balance: BalanceService
    payments: PaymentService
    audit: AuditService
    orders: OrderService
    purchase: PurchaseService
    refunds: RefundService
    tracking: TrackingService
    admin: AdminService
    stats: StatsService
    broadcasts: BroadcastService
    exports: ExportService
    privacy: PrivacyService
    presets: PresetService
    bulk: BulkService = field(init=False)  # built from the services above (post_init)


@dataclass
class BotData:
    """Constructible with no arguments (PTB requires it); ``post_init`` fills it."""

    settings: Settings | None = None
    i18n: I18n | None = None
    storage: Storage | None = None
    services: Services | None = None
    clock: Clock = utc_now
    conversations: dict[str, SessionConversationHandler] = field(default_factory=dict)
    flood: FloodControl | None = None
    edit_notices: Cooldown | None = None  # one "edits are not applied" reply per chat a while
    extras: dict[str, Any] = field(default_factory=dict)
    legal: LegalTexts | None = None

    def require_settings(self) -> Settings:
        if self.settings is None:
            raise NotReady("settings")
        return self.settings

    def require_i18n(self) -> I18n:
        if self.i18n is None:
            raise NotReady("i18n")
        return self.i18n

    def require_legal(self) -> LegalTexts:
        if self.legal is None:
            raise NotReady("legal")
        return self.legal

    def require_storage(self) -> Storage:
        if self.storage is None:
            raise NotReady("storage")
        return self.storage

    def require_services(self) -> Services:
        if self.services is None:
            raise NotReady("services")
        return self.services


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], BotData]):
    """``context.settings``/``.i18n``/``.services`` instead of string keys and casts."""

    def __init__(
        self,
        application: Application[Any, Any, Any, Any, Any, Any],
        chat_id: int | None = None,
        user_id: int | None = None,
    ) -> None:
        super().__init__(application=application, chat_id=chat_id, user_id=user_id)

    @property
    def settings(self) -> Settings:
        return self.bot_data.require_settings()

    @property
    def i18n(self) -> I18n:
        return self.bot_data.require_i18n()

    @property
    def services(self) -> Services:
        return self.bot_data.require_services()

    @property
    def legal(self) -> LegalTexts:
        return self.bot_data.require_legal()

    @property
    def storage(self) -> Storage:
        return self.bot_data.require_storage()

    # -- the language of this update, bound once (PTB examples/contexttypesbot.py) ---------

    @classmethod
    def from_update(
        cls, update: object, application: Application[Any, Any, Any, Any, Any, Any]
    ) -> BotContext:
        context = super().from_update(update, application)
        context._update = update  # type: ignore[attr-defined]
        return context

    @property
    def lang(self) -> str:
        """The current user's language (set by the gates), else Telegram's hint; cached for
        the rest of the update once the user is known."""
        cached: str | None = getattr(self, "_lang", None)
        if cached is not None:
            return cached
        view = current_user()
        if view is not None:
            self._lang = view.language
            return view.language
        update = getattr(self, "_update", None)
        user = update.effective_user if isinstance(update, Update) else None
        return self.i18n.resolve_language(user.language_code if user else None)

    @property
    def tr(self) -> Translator:
        """A translator bound to ``lang``: what screen functions take."""
        return Translator(self.i18n, self.lang)

    def t(self, key: str, /, **kwargs: Any) -> str:
        return self.i18n.t(self.lang, key, **kwargs)
