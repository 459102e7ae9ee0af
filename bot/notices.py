"""Renders service events into localized outbox messages (customers and admins)."""

from __future__ import annotations

from datetime import date, timedelta

from bot.i18n import Html, I18n
from models.shipping import Label, TrackingEvent
from services.notifications import Notifier
from services.users import UserService
from storage.client import Document
from views.callbacks import AdminPayAmount, AdminPayCredit
from views.keyboards import keyboard_dict
from views.screens import topup as topup_screens
from views.translator import Translator


def button_markup(rows: list[list[tuple[str, str]]]) -> dict[str, object]:
    """Bot API JSON of an inline keyboard for the outbox (``views.keyboards``, with its
    64-byte check)."""
    return keyboard_dict(rows)


def refund_reason(i18n: I18n, lang: str, refund: Document) -> str:
    """A carrier's reason code in words; an admin's free-text reason as written."""
    reason = str(refund.get("reason") or "")
    key = f"refund.reason.{reason}"
    if key in i18n.catalogs[i18n.default].messages:
        return i18n.t(lang, key)
    return i18n.t(lang, "refund.reason.other", reason=reason)


def tracking_place(event: TrackingEvent | None) -> str:
    """City, state and postal code of an event, as far as the carrier gave them."""
    if event is None:
        return ""
    parts = [p for p in (event.city, event.state) if p]
    place = ", ".join(parts)
    if event.postal_code:
        place = f"{place} {event.postal_code}".strip()
    return place


def void_refusal_text(i18n: I18n, lang: str, refund: Document) -> str:
    """The carrier's reason for refusing a void, in words when we know the code."""
    code = str(refund.get("void_refusal") or "unknown")
    key = f"refund.reason.{code}"
    if key in i18n.catalogs[i18n.default].messages:
        return f"{i18n.t(lang, key)} ({code})"
    return code


