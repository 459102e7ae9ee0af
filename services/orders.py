"""The label order draft: addresses, parcel, rates, price — written at every step.

The conversation only moves between states; every value the customer gives is validated
here and stored on the ``orders`` draft at once, so a restart resumes with the same draft.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId

from models.shipping import Address, Parcel
from services import addresses
from services.addresses import FieldError
from services.clock import Clock, utc_now
from services.parcel import parse_dimensions, parse_weight
from services.pricing import PricingRules, price_rates
from services.shipping import ShippingGateway
from storage.client import Document
from storage.orders import OrdersRepo
from storage.templates import DuplicateName, TemplatesRepo
from storage.users import UsersRepo

SIDES = ("from", "to")
HISTORY_PAGE = 5


@dataclass(frozen=True)
class OrderConfig:
    pricing: PricingRules
    rates_max_age: timedelta
    session_ttl: timedelta
    min_weight_oz: int
    max_weight_oz: int
    max_side_in: Decimal
    templates_per_user: int


def parse_id(value: str) -> ObjectId | None:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


def address_of(draft: Document, side: str) -> dict[str, Any]:
    return dict(draft.get(f"{side}_address") or {})


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


def to_address(data: dict[str, Any], *, fallback_phone: str | None = None) -> Address:
    return Address(
        name=data["name"],
        street1=data["street1"],
        street2=data.get("street2") or None,
        city=data["city"],
        state=data["state"],
        postal_code=data["postal_code"],
        phone=data.get("phone") or fallback_phone or "",
    )


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


class RatesUnavailable(Exception):
    pass


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
            draft["_id"], {f"{side}_address.{field}": value}, unset=_rates_fields()
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
        doc = await self._update(draft["_id"], fields, unset=_rates_fields())
        return doc, dict(parsed.errors)

    async def set_address(self, draft: Document, side: str, address: dict[str, Any]) -> Document:
        return await self._update(
            draft["_id"], {f"{side}_address": address}, unset=_rates_fields()
        )

    async def clear_address(self, draft: Document, side: str) -> Document:
        return await self._update(draft["_id"], {f"{side}_address": {}}, unset=_rates_fields())

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

    async def fetch_rates(self, draft: Document) -> Document:
        """Asks the carrier for rates, prices them and stores them on the draft.

        Every quote has its own number (``quote_id``) and shipment reference: ShipStation
        refuses a second shipment with the same ``external_shipment_id``."""
        mode = await self._gateway.mode()
        seq = await self._orders.next_quote_seq(draft["_id"])
        if seq is None:
            raise LookupError("the draft is no longer open")
        user = await self._users.get(draft["user_id"])
        discount = Decimal(str((user or {}).get("discount_percent", 0) or 0))
        sender = address_of(draft, "from")
        rates = await self._gateway.rates(
            mode,
            to_address(sender),
            to_address(address_of(draft, "to"), fallback_phone=sender.get("phone")),
            to_parcel(draft["parcel"]),
            reference=quote_reference(draft["_id"], seq),
        )
        priced = price_rates(rates, self._config.pricing, discount)
        if not priced:
            raise RatesUnavailable
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
                "delivery_days": p.rate.delivery_days,
                "cost_cents": p.rate.amount_cents,
                "price_cents": p.price_cents,
            }
            for p in priced[:8]
        ]
        return await self._update(
            draft["_id"],
            {"rates": stored, "rates_at": self._clock(), "api_mode": mode, "quote_id": quote_id},
            unset=("rate", "price_cents", "offer_id"),
        )

    async def choose_rate(self, draft: Document, index: int) -> Document:
        """Chooses one rate; ``offer_id`` (quote number and position) names this choice, so
        a Pay button can prove it still shows what the draft would buy."""
        rates = draft.get("rates") or []
        if not 0 <= index < len(rates):
            raise LookupError("no such rate")
        rate = rates[index]
        return await self._update(
            draft["_id"],
            {
                "rate": rate,
                "price_cents": rate["price_cents"],
                "carrier_cost_cents": rate["cost_cents"],
                "offer_id": offer_id(draft.get("quote_id"), index),
            },
        )

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
        oid = parse_id(template_id)
        return await self._templates.delete(user_id, oid) if oid else False

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


def _rates_fields() -> tuple[str, ...]:
    # Any change to addresses or the parcel invalidates the quotes.
    return ("rates", "rates_at", "rate", "price_cents", "quote_id", "offer_id")
