"""Top-ups: OxaPay invoices, card payments through Telegram Payments (a payment provider)
and Telegram Stars payments, credited exactly once.

Every path that learns a payment was made (the OxaPay callback, the reconciliation job,
Telegram's ``successful_payment`` for cards and Stars, an admin crediting a suspicious
payment) ends in ``_credit``: the ledger entry keyed by the provider's reference is
applied once, then the payment is marked paid together with the notice it owes the
customer, then the notice is queued through the outbox (deduplicated) and struck off. A
crash between those steps is repaired by re-running the same path, or by the follow-up
sweep of the reconciliation job.

A paid payment that the provider later reports paid for more (underpaid, credited by an
admin, then paid in full) is credited the difference under a key of its own
(``topup:<provider>:<ref>:total:<cents>``), one further credit at a time (``credit_claim``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from bson import ObjectId
from bson.errors import InvalidId

from models.payments import Invoice, PaymentInfo
from providers.errors import ProviderError, ProviderNotFound
from services.amounts import AmountLimits, suggested_amounts, topup_for_shortfall
from services.audit import AuditService
from services.clock import Clock, utc_now
from storage.client import Document
from storage.confirmations import ConfirmationsRepo
from storage.ledger import InsufficientFunds, LedgerKeyConflict, LedgerRepo
from storage.payments import CREDITABLE_FROM, OPEN_STATUSES, PaymentsRepo

_LOGGER = logging.getLogger(__name__)

OXAPAY = "oxapay"
STARS = "stars"
CARD = "card"
STARS_PAYLOAD_PREFIX = "topup:"
CARD_PAYLOAD_PREFIX = "card:"
PAID_STATUSES = {"paid", "manual_accept"}
# Payment status → what its invoice's messages say once it is settled.
_SETTLED = {"paid": "paid", "expired": "expired", "cancelled": "cancelled"}


# A repair sweep leaves work this recent to the path that is doing it right now.
FOLLOWUP_GRACE = timedelta(seconds=30)
# A Telegram invoice is expired this long after its expiry: a checkout approved just
# before it is charged and reported within seconds.
CHECKOUT_GRACE = timedelta(minutes=5)
_MAX_CLAIM_ROUNDS = 10


class TopUpError(Exception):
    """``code``: provider_unavailable, stars_disabled, card_disabled, not_found,
    not_allowed, above_invoice."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class Outcome(StrEnum):
    CREDITED = "credited"
    ALREADY_CREDITED = "already_credited"
    SUSPICIOUS = "suspicious"
    EXPIRED = "expired"
    UPDATED = "updated"
    UNKNOWN = "unknown"
    IGNORED = "ignored"
    NEEDS_AMOUNT = "needs_amount"  # the received amount is unknown: an admin must type it
    CONFLICT = "conflict"  # a ledger key clash: admins alerted, nothing applied


class ReviewedCredit(StrEnum):
    """What pressing the confirmation of a typed credit did (``confirm_reviewed_credit``)."""

    CREDITED = "credited"
    ALREADY_CREDITED = "already_credited"  # this or another path credited the payment
    NOT_CREDITABLE = "not_creditable"
    EXPIRED = "expired"
    CLOSED = "closed"
    UNKNOWN = "unknown"


class CardRefund(StrEnum):
    """``record_card_refund``'s result."""

    RECORDED = "recorded"
    ALREADY_REFUNDED = "already_refunded"
    NOT_FOUND = "not_found"
    NOT_PAID = "not_paid"
    INSUFFICIENT_BALANCE = "insufficient_balance"


class StarsRefund(StrEnum):
    """``refund_stars``'s result."""

    REFUNDED = "refunded"
    ALREADY_REFUNDED = "already_refunded"
    NOT_FOUND = "not_found"
    NOT_PAID = "not_paid"
    IN_PROGRESS = "in_progress"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    REFUSED = "refused"  # Telegram said no: the debit was compensated
    UNKNOWN = "unknown"  # no answer: the debit stands until Telegram's history tells


@dataclass(frozen=True)
class StarsRefundResult:
    status: StarsRefund
    payment: Document | None
    reason: str = ""  # Telegram's refusal (``REFUSED``)


class InvoiceGateway(Protocol):
    async def create_invoice(
        self,
        amount_cents: int,
        currency: str,
        order_id: str,
        lifetime_minutes: int,
        callback_url: str,
        description: str,
        return_url: str | None = None,
    ) -> Invoice: ...

    async def get_payment(self, track_id: str) -> PaymentInfo: ...

    async def find_payment_by_order_id(
        self, order_id: str, *, created_after: datetime | None = None
    ) -> PaymentInfo | None: ...


class PaymentNotices(Protocol):
    """Customer and admin messages; implemented in ``bot/`` where the catalogs live."""

    async def topup_credited(
        self,
        user_id: int,
        amount_cents: int,
        balance_cents: int,
        key: str,
        *,
        back_to_order: bool = False,
    ) -> None: ...

    async def invoice_settled(self, payment: Document, outcome: str) -> None:
        """``outcome`` paid, expired or cancelled: the invoice's messages
        (``payment["messages"]``) lose their Pay and Cancel buttons."""
        ...

    async def topup_expired(self, user_id: int, amount_cents: int, key: str) -> None: ...

    async def topup_under_review(self, payment: Document, received_cents: int | None) -> None: ...

    async def ledger_conflict(self, payment: Document, key: str, detail: str) -> None: ...

    async def topup_overpaid(self, payment: Document, received_cents: int) -> None: ...

    async def stale_payment(self, payment: Document, *, escalation: bool) -> None: ...

    async def stars_refund_unknown(self, payment: Document, minutes: int) -> None: ...

    async def stars_refund_settled(self, payment: Document) -> None: ...

    async def stars_refund_unexpected(self, payment: Document) -> None: ...


