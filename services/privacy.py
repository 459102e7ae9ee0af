"""Terms acceptance and "Delete my data".

**Terms.** A customer accepts the terms once per ``legal.terms_version`` before a top-up;
the version and time are stored on the account (``terms_version``, ``terms_accepted_at``,
the last versions in ``terms_history``).

**Deletion** (``data_deletions``, see ``storage/deletions.py``). Refused while money or a
label is still moving (a purchase in flight, a failed order not yet compensated, a label
not yet delivered, an open refund, a payment waiting or under review, a Stars refund
running): those need the data to finish. Otherwise, once the customer confirms:

1. address templates and parcel presets deleted; drafts deleted (nothing was paid);
2. every other order anonymised: addresses replaced by ``{"anonymised": True}`` (plus
   ``country`` when the address has one), the carrier's address checks
   (``<side>_validation``, with its suggested address) and the label file's
   ``label_file_id``/``label_url``/``label_downloads`` removed; amounts, dates, carrier,
   service, label id and tracking number stay;
   a bulk job's copy of the uploaded rows and its sender removed (``bulk_jobs``; a job
   still quoting, buying or delivering blocks the deletion like a purchase in flight);
3. the account's name and username erased (balance, ledger, language and the terms
   acceptance stay: the balance is money owed to the customer);
4. the conversation values and the delivered notices to the customer deleted;
5. audited (``data-deletion:<id>``), admins notified, the request ``done``.

Every step is idempotent, so pressing the button again after a crash finishes the run,
and a finished request is never run twice. The ledger is not touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Protocol

from bson import ObjectId
from bson.errors import InvalidId

from services.audit import AuditService
from services.clock import Clock, utc_now
from storage.bulk_jobs import BulkJobsRepo
from storage.client import Document
from storage.deletions import DataDeletionsRepo
from storage.orders import OrdersRepo
from storage.outbox import OutboxRepo
from storage.payments import OPEN_STATUSES, PaymentsRepo
from storage.presets import PresetsRepo
from storage.refunds import RefundsRepo
from storage.sessions import SessionsRepo
from storage.templates import TemplatesRepo
from storage.users import UsersRepo

ANONYMISED_BATCH = 200
# Reasons a deletion waits (``privacy.delete.reason.<code>``), in the order shown.
BLOCKERS = ("purchase", "label_delivery", "refund", "payment", "payment_review", "stars_refund")


class DeletionNotices(Protocol):
    async def data_deleted(
        self, user_id: int, *, templates: int, orders: int, balance_cents: int, key: str
    ) -> None: ...


@dataclass(frozen=True)
class DeletionOffer:
    """What ``/delete_my_data`` shows: the blockers, or what the button will do."""

    blockers: tuple[str, ...]
    deletion_id: str | None = None
    templates: int = 0
    orders: int = 0
    balance_cents: int = 0


class DeletionStatus(StrEnum):
    DONE = "done"
    ALREADY = "already"
    EXPIRED = "expired"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class DeletionOutcome:
    status: DeletionStatus
    blockers: tuple[str, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)
    balance_cents: int = 0


class PrivacyService:
    def __init__(
        self,
        *,
        users: UsersRepo,
        templates: TemplatesRepo,
        orders: OrdersRepo,
        payments: PaymentsRepo,
        refunds: RefundsRepo,
        sessions: SessionsRepo,
        outbox: OutboxRepo,
        deletions: DataDeletionsRepo,
        audit: AuditService,
        notices: DeletionNotices,
        confirm_ttl: timedelta,
        clock: Clock = utc_now,
        bulk_jobs: BulkJobsRepo | None = None,
        presets: PresetsRepo | None = None,
    ) -> None:
        self._bulk_jobs = bulk_jobs
        self._presets = presets
        self._users = users
        self._templates = templates
        self._orders = orders
        self._payments = payments
        self._refunds = refunds
        self._sessions = sessions
        self._outbox = outbox
        self._deletions = deletions
        self._audit = audit
        self._notices = notices
        self._confirm_ttl = confirm_ttl
        self._clock = clock

    # -- terms ---------------------------------------------------------------------------

    async def accepted_terms(self, user_id: int) -> str | None:
        """The terms version the customer accepted last, or None."""
        doc = await self._users.get(user_id)
        version = (doc or {}).get("terms_version")
        return str(version) if version is not None else None

    async def accept_terms(self, user_id: int, version: str) -> None:
        await self._users.accept_terms(user_id, version, now=self._clock())

    # -- deletion ------------------------------------------------------------------------

    async def blockers(self, user_id: int) -> tuple[str, ...]:
        """Why the data cannot be deleted now (reason codes), in a stable order."""
        found: set[str] = set()
        for order in await self._orders.open_for_user(user_id):
            if order.get("status") == "purchased":
                found.add("label_delivery")
            else:
                found.add("purchase")
        if self._bulk_jobs is not None and await self._bulk_jobs.active_for_user(user_id):
            found.add("purchase")  # a bulk job quoting, buying or delivering
        if await self._refunds.open_for_user(user_id):
            found.add("refund")
        for payment in await self._payments.open_for_user(user_id):
            status = payment.get("status")
            if status in OPEN_STATUSES:
                found.add("payment")
            elif status == "suspicious":
                found.add("payment_review")
            else:
                found.add("stars_refund")
        return tuple(code for code in BLOCKERS if code in found)

    async def offer_deletion(self, user_id: int) -> DeletionOffer:
        blockers = await self.blockers(user_id)
        if blockers:
            return DeletionOffer(blockers=blockers)
        now = self._clock()
        doc = await self._deletions.offer(user_id, now=now, expires_at=now + self._confirm_ttl)
        user = await self._users.get(user_id) or {}
        return DeletionOffer(
            blockers=(),
            deletion_id=str(doc["_id"]),
            templates=await self._templates.count(user_id),
            orders=await self._orders.count_with_personal_data(user_id),
            balance_cents=int(user.get("balance_cents", 0)),
        )

    async def cancel_deletion(self, user_id: int, deletion_id: str) -> bool:
        oid = _object_id(deletion_id)
        if oid is None:
            return False
        doc = await self._deletions.get(oid)
        if doc is None or doc.get("user_id") != user_id:
            return False
        closed = await self._deletions.close(
            oid, from_status="offered", to_status="cancelled", now=self._clock()
        )
        return closed is not None

    async def confirm_deletion(
        self, user_id: int, deletion_id: str, *, actor: int | None = None
    ) -> DeletionOutcome:
        """Runs the confirmed request (exactly once; a run cut short is finished).
        ``actor``: who confirmed it in the audit (the customer unless an operator ran it)."""
        oid = _object_id(deletion_id)
        if oid is None:
            return DeletionOutcome(DeletionStatus.EXPIRED)
        now = self._clock()
        doc = await self._deletions.claim(oid, user_id, now=now)
        if doc is None:
            existing = await self._deletions.get(oid)
            if existing is not None and existing.get("user_id") == user_id and (
                existing.get("status") == "done"
            ):
                return DeletionOutcome(
                    DeletionStatus.ALREADY, counts=dict(existing.get("counts") or {}),
                )
            return DeletionOutcome(DeletionStatus.EXPIRED)
        blockers = await self.blockers(user_id)
        if blockers:
            await self._deletions.close(
                oid, from_status="running", to_status="refused", now=now,
                fields={"blockers": list(blockers)},
            )
            return DeletionOutcome(DeletionStatus.BLOCKED, blockers=blockers)
        doc = await self._deletions.set_counts(
            oid,
            {
                "templates": await self._templates.count(user_id),
                "orders": await self._orders.count_with_personal_data(user_id),
            },
        ) or doc
        await self._erase(user_id, oid)
        counts = dict(doc.get("counts") or {})
        counts["orders"] = await self._orders.count_anonymised(user_id, oid)
        user = await self._users.get(user_id) or {}
        balance = int(user.get("balance_cents", 0))
        key = f"data-deletion:{oid}"
        await self._audit.record(
            user_id if actor is None else actor,
            "privacy.delete_data",
            f"user:{user_id}",
            after={**counts, "balance_cents_kept": balance},
            key=key,
        )
        await self._notices.data_deleted(
            user_id,
            templates=counts.get("templates", 0),
            orders=counts["orders"],
            balance_cents=balance,
            key=key,
        )
        await self._deletions.close(
            oid, from_status="running", to_status="done", now=self._clock(),
            fields={"counts": counts},
        )
        return DeletionOutcome(DeletionStatus.DONE, counts=counts, balance_cents=balance)

    async def _erase(self, user_id: int, deletion_id: ObjectId) -> None:
        now = self._clock()
        await self._templates.delete_all(user_id)
        if self._presets is not None:
            await self._presets.delete_all(user_id)  # names can be personal ("Mom's meds")
        await self._orders.delete_drafts(user_id)
        while True:
            batch = await self._orders.with_personal_data(user_id, limit=ANONYMISED_BATCH)
            if not batch:
                break
            for order in batch:
                await self._orders.anonymise(
                    order["_id"],
                    from_address=anonymised(order.get("from_address")),
                    to_address=anonymised(order.get("to_address")),
                    by=deletion_id,
                    now=now,
                )
        if self._bulk_jobs is not None:
            await self._bulk_jobs.erase_personal(user_id, now=now)
        await self._users.erase_profile(user_id, now=now)
        await self._sessions.clear_data((user_id, user_id))
        await self._outbox.forget_sent(user_id)


def anonymised(address: object) -> Document:
    """What an order keeps of an address: the marker, and the country if it had one."""
    kept: Document = {"anonymised": True}
    if isinstance(address, dict) and isinstance(address.get("country"), str):
        kept["country"] = address["country"]
    return kept


def _object_id(value: str) -> ObjectId | None:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None
