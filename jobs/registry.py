"""Registers every recurring job; names are deterministic so a restart replaces them."""

from __future__ import annotations

from typing import Any

from telegram.ext import Application

from bot.lease import leader_only
from bot.settings import Settings
from jobs.broadcast import deliver_broadcasts_job
from jobs.orders import deliver_labels_job, recover_purchases_job
from jobs.outbox import deliver_outbox_job
from jobs.payments import reconcile_payments_job, reconcile_stars_job, stale_payments_job
from jobs.refunds import check_refunds_job, remind_refunds_job
from jobs.sessions import expire_sessions_job, purge_expired_job
from jobs.tracking import check_tracking_job


def schedule_jobs(
    application: Application[Any, Any, Any, Any, Any, Any], settings: Settings, *, in_memory: bool
) -> None:
    queue = application.job_queue
    if queue is None:
        raise RuntimeError("the job queue is missing: install python-telegram-bot[job-queue]")
    payments = settings.payments
    jobs: list[tuple[str, Any, float]] = [
        # Leader-only: money, provider calls, in-memory conversation state, and sends (a
        # standby must not deliver what the leader delivers).
        ("outbox:deliver", leader_only(deliver_outbox_job), settings.outbox.interval_seconds),
        (
            "sessions:expire",
            leader_only(expire_sessions_job),
            settings.sessions.sweep_interval_seconds,
        ),
        (
            "payments:reconcile",
            leader_only(reconcile_payments_job),
            payments.reconcile_interval_seconds,
        ),
        ("payments:stale", leader_only(stale_payments_job), 60.0),
        (
            "payments:reconcile-stars",
            leader_only(reconcile_stars_job),
            payments.reconcile_interval_seconds,
        ),
        (
            "orders:recover",
            leader_only(recover_purchases_job),
            settings.shipping.recovery_interval_seconds,
        ),
        ("orders:deliver-labels", leader_only(deliver_labels_job), 30.0),
        (
            "refunds:check",
            leader_only(check_refunds_job),
            settings.refunds.check_interval_seconds,
        ),
        (
            "refunds:remind",
            leader_only(remind_refunds_job),
            settings.refunds.remind_interval_seconds,
        ),
        (
            "tracking:check",
            leader_only(check_tracking_job),
            settings.tracking.check_interval_seconds,
        ),
        # Starts the broadcast runner task; one instance delivers.
        (
            "broadcast:deliver",
            leader_only(deliver_broadcasts_job),
            settings.broadcast.interval_seconds,
        ),
    ]
    if in_memory:
        jobs.append(("storage:purge-expired", purge_expired_job, 60.0))
    for name, callback, interval in jobs:
        for old in queue.get_jobs_by_name(name):
            old.schedule_removal()
        queue.run_repeating(
            callback,
            interval=interval,
            first=min(interval, 1.0),
            name=name,
            job_kwargs={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        )