@dataclass(frozen=True)
class TopUpConfig:
    currency: str
    min_cents: int
    max_cents: int
    lifetime_minutes: int
    callback_url: str
    return_url: str | None
    stars_enabled: bool
    crypto_enabled: bool
    stars_per_usd: int
    stars_lifetime_minutes: int
    stale_after: timedelta
    escalate_after: timedelta
    # Stars history: pages read per run, keys remembered to re-read (the overlap window).
    stars_max_pages: int = 10
    stars_overlap: int = 200
    # A Stars refund with no answer may be retried after this; admins are alerted after.
    stars_refund_retry_after: timedelta = timedelta(minutes=5)
    stars_refund_alert_after: timedelta = timedelta(minutes=30)
    # Card top-ups through Telegram Payments (a provider token is set).
    card_enabled: bool = False
    card_minor_exp: int = 2  # the currency's ``exp`` in Telegram's currencies.json
    card_lifetime_minutes: int = 60

    @property
    def rails(self) -> tuple[str, ...]:
        """The enabled top-up rails, in the order the top-up screen offers them."""
        enabled = ((CARD, self.card_enabled), (OXAPAY, self.crypto_enabled),
                   (STARS, self.stars_enabled))
        return tuple(name for name, on in enabled if on)

    def card_minor_units(self, amount_cents: int) -> int:
        """The Bot API's ``amount`` for ``amount_cents``: minor units of the currency."""
        exp = self.card_minor_exp
        if exp >= 2:
            return amount_cents * int(10 ** (exp - 2))
        return amount_cents // int(10 ** (2 - exp))


@dataclass(frozen=True)
class CreatedTopUp:
    payment_id: str
    provider: str
    amount_cents: int
    payment_url: str | None
    expires_at: datetime | None
    stars: int = 0
    payload: str = ""
    minor_amount: int = 0  # card: the invoice amount in the currency's minor units
    currency: str = ""


@dataclass(frozen=True)
class StarsTransaction:
    """One entry of the bot's Stars history as Telegram's ``getStarTransactions`` lists it:
    incoming (a payment; ``tx_id`` is its charge id) or outgoing (a refund, with the id of
    the payment it refunds). ``user_id`` is None for partners that are not users."""

    tx_id: str
    incoming: bool
    user_id: int | None
    payload: str
    amount: int

    @property
    def key(self) -> str:
        """Unique in the history: a refund shares its payment's id."""
        return f"{'in' if self.incoming else 'out'}:{self.tx_id}"


# Reads ``limit`` transactions from ``offset``; None when Telegram could not be asked.
StarsHistory = Callable[[int, int], Awaitable[Sequence[StarsTransaction] | None]]
STARS_PAGE = 100


