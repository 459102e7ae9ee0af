"""Builds the admin console's services (called by ``bot.application._post_init``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bot.admin_notices import BotAdminNotices
from bot.i18n import I18n
from bot.settings import Settings
from services.admin import AdminService
from services.audit import AuditService
from services.broadcast import BroadcastConfig, BroadcastService
from services.clock import Clock
from services.export import ExportService
from services.notifications import Notifier
from services.runtime import RuntimeFlags
from services.stats import StatsService
from services.users import UserService
from storage.repos import Storage


@dataclass(frozen=True)
class AdminServices:
    admin: AdminService
    stats: StatsService
    broadcasts: BroadcastService
    exports: ExportService


def build_admin_services(
    settings: Settings,
    storage: Storage,
    *,
    i18n: I18n,
    notifier: Notifier,
    users: UserService,
    runtime: RuntimeFlags,
    clock: Clock,
) -> AdminServices:
    console = settings.admin_console
    cast = settings.broadcast
    audit = AuditService(storage.audit, clock=clock)
    broadcasts = BroadcastService(
        storage.broadcasts,
        storage.users,
        BroadcastConfig(
            rate_per_second=cast.rate_per_second,
            progress_interval=cast.progress_interval_seconds,
            batch_size=cast.batch_size,
            max_concurrency=cast.max_concurrency,
            max_text_length=cast.max_text_length,
        ),
        audit=audit,
        clock=clock,
    )
    return AdminServices(
        admin=AdminService(
            users=storage.users,
            orders=storage.orders,
            payments=storage.payments,
            ledger=storage.ledger,
            confirmations=storage.confirmations,
            audit=audit,
            runtime=runtime,
            broadcasts=broadcasts,
            notices=BotAdminNotices(
                i18n, notifier, users, support_contact=settings.support_contact
            ),
            confirm_ttl=timedelta(minutes=console.confirm_ttl_minutes),
            recent_items=console.recent_items,
            clock=clock,
        ),
        stats=StatsService(storage.stats, storage.payments, clock=clock),
        broadcasts=broadcasts,
        exports=ExportService(
            storage.exports, audit=audit, batch_size=console.export_batch_size, clock=clock
        ),
    )