class BotNotices:
    """Implements ``services.payments.PaymentNotices`` (and later services' notices)."""

    def __init__(
        self,
        i18n: I18n,
        notifier: Notifier,
        users: UserService,
        *,
        stale_after: timedelta,
        escalate_after: timedelta,
    ) -> None:
        self._i18n = i18n
        self._notifier = notifier
        self._users = users
        self._stale_after = stale_after
        self._escalate_after = escalate_after

    async def _lang(self, user_id: int) -> str:
        return await self._users.language_of(user_id, self._i18n.default)

    async def data_deleted(
        self, user_id: int, *, templates: int, orders: int, balance_cents: int, key: str
    ) -> None:
        """A customer deleted their data (``services/privacy.py``): admins are told once."""
        lang = self._i18n.default
        text = self._i18n.t(
            lang,
            "admin.data_deleted",
            user=user_id,
            templates=templates,
            orders=orders,
            balance=self._i18n.money(lang, balance_cents),
        )
        await self._notifier.alert_admins(text, dedup_key=key)

    async def topup_credited(
        self,
        user_id: int,
        amount_cents: int,
        balance_cents: int,
        key: str,
        *,
        back_to_order: bool = False,
    ) -> None:
        tr = Translator(self._i18n, await self._lang(user_id))
        screen = topup_screens.credited(
            tr, amount_cents, balance_cents, back_to_order=back_to_order
        )
        await self._notifier.notify_user(
            user_id,
            screen.text,
            dedup_key=f"credited:{key}",
            reply_markup=screen.markup.to_dict() if screen.markup else None,
        )

    async def invoice_settled(self, payment: Document, outcome: str) -> None:
        """Each message that showed this invoice's buttons becomes a short status."""
        messages = list(payment.get("messages") or [])
        if not messages:
            return
        tr = Translator(self._i18n, await self._lang(int(payment["user_id"])))
        status = topup_screens.invoice_status(tr, int(payment["amount_cents"]), outcome)
        for message in messages:
            await self._notifier.disarm_message(
                int(message["chat_id"]),
                int(message["message_id"]),
                status,
                dedup_key=f"invoice:{payment['_id']}:{message['message_id']}",
            )

    async def topup_expired(self, user_id: int, amount_cents: int, key: str) -> None:
        lang = await self._lang(user_id)
        text = self._i18n.t(lang, "topup.expired", amount=self._i18n.money(lang, amount_cents))
        await self._notifier.notify_user(user_id, text, dedup_key=key)

    async def topup_under_review(self, payment: Document, received_cents: int | None) -> None:
        user_id = payment["user_id"]
        lang = await self._lang(user_id)
        i18n = self._i18n
        await self._notifier.notify_user(
            user_id,
            i18n.t(lang, "topup.under_review", amount=i18n.money(lang, payment["amount_cents"])),
            dedup_key=f"review:{payment['_id']}",
        )
        admin = i18n.default
        text = i18n.t(
            admin,
            "admin.payment.suspicious",
            user_id=user_id,
            provider=payment["provider"],
            ref=str(payment.get("provider_ref", "-")),
            amount=i18n.money(admin, payment["amount_cents"]),
            received="?" if received_cents is None else i18n.money(admin, received_cents),
            status=str(payment.get("provider_status", "")),
        )
        if received_cents is not None and received_cents > 0:
            # One tap credits exactly what the provider says was received.
            label = i18n.t(
                admin, "admin.payment.credit_button", amount=i18n.money(admin, received_cents)
            )
            button = (label, AdminPayCredit(str(payment["_id"])).pack())
        else:
            # Unknown: no one-tap credit; the admin checks and types the amount.
            label = i18n.t(admin, "admin.paycredit.enter_button")
            button = (label, AdminPayAmount(str(payment["_id"])).pack())
        await self._notifier.alert_admins(
            text,
            dedup_key=f"suspicious:{payment['_id']}",
            reply_markup=button_markup([[button]]),
        )

    def _stars_common(self, lang: str, payment: Document) -> dict[str, object]:
        return {
            "payment_id": str(payment["_id"]),
            "user_id": payment["user_id"],
            "charge_id": str(payment.get("provider_ref", "-")),
            "amount": self._i18n.money(lang, int(payment.get("credited_cents") or 0)),
        }

    async def stars_refund_unknown(self, payment: Document, minutes: int) -> None:
        lang = self._i18n.default
        text = self._i18n.t(
            lang, "admin.stars_refund.unknown_alert", minutes=minutes,
            **self._stars_common(lang, payment),
        )
        # Once per try: a retry (same attempt, new start) that stays unknown alerts again.
        started = payment.get("refund_started_at")
        stamp = started.isoformat() if started is not None else "-"
        await self._notifier.alert_admins(
            text, dedup_key=f"stars-refund-unknown:{payment['_id']}:{stamp}"
        )

    async def stars_refund_settled(self, payment: Document) -> None:
        lang = self._i18n.default
        text = self._i18n.t(
            lang, "admin.stars_refund.settled", **self._stars_common(lang, payment)
        )
        await self._notifier.alert_admins(text, dedup_key=f"stars-refund-settled:{payment['_id']}")

    async def stars_refund_unexpected(self, payment: Document) -> None:
        lang = self._i18n.default
        text = self._i18n.t(
            lang, "admin.stars_refund.unexpected", **self._stars_common(lang, payment)
        )
        await self._notifier.alert_admins(
            text, dedup_key=f"stars-refund-unexpected:{payment['_id']}"
        )

    async def topup_overpaid(self, payment: Document, received_cents: int) -> None:
        i18n = self._i18n
        lang = i18n.default
        text = i18n.t(
            lang,
            "admin.payment.overpaid",
            user_id=payment["user_id"],
            provider=payment["provider"],
            ref=str(payment.get("provider_ref", "-")),
            payment_id=str(payment["_id"]),
            received=i18n.money(lang, received_cents),
            amount=i18n.money(lang, int(payment["amount_cents"])),
        )
        await self._notifier.alert_admins(
            text, dedup_key=f"overpaid:{payment['_id']}:{received_cents}"
        )

    async def ledger_conflict(self, payment: Document, key: str, detail: str) -> None:
        i18n = self._i18n
        lang = i18n.default
        text = i18n.t(
            lang,
            "admin.payment.ledger_conflict",
            user_id=payment["user_id"],
            provider=payment["provider"],
            ref=str(payment.get("provider_ref", "-")),
            payment_id=str(payment["_id"]),
            key=key,
            detail=detail,
        )
        await self._notifier.alert_admins(text, dedup_key=f"ledger-conflict:{key}")

    async def stale_payment(self, payment: Document, *, escalation: bool) -> None:
        i18n = self._i18n
        lang = i18n.default
        common = {
            "user_id": payment["user_id"],
            "provider": payment["provider"],
            "ref": str(payment.get("provider_ref", payment["order_id"])),
            "amount": i18n.money(lang, payment["amount_cents"]),
        }
        if escalation:
            hours = int(self._escalate_after.total_seconds() // 3600)
            text = i18n.t(lang, "admin.payment.escalation", hours=hours, **common)
        else:
            minutes = int(self._stale_after.total_seconds() // 60)
            text = i18n.t(lang, "admin.payment.stale", minutes=minutes, **common)
        kind = "escalation" if escalation else "stale"
        await self._notifier.alert_admins(text, dedup_key=f"{kind}:{payment['_id']}")

    async def label_compensated(self, order: Document, reason: str, *, tell_user: bool) -> None:
        """Purchase failed after the debit: admins are told, and the customer when they
        are not in the chat waiting for the answer."""
        user_id = order["user_id"]
        lang = await self._lang(user_id)
        i18n = self._i18n
        reason_key = f"order.failed_reason.{reason}"
        if reason_key not in i18n.catalogs[i18n.default].messages:
            reason_key = "order.failed_reason.other"
        price = int(order.get("price_cents") or 0)
        if tell_user:
            await self._notifier.notify_user(
                user_id,
                i18n.t(
                    lang,
                    "order.compensated",
                    reason=i18n.t(lang, reason_key),
                    price=i18n.money(lang, price),
                ),
                dedup_key=f"compensated:{order['_id']}",
            )
        admin = i18n.default
        await self._notifier.alert_admins(
            i18n.t(
                admin,
                "admin.order.compensated",
                order_id=str(order["_id"]),
                user_id=user_id,
                reason=reason,
                price=i18n.money(admin, price),
            ),
            dedup_key=f"compensated:{order['_id']}",
        )

    async def label_orphaned(self, order: Document, label: Label, *, voided: bool) -> None:
        """A label bought after its order had failed and been compensated."""
        admin = self._i18n.default
        await self._notifier.alert_admins(
            self._i18n.t(
                admin,
                "admin.order.late_label",
                order_id=str(order["_id"]),
                user_id=order["user_id"],
                label_id=label.label_id,
                tracking=label.tracking_number or "-",
                voided="✅" if voided else "❌",
            ),
            dedup_key=f"late-label:{label.label_id}",
        )

    async def label_recovered(self, order: Document) -> None:
        user_id = order["user_id"]
        lang = await self._lang(user_id)
        text = self._i18n.t(lang, "order.recovered", tracking=str(order.get("tracking_number")))
        await self._notifier.notify_user(user_id, text, dedup_key=f"recovered:{order['_id']}")

    # -- refunds ---------------------------------------------------------------------------

    async def refund_credited(self, refund: Document, balance_cents: int) -> None:
        user_id = refund["user_id"]
        lang = await self._lang(user_id)
        i18n = self._i18n
        text = i18n.t(
            lang,
            "refund.credited",
            number=str(refund.get("tracking_number")),
            amount=i18n.money(lang, int(refund["amount_cents"])),
            balance=i18n.money(lang, balance_cents),
        )
        await self._notifier.notify_user(
            user_id, text, dedup_key=f"refund-credited:{refund['_id']}"
        )

    async def refund_rejected(self, refund: Document) -> None:
        user_id = refund["user_id"]
        lang = await self._lang(user_id)
        text = self._i18n.t(
            lang,
            "refund.rejected",
            number=str(refund.get("tracking_number")),
            reason=refund_reason(self._i18n, lang, refund),
        )
        await self._notifier.notify_user(
            user_id, text, dedup_key=f"refund-rejected:{refund['_id']}"
        )

    def _refund_row(self, lang: str, refund: Document) -> str:
        return self._i18n.t(
            lang,
            "admin.refunds.row",
            refund_id=str(refund["_id"]),
            user_id=refund["user_id"],
            number=str(refund.get("tracking_number")),
            amount=self._i18n.money(lang, int(refund["amount_cents"])),
            status=refund["status"],
        )

    async def refunds_requested(self, refunds: list[Document]) -> None:
        """One batched message per job run, however many labels were requested."""
        lang = self._i18n.default
        lines = "\n".join(self._refund_row(lang, refund) for refund in refunds[:30])
        text = self._i18n.t(lang, "admin.refunds.requested", count=len(refunds), lines=Html(lines))
        first = refunds[0]["_id"]
        await self._notifier.alert_admins(text, dedup_key=f"refunds-requested:{first}")

    def _review_buttons(self, lang: str, refund: Document) -> dict[str, object]:
        i18n = self._i18n
        rid = refund["_id"]
        return button_markup(
            [
                [
                    (i18n.t(lang, "admin.refunds.approve"), f"adm:rfok:{rid}"),
                    (i18n.t(lang, "admin.refunds.reject"), f"adm:rfno:{rid}"),
                ],
                [(i18n.t(lang, "admin.refunds.credit_button"), f"adm:rfcr:{rid}")],
            ]
        )

    @staticmethod
    def _review_key(refund: Document) -> str:
        # One alert per time the request comes back for review (not one per request ever).
        return f"refund-review:{refund['_id']}:{len(refund.get('history') or [])}"

    async def refund_needs_review(self, refund: Document) -> None:
        i18n = self._i18n
        lang = i18n.default
        text = i18n.t(
            lang,
            "admin.refunds.needs_review",
            refund_id=str(refund["_id"]),
            user_id=refund["user_id"],
            number=str(refund.get("tracking_number")),
            amount=i18n.money(lang, int(refund["amount_cents"])),
            error=str(refund.get("last_error", "")),
        )
        await self._notifier.alert_admins(
            text,
            dedup_key=self._review_key(refund),
            reply_markup=self._review_buttons(lang, refund),
        )

    async def refund_void_refused(self, refund: Document) -> None:
        i18n = self._i18n
        lang = i18n.default
        text = i18n.t(
            lang,
            "admin.refunds.void_refused",
            refund_id=str(refund["_id"]),
            user_id=refund["user_id"],
            number=str(refund.get("tracking_number")),
            amount=i18n.money(lang, int(refund["amount_cents"])),
            reason=void_refusal_text(i18n, lang, refund),
        )
        await self._notifier.alert_admins(
            text,
            dedup_key=self._review_key(refund),
            reply_markup=self._review_buttons(lang, refund),
        )

    # -- tracking and refund reminders ---------------------------------------------------

    async def tracking_milestone(
        self, order: Document, milestone: str, event: TrackingEvent | None
    ) -> None:
        user_id = int(order["user_id"])
        lang = await self._lang(user_id)
        i18n = self._i18n
        place = tracking_place(event)
        text = i18n.t(
            lang,
            f"tracking.notice.{milestone}",
            tracking=str(order.get("tracking_number") or "—"),
            place=i18n.t(lang, "tracking.place", place=place) if place else "",
            detail=(event.text if event else "") or "—",
        )
        button = (i18n.t(lang, "tracking.button"), f"lbl:trk:{order['_id']}")
        await self._notifier.notify_user(
            user_id,
            text,
            dedup_key=f"tracking:{order['_id']}:{milestone}",
            reply_markup=button_markup([[button]]),
        )

    async def refund_reminder(self, order: Document, last_day: date, *, auto: bool) -> None:
        user_id = int(order["user_id"])
        lang = await self._lang(user_id)
        i18n = self._i18n
        text = i18n.t(
            lang,
            "refund.reminder_auto" if auto else "refund.reminder",
            tracking=str(order.get("tracking_number") or "—"),
            last_day=i18n.date(lang, last_day),
        )
        button = (i18n.t(lang, "refund.reminder_button"), f"rf:one:{order['_id']}")
        await self._notifier.notify_user(
            user_id,
            text,
            dedup_key=f"refund-reminder:{order['_id']}",
            reply_markup=button_markup([[button]]),
        )

    async def auto_refund_requested(self, order: Document, verdict: str) -> None:
        user_id = int(order["user_id"])
        lang = await self._lang(user_id)
        text = self._i18n.t(
            lang, "refund.auto_requested", tracking=str(order.get("tracking_number") or "—")
        )
        await self._notifier.notify_user(
            user_id, text, dedup_key=f"auto-refund:{order['_id']}"
        )