class StarsRefundRefused(Exception):
    """Telegram answered the refund with a refusal: nothing was refunded."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class StarsCheck:
    """A pre-checkout answer (either Telegram rail)."""

    ok: bool
    reason: str = ""  # unknown, not_yours, expired, used, amount_mismatch, disabled


def stars_for(amount_cents: int, stars_per_usd: int) -> int:
    """Whole Stars for an amount in cents, rounded up so we never undercharge."""
    return max(1, math.ceil(amount_cents * stars_per_usd / 100))


def parse_payment_id(value: str) -> ObjectId | None:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


class PaymentService:
    def __init__(
        self,
        payments: PaymentsRepo,
        ledger: LedgerRepo,
        notices: PaymentNotices,
        config: TopUpConfig,
        *,
        oxapay: InvoiceGateway | None,
        audit: AuditService,
        confirmations: ConfirmationsRepo | None = None,
        confirm_ttl: timedelta = timedelta(minutes=15),
        clock: Clock = utc_now,
    ) -> None:
        self._payments = payments
        self._ledger = ledger
        self._notices = notices
        self._config = config
        self._oxapay = oxapay
        self._audit = audit
        self._confirmations = confirmations
        self._confirm_ttl = confirm_ttl
        self._clock = clock

    @property
    def config(self) -> TopUpConfig:
        return self._config

    @property
    def limits(self) -> AmountLimits:
        return AmountLimits(self._config.min_cents, self._config.max_cents)

    def topup_for_shortfall(self, shortfall_cents: int) -> int:
        """What a customer short of ``shortfall_cents`` has to top up at least: the
        shortfall, but never less than the minimum top-up."""
        return topup_for_shortfall(shortfall_cents, self.limits)

    def suggested_amounts(self, shortfall_cents: int | None = None) -> list[int]:
        """Ready amounts for the amount prompt (the shortfall first when there is one)."""
        return suggested_amounts(self.limits, shortfall_cents)

    async def remember_message(
        self, user_id: int, payment_id: str, chat_id: int, message_id: int
    ) -> None:
        """Records a message that offers this invoice's buttons, so settling the payment
        takes them away. One already settled is disarmed at once."""
        oid = parse_payment_id(payment_id)
        if oid is None:
            return
        doc = await self._payments.add_message(oid, user_id, chat_id, message_id)
        if doc is not None and doc["status"] in _SETTLED:
            await self._notices.invoice_settled(doc, _SETTLED[doc["status"]])

    # -- creating top-ups -------------------------------------------------------------

    async def create_oxapay_topup(
        self, user_id: int, amount_cents: int, *, from_draft: str | None = None
    ) -> CreatedTopUp:
        """Records the payment first, so an invoice created by a timed-out call is found."""
        if self._oxapay is None:
            raise TopUpError("provider_unavailable")
        now = self._clock()
        order_id = f"tu{ObjectId()}"
        payment = await self._payments.create(
            {
                "user_id": user_id,
                "provider": OXAPAY,
                "order_id": order_id,
                "amount_cents": amount_cents,
                "currency": self._config.currency,
                "status": "creating",
                "created_at": now,
                "updated_at": now,
                "stale_alerted_at": None,
                "escalated_at": None,
                "history": [{"status": "creating", "at": now}],
                "from_draft": from_draft,
            }
        )
        try:
            invoice = await self._oxapay.create_invoice(
                amount_cents,
                self._config.currency,
                order_id,
                self._config.lifetime_minutes,
                self._config.callback_url,
                f"Balance top-up {order_id}",
                self._config.return_url,
            )
        except ProviderError as exc:
            _LOGGER.warning("invoice creation failed: %s", type(exc).__name__)
            outcome_unknown = bool(getattr(exc, "outcome_unknown", False))
            if not outcome_unknown:
                await self._payments.transition(
                    payment["_id"], from_statuses=["creating"], to_status="failed", now=now
                )
            # With an unknown outcome the payment stays "creating": reconciliation asks
            # OxaPay by order_id and adopts the invoice if one was created after all.
            raise TopUpError("provider_unavailable") from exc
        expires_at = invoice.expires_at or now + timedelta(minutes=self._config.lifetime_minutes)
        await self._payments.transition(
            payment["_id"],
            from_statuses=["creating"],
            to_status="pending",
            now=self._clock(),
            fields={
                "provider_ref": invoice.track_id,
                "provider_key": f"{OXAPAY}:{invoice.track_id}",
                "payment_url": invoice.payment_url,
                "expires_at": expires_at,
            },
        )
        return CreatedTopUp(
            payment_id=str(payment["_id"]),
            provider=OXAPAY,
            amount_cents=amount_cents,
            payment_url=invoice.payment_url,
            expires_at=expires_at,
        )

    async def _create_invoice(
        self,
        payment_id: ObjectId,
        user_id: int,
        provider: str,
        payload: str,
        amount_cents: int,
        now: datetime,
        expires_at: datetime,
        **extra: Any,
    ) -> None:
        """Stores a Telegram invoice (Stars or card) as ``pending`` before it is sent."""
        await self._payments.create(
            {
                "_id": payment_id,
                "user_id": user_id,
                "provider": provider,
                "order_id": payload,
                "amount_cents": amount_cents,
                **extra,
                "currency": self._config.currency,
                "status": "pending",
                "created_at": now,
                "updated_at": now,
                "expires_at": expires_at,
                "stale_alerted_at": None,
                "escalated_at": None,
                "history": [{"status": "pending", "at": now}],
            }
        )

    async def create_stars_topup(
        self, user_id: int, amount_cents: int, *, from_draft: str | None = None
    ) -> CreatedTopUp:
        if not self._config.stars_enabled:
            raise TopUpError("stars_disabled")
        now = self._clock()
        payment_id = ObjectId()
        payload = f"{STARS_PAYLOAD_PREFIX}{payment_id}"
        stars = stars_for(amount_cents, self._config.stars_per_usd)
        expires_at = now + timedelta(minutes=self._config.stars_lifetime_minutes)
        await self._create_invoice(
            payment_id, user_id, STARS, payload, amount_cents, now, expires_at, stars=stars,
            from_draft=from_draft,
        )
        return CreatedTopUp(
            payment_id=str(payment_id),
            provider=STARS,
            amount_cents=amount_cents,
            payment_url=None,
            expires_at=expires_at,
            stars=stars,
            payload=payload,
        )

    async def create_card_topup(
        self, user_id: int, amount_cents: int, *, from_draft: str | None = None
    ) -> CreatedTopUp:
        """Records a card invoice for Telegram Payments; the handler sends it with the
        provider token. Its payload names the payment, its amount is in minor units."""
        if not self._config.card_enabled:
            raise TopUpError("card_disabled")
        now = self._clock()
        payment_id = ObjectId()
        payload = f"{CARD_PAYLOAD_PREFIX}{payment_id}"
        minor = self._config.card_minor_units(amount_cents)
        expires_at = now + timedelta(minutes=self._config.card_lifetime_minutes)
        await self._create_invoice(
            payment_id, user_id, CARD, payload, amount_cents, now, expires_at,
            minor_amount=minor, from_draft=from_draft,
        )
        return CreatedTopUp(
            payment_id=str(payment_id),
            provider=CARD,
            amount_cents=amount_cents,
            payment_url=None,
            expires_at=expires_at,
            payload=payload,
            minor_amount=minor,
            currency=self._config.currency,
        )

    async def cancel(self, user_id: int, payment_id: str) -> bool:
        """Withdraws the user's pending invoice (a payment arriving later is still credited)."""
        oid = parse_payment_id(payment_id)
        if oid is None:
            return False
        payment = await self._payments.get(oid)
        if payment is None or payment["user_id"] != user_id:
            return False
        done = await self._payments.transition(
            oid, from_statuses=list(OPEN_STATUSES), to_status="cancelled", now=self._clock()
        )
        if done is not None:
            await self._notices.invoice_settled(done, "cancelled")
        return done is not None

    async def pending_for_user(self, user_id: int) -> Document | None:
        return await self._payments.pending_for_user(user_id)

    # -- OxaPay -----------------------------------------------------------------------

    async def on_oxapay_status(
        self,
        *,
        track_id: str,
        status: str,
        paid_amount_cents: int | None,
        source: str,
    ) -> Outcome:
        """One path for callbacks and reconciliation; idempotent."""
        status = status.strip().lower()
        now = self._clock()
        await self._payments.record_event(
            provider=OXAPAY, provider_ref=track_id, status=status, source=source, now=now
        )
        payment = await self._payments.by_ref(OXAPAY, track_id)
        if payment is None:
            _LOGGER.warning("payment notification for an unknown invoice (source=%s)", source)
            return Outcome.UNKNOWN
        if payment["status"] == "paid":
            # A replay (the customer may never have been told) or a later, larger payment.
            await self._deliver_notices(payment)
            if status in PAID_STATUSES:
                invoice = int(payment["amount_cents"])
                target = invoice if paid_amount_cents is None else paid_amount_cents
                if target > invoice and target > int(payment.get("credited_cents") or 0):
                    # More than the invoice: like a first overpayment, an admin decides.
                    await self._notices.topup_overpaid(payment, target)
                return await self._credit_more(payment, min(target, invoice), now=now)
            return Outcome.ALREADY_CREDITED
        if status in PAID_STATUSES:
            if paid_amount_cents is not None and paid_amount_cents != payment["amount_cents"]:
                return await self._flag_suspicious(payment, paid_amount_cents, status)
            return await self._credit(payment, payment["amount_cents"], now=now)
        if status == "underpaid":
            return await self._flag_suspicious(payment, paid_amount_cents, status)
        if status == "expired":
            done = await self._payments.transition(
                payment["_id"], from_statuses=list(OPEN_STATUSES), to_status="expired", now=now
            )
            if done is not None:
                await self._notices.topup_expired(
                    payment["user_id"], payment["amount_cents"], f"expired:{payment['_id']}"
                )
                await self._notices.invoice_settled(done, "expired")
                return Outcome.EXPIRED
            return Outcome.IGNORED
        await self._payments.set_fields(
            payment["_id"], {"provider_status": status, "updated_at": now}
        )
        return Outcome.UPDATED

    async def _flag_suspicious(
        self, payment: Document, received_cents: int | None, status: str
    ) -> Outcome:
        done = await self._payments.transition(
            payment["_id"],
            from_statuses=list(CREDITABLE_FROM),
            to_status="suspicious",
            now=self._clock(),
            fields={"provider_status": status, "received_cents": received_cents},
        )
        if done is not None:
            await self._notices.topup_under_review(done, received_cents)
        return Outcome.SUSPICIOUS

    @staticmethod
    def _credit_key(payment: Document) -> str:
        return f"topup:{payment['provider']}:{payment['provider_ref']}"

    async def _credit(
        self, payment: Document, amount_cents: int, *, now: datetime, top_up: bool = True
    ) -> Outcome:
        """The first credit of a payment: ledger (by key) → paid + notice owed → notice.
        ``top_up``: if another path credited less first, credit the difference."""
        provider = payment["provider"]
        key = self._credit_key(payment)
        try:
            result = await self._ledger.apply(
                user_id=payment["user_id"],
                amount_cents=amount_cents,
                kind="topup",
                key=key,
                now=now,
                meta={"payment_id": str(payment["_id"]), "provider": provider},
            )
        except LedgerKeyConflict as exc:
            return await self._resolve_conflict(
                payment, amount_cents if top_up else 0, exc, now=now
            )
        await self._payments.transition(
            payment["_id"],
            from_statuses=[*CREDITABLE_FROM, "suspicious"],
            to_status="paid",
            now=now,
            fields={"paid_at": now, "credited_cents": amount_cents, "ledger_key": key},
            notice={"amount_cents": amount_cents, "key": key},
        )
        # Queues what the payment still owes the customer; a replay after a crash queues
        # what was left (the outbox deduplicates by key), a plain replay queues nothing.
        await self._deliver_notices(payment["_id"], balance_cents=result.balance_cents)
        return Outcome.ALREADY_CREDITED if result.replayed else Outcome.CREDITED

    async def _resolve_conflict(
        self, payment: Document, amount_cents: int, exc: LedgerKeyConflict, *, now: datetime
    ) -> Outcome:
        """The payment's key already holds another amount: another path credited it first
        (an admin's reviewed amount racing the provider's ``paid``). Adopt that credit and
        top it up to ``amount_cents`` if more is due; any other clash alerts admins."""
        entry = exc.existing
        if entry.user_id != payment["user_id"] or entry.amount_cents <= 0:
            return await self._conflict(payment, exc.key, "another user or a debit")
        await self._payments.transition(
            payment["_id"],
            from_statuses=[*CREDITABLE_FROM, "suspicious"],
            to_status="paid",
            now=now,
            fields={"paid_at": now, "credited_cents": entry.amount_cents, "ledger_key": exc.key},
            notice={"amount_cents": entry.amount_cents, "key": exc.key},
        )
        paid = await self._payments.get(payment["_id"])
        if paid is None or paid["status"] != "paid":
            return await self._conflict(payment, exc.key, f"payment is {paid and paid['status']}")
        await self._deliver_notices(paid)
        if amount_cents > int(paid.get("credited_cents") or 0):
            return await self._credit_more(paid, amount_cents, now=now)
        return Outcome.ALREADY_CREDITED

    async def _conflict(self, payment: Document, key: str, detail: str) -> Outcome:
        _LOGGER.error("ledger key clash on a payment (%s): admins alerted", detail)
        await self._notices.ledger_conflict(payment, key, detail)
        return Outcome.CONFLICT

    async def _credit_more(
        self, payment: Document, target_cents: int, *, now: datetime
    ) -> Outcome:
        """Credits a paid payment up to ``target_cents`` in total: the difference, keyed by
        the new total, one further credit at a time (a claim on the payment)."""
        for _ in range(_MAX_CLAIM_ROUNDS):
            claim = payment.get("credit_claim")
            if claim:
                await self._finish_claim(payment, claim, now=now)
            else:
                credited = int(payment.get("credited_cents") or 0)
                if target_cents <= credited:
                    return Outcome.ALREADY_CREDITED
                claim = {
                    "key": f"{self._credit_key(payment)}:total:{target_cents}",
                    "amount_cents": target_cents - credited,
                    "to_cents": target_cents,
                }
                claimed = await self._payments.claim_credit(
                    payment["_id"], credited_cents=credited, claim=claim, now=now
                )
                if claimed is not None:
                    return await self._finish_claim(claimed, claim, now=now)
            fresh = await self._payments.get(payment["_id"])
            if fresh is None or fresh["status"] != "paid":
                return Outcome.IGNORED
            payment = fresh
        raise RuntimeError("further credits of one payment did not settle")

    async def _finish_claim(
        self, payment: Document, claim: dict[str, Any], *, now: datetime
    ) -> Outcome:
        """Applies a claimed further credit (idempotent by its key) and records it."""
        key = str(claim["key"])
        amount = int(claim["amount_cents"])
        try:
            result = await self._ledger.apply(
                user_id=payment["user_id"],
                amount_cents=amount,
                kind="topup",
                key=key,
                now=now,
                meta={"payment_id": str(payment["_id"]), "provider": payment["provider"]},
            )
        except LedgerKeyConflict:
            return await self._conflict(payment, key, "a further credit")
        await self._payments.complete_credit(
            payment["_id"],
            key=key,
            to_cents=int(claim["to_cents"]),
            notice={"amount_cents": amount, "key": key},
            now=now,
        )
        await self._deliver_notices(payment["_id"], balance_cents=result.balance_cents)
        return Outcome.ALREADY_CREDITED if result.replayed else Outcome.CREDITED

    async def _deliver_notices(
        self, payment: Document | ObjectId, *, balance_cents: int | None = None
    ) -> int:
        """Queues the customer notices a payment still owes (deduplicated by key), then
        strikes them off. Returns how many were owed."""
        doc = await self._payments.get(payment) if isinstance(payment, ObjectId) else payment
        if doc is None:
            return 0
        owed = list(doc.get("pending_notices") or [])
        if not owed:
            return 0
        if balance_cents is None:
            balance_cents = int((await self._ledger.repair(doc["user_id"]))["balance_cents"])
        if doc.get("status") == "paid":
            # Queued (deduplicated) before the notice is struck off: a crash repeats both.
            await self._notices.invoice_settled(doc, "paid")
        for notice in owed:
            await self._notices.topup_credited(
                doc["user_id"],
                int(notice["amount_cents"]),
                balance_cents,
                str(notice["key"]),
                back_to_order=bool(doc.get("from_draft")),
            )
            await self._payments.pull_notice(doc["_id"], str(notice["key"]))
        return len(owed)

    async def follow_up(self, *, limit: int = 100) -> dict[str, int]:
        """Repairs what a crash left: further credits claimed but not recorded, notices
        owed but never queued."""
        counts = {"credits": 0, "notices": 0}
        now = self._clock()
        for payment in await self._payments.followups_due(
            before=now - FOLLOWUP_GRACE, limit=limit
        ):
            claim = payment.get("credit_claim")
            if claim:
                await self._finish_claim(payment, claim, now=now)
                counts["credits"] += 1
            counts["notices"] += await self._deliver_notices(payment["_id"])
        return counts

    async def credit_reviewed(
        self, actor: int, payment_id: str, amount_cents: int | None = None
    ) -> tuple[Outcome, Document | None]:
        """An admin credits a payment under review: what it received when that is known,
        else the amount the admin typed (at most the invoice amount). The credit is
        audited (``payment.credit_reviewed``) once, keyed by its ledger key."""
        oid = parse_payment_id(payment_id)
        payment = await self._payments.get(oid) if oid else None
        if payment is None:
            return Outcome.UNKNOWN, None
        if payment["status"] == "paid":
            return Outcome.ALREADY_CREDITED, payment
        if payment["status"] != "suspicious":
            return Outcome.IGNORED, payment
        if amount_cents is None:
            received = payment.get("received_cents")
            if received is None or int(received) <= 0:
                return Outcome.NEEDS_AMOUNT, payment
            amount = int(received)
        else:
            if not 0 < amount_cents <= int(payment["amount_cents"]):
                raise TopUpError("above_invoice")
            amount = amount_cents
        # An admin's credit never tops up a credit another path made meanwhile.
        outcome = await self._credit(payment, amount, now=self._clock(), top_up=False)
        credited = await self._payments.get(payment["_id"])
        if outcome == Outcome.CREDITED and credited is not None:
            await self._audit.record(
                actor,
                "payment.credit_reviewed",
                f"payment:{credited['_id']}",
                before={"status": "suspicious", "received_cents": credited.get("received_cents")},
                after={
                    "status": credited["status"],
                    "credited_cents": credited.get("credited_cents"),
                    "typed": amount_cents is not None,
                },
                key=f"audit:{credited.get('ledger_key') or credited['_id']}",
            )
        return outcome, credited

    async def prepare_reviewed_credit(
        self, actor: int, payment_id: str, amount_cents: int
    ) -> Document:
        """Writes the confirmation for an amount an admin typed; nothing moves yet."""
        if self._confirmations is None:
            raise TopUpError("not_allowed")
        oid = parse_payment_id(payment_id)
        payment = await self._payments.get(oid) if oid else None
        if payment is None:
            raise TopUpError("not_found")
        if payment["status"] != "suspicious":
            raise TopUpError("not_allowed")
        if not 0 < amount_cents <= int(payment["amount_cents"]):
            raise TopUpError("above_invoice")
        now = self._clock()
        return await self._confirmations.create(
            kind="payment_credit",
            actor=actor,
            payload={"payment_id": str(payment["_id"]), "amount_cents": amount_cents},
            now=now,
            expires_at=now + self._confirm_ttl,
        )

    async def cancel_reviewed_credit(self, actor: int, confirmation_id: str) -> bool:
        oid = parse_payment_id(confirmation_id)
        if oid is None or self._confirmations is None:
            return False
        doc = await self._confirmations.get(oid)
        if doc is None or doc["kind"] != "payment_credit":
            return False
        closed = await self._confirmations.close(
            oid, status="cancelled", by=actor, now=self._clock()
        )
        return closed is not None

    async def get(self, payment_id: str) -> Document | None:
        oid = parse_payment_id(payment_id)
        return await self._payments.get(oid) if oid else None

    async def confirm_reviewed_credit(
        self, actor: int, confirmation_id: str
    ) -> tuple[ReviewedCredit, Document | None, Document | None]:
        """The confirmation button: credits the typed amount once (audited).

        Returns ``(status, confirmation, payment)``."""
        if self._confirmations is None:
            return ReviewedCredit.UNKNOWN, None, None
        oid = parse_payment_id(confirmation_id)
        doc = await self._confirmations.get(oid) if oid is not None else None
        if doc is None or doc["kind"] != "payment_credit":
            return ReviewedCredit.UNKNOWN, None, None
        payment_id = str(doc["payload"]["payment_id"])
        if doc["status"] == "done":
            payment = await self._payments.get(ObjectId(payment_id))
            return ReviewedCredit.ALREADY_CREDITED, doc, payment
        if doc["status"] != "pending":
            return ReviewedCredit.CLOSED, doc, None
        if doc["expires_at"] <= self._clock():
            return ReviewedCredit.EXPIRED, doc, None
        outcome, payment = await self.credit_reviewed(
            actor, payment_id, int(doc["payload"]["amount_cents"])
        )
        if outcome not in (Outcome.CREDITED, Outcome.ALREADY_CREDITED):
            await self._confirmations.close(
                doc["_id"], status="refused", by=actor, now=self._clock()
            )
            return ReviewedCredit.NOT_CREDITABLE, doc, payment
        closed = await self._confirmations.close(
            doc["_id"], status="done", by=actor, now=self._clock()
        )
        credited = outcome == Outcome.CREDITED and closed is not None
        status = ReviewedCredit.CREDITED if credited else ReviewedCredit.ALREADY_CREDITED
        return status, doc, payment

    async def reconcile(self, *, limit: int = 100) -> dict[str, int]:
        """Asks OxaPay about open invoices; credits paid ones through the same path."""
        counts: dict[str, int] = {}
        followed = await self.follow_up(limit=limit)
        for name, count in followed.items():
            if count:
                counts[f"followup_{name}"] = count
        expired = await self.expire_telegram_invoices(limit=limit)
        if expired:
            counts["expired"] = expired
        if self._oxapay is None:
            return counts
        for payment in await self._payments.open_payments(OXAPAY, limit=limit):
            try:
                outcome = await self._reconcile_one(payment)
            except ProviderError as exc:
                _LOGGER.warning("reconciliation call failed: %s", type(exc).__name__)
                outcome = "provider_error"
            counts[str(outcome)] = counts.get(str(outcome), 0) + 1
        return counts

    async def _reconcile_one(self, payment: Document) -> str:
        assert self._oxapay is not None
        now = self._clock()
        track_id = payment.get("provider_ref")
        if track_id is None:
            # The create call's outcome was unknown: adopt the invoice if it exists.
            info = await self._oxapay.find_payment_by_order_id(
                payment["order_id"], created_after=payment["created_at"] - timedelta(minutes=10)
            )
            if info is None:
                if now - payment["created_at"] > timedelta(minutes=30):
                    await self._payments.transition(
                        payment["_id"], from_statuses=["creating"], to_status="failed", now=now
                    )
                    return "failed"
                return "waiting"
            await self._payments.transition(
                payment["_id"],
                from_statuses=["creating"],
                to_status="pending",
                now=now,
                fields={
                    "provider_ref": info.track_id,
                    "provider_key": f"{OXAPAY}:{info.track_id}",
                    "expires_at": info.expires_at,
                },
            )
            track_id = info.track_id
        try:
            info = await self._oxapay.get_payment(track_id)
        except ProviderNotFound:
            return "not_found"
        outcome = await self.on_oxapay_status(
            track_id=track_id,
            status=info.status,
            paid_amount_cents=info.paid_amount_cents,
            source="reconcile",
        )
        return str(outcome)

    async def recheck(self, payment_id: str) -> str:
        """Asks the provider about one payment now (admin button)."""
        oid = parse_payment_id(payment_id)
        payment = await self._payments.get(oid) if oid else None
        if payment is None or payment["provider"] != OXAPAY or self._oxapay is None:
            return "not_found"
        try:
            return await self._reconcile_one(payment)
        except ProviderError as exc:
            return f"provider_error:{type(exc).__name__}"

    async def alert_stale(self, *, limit: int = 100) -> int:
        """One alert per payment pending too long, one escalation after a day."""
        now = self._clock()
        count = 0
        for field, age, escalation in (
            ("stale_alerted_at", self._config.stale_after, False),
            ("escalated_at", self._config.escalate_after, True),
        ):
            for payment in await self._payments.claim_stale_alert(
                field=field, older_than=now - age, now=now, limit=limit
            ):
                await self._notices.stale_payment(payment, escalation=escalation)
                count += 1
        return count

    async def list_open(self, limit: int = 50) -> list[Document]:
        return await self._payments.list_open(limit=limit)

    async def duplicate_stats(self) -> tuple[int, int]:
        return await self._payments.duplicate_stats()

    # -- cards through Telegram Payments (a payment provider) --------------------------------

    async def _card_payment(self, payload: str) -> Document | None:
        return await self._invoice_payment(payload, CARD_PAYLOAD_PREFIX, CARD)

    async def check_card_checkout(
        self, user_id: int, payload: str, currency: str, total_amount: int
    ) -> StarsCheck:
        """Telegram asks before charging the card: ours, pending, not expired, the amount
        and currency of the invoice. Anything else is refused (nothing is charged)."""
        payment = await self._card_payment(payload)
        if payment is None:
            return StarsCheck(False, "unknown")
        if payment["user_id"] != user_id:
            return StarsCheck(False, "not_yours")
        if payment["status"] != "pending":
            return StarsCheck(False, "used")
        if payment["expires_at"] <= self._clock():
            return StarsCheck(False, "expired")
        if currency.upper() != payment["currency"] or total_amount != payment["minor_amount"]:
            return StarsCheck(False, "amount_mismatch")
        return StarsCheck(True)

    async def on_card_paid(
        self,
        user_id: int,
        payload: str,
        *,
        telegram_charge_id: str,
        provider_charge_id: str,
        currency: str,
        total_amount: int,
    ) -> Outcome:
        """Credits a successful card payment once, keyed by the provider's charge id
        (``provider_payment_charge_id``), through the same path as every rail."""
        payment = await self._card_payment(payload)
        if payment is None or payment["user_id"] != user_id:
            _LOGGER.error("successful card payment with an unknown payload; needs review")
            return Outcome.UNKNOWN
        ref = provider_charge_id.strip() or f"tg-{telegram_charge_id}"
        if payment.get("provider_ref") is None:
            claimed = await self._payments.claim_provider_ref(
                payment["_id"],
                CARD,
                ref,
                fields={"telegram_charge_id": telegram_charge_id, "paid_minor": total_amount},
            )
            payment = claimed or await self._payments.get(payment["_id"]) or payment
        if payment.get("provider_ref") != ref:
            _LOGGER.error("a second card charge for one invoice; needs review")
            return await self._flag_suspicious(payment, None, "double_charge")
        now = self._clock()
        if currency.upper() != payment["currency"] or total_amount != payment["minor_amount"]:
            received = None
            if currency.upper() == payment["currency"] and payment["minor_amount"]:
                received = total_amount * int(payment["amount_cents"]) // int(
                    payment["minor_amount"]
                )
            if payment["status"] != "paid":
                return await self._flag_suspicious(payment, received, "amount_mismatch")
        return await self._credit(payment, payment["amount_cents"], now=now)

    async def record_card_refund(
        self, actor: int, payment_id: str
    ) -> tuple[CardRefund, Document | None]:
        """An admin records a card refund made (or to be made) at the provider: the credit
        is debited once, keyed by the provider's charge id, and the payment is marked
        refunded. Telegram has no refund call for provider payments. Audited
        (``payment.refund_card``) once, keyed by the charge: also after a crash before it.

        Returns ``(result, payment)``."""
        oid = parse_payment_id(payment_id)
        payment = await self._payments.get(oid) if oid else None
        if payment is None or payment["provider"] != CARD:
            return CardRefund.NOT_FOUND, payment
        if payment["status"] == "refunded":
            return await self._audit_card_refund(actor, CardRefund.ALREADY_REFUNDED, payment)
        if payment["status"] != "paid":
            return CardRefund.NOT_PAID, payment
        now = self._clock()
        key = f"card-refund:{payment['provider_ref']}"
        try:
            await self._ledger.apply(
                user_id=payment["user_id"],
                amount_cents=-int(payment["credited_cents"]),
                kind="refund",
                key=key,
                now=now,
                meta={"payment_id": str(payment["_id"]), "provider": CARD},
            )
        except InsufficientFunds:
            return CardRefund.INSUFFICIENT_BALANCE, payment
        done = await self._payments.transition(
            payment["_id"],
            from_statuses=["paid"],
            to_status="refunded",
            now=now,
            fields={"refunded_at": now, "refund_state": "recorded", "refund_key": key},
        )
        if done is None:  # another admin recorded it meanwhile (same key: one debit)
            fresh = await self._payments.get(payment["_id"])
            if fresh is None:
                return CardRefund.ALREADY_REFUNDED, None
            return await self._audit_card_refund(actor, CardRefund.ALREADY_REFUNDED, fresh)
        return await self._audit_card_refund(actor, CardRefund.RECORDED, done)

    async def _audit_card_refund(
        self, actor: int, result: CardRefund, payment: Document
    ) -> tuple[CardRefund, Document]:
        await self._audit.record(
            actor,
            "payment.refund_card",
            f"payment:{payment['_id']}",
            before={"status": "paid"},
            after={"status": payment["status"], "debited_cents": payment.get("credited_cents")},
            key=f"audit:card-refund:{payment.get('provider_ref')}",
        )
        return result, payment

    async def recent_card(self, *, limit: int = 20) -> list[Document]:
        return await self._payments.recent_by_provider(CARD, limit=limit)

    async def expire_telegram_invoices(self, *, limit: int = 100) -> int:
        """Card and Stars invoices past their expiry (and a grace for a checkout Telegram
        approved just before it) are expired and the customer told. Telegram cannot be
        asked about provider payments: ``successful_payment`` is the only signal, and a
        late one still credits an expired invoice."""
        now = self._clock()
        count = 0
        for provider in (CARD, STARS):
            for payment in await self._payments.expired_open(
                provider, before=now - CHECKOUT_GRACE, limit=limit
            ):
                done = await self._payments.transition(
                    payment["_id"],
                    from_statuses=list(OPEN_STATUSES),
                    to_status="expired",
                    now=now,
                )
                if done is not None:
                    await self._notices.topup_expired(
                        payment["user_id"], payment["amount_cents"], f"expired:{payment['_id']}"
                    )
                    await self._notices.invoice_settled(done, "expired")
                    count += 1
        return count

    # -- Telegram Stars -----------------------------------------------------------------

    async def check_checkout(
        self, user_id: int, payload: str, currency: str, total_amount: int
    ) -> StarsCheck:
        """A pre-checkout query of either Telegram rail (card or Stars), by its payload."""
        if payload.startswith(CARD_PAYLOAD_PREFIX):
            return await self.check_card_checkout(user_id, payload, currency, total_amount)
        return await self.check_stars_checkout(user_id, payload, currency, total_amount)

    async def check_stars_checkout(
        self, user_id: int, payload: str, currency: str, total_amount: int
    ) -> StarsCheck:
        if not self._config.stars_enabled:
            # Stars turned off: an invoice sent earlier is not paid any more.
            return StarsCheck(False, "disabled")
        payment = await self._stars_payment(payload)
        if payment is None:
            return StarsCheck(False, "unknown")
        if payment["user_id"] != user_id:
            return StarsCheck(False, "not_yours")
        if payment["status"] != "pending":
            return StarsCheck(False, "used")
        if payment["expires_at"] <= self._clock():
            return StarsCheck(False, "expired")
        if currency != "XTR" or total_amount != payment["stars"]:
            return StarsCheck(False, "amount_mismatch")
        return StarsCheck(True)

    async def on_stars_paid(
        self, user_id: int, payload: str, charge_id: str, total_amount: int
    ) -> Outcome:
        """Credits a successful Stars payment once, by ``telegram_payment_charge_id``."""
        payment = await self._stars_payment(payload)
        if payment is None or payment["user_id"] != user_id:
            _LOGGER.error("successful Stars payment with an unknown payload")
            return Outcome.UNKNOWN
        now = self._clock()
        if payment.get("provider_ref") not in (None, charge_id):
            _LOGGER.error("a second Stars charge for one payload; needs review")
            return await self._flag_suspicious(payment, None, "double_charge")
        if payment.get("provider_ref") is None:
            await self._payments.set_provider_ref(payment["_id"], STARS, charge_id)
            await self._payments.set_fields(payment["_id"], {"stars_paid": total_amount})
            payment = {**payment, "provider_ref": charge_id}
        return await self._credit(payment, payment["amount_cents"], now=now)

    async def reconcile_stars(
        self, history: StarsHistory, *, legacy_offset: int = 0
    ) -> dict[str, int]:
        """Reads the Stars history Telegram keeps (oldest first) from where it was read
        last: credits payments whose update was never handled, settles refunds whose
        answer was lost, then alerts admins about refunds that stay unknown.

        The cursor is what was seen, not only a count: the keys of the last
        ``stars_overlap`` transactions are kept and re-read each run. Transactions added
        inside that window are found (they are not among the keys); a history changed
        before it (the remembered keys no longer where they were) is read again from the
        start. Every effect is idempotent, so reading a transaction twice is harmless."""
        counts: dict[str, int] = {}
        cursor = await self._payments.stars_cursor()
        overlap = self._config.stars_overlap
        if cursor is None:
            offset, window = legacy_offset, []
        else:
            offset = int(cursor.get("offset") or 0)
            window = [str(key) for key in cursor.get("window") or []][-overlap:]
        start = max(0, offset - len(window))
        read: list[StarsTransaction] = []
        complete = True
        for _ in range(self._config.stars_max_pages):
            page = await history(start + len(read), STARS_PAGE)
            if page is None:
                counts["history_unavailable"] = 1
                complete = False
                break
            read.extend(page)
            if len(page) < STARS_PAGE:
                break
        keys = [tx.key for tx in read]
        seen = set(window)
        for tx in read:
            if tx.key in seen:
                continue
            outcome = await self._apply_stars_transaction(tx)
            counts[outcome] = counts.get(outcome, 0) + 1
        now = self._clock()
        aligned = not window or _starts_with_in_order(keys, window)
        if not aligned and complete:
            # An entry was inserted or removed before what we had read: what moved past
            # the window cannot be told apart, so read it all again (idempotently).
            _LOGGER.warning("the Stars history changed before the cursor; reading it again")
            counts["history_changed"] = 1
            await self._payments.save_stars_cursor(offset=0, window=[], now=now)
        elif aligned and (read or cursor is None):
            await self._payments.save_stars_cursor(
                offset=start + len(read), window=keys[-overlap:], now=now
            )
        alerted = await self._alert_unsettled_refunds()
        if alerted:
            counts["refund_unknown_alerted"] = alerted
        return counts

    async def _apply_stars_transaction(self, tx: StarsTransaction) -> str:
        if tx.incoming:
            if tx.user_id is None or not tx.payload.startswith(STARS_PAYLOAD_PREFIX):
                return "ignored"
            return str(await self.on_stars_paid(tx.user_id, tx.payload, tx.tx_id, tx.amount))
        return await self.on_stars_refund_seen(tx.tx_id)

    async def on_stars_refund_seen(self, charge_id: str) -> str:
        """Telegram's history shows the payment ``charge_id`` refunded."""
        payment = await self._payments.by_ref(STARS, charge_id)
        if payment is None or payment["status"] not in ("paid", "refunded"):
            return "ignored"
        if payment["status"] == "refunded":
            return "already_refunded"
        started = payment.get("refund_started_at")
        if started is None:
            # Refunded without us: the customer has the Stars back and keeps the credit.
            _LOGGER.error("a Stars refund this bot did not make; admins alerted")
            await self._notices.stars_refund_unexpected(payment)
            return "refund_unexpected"
        now = self._clock()
        done = await self._payments.transition(
            payment["_id"],
            from_statuses=["paid"],
            to_status="refunded",
            now=now,
            fields={"refunded_at": now, "refund_state": "confirmed"},
        )
        if done is None:
            return "already_refunded"
        if payment.get("refund_state") == "unknown" or (
            now - started >= self._config.stars_refund_retry_after
        ):
            await self._notices.stars_refund_settled(done)  # someone was left wondering
        return "refund_settled"

    async def _alert_unsettled_refunds(self, *, limit: int = 50) -> int:
        """One alert per refund attempt whose outcome stays unknown past the bound."""
        now = self._clock()
        after = self._config.stars_refund_alert_after
        alerted = 0
        for payment in await self._payments.refunds_unsettled(
            started_before=now - after, limit=limit
        ):
            if await self._payments.claim_refund_alert(payment["_id"], now=now):
                await self._notices.stars_refund_unknown(payment, int(after.total_seconds() // 60))
                alerted += 1
        return alerted

    async def _stars_payment(self, payload: str) -> Document | None:
        return await self._invoice_payment(payload, STARS_PAYLOAD_PREFIX, STARS)

    async def _invoice_payment(
        self, payload: str, prefix: str, provider: str
    ) -> Document | None:
        """The payment a Telegram invoice payload names, if it is one of ``provider``'s."""
        if not payload.startswith(prefix):
            return None
        oid = parse_payment_id(payload.removeprefix(prefix))
        if oid is None:
            return None
        payment = await self._payments.get(oid)
        if payment is None or payment["provider"] != provider:
            return None
        return payment

    async def refund_stars(
        self,
        actor: int,
        payment_id: str,
        refund: Callable[[int, str], Awaitable[Any]],
    ) -> StarsRefundResult:
        """Debits the ledger once, then asks Telegram to refund.

        ``refund`` returns when Telegram refunded (or says it already had), raises
        ``StarsRefundRefused`` when Telegram refused (the debit is compensated), and
        anything else means the outcome is unknown: the debit stands, the refund stays
        in progress and is settled from Telegram's history (``reconcile_stars``), or by
        running this again, which retries the same attempt without a second debit.

        A refunded or unknown outcome is audited (``payment.refund_stars``), once per
        attempt and outcome.
        """
        oid = parse_payment_id(payment_id)
        payment = await self._payments.get(oid) if oid else None
        if payment is None or payment["provider"] != STARS:
            return StarsRefundResult(StarsRefund.NOT_FOUND, payment)
        if payment["status"] == "refunded":
            return StarsRefundResult(StarsRefund.ALREADY_REFUNDED, payment)
        if payment["status"] != "paid":
            return StarsRefundResult(StarsRefund.NOT_PAID, payment)
        now = self._clock()
        claimed = await self._payments.claim_refund(payment["_id"], now=now)
        if claimed is None:
            claimed = await self._payments.claim_refund_retry(
                payment["_id"], started_before=now - self._config.stars_refund_retry_after, now=now
            )
        if claimed is None:
            fresh = await self._payments.get(payment["_id"])
            if fresh is not None and fresh["status"] == "refunded":
                return StarsRefundResult(StarsRefund.ALREADY_REFUNDED, fresh)
            return StarsRefundResult(StarsRefund.IN_PROGRESS, payment)
        charge_id = str(payment["provider_ref"])
        attempt = int(claimed["refund_attempts"])
        amount = int(payment["credited_cents"])
        meta = {"payment_id": str(payment["_id"])}
        try:
            await self._ledger.apply(
                user_id=payment["user_id"],
                amount_cents=-amount,
                kind="refund",
                key=f"stars-refund:{charge_id}:{attempt}",
                now=now,
                meta=meta,
            )
        except InsufficientFunds:
            await self._payments.release_refund(payment["_id"])
            return StarsRefundResult(StarsRefund.INSUFFICIENT_BALANCE, payment)
        try:
            await refund(payment["user_id"], charge_id)
        except StarsRefundRefused as exc:
            # Telegram said no: nothing was refunded; give the money back, keyed to this
            # attempt (a later attempt debits under its own key).
            await self._ledger.apply(
                user_id=payment["user_id"],
                amount_cents=amount,
                kind="compensation",
                key=f"stars-refund-compensation:{charge_id}:{attempt}",
                now=now,
                meta=meta,
            )
            await self._payments.release_refund(payment["_id"])
            return StarsRefundResult(StarsRefund.REFUSED, payment, exc.reason)
        except Exception as exc:
            # No answer (a timeout, a 5xx, a dropped connection): Telegram may well have
            # refunded. Compensating now could leave the customer both the Stars and the
            # balance, so the debit stands until the history tells.
            _LOGGER.warning("Stars refund outcome unknown: %s", type(exc).__name__)
            await self._payments.mark_refund_unknown(payment["_id"], now=self._clock())
            fresh = await self._payments.get(payment["_id"])
            if fresh is not None and fresh["status"] == "refunded":
                # settled from the history meanwhile
                return await self._audit_stars_refund(actor, StarsRefund.REFUNDED, fresh, attempt)
            return await self._audit_stars_refund(actor, StarsRefund.UNKNOWN, fresh, attempt)
        done = await self._payments.transition(
            payment["_id"],
            from_statuses=["paid"],
            to_status="refunded",
            now=now,
            fields={"refunded_at": now, "refund_state": "done"},
        )
        if done is None:  # settled meanwhile from Telegram's history
            done = await self._payments.get(payment["_id"])
        return await self._audit_stars_refund(actor, StarsRefund.REFUNDED, done, attempt)

    async def _audit_stars_refund(
        self, actor: int, status: StarsRefund, payment: Document | None, attempt: int
    ) -> StarsRefundResult:
        if payment is not None:
            await self._audit.record(
                actor,
                "payment.refund_stars",
                f"payment:{payment['_id']}",
                before={"status": "paid"},
                after={"status": payment["status"], "refund_state": payment.get("refund_state")},
                key=f"audit:stars-refund:{payment['provider_ref']}:{attempt}:{status}",
            )
        return StarsRefundResult(status, payment)


def _starts_with_in_order(keys: list[str], window: list[str]) -> bool:
    """True when ``keys`` starts with ``window[0]`` and holds all of ``window`` in order
    (entries may have been added between them, none removed or moved before them)."""
    if not keys or keys[0] != window[0]:
        return False
    remaining = iter(keys)
    return all(key in remaining for key in window)
