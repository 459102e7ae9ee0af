"""The label order draft: addresses, parcel, rates, price — written at every step.

The conversation only moves between states; every value the customer gives is validated
here and stored on the ``orders`` draft at once, so a restart resumes with the same draft.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId

from models.shipping import Address, AddressValidation, Parcel
from providers.errors import ProviderError, ProviderRejected
from services import addresses
from services.addresses import FieldError
from services.amounts import AmountLimits, parse_amount
from services.clock import Clock, utc_now
from services.parcel import parse_dimensions, parse_weight
from services.pricing import PricingRules, price_rates
from services.shipping import CarrierUnavailable, ShippingGateway
from storage.client import Document
from storage.orders import OrdersRepo
from storage.templates import DefaultTaken, DuplicateName, TemplatesRepo
from storage.users import UsersRepo

_LOGGER = logging.getLogger(__name__)

SIDES = ("from", "to")
HISTORY_PAGE = 5
CHOICES = ("use", "keep", "edit")
# Validation outcomes stored on the draft (``<side>_validation.status``):
VERIFIED = "verified"  # the carrier knows the address as typed
CORRECTED = "corrected"  # the carrier knows a corrected form: the customer chooses
UNVERIFIED = "unverified"  # the carrier cannot confirm it: the customer keeps or edits
SKIPPED = "skipped"  # the check was unavailable (outage): the order goes on as typed
# Delivery confirmation the review offers (ShipStation ``shipment.confirmation``).
NO_CONFIRMATION = "none"
CONFIRMATION_CHOICES = ("signature", "adult_signature")
MIN_INSURED_VALUE_CENTS = 100


@dataclass(frozen=True)
class OrderConfig:
    pricing: PricingRules
    rates_max_age: timedelta
    session_ttl: timedelta
    min_weight_oz: int
    max_weight_oz: int
    max_side_in: Decimal
    templates_per_user: int
    validate_addresses: bool = True
    max_insured_value_cents: int = 500_000
    insurance_provider: str = "carrier"


@dataclass(frozen=True)
class AddressCheck:
    """What the flow must say about one side's address after the carrier's check."""

    side: str
    status: str
    token: str
    fresh: bool  # checked just now (an outage note is said once)
    suggestion: dict[str, Any] | None = None  # the corrected address (CORRECTED)
    reasons: tuple[tuple[str, str], ...] = ()  # (detail_code, carrier message)

    @property
    def needs_choice(self) -> bool:
        return self.status in (CORRECTED, UNVERIFIED)


def validation_of(draft: Document, side: str) -> dict[str, Any] | None:
    value = draft.get(f"{side}_validation")
    return dict(value) if isinstance(value, dict) else None


def validate_address_option(draft: Document) -> str:
    """``validate_and_clean`` only when the customer accepted a corrected form and kept
    no address as typed (ShipStation would clean that one too); else ``no_validation``."""
    decisions = [(validation_of(draft, side) or {}).get("decision") for side in SIDES]
    if "accepted" in decisions and "kept" not in decisions:
        return "validate_and_clean"
    return "no_validation"


def parse_id(value: str) -> ObjectId | None:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


def address_of(draft: Document, side: str) -> dict[str, Any]:
    return dict(draft.get(f"{side}_address") or {})


def has_progress(draft: Document) -> bool:
    """Whether the customer has put anything into the draft (starting over loses it)."""
    return bool(address_of(draft, "from") or address_of(draft, "to") or draft.get("parcel"))


def skippable(side: str, field: str) -> bool:
    """Whether the customer may skip ``field`` of the ``side`` address.

    ShipStation requires a non-empty phone on both addresses. The sender's phone is
    therefore required (as in ShipStation's own ship-from locations); a recipient without
    a phone gets the sender's on the shipment (see ``to_address``)."""
    return field in addresses.SKIPPABLE_FIELDS and (side, field) != ("from", "phone")


def missing_fields(address: dict[str, Any], side: str) -> list[str]:
    """Fields still to ask, in order (skippable ones count as answered once skipped)."""
    return [
        field
        for field in addresses.ADDRESS_FIELDS
        if field not in address or (address[field] is None and not skippable(side, field))
    ]


def to_address(
    data: dict[str, Any],
    *,
    fallback_phone: str | None = None,
    residential: bool | None = None,
) -> Address:
    return Address(
        name=data["name"],
        street1=data["street1"],
        street2=data.get("street2") or None,
        city=data["city"],
        state=data["state"],
        postal_code=data["postal_code"],
        phone=data.get("phone") or fallback_phone or "",
        residential=residential,
    )


def residential_of(draft: Document, side: str) -> bool | None:
    """The residential indicator the carrier's validation gave this side (None: unknown)."""
    value = (validation_of(draft, side) or {}).get("residential")
    return value if isinstance(value, bool) else None


def quote_reference(order_id: ObjectId, seq: int) -> str:
    """The ``external_shipment_id`` of one quote: unique per ShipStation account."""
    return f"{order_id}-q{seq}"  # 24 + 2 + digits: well within 47 characters


def to_parcel(data: dict[str, Any]) -> Parcel:
    return Parcel(
        weight_oz=int(data["weight_oz"]),
        length_in=Decimal(data["length_in"]),
        width_in=Decimal(data["width_in"]),
        height_in=Decimal(data["height_in"]),
    )


class QuoteRefusal(StrEnum):
    NO_RATES = "no_rates"  # no rate we can sell
    INVALID_ADDRESS = "invalid_address"  # the carrier says an address cannot be shipped to
    REJECTED = "rejected"  # the carrier refused the shipment for another reason


class RatesUnavailable(Exception):
    """No rate to offer. ``reason`` says why; ``message`` is the carrier's own words (shown
    with ``INVALID_ADDRESS``). A carrier that cannot be reached is not this: it raises
    ``ProviderError`` or ``CarrierUnavailable`` (try again later)."""

    def __init__(self, reason: QuoteRefusal = QuoteRefusal.NO_RATES, message: str = "") -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.message = message


class QuoteRefused(RatesUnavailable):
    """The carrier refused the quote (a business error, ``ProviderRejected``): callers see
    a domain reason, never the provider's error codes."""

    @classmethod
    def from_provider(cls, exc: ProviderRejected) -> QuoteRefused:
        if exc.code == "invalid_address":
            return cls(QuoteRefusal.INVALID_ADDRESS, exc.message)
        return cls(QuoteRefusal.REJECTED, exc.message)


class OptionNotOffered(Exception):
    """The chosen service does not offer this insurance or confirmation (nothing changed)."""


def options_of(draft: Document) -> tuple[int, str]:
    """(declared value in cents, 0 = not insured; confirmation) the draft is quoted with."""
    insured = draft.get("insured_value_cents")
    confirmation = draft.get("confirmation")
    return (
        insured if isinstance(insured, int) and not isinstance(insured, bool) and insured > 0
        else 0,
        confirmation if confirmation in CONFIRMATION_CHOICES else NO_CONFIRMATION,
    )


def _same_service(rates: list[dict[str, Any]], chosen: dict[str, Any]) -> int | None:
    for index, rate in enumerate(rates):
        if (rate["carrier_code"], rate["service_code"]) == (
            chosen.get("carrier_code"),
            chosen.get("service_code"),
        ):
            return index
    return None


class OrderService:
    def __init__(
        self,
        orders: OrdersRepo,
        templates: TemplatesRepo,
        users: UsersRepo,
        gateway: ShippingGateway,
        config: OrderConfig,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self._orders = orders
        self._templates = templates
        self._users = users
        self._gateway = gateway
        self._config = config
        self._clock = clock

    @property
    def config(self) -> OrderConfig:
        return self._config

    # -- drafts ------------------------------------------------------------------------

    async def start_draft(self, user_id: int) -> Document:
        now = self._clock()
        await self._orders.abandon_drafts(user_id, now=now)
        return await self._orders.create_draft(
            user_id, now=now, expires_at=now + self._config.session_ttl
        )

    async def draft(self, user_id: int) -> Document | None:
        return await self._orders.active_draft(user_id, now=self._clock())

    async def get(self, user_id: int, order_id: str) -> Document | None:
        oid = parse_id(order_id)
        order = await self._orders.get(oid) if oid else None
        if order is None or order["user_id"] != user_id:
            return None
        return order

    async def _update(
        self, order_id: ObjectId, fields: dict[str, Any], unset: tuple[str, ...] = ()
    ) -> Document:
        now = self._clock()
        doc = await self._orders.update_draft(
            order_id,
            set_fields=fields,
            unset_fields=unset,
            now=now,
            expires_at=now + self._config.session_ttl,
        )
        if doc is None:
            raise LookupError("the draft is no longer open")
        return doc

    async def set_address_field(
        self, draft: Document, side: str, field: str, raw: str | None
    ) -> Document:
        """Validates one field (``None`` skips a skippable field) and stores it."""
        value = addresses.validate_field(field, raw)
        if value is None and not skippable(side, field):
            raise FieldError(field, f"{field}_required")
        return await self._update(
            draft["_id"], {f"{side}_address.{field}": value}, unset=_address_fields(side)
        )

    async def apply_pasted_address(
        self, draft: Document, side: str, text: str
    ) -> tuple[Document, dict[str, FieldError]]:
        """Stores every field understood from a pasted address; returns the invalid ones."""
        parsed = addresses.parse_address(text)
        fields: dict[str, Any] = {
            f"{side}_address.{name}": value for name, value in parsed.values.items()
        }
        if not fields:
            return draft, dict(parsed.errors)
        for name in addresses.SKIPPABLE_FIELDS:
            # Optional parts the paste did not contain count as skipped, not as questions.
            if name not in parsed.values and name not in parsed.errors and skippable(side, name):
                fields[f"{side}_address.{name}"] = None
        doc = await self._update(draft["_id"], fields, unset=_address_fields(side))
        return doc, dict(parsed.errors)

    async def set_address(self, draft: Document, side: str, address: dict[str, Any]) -> Document:
        return await self._update(
            draft["_id"], {f"{side}_address": address}, unset=_address_fields(side)
        )

    async def clear_address(self, draft: Document, side: str) -> Document:
        return await self._update(
            draft["_id"], {f"{side}_address": {}}, unset=_address_fields(side)
        )

    # -- carrier address validation ------------------------------------------------------

    async def check_address(
        self, draft: Document, side: str
    ) -> tuple[Document, AddressCheck | None]:
        """Checks a complete address with the carrier once per version of it (every edit
        clears the check). Returns what the flow must say: a correction or a doubt still
        waiting for the customer's choice, a fresh outage note, or None (go on)."""
        if not self._config.validate_addresses:
            return draft, None
        stored = validation_of(draft, side)
        fresh = stored is None
        if stored is None:
            draft, stored = await self._validate(draft, side)
        check = AddressCheck(
            side=side,
            status=str(stored.get("status")),
            token=str(stored.get("token")),
            fresh=fresh,
            suggestion=stored.get("suggestion"),
            reasons=tuple((str(c), str(m)) for c, m in stored.get("reasons") or ()),
        )
        if check.needs_choice and stored.get("decision") is None:
            return draft, check
        if check.status == SKIPPED and fresh:
            return draft, check
        return draft, None

    async def _validate(self, draft: Document, side: str) -> tuple[Document, dict[str, Any]]:
        typed = address_of(draft, side)
        record: dict[str, Any] = {"token": secrets.token_hex(4), "decision": None}
        try:
            mode = await self._gateway.mode()
            [result] = await self._gateway.validate(mode, [to_address(typed)])
        except (ProviderError, CarrierUnavailable) as exc:
            # An outage never blocks the order: it goes on as typed, with a note.
            _LOGGER.warning("address validation unavailable: %s", type(exc).__name__)
            record.update(status=SKIPPED, residential=None)
        else:
            record.update(_judge(typed, result))
        # Stored only while the address is still the one checked.
        doc = await self._orders.update_draft(
            draft["_id"],
            set_fields={f"{side}_validation": record},
            unset_fields=_rates_fields(),
            now=self._clock(),
            expires_at=self._clock() + self._config.session_ttl,
            match={f"{side}_address": typed, f"{side}_validation": None},
        )
        if doc is None:
            current = await self._orders.get(draft["_id"])
            if current is None or current.get("status") != "draft":
                raise LookupError("the draft is no longer open")
            return current, validation_of(current, side) or record
        return doc, record

    async def decide_address(
        self, draft: Document, side: str, token: str, choice: str
    ) -> Document | None:
        """Applies the customer's answer to the check a button showed: ``use`` the
        corrected form, ``keep`` the typed one, or ``edit`` it. None (nothing applied)
        when the button is not for the draft's current, undecided check."""
        stored = validation_of(draft, side)
        if (
            side not in SIDES
            or choice not in CHOICES
            or stored is None
            or stored.get("token") != token
            or stored.get("decision") is not None
            or stored.get("status") not in (CORRECTED, UNVERIFIED)
            or (choice == "use" and stored.get("status") != CORRECTED)
        ):
            return None
        match = {f"{side}_validation.token": token, f"{side}_validation.decision": None}
        now = self._clock()
        if choice == "edit":
            set_fields: dict[str, Any] = {f"{side}_address": {}}
            unset = _address_fields(side)
        elif choice == "use":
            corrected = {**address_of(draft, side), **(stored.get("suggestion") or {})}
            set_fields = {
                f"{side}_address": corrected,
                f"{side}_validation.decision": "accepted",
            }
            unset = _rates_fields()
        else:
            set_fields = {f"{side}_validation.decision": "kept"}
            unset = _rates_fields()
        return await self._orders.update_draft(
            draft["_id"],
            set_fields=set_fields,
            unset_fields=unset,
            now=now,
            expires_at=now + self._config.session_ttl,
            match=match,
        )

    async def clear_field(self, draft: Document, side: str, field: str) -> Document:
        """Clears one field to ask it again, keeping the rest: an address field of
        ``side`` ("from"/"to"), or the parcel's ``weight`` or ``size``. The quotes go (and
        an address's carrier check), since they were for the old value."""
        if side == "parcel":
            names = {
                "weight": ("parcel.weight_oz",),
                "size": ("parcel.length_in", "parcel.width_in", "parcel.height_in"),
            }[field]
            return await self._update(draft["_id"], {}, unset=(*names, *_rates_fields()))
        if side not in SIDES or field not in addresses.ADDRESS_FIELDS:
            raise KeyError(f"{side}.{field}")
        return await self._update(
            draft["_id"], {}, unset=(f"{side}_address.{field}", *_address_fields(side))
        )

    def awaiting_parcel(self, draft: Document) -> bool:
        """Whether the draft's current question is the parcel's weight: both addresses are
        complete and checked (no carrier correction waiting for an answer), no weight yet.
        A preset button is applied only then."""
        for side in SIDES:
            if missing_fields(address_of(draft, side), side):
                return False
            if self._config.validate_addresses:
                stored = validation_of(draft, side)
                if stored is None:
                    return False
                if stored.get("status") in (CORRECTED, UNVERIFIED) and (
                    stored.get("decision") is None
                ):
                    return False
        return "weight_oz" not in (draft.get("parcel") or {})

    async def set_parcel(self, draft: Document, parcel: dict[str, Any]) -> Document:
        """Stores a whole parcel (a preset: weight and size at once)."""
        fields = {
            "parcel": {
                "weight_oz": int(parcel["weight_oz"]),
                "length_in": str(parcel["length_in"]),
                "width_in": str(parcel["width_in"]),
                "height_in": str(parcel["height_in"]),
            }
        }
        return await self._update(draft["_id"], fields, _rates_fields())

    async def clear_parcel(self, draft: Document) -> Document:
        return await self._update(draft["_id"], {"parcel": {}}, unset=_rates_fields())

    async def set_weight(self, draft: Document, raw: str) -> Document:
        ounces = parse_weight(
            raw, min_oz=self._config.min_weight_oz, max_oz=self._config.max_weight_oz
        )
        return await self._update(draft["_id"], {"parcel.weight_oz": ounces}, _rates_fields())

    async def set_dimensions(self, draft: Document, raw: str) -> Document:
        length, width, height = parse_dimensions(raw, max_side=self._config.max_side_in)
        return await self._update(
            draft["_id"],
            {
                "parcel.length_in": str(length),
                "parcel.width_in": str(width),
                "parcel.height_in": str(height),
            },
            _rates_fields(),
        )

    # -- rates ---------------------------------------------------------------------------

    async def _quote(
        self,
        draft: Document,
        *,
        insured_value_cents: int,
        confirmation: str,
        carrier_ids: list[str] | None = None,
        service_codes: list[str] | None = None,
    ) -> tuple[str, str, list[dict[str, Any]], str]:
        """One priced quote of the draft with these options, not stored: (mode, quote id,
        rates as stored on the draft, validate_address). Every quote has its own number
        and shipment reference: ShipStation refuses a second shipment with the same
        ``external_shipment_id``."""
        mode = await self._gateway.mode()
        seq = await self._orders.next_quote_seq(draft["_id"])
        if seq is None:
            raise LookupError("the draft is no longer open")
        user = await self._users.get(draft["user_id"])
        discount = Decimal(str((user or {}).get("discount_percent", 0) or 0))
        sender = address_of(draft, "from")
        validate = validate_address_option(draft)
        rates = await self._gateway.rates(
            mode,
            to_address(sender, residential=residential_of(draft, "from")),
            to_address(
                address_of(draft, "to"),
                fallback_phone=sender.get("phone"),
                residential=residential_of(draft, "to"),
            ),
            to_parcel(draft["parcel"]),
            reference=quote_reference(draft["_id"], seq),
            validate_address=validate,
            carrier_ids=carrier_ids,
            service_codes=service_codes,
            insured_value_cents=insured_value_cents,
            insurance_provider=self._config.insurance_provider,
            confirmation=confirmation,
        )
        priced = price_rates(rates, self._config.pricing, discount)
        quote_id = str(seq)
        stored = [
            {
                "quote_id": quote_id,
                "shipment_id": p.rate.shipment_id,
                "rate_id": p.rate.rate_id,
                "carrier": p.rate.carrier_name or p.rate.carrier_code,
                "service": p.rate.service_name or p.rate.service_code,
                "service_code": p.rate.service_code,
                "carrier_code": p.rate.carrier_code,
                "carrier_id": p.rate.carrier_id,
                "delivery_days": p.rate.delivery_days,
                "cost_cents": p.rate.amount_cents,
                "price_cents": p.price_cents,
                "insurance_cost_cents": p.rate.insurance_cents,
                "insurance_price_cents": p.insurance_price_cents,
                "confirmation_cost_cents": p.rate.confirmation_cents,
                "confirmation_price_cents": p.confirmation_price_cents,
            }
            for p in priced[:8]
        ]
        return mode, quote_id, stored, validate

    async def fetch_rates(self, draft: Document) -> Document:
        """Asks the carrier for rates (with the draft's insurance and confirmation),
        prices them and stores them on the draft. No sellable rate raises
        ``RatesUnavailable``; a carrier's refusal ``QuoteRefused`` (one of them)."""
        insured, confirmation = options_of(draft)
        try:
            mode, quote_id, stored, validate = await self._quote(
                draft, insured_value_cents=insured, confirmation=confirmation
            )
        except ProviderRejected as exc:
            raise QuoteRefused.from_provider(exc) from exc
        if not stored:
            raise RatesUnavailable
        return await self._update(
            draft["_id"],
            {
                "rates": stored,
                "rates_at": self._clock(),
                "api_mode": mode,
                "quote_id": quote_id,
                "validate_address": validate,
            },
            unset=("rate", "price_cents", "offer_id"),
        )

    # -- insurance and delivery confirmation (at the review) ---------------------------

    def parse_declared_value(self, raw: str, language: str) -> int:
        """The declared value typed at the review, in cents; raises ``AmountError``
        (not_a_number, negative, too_many_decimals, too_small, too_large, use_dot)."""
        limits = AmountLimits(MIN_INSURED_VALUE_CENTS, self._config.max_insured_value_cents)
        return parse_amount(raw, language, limits)

    async def set_options(
        self,
        draft: Document,
        *,
        insured_value_cents: int | None = None,
        confirmation: str | None = None,
    ) -> Document:
        """Re-quotes the draft with a new declared value (0 = no insurance) and/or
        confirmation and chooses the same service again at its new price: the options,
        the quote and the choice are stored in one write, so the review, its new Pay
        button and the purchase all see the same total (an older Pay button names the
        previous offer and buys nothing). Raises ``OptionNotOffered`` when the chosen
        service does not offer it (the draft is unchanged), ``LookupError`` without a
        chosen rate, provider errors on an outage (unchanged too)."""
        chosen = draft.get("rate")
        if not chosen or draft.get("status") != "draft":
            raise LookupError("no rate chosen")
        insured, current = options_of(draft)
        if insured_value_cents is not None:
            if isinstance(insured_value_cents, bool) or not isinstance(insured_value_cents, int):
                raise TypeError("insured_value_cents must be an int")
            if insured_value_cents and not (
                MIN_INSURED_VALUE_CENTS
                <= insured_value_cents
                <= self._config.max_insured_value_cents
            ):
                raise ValueError("declared value out of range")
            insured = insured_value_cents
        if confirmation is not None:
            if confirmation not in (NO_CONFIRMATION, *CONFIRMATION_CHOICES):
                raise ValueError(f"unknown confirmation {confirmation!r}")
            current = confirmation
        try:
            mode, quote_id, stored, validate = await self._quote(
                draft, insured_value_cents=insured, confirmation=current
            )
        except ProviderRejected as exc:
            if exc.code == "no_rates_returned":  # every service refused the option
                raise OptionNotOffered from None
            raise
        index = _same_service(stored, chosen)
        if index is None:
            raise OptionNotOffered
        return await self._update(
            draft["_id"],
            {
                "rates": stored,
                "rates_at": self._clock(),
                "api_mode": mode,
                "quote_id": quote_id,
                "validate_address": validate,
                "insured_value_cents": insured,
                "confirmation": current,
                **_choice(stored[index], quote_id, index, insured, current),
            },
        )

    async def confirmation_offers(self, draft: Document) -> list[tuple[str, int]]:
        """The confirmations the chosen service offers for this parcel, with what each
        would add to the price: (confirmation, price cents), in ``CONFIRMATION_CHOICES``
        order. One quote of that service per choice; nothing is stored."""
        chosen = draft.get("rate")
        if not chosen:
            raise LookupError("no rate chosen")
        insured, _ = options_of(draft)
        carrier_id = chosen.get("carrier_id")
        offers: list[tuple[str, int]] = []
        for confirmation in CONFIRMATION_CHOICES:
            try:
                _, _, stored, _ = await self._quote(
                    draft,
                    insured_value_cents=insured,
                    confirmation=confirmation,
                    carrier_ids=[str(carrier_id)] if carrier_id else None,
                    service_codes=[str(chosen["service_code"])],
                )
            except ProviderRejected:
                continue  # not offered (invalid rate), or refused: not offered either
            index = _same_service(stored, chosen)
            if index is not None:
                offers.append((confirmation, int(stored[index]["confirmation_price_cents"])))
        return offers

    async def choose_rate(self, draft: Document, index: int) -> Document:
        """Chooses one rate; ``offer_id`` (quote number and position) names this choice, so
        a Pay button can prove it still shows what the draft would buy."""
        rates = draft.get("rates") or []
        if not 0 <= index < len(rates):
            raise LookupError("no such rate")
        insured, confirmation = options_of(draft)
        return await self._update(
            draft["_id"],
            _choice(rates[index], draft.get("quote_id"), index, insured, confirmation),
        )

    async def claim_rate(self, draft: Document, index: int, pick: str) -> Document | None:
        """Chooses rate ``index`` for the press ``pick`` (the rates message and the index):
        the press is claimed atomically, so of two presses of one button (a double tap)
        only the first changes the draft and shows a review; the repeat gets None. The
        same rate pressed on a newer rates message ("Change rate") is a new press.
        ``LookupError`` when the draft is closed or its quotes changed meanwhile."""
        rates = draft.get("rates") or []
        if not 0 <= index < len(rates):
            raise LookupError("no such rate")
        rate = rates[index]
        now = self._clock()
        doc = await self._orders.update_draft(
            draft["_id"],
            set_fields={
                "rate": rate,
                "price_cents": rate["price_cents"],
                "carrier_cost_cents": rate["cost_cents"],
                "offer_id": offer_id(draft.get("quote_id"), index),
                "rate_pick": pick,
            },
            now=now,
            expires_at=now + self._config.session_ttl,
            match={"quote_id": draft.get("quote_id"), "rate_pick": {"$ne": pick}},
        )
        if doc is not None:
            return doc
        current = await self.draft(int(draft["user_id"]))
        if (
            current is not None
            and current["_id"] == draft["_id"]
            and current.get("rate_pick") == pick
        ):
            return None
        raise LookupError("the draft is closed or its quotes changed")

    @staticmethod
    def offer_matches(draft: Document, offer: str | None, price_cents: int | None) -> bool:
        """Whether a review's (offer, price) is still what the draft would buy."""
        return (
            bool(draft.get("rate"))
            and offer is not None
            and draft.get("offer_id") == offer
            and draft.get("price_cents") == price_cents
        )

    def rates_stale(self, draft: Document) -> bool:
        at = draft.get("rates_at")
        return at is None or self._clock() - at > self._config.rates_max_age

    async def refresh_chosen_rate(self, draft: Document) -> tuple[Document, bool]:
        """Re-quotes stale rates before payment; True when the price or rate changed."""
        if not self.rates_stale(draft):
            return draft, False
        chosen = draft.get("rate") or {}
        fresh = await self.fetch_rates(draft)
        for index, rate in enumerate(fresh.get("rates") or []):
            if (rate["carrier_code"], rate["service_code"]) == (
                chosen.get("carrier_code"),
                chosen.get("service_code"),
            ):
                updated = await self.choose_rate(fresh, index)
                return updated, rate["price_cents"] != chosen.get("price_cents")
        return fresh, True

    # -- templates ---------------------------------------------------------------------

    async def templates(self, user_id: int) -> list[Document]:
        return await self._templates.list(user_id)

    async def template(self, user_id: int, template_id: str) -> Document | None:
        oid = parse_id(template_id)
        return await self._templates.get(user_id, oid) if oid else None

    async def save_template(self, user_id: int, name: str, address: dict[str, Any]) -> Document:
        """Raises ``FieldError`` (name invalid, duplicate, or over the per-user limit)."""
        name = addresses.validate_template_name(name)
        if await self._templates.count(user_id) >= self._config.templates_per_user:
            raise FieldError("template", "limit", limit=self._config.templates_per_user)
        try:
            return await self._templates.create(user_id, name, address, now=self._clock())
        except DuplicateName:
            raise FieldError("template", "duplicate") from None

    async def rename_template(self, user_id: int, template_id: str, name: str) -> Document | None:
        name = addresses.validate_template_name(name)
        oid = parse_id(template_id)
        if oid is None:
            return None
        try:
            return await self._templates.rename(user_id, oid, name)
        except DuplicateName:
            raise FieldError("template", "duplicate") from None

    async def delete_template(self, user_id: int, template_id: str) -> bool:
        """Deleting the default sender's template leaves the customer without a default."""
        oid = parse_id(template_id)
        return await self._templates.delete(user_id, oid) if oid else False

    # -- default sender ----------------------------------------------------------------

    async def default_sender(self, user_id: int) -> Document | None:
        """The template marked as the default sender, if any."""
        return await self._templates.default(user_id)

    async def set_default_sender(self, user_id: int, template_id: str) -> Document | None:
        """Makes the customer's template the default sender (the previous one stops being
        it). None: no such template of theirs, or a concurrent switch won (nothing done
        by this one; see ``storage/templates.py``)."""
        oid = parse_id(template_id)
        if oid is None:
            return None
        try:
            return await self._templates.set_default(user_id, oid)
        except DefaultTaken:
            return None

    async def clear_default_sender(self, user_id: int, template_id: str) -> bool:
        oid = parse_id(template_id)
        return await self._templates.clear_default(user_id, oid) if oid else False

    # -- history -----------------------------------------------------------------------

    async def history(self, user_id: int, page: int) -> tuple[list[Document], int, int]:
        page = max(page, 1)
        orders, total = await self._orders.history(
            user_id, limit=HISTORY_PAGE, offset=(page - 1) * HISTORY_PAGE
        )
        pages = max(1, -(-total // HISTORY_PAGE))
        return orders, page, pages

    def now(self) -> datetime:
        return self._clock()


def offer_id(quote_id: object, index: int) -> str:
    return f"{quote_id}-{index}"


def _choice(
    rate: dict[str, Any], quote_id: object, index: int, insured: int, confirmation: str
) -> dict[str, Any]:
    """The draft fields of one chosen rate: ``price_cents`` is the total charged
    (postage, insurance and confirmation, each marked up), ``carrier_cost_cents`` the
    carrier's total, and the extras on their own for the review and the receipt."""
    return {
        "rate": rate,
        "price_cents": rate["price_cents"],
        "carrier_cost_cents": rate["cost_cents"],
        "offer_id": offer_id(quote_id, index),
        "insured_value_cents": insured,
        "insurance_price_cents": int(rate.get("insurance_price_cents") or 0),
        "confirmation": confirmation,
        "confirmation_price_cents": int(rate.get("confirmation_price_cents") or 0),
    }


def _rates_fields() -> tuple[str, ...]:
    # Any change to addresses or the parcel invalidates the quotes.
    return (
        "rates",
        "rates_at",
        "rate",
        "price_cents",
        "quote_id",
        "offer_id",
        "validate_address",
    )


def _address_fields(side: str) -> tuple[str, ...]:
    # A changed address is checked again: its earlier validation no longer applies.
    return (*_rates_fields(), f"{side}_validation")


def _judge(typed: dict[str, Any], result: AddressValidation) -> dict[str, Any]:
    """The stored outcome of one carrier validation result."""
    if result.status in ("verified", "warning") and result.matched is not None:
        residential = result.matched.residential
        correction = addresses.carrier_correction(typed, result.matched)
        if correction:
            return {"status": CORRECTED, "suggestion": correction, "residential": residential}
        return {"status": VERIFIED, "residential": residential}
    reasons = [
        [m.detail_code or m.code or "", m.message]
        for m in result.messages
        if m.type in ("error", "warning")
    ][:3]
    return {"status": UNVERIFIED, "reasons": reasons, "residential": None}
