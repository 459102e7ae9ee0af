"""Admin actions on accounts and runtime flags; every change is audited.

Confirmation buttons (balance adjustment, carrier API mode) are documents written when the
button is shown (``storage/confirmations.py``); the effect is keyed by the confirmation
id, so a double tap or two admins pressing the same button apply it once. The order of
every confirmed effect is: the effect (idempotent by key) → the audit entry (keyed) → the
notice (deduplicated by key) → the confirmation closed. A crash anywhere is repaired by
pressing the button again, and nothing happens twice.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Protocol

from bson import ObjectId
from bson.errors import InvalidId

from services.amounts import AmountError, AmountLimits, parse_amount
from services.audit import AuditService
from services.clock import Clock, utc_now
from services.masking import mask_phone
from services.runtime import Maintenance, RuntimeFlags
from storage.client import Document
from storage.confirmations import ConfirmationsRepo
from storage.ledger import InsufficientFunds, LedgerRepo
from storage.orders import OrdersRepo
from storage.payments import PaymentsRepo
from storage.users import UsersRepo

API_MODES = ("test", "production")
MAX_ADJUST_CENTS = 10_000_000  # 100,000.00 per correction
MAX_REASON = 200
_USERNAME = re.compile(r"^@?([A-Za-z0-9_]{3,32})$")
_MAX_USER_ID_DIGITS = 15


class AdminNotices(Protocol):
    """Localized messages for the people an admin action concerns (``bot/admin_notices``)."""

    async def account_blocked(self, user_id: int, blocked: bool, key: str) -> None: ...

    async def balance_adjusted(
        self, user_id: int, amount_cents: int, balance_cents: int, reason: str, key: str
    ) -> None: ...

    async def discount_changed(self, user_id: int, percent: int, key: str) -> None: ...

    async def api_mode_changed(self, actor: int, before: str, after: str, key: str) -> None: ...

    def maintenance_texts(self, enabled: bool, message: str | None) -> dict[str, str]:
        """The customers' notice of maintenance starting (with ``message``) or ending, one
        text per language."""
        ...


class Broadcasts(Protocol):
    """Starts a broadcast without a preview (``BroadcastService.start``, which audits it)."""

    async def start(
        self,
        actor: int,
        *,
        kind: str,
        texts: dict[str, str],
        admin_language: str,
        progress_chat_id: int | None = None,
        progress_message_id: int | None = None,
    ) -> Document: ...


# Shows the admin a message the broadcast will report its progress in: (chat id, message id).
ProgressOpener = Callable[[], Awaitable[tuple[int, int]]]


class MaintenanceOutcome(StrEnum):
    TURNED_ON = "turned_on"
    TURNED_OFF = "turned_off"
    ALREADY_ON = "already_on"  # no transition: customers were told already
    ALREADY_OFF = "already_off"

    @property
    def changed(self) -> bool:
        return self in (MaintenanceOutcome.TURNED_ON, MaintenanceOutcome.TURNED_OFF)

    @property
    def enabled(self) -> bool:
        return self in (MaintenanceOutcome.TURNED_ON, MaintenanceOutcome.ALREADY_ON)


class InputError(ValueError):
    """``code`` selects the message shown to the admin; ``params`` fill it."""

    def __init__(self, code: str, **params: object) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


@dataclass(frozen=True)
class UserProfile:
    user: Document
    orders: list[Document]
    payments: list[Document]
    phone: str  # the sender phone of the latest order, masked unless allowed


@dataclass(frozen=True)
class Change:
    user_id: int
    before: object
    after: object

    @property
    def changed(self) -> bool:
        return self.before != self.after


class ConfirmStatus(StrEnum):
    APPLIED = "applied"
    ALREADY_APPLIED = "already_applied"
    INSUFFICIENT = "insufficient"
    EXPIRED = "expired"
    CLOSED = "closed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ConfirmOutcome:
    status: ConfirmStatus
    confirmation: Document | None = None
    balance_cents: int | None = None
    before: str | None = None


def parse_adjustment(text: str, language: str) -> int:
    """Signed cents from "15", "-5.50", "+20": never zero."""
    raw = (text or "").strip().replace("−", "-")
    sign = -1 if raw.startswith("-") else 1
    body = raw.lstrip("+-").strip()
    try:
        cents = parse_amount(body, language, AmountLimits(1, MAX_ADJUST_CENTS))
    except AmountError as exc:
        raise InputError(f"amount.{exc.code}", **exc.params) from None
    return sign * cents


def parse_reason(text: str) -> str:
    reason = " ".join((text or "").split())
    if not reason:
        raise InputError("reason.empty")
    if len(reason) > MAX_REASON:
        raise InputError("reason.too_long", limit=MAX_REASON)
    return reason


def parse_percent(text: str) -> int:
    raw = (text or "").strip().removesuffix("%").strip()
    if not raw.isdigit() or not 0 <= int(raw) <= 100:
        raise InputError("discount.invalid")
    return int(raw)


def parse_object_id(value: str) -> ObjectId | None:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


class AdminService:
    def __init__(
        self,
        *,
        users: UsersRepo,
        orders: OrdersRepo,
        payments: PaymentsRepo,
        ledger: LedgerRepo,
        confirmations: ConfirmationsRepo,
        audit: AuditService,
        runtime: RuntimeFlags,
        broadcasts: Broadcasts,
        notices: AdminNotices,
        confirm_ttl: timedelta,
        recent_items: int,
        clock: Clock = utc_now,
    ) -> None:
        self._users = users
        self._orders = orders
        self._payments = payments
        self._ledger = ledger
        self._confirmations = confirmations
        self._audit = audit
        self._runtime = runtime
        self._broadcasts = broadcasts
        self._notices = notices
        self._confirm_ttl = confirm_ttl
        self._recent = recent_items
        self._clock = clock

    # -- lookup ---------------------------------------------------------------------------

    async def find_user(self, query: str) -> Document | None:
        """By Telegram id, ``@username`` or the tracking number of one of their labels."""
        text = (query or "").strip()
        if not text:
            return None
        if text.isdigit() and len(text) <= _MAX_USER_ID_DIGITS:
            user = await self._users.get(int(text))
            if user is not None:
                return user
        match = _USERNAME.match(text)
        if match and (text.startswith("@") or not text.isdigit()):
            user = await self._users.by_username(match.group(1))
            if user is not None or text.startswith("@"):
                return user
        order = await self._orders.by_tracking(text.upper()) or await self._orders.by_tracking(
            text
        )
        if order is None:
            return None
        return await self._users.get(int(order["user_id"]))

    async def profile(self, user_id: int, *, show_phone: bool) -> UserProfile | None:
        user = await self._users.get(user_id)
        if user is None:
            return None
        orders = await self._orders.recent_for_user(user_id, limit=self._recent)
        payments = await self._payments.recent_for_user(user_id, limit=self._recent)
        phone = next(
            (
                str(o["from_address"]["phone"])
                for o in orders
                if (o.get("from_address") or {}).get("phone")
            ),
            "",
        )
        return UserProfile(
            user=user,
            orders=orders,
            payments=payments,
            phone=phone if show_phone else mask_phone(phone),
        )

    # -- account changes ------------------------------------------------------------------

    async def set_blocked(self, actor: int, user_id: int, blocked: bool) -> Change | None:
        before = await self._users.set_blocked(user_id, blocked)
        if before is None:
            return None
        change = Change(user_id, bool(before.get("blocked")), blocked)
        if change.changed:
            key = f"block:{user_id}:{ObjectId()}"  # one per change; the notice dedups on it
            await self._audit.record(
                actor,
                "user.block" if blocked else "user.unblock",
                f"user:{user_id}",
                before={"blocked": change.before},
                after={"blocked": blocked},
                key=key,
            )
            await self._notices.account_blocked(user_id, blocked, key)
        return change

    async def set_discount(self, actor: int, user_id: int, percent: int) -> Change | None:
        if not 0 <= percent <= 100:
            raise InputError("discount.invalid")
        before = await self._users.set_discount(user_id, percent)
        if before is None:
            return None
        change = Change(user_id, int(before.get("discount_percent") or 0), percent)
        if change.changed:
            key = f"discount:{user_id}:{ObjectId()}"
            await self._audit.record(
                actor,
                "user.discount",
                f"user:{user_id}",
                before={"discount_percent": change.before},
                after={"discount_percent": percent},
                key=key,
            )
            await self._notices.discount_changed(user_id, percent, key)
        return change

    # -- balance adjustments (confirmation button) ---------------------------------------

    async def prepare_adjustment(
        self, actor: int, user_id: int, amount_cents: int, reason: str
    ) -> Document:
        """Writes the confirmation the button will carry; nothing moves yet."""
        if amount_cents == 0 or abs(amount_cents) > MAX_ADJUST_CENTS:
            raise InputError("amount.not_a_number")
        reason = parse_reason(reason)
        user = await self._users.get(user_id)
        if user is None:
            raise InputError("user.not_found")
        now = self._clock()
        return await self._confirmations.create(
            kind="adjustment",
            actor=actor,
            payload={"user_id": user_id, "amount_cents": amount_cents, "reason": reason},
            now=now,
            expires_at=now + self._confirm_ttl,
        )

    async def _pending(self, confirmation_id: str, kind: str) -> ConfirmOutcome | Document:
        oid = parse_object_id(confirmation_id)
        doc = await self._confirmations.get(oid) if oid is not None else None
        if doc is None or doc["kind"] != kind:
            return ConfirmOutcome(ConfirmStatus.UNKNOWN)
        if doc["status"] == "done":
            return ConfirmOutcome(ConfirmStatus.ALREADY_APPLIED, doc)
        if doc["status"] != "pending":
            return ConfirmOutcome(ConfirmStatus.CLOSED, doc)
        if doc["expires_at"] <= self._clock():
            return ConfirmOutcome(ConfirmStatus.EXPIRED, doc)
        return doc

    async def apply_adjustment(self, actor: int, confirmation_id: str) -> ConfirmOutcome:
        """Applies the confirmed correction once: ledger ``adjustment:<confirmation id>``."""
        pending = await self._pending(confirmation_id, "adjustment")
        if isinstance(pending, ConfirmOutcome):
            done = pending.status == ConfirmStatus.ALREADY_APPLIED
            if done and pending.confirmation is not None:
                user = await self._users.get(int(pending.confirmation["payload"]["user_id"]))
                balance = int(user.get("balance_cents", 0)) if user else None
                return ConfirmOutcome(ConfirmStatus.ALREADY_APPLIED, pending.confirmation, balance)
            return pending
        doc = pending
        payload = doc["payload"]
        user_id, amount, reason = (
            int(payload["user_id"]),
            int(payload["amount_cents"]),
            str(payload["reason"]),
        )
        key = f"adjustment:{doc['_id']}"
        now = self._clock()
        try:
            result = await self._ledger.apply(
                user_id=user_id,
                amount_cents=amount,
                kind="adjustment",
                key=key,
                now=now,
                meta={"reason": reason, "actor": actor, "confirmation_id": str(doc["_id"])},
            )
        except InsufficientFunds as exc:
            if await self._ledger.get(key) is not None:
                # A concurrent press applied it meanwhile: the balance read was after it.
                return ConfirmOutcome(ConfirmStatus.ALREADY_APPLIED, doc, exc.balance_cents)
            await self._confirmations.close(doc["_id"], status="refused", by=actor, now=now)
            return ConfirmOutcome(ConfirmStatus.INSUFFICIENT, doc, exc.balance_cents)
        await self._audit.record(
            actor,
            "balance.adjust",
            f"user:{user_id}",
            before={"balance_cents": result.balance_cents - amount},
            after={
                "balance_cents": result.balance_cents,
                "amount_cents": amount,
                "reason": reason,
            },
            key=key,
        )
        await self._notices.balance_adjusted(user_id, amount, result.balance_cents, reason, key)
        await self._confirmations.close(doc["_id"], status="done", by=actor, now=now)
        # The ledger decides who applied it: a concurrent press may close the confirmation
        # before the press whose entry won.
        status = ConfirmStatus.ALREADY_APPLIED if result.replayed else ConfirmStatus.APPLIED
        return ConfirmOutcome(status, doc, result.balance_cents)

    async def cancel(self, actor: int, confirmation_id: str) -> bool:
        oid = parse_object_id(confirmation_id)
        if oid is None:
            return False
        closed = await self._confirmations.close(
            oid, status="cancelled", by=actor, now=self._clock()
        )
        return closed is not None

    # -- runtime flags --------------------------------------------------------------------

    async def set_maintenance(
        self, actor: int, enabled: bool, message: str | None
    ) -> MaintenanceOutcome:
        """Stores the flag (and the customers' notice ``message``) and audits the switch,
        also one that changes nothing (an admin said so)."""
        before = await self._runtime.set_maintenance(enabled, message)
        await self._audit.record(
            actor,
            "maintenance.on" if enabled else "maintenance.off",
            "runtime:maintenance",
            before={"enabled": before.enabled, "message": before.message},
            after={"enabled": enabled, "message": message},
        )
        if before.enabled == enabled:
            return MaintenanceOutcome.ALREADY_ON if enabled else MaintenanceOutcome.ALREADY_OFF
        return MaintenanceOutcome.TURNED_ON if enabled else MaintenanceOutcome.TURNED_OFF

    async def announce_maintenance(
        self,
        actor: int,
        outcome: MaintenanceOutcome,
        message: str | None,
        *,
        admin_language: str,
        open_progress: ProgressOpener,
    ) -> Document | None:
        """Tells every customer that maintenance started or ended, by a broadcast (audited
        by ``BroadcastService.start``); a switch that changed nothing tells nobody."""
        if not outcome.changed:
            return None
        texts = self._notices.maintenance_texts(outcome.enabled, message)
        chat_id, message_id = await open_progress()
        return await self._broadcasts.start(
            actor,
            kind="maintenance_on" if outcome.enabled else "maintenance_off",
            texts=texts,
            admin_language=admin_language,
            progress_chat_id=chat_id,
            progress_message_id=message_id,
        )

    async def maintenance(self) -> Maintenance:
        return await self._runtime.maintenance()

    async def api_mode(self) -> str:
        return await self._runtime.api_mode()

    async def request_api_mode(self, actor: int, mode: str) -> Document:
        if mode not in API_MODES:
            raise InputError("apimode.invalid")
        now = self._clock()
        return await self._confirmations.create(
            kind="api_mode",
            actor=actor,
            payload={"mode": mode},
            now=now,
            expires_at=now + self._confirm_ttl,
        )

    async def confirm_api_mode(self, actor: int, confirmation_id: str) -> ConfirmOutcome:
        pending = await self._pending(confirmation_id, "api_mode")
        if isinstance(pending, ConfirmOutcome):
            return pending
        doc = pending
        mode = str(doc["payload"]["mode"])
        before = await self._runtime.set_api_mode(mode)
        key = f"api_mode:{doc['_id']}"
        await self._audit.record(
            actor,
            "apimode.set",
            "runtime:carrier_api_mode",
            before={"mode": before},
            after={"mode": mode},
            key=key,
        )
        await self._notices.api_mode_changed(actor, before, mode, key)
        closed = await self._confirmations.close(
            doc["_id"], status="done", by=actor, now=self._clock()
        )
        status = ConfirmStatus.APPLIED if closed else ConfirmStatus.ALREADY_APPLIED
        return ConfirmOutcome(status, doc, before=before)
