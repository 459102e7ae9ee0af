"""``python -m bot delete-user-data <user id>``: a deletion an operator runs.

For a request that did not come through the bot's button (an e-mail, a letter), and to
apply again, after a restore, the deletions made since the backup was taken. The same
``PrivacyService`` as the button: the same refusals while something is open, the same
erasure, audited (actor: ``--by``, default 0 for "operator") and announced to the admins
through the outbox (delivered by the running bot). Without ``--yes`` it only reports.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import TextIO

from bot.i18n import I18n
from bot.notices import BotNotices
from bot.settings import Settings
from services.clock import Clock, utc_now
from services.notifications import Notifier
from services.users import UserService
from storage.repos import Storage

EXIT_DONE = 0
EXIT_REFUSED = 1


async def run_deletion(
    settings: Settings,
    storage: Storage,
    user_id: int,
    *,
    confirm: bool,
    actor: int = 0,
    clock: Clock = utc_now,
    out: TextIO = sys.stdout,
) -> int:
    from bot.application import build_privacy_service

    await storage.start()
    try:
        i18n = I18n.load(settings.i18n.languages, settings.i18n.default_language)
        notifier = Notifier(
            storage.outbox,
            admin_ids=[entry.user_id for entry in settings.admins],
            dedup_window=timedelta(minutes=settings.outbox.alert_dedup_minutes),
            clock=clock,
        )
        pay = settings.payments
        notices = BotNotices(
            i18n,
            notifier,
            UserService(storage.users, clock=clock),
            stale_after=timedelta(minutes=pay.stale_after_minutes),
            escalate_after=timedelta(hours=pay.escalate_after_hours),
        )
        privacy = build_privacy_service(settings, storage, notices, clock=clock)
        if await storage.users.get(user_id) is None:
            print(f"refused: no account {user_id}", file=out)
            return EXIT_REFUSED
        offer = await privacy.offer_deletion(user_id)
        if offer.blockers:
            print(f"refused: still open for user {user_id}: {', '.join(offer.blockers)}", file=out)
            return EXIT_REFUSED
        plan = (
            f"user {user_id}: {offer.templates} templates to delete, {offer.orders} orders to "
            f"anonymise, balance_cents={offer.balance_cents} kept"
        )
        assert offer.deletion_id is not None
        if not confirm:
            await privacy.cancel_deletion(user_id, offer.deletion_id)
            print(f"would delete {plan} (run again with --yes)", file=out)
            return EXIT_DONE
        outcome = await privacy.confirm_deletion(user_id, offer.deletion_id, actor=actor)
        if outcome.status != "done":
            print(f"refused: {outcome.status} {', '.join(outcome.blockers)}", file=out)
            return EXIT_REFUSED
        counts = outcome.counts
        print(
            f"deleted user {user_id}: {counts.get('templates', 0)} templates deleted, "
            f"{counts.get('orders', 0)} orders anonymised, "
            f"balance_cents={outcome.balance_cents} kept",
            file=out,
        )
        return EXIT_DONE
    finally:
        await storage.close()
