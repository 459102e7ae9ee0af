"""The composition root: the only place that builds the Application and registers handlers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from telegram import LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    ContextTypes,
    Defaults,
)

from bot.admin_services import build_admin_services
from bot.context import BotContext, BotData, Services
from bot.flood import Cooldown, FloodControl
from bot.i18n import I18n
from bot.inbox import Inbox
from bot.lease import PollerLease, attach_lease
from bot.legal import LegalTexts, command_menus
from bot.notices import BotNotices
from bot.runner import UpdatesRequest, attach_updates_monitor, updates_monitor_of
from bot.sessions import SessionConversationHandler
from bot.settings import CARD_CURRENCIES, Settings
from bot.telegram_request import AiohttpRequest
from bot.update_processor import PerChatUpdateProcessor
from bot.web import WebServer, application_checks
from conversations.order import build_order_conversation
from conversations.presets import build_presets_conversation
from conversations.refund import build_refund_conversation
from conversations.support import build_support_conversation
from conversations.templates import build_templates_conversation
from conversations.topup import build_topup_conversation
from handlers import (
    balance,
    bulk,
    gates,
    label_format,
    labels,
    legal,
    notifications,
    orders_stale,
    payments,
    refunds,
    start,
)
from handlers.admin import refunds as admin_refunds
from handlers.admin import registry as admin_console
from handlers.errors import error_handler
from handlers.oxapay_callback import make_oxapay_callback
from jobs.registry import schedule_jobs
from providers.payments.oxapay import OxaPayClient
from providers.shipping.shipstation import ShipStationClient
from services.audit import AuditService
from services.balance import BalanceService
from services.bulk import BulkConfig, BulkService
from services.clock import Clock, utc_now
from services.notifications import Notifier, OutboxDelivery
from services.orders import OrderConfig, OrderService
from services.payments import PaymentService, TopUpConfig
from services.presets import PresetConfig, PresetService
from services.pricing import PricingRules
from services.privacy import PrivacyService
from services.purchase import PurchaseService
from services.refunds import RefundConfig, RefundService
from services.runtime import RuntimeFlags
from services.sessions import SessionService
from services.shipping import ShippingGateway
from services.tracking import TrackingConfig, TrackingService
from services.users import UserService
from storage.client import Mongo, MongoOptions
from storage.indexes import IndexOptions
from storage.locks import LocksRepo
from storage.persistence import MongoPersistence
from storage.repos import Storage

_LOGGER = logging.getLogger(__name__)

# Note: order matters! Within a group only the first matching handler runs; every group
# runs in ascending order until a handler raises ApplicationHandlerStop.
# -100..-93: context + dedup, payments, flood, account, edits, blocked, maintenance, session
GROUP_GATES = -100
GROUP_FEATURES = 0  # conversations first, then stateless features, then catch-alls

BotApplication = Application[Any, BotContext, Any, Any, BotData, Any]

def build_storage(settings: Settings, url: str, *, client: Mongo | None = None) -> Storage:
    """``client``: an already connected database (the harness shares one across restarts)."""
    mongo = settings.mongo
    return Storage(
        url,
        MongoOptions(
            database=mongo.database,
            max_pool_size=mongo.max_pool_size,
            min_pool_size=mongo.min_pool_size,
            max_idle_time_ms=mongo.max_idle_time_ms,
            server_selection_timeout_ms=mongo.server_selection_timeout_ms,
            money_write_concern=mongo.money_write_concern,
            money_wtimeout_ms=mongo.money_wtimeout_ms,
        ),
        session_ttl=timedelta(minutes=settings.sessions.ttl_minutes),
        index_options=IndexOptions(session_purge_grace_seconds=settings.sessions.purge_grace_seconds),
        mongo=client,
    )


def build_conversations() -> list[SessionConversationHandler]:
    # Top-up first: started from the order review it runs while the order waits.
    return [
        build_topup_conversation(),
        build_order_conversation(),
        build_refund_conversation(),
        build_support_conversation(),
        build_templates_conversation(),
        build_presets_conversation(),
    ]


def build_application(
    settings: Settings,
    storage: Storage,
    *,
    token: str | None = None,
    clock: Clock = utc_now,
    i18n: I18n | None = None,
) -> BotApplication:
    """Builds the production application; ``token`` defaults to ``TELEGRAM_BOT_TOKEN``."""
    if token is None:
        settings.secrets.require("TELEGRAM_BOT_TOKEN")
        assert settings.secrets.telegram_bot_token is not None
        token = settings.secrets.telegram_bot_token.get_secret_value()
    tg = settings.telegram
    request = AiohttpRequest(
        connection_pool_size=tg.connection_pool_size,
        connect_timeout=tg.connect_timeout,
        read_timeout=tg.read_timeout,
        write_timeout=tg.write_timeout,
        pool_timeout=tg.pool_timeout,
    )
    # Records each successful getUpdates (readiness), counts 409s, fences polling by lease.
    updates_request = UpdatesRequest(
        AiohttpRequest(
            connection_pool_size=2,
            connect_timeout=tg.connect_timeout,
            read_timeout=tg.read_timeout + tg.poll_timeout,
            write_timeout=tg.write_timeout,
            pool_timeout=tg.pool_timeout,
        )
    )
    context_types = ContextTypes(context=BotContext, bot_data=BotData)
    application: BotApplication = (
        ApplicationBuilder()
        .token(token)
        .base_url(tg.base_url)
        .base_file_url(tg.base_file_url)
        .request(request)
        .get_updates_request(updates_request)
        .rate_limiter(
            AIORateLimiter(
                overall_max_rate=tg.overall_max_rate,
                group_max_rate=tg.group_max_rate,
                max_retries=tg.rate_limit_max_retries,
            )
        )
        .concurrent_updates(
            PerChatUpdateProcessor(
                tg.max_concurrent_updates, max_queued_per_chat=tg.max_queued_per_chat
            )
        )
        .persistence(
            MongoPersistence(
                storage.sessions_repo,
                update_interval=settings.sessions.flush_interval_seconds,
                clock=clock,
            )
        )
        .defaults(
            Defaults(
                parse_mode=ParseMode.HTML,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        )
        .context_types(context_types)
        .post_init(_post_init)
        .post_shutdown(_post_shutdown)
        .build()
    )
    data = application.bot_data
    data.settings = settings
    data.i18n = i18n or I18n.load(settings.i18n.languages, settings.i18n.default_language)
    data.legal = LegalTexts(data.i18n, settings)
    data.storage = storage
    data.clock = clock
    data.flood = FloodControl(
        max_updates=settings.flood.max_updates,
        window_seconds=settings.flood.window_seconds,
        mute_seconds=settings.flood.mute_seconds,
    )
    data.edit_notices = Cooldown(settings.updates.edit_notice_seconds)
    processor = application.update_processor
    assert isinstance(processor, PerChatUpdateProcessor)
    processor.drop_listeners.append(gates.on_chat_queue_full(application))
    attach_updates_monitor(data, updates_request)
    _register_handlers(application)
    return application


def _register_handlers(application: BotApplication) -> None:
    for offset, handler in gates.build_handlers():
        application.add_handler(handler, group=GROUP_GATES + offset)
    application.add_handlers(
        payments.build_priority_handlers(), group=GROUP_GATES + gates.PAYMENTS_OFFSET
    )
    conversations = build_conversations()
    for conversation in conversations:
        assert conversation.name is not None
        application.bot_data.conversations[conversation.name] = conversation
    settings = application.bot_data.require_settings()
    admin_handlers = admin_console.build_handlers(settings)
    for conversation in admin_console.conversations(admin_handlers):
        assert conversation.name is not None
        application.bot_data.conversations[conversation.name] = conversation
    application.add_handlers(
        [
            *conversations,
            *start.build_handlers(),
            *legal.build_handlers(),
            *balance.build_handlers(),
            *labels.build_handlers(),
            *bulk.build_handlers(),
            *refunds.build_handlers(),
            *orders_stale.build_handlers(),
            *payments.build_handlers(),
            *admin_refunds.build_handlers(settings),
            *admin_handlers,
            *notifications.build_handlers(),
            *label_format.build_handlers(),
            *payments.build_fallback_handlers(),
            *start.build_fallback_handlers(),
        ],
        group=GROUP_FEATURES,
    )
    application.add_error_handler(error_handler)


async def _post_init(application: BotApplication) -> None:
    """Connects MongoDB inside the running loop, builds the services, schedules jobs."""
    data = application.bot_data
    settings = data.require_settings()
    storage = await data.require_storage().start()
    clock = data.clock
    admin_ids = [entry.user_id for entry in settings.admins]
    users = UserService(storage.users, clock=clock)
    notifier = Notifier(
        storage.outbox,
        admin_ids=admin_ids,
        dedup_window=timedelta(minutes=settings.outbox.alert_dedup_minutes),
        clock=clock,
    )
    pay = settings.payments
    notices = BotNotices(
        data.require_i18n(),
        notifier,
        users,
        stale_after=timedelta(minutes=pay.stale_after_minutes),
        escalate_after=timedelta(hours=pay.escalate_after_hours),
    )
    oxapay = _build_oxapay(settings, notifier)
    if oxapay is not None:
        await oxapay.start()
        data.extras["oxapay"] = oxapay
    runtime = RuntimeFlags(
        storage.runtime_settings, clock=clock, default_api_mode=settings.shipping.default_api_mode
    )
    gateway = ShippingGateway(_build_shipstation(settings, notifier), runtime.api_mode)
    data.extras["shipping"] = gateway
    ship = settings.shipping
    console = build_admin_services(
        settings,
        storage,
        i18n=data.require_i18n(),
        notifier=notifier,
        users=users,
        runtime=runtime,
        clock=clock,
    )
    data.services = Services(
        admin=console.admin,
        stats=console.stats,
        broadcasts=console.broadcasts,
        exports=console.exports,
        users=users,
        runtime=runtime,
        notifier=notifier,
        outbox=OutboxDelivery(
            storage.outbox,
            max_attempts=settings.outbox.max_attempts,
            batch_size=settings.outbox.batch_size,
            clock=clock,
        ),
        sessions=SessionService(
            storage.sessions,
            storage.processed_updates,
            storage.inbox,
            processed_ttl=timedelta(hours=settings.updates.processed_ttl_hours),
            clock=clock,
        ),
        balance=BalanceService(storage.users, storage.ledger),
        payments=PaymentService(
            storage.payments,
            storage.ledger,
            notices,
            _topup_config(
                settings,
                crypto_enabled=oxapay is not None,
                card_enabled=_card_enabled(settings),
            ),
            oxapay=oxapay,
            audit=AuditService(storage.audit, clock=clock),
            confirmations=storage.confirmations,
            confirm_ttl=timedelta(minutes=settings.admin_console.confirm_ttl_minutes),
            clock=clock,
        ),
        audit=AuditService(storage.audit, clock=clock),
        orders=OrderService(
            storage.orders,
            storage.templates,
            storage.users,
            gateway,
            OrderConfig(
                pricing=PricingRules(
                    markup_percent=ship.markup_percent, markup_fixed_cents=ship.markup_fixed_cents
                ),
                rates_max_age=timedelta(minutes=ship.rates_max_age_minutes),
                session_ttl=timedelta(minutes=settings.sessions.ttl_minutes),
                min_weight_oz=ship.min_weight_oz,
                max_weight_oz=ship.max_weight_oz,
                max_side_in=ship.max_side_in,
                templates_per_user=ship.templates_per_user,
                validate_addresses=ship.validate_addresses,
                max_insured_value_cents=ship.max_insured_value_cents,
                insurance_provider=ship.insurance_provider,
            ),
            clock=clock,
        ),
        refunds=RefundService(
            storage.refunds,
            storage.orders,
            storage.ledger,
            gateway,
            notices,
            RefundConfig(
                min_age=timedelta(days=settings.refunds.min_label_age_days),
                max_age=timedelta(days=settings.refunds.max_label_age_days),
                max_numbers=settings.refunds.max_numbers_per_request,
                max_attempts=settings.refunds.max_attempts,
                retry_base=timedelta(seconds=settings.refunds.retry_base_seconds),
                voiding_lease=timedelta(seconds=settings.refunds.voiding_lease_seconds),
                batch_limit=settings.refunds.batch_limit,
                confirm_ttl=timedelta(minutes=settings.admin_console.confirm_ttl_minutes),
                remind_days=settings.refunds.remind_days_before,
            ),
            confirmations=storage.confirmations,
            audit=AuditService(storage.audit, clock=clock),
            prefs=users,
            clock=clock,
        ),
        tracking=TrackingService(
            storage.orders,
            gateway,
            notices,
            users,
            TrackingConfig(
                interval=timedelta(minutes=settings.tracking.interval_minutes),
                retry_base=timedelta(seconds=settings.tracking.retry_base_seconds),
                retry_max=timedelta(minutes=settings.tracking.retry_max_minutes),
                max_age=timedelta(days=settings.tracking.max_age_days),
                max_calls=settings.tracking.max_calls_per_run,
            ),
            clock=clock,
        ),
        privacy=build_privacy_service(settings, storage, notices, clock=clock),
        presets=PresetService(
            storage.presets,
            PresetConfig(
                max_per_user=settings.presets.max_per_user,
                min_weight_oz=ship.min_weight_oz,
                max_weight_oz=ship.max_weight_oz,
                max_side_in=ship.max_side_in,
            ),
            clock=clock,
        ),
        purchase=PurchaseService(
            storage.orders,
            storage.ledger,
            gateway,
            notices,
            recovery_after=timedelta(seconds=ship.recovery_after_seconds),
            clock=clock,
            label_format_of=users.label_format_of,
        ),
    )
    data.services.bulk = build_bulk_service(settings, storage, data.services, clock=clock)
    schedule_jobs(application, settings, in_memory=storage.mongo.in_memory)
    inbox = Inbox(
        storage.inbox,
        retention=timedelta(hours=settings.updates.processed_ttl_hours),
        clock=clock,
    )
    monitor = updates_monitor_of(data)
    if monitor is not None:
        monitor.on_batch = inbox.store_batch
    processor = application.update_processor
    if isinstance(processor, PerChatUpdateProcessor):
        processor.done_listeners.append(inbox.done)
    inbox.start()
    data.extras["inbox"] = inbox
    if settings.poller.enabled:
        # Started and stopped by bot.runner, which polls only while it is held.
        attach_lease(
            data,
            PollerLease(
                LocksRepo(storage.mongo.db),
                lease_seconds=settings.poller.lease_seconds,
                renew_seconds=settings.poller.renew_seconds,
            ),
        )
    if settings.web.enabled:
        web = WebServer(
            settings.web.host,
            settings.web.port,
            checks=application_checks(
                application, updates_max_age_seconds=settings.web.updates_max_age_seconds
            ),
            check_timeout=settings.web.check_timeout_seconds,
            max_body_bytes=settings.web.max_body_bytes,
        )
        merchant_key = settings.secrets.oxapay_merchant_api_key
        web.add_route(
            "POST",
            "/callbacks/oxapay",
            make_oxapay_callback(
                lambda: data.require_services().payments,
                lambda: merchant_key.get_secret_value() if merchant_key else None,
                max_bytes=settings.payments.callback_max_bytes,
            ),
        )
        await web.start()
        data.extras["web"] = web
    for language_code, commands in command_menus(data.require_i18n()):
        await application.bot.set_my_commands(commands, language_code=language_code)
    _LOGGER.info("application initialised")


def build_bulk_service(
    settings: Settings, storage: Storage, services: Services, *, clock: Clock
) -> BulkService:
    bulk, ship = settings.bulk, settings.shipping
    return BulkService(
        storage.bulk_jobs,
        storage.orders,
        services.orders,
        services.purchase,
        services.balance.balance_cents,
        BulkConfig(
            max_bytes=bulk.max_file_bytes,
            max_rows=bulk.max_rows,
            quote_concurrency=bulk.quote_concurrency,
            carrier_rate_per_second=bulk.carrier_rate_per_second,
            rates_max_age=timedelta(minutes=ship.rates_max_age_minutes),
            row_ttl=timedelta(days=bulk.row_ttl_days),
            min_weight_oz=ship.min_weight_oz,
            max_weight_oz=ship.max_weight_oz,
            max_side_in=ship.max_side_in,
        ),
        audit=services.audit,
        clock=clock,
    )


def build_privacy_service(
    settings: Settings, storage: Storage, notices: BotNotices, *, clock: Clock
) -> PrivacyService:
    """Terms acceptance and data deletion (also used by ``python -m bot delete-user-data``)."""
    return PrivacyService(
        users=storage.users,
        templates=storage.templates,
        orders=storage.orders,
        payments=storage.payments,
        refunds=storage.refunds,
        sessions=storage.sessions,
        outbox=storage.outbox,
        deletions=storage.deletions,
        audit=AuditService(storage.audit, clock=clock),
        notices=notices,
        confirm_ttl=timedelta(minutes=settings.legal.deletion_confirm_minutes),
        clock=clock,
        bulk_jobs=storage.bulk_jobs,
        presets=storage.presets,
    )


def _card_enabled(settings: Settings) -> bool:
    if not settings.payments.card.enabled:
        return False
    token = settings.secrets.telegram_payment_provider_token
    if token is None or not token.get_secret_value().strip():
        _LOGGER.warning(
            "TELEGRAM_PAYMENT_PROVIDER_TOKEN is not set: card top-ups are disabled"
        )
        return False
    return True


def _topup_config(
    settings: Settings, *, crypto_enabled: bool, card_enabled: bool
) -> TopUpConfig:
    pay = settings.payments
    return TopUpConfig(
        currency=pay.currency,
        min_cents=pay.min_topup_cents,
        max_cents=pay.max_topup_cents,
        lifetime_minutes=pay.oxapay.lifetime_minutes,
        callback_url=pay.oxapay.callback_url,
        return_url=pay.oxapay.return_url,
        stars_enabled=pay.stars.enabled,
        crypto_enabled=crypto_enabled,
        card_enabled=card_enabled,
        card_minor_exp=CARD_CURRENCIES[pay.currency][0],
        card_lifetime_minutes=pay.card.invoice_lifetime_minutes,
        stars_per_usd=pay.stars.stars_per_usd,
        stars_lifetime_minutes=pay.stars.invoice_lifetime_minutes,
        stale_after=timedelta(minutes=pay.stale_after_minutes),
        escalate_after=timedelta(hours=pay.escalate_after_hours),
        stars_max_pages=pay.stars.reconcile_max_pages,
        stars_overlap=pay.stars.history_overlap,
        stars_refund_retry_after=timedelta(seconds=pay.stars.refund_retry_after_seconds),
        stars_refund_alert_after=timedelta(minutes=pay.stars.refund_unknown_alert_minutes),
    )


def _circuit_alert(notifier: Notifier) -> Callable[[str, object, object], Awaitable[None]]:
    """One admin alert per circuit-breaker transition of a provider."""

    async def circuit_changed(provider: str, old: object, new: object) -> None:
        await notifier.alert_admins(
            f"⚠️ Provider {provider}: circuit {old} → {new}",
            dedup_key=f"circuit:{provider}:{new}",
            windowed=True,
        )

    return circuit_changed


def _build_oxapay(settings: Settings, notifier: Notifier) -> OxaPayClient | None:
    if not settings.payments.oxapay.enabled:
        _LOGGER.info("payments.oxapay.enabled is false: crypto top-ups are off")
        return None
    key = settings.secrets.oxapay_merchant_api_key
    if key is None or not key.get_secret_value():
        _LOGGER.warning("OXAPAY_MERCHANT_API_KEY is not set: crypto top-ups are disabled")
        return None
    cfg = settings.payments.oxapay

    circuit_changed = _circuit_alert(notifier)
    return OxaPayClient(
        cfg.base_url,
        key,
        sandbox=cfg.sandbox,
        timeout_total=cfg.timeout_seconds,
        max_attempts=cfg.max_attempts,
        failure_threshold=cfg.failure_threshold,
        recovery_timeout=cfg.recovery_timeout_seconds,
        on_state_change=circuit_changed,
    )


def _build_shipstation(settings: Settings, notifier: Notifier) -> dict[str, ShipStationClient]:
    """One client per configured key; a mode without a key is unavailable."""
    ship = settings.shipping
    secrets = settings.secrets
    keys = {"test": secrets.shipstation_test_api_key, "production": secrets.shipstation_api_key}

    circuit_changed = _circuit_alert(notifier)
    clients: dict[str, ShipStationClient] = {}
    for mode, secret in keys.items():
        if secret is None or not secret.get_secret_value():
            _LOGGER.warning("no ShipStation key for %s mode: that mode is unavailable", mode)
            continue
        value = secret.get_secret_value()
        clients[mode] = ShipStationClient(
            ship.base_url,
            lambda value=value: value,  # type: ignore[misc]
            timeout_total=ship.timeout_seconds,
            purchase_timeout=ship.purchase_timeout_seconds,
            validation_timeout=ship.validation_timeout_seconds,
            max_attempts=ship.max_attempts,
            failure_threshold=ship.failure_threshold,
            recovery_timeout=ship.recovery_timeout_seconds,
            on_state_change=circuit_changed,
        )
    return clients


async def _post_shutdown(application: BotApplication) -> None:
    inbox = application.bot_data.extras.pop("inbox", None)
    if isinstance(inbox, Inbox):
        await inbox.stop()
    web = application.bot_data.extras.pop("web", None)
    if isinstance(web, WebServer):
        await web.stop()  # first: callbacks need MongoDB and the services
    gateway = application.bot_data.extras.pop("shipping", None)
    if isinstance(gateway, ShippingGateway):
        await gateway.close()
    oxapay = application.bot_data.extras.pop("oxapay", None)
    if isinstance(oxapay, OxaPayClient):
        await oxapay.close()
    storage = application.bot_data.storage
    if storage is not None:
        await storage.close()
    _LOGGER.info("application shut down")

