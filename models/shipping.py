"""Shipping data exchanged with the carrier provider (pure data, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

__all__ = [
    "CONFIRMATIONS",
    "VALIDATION_STATUSES",
    "Address",
    "AddressValidation",
    "Carrier",
    "CarrierService",
    "Label",
    "Parcel",
    "Rate",
    "TrackingEvent",
    "TrackingInfo",
    "ValidationMessage",
    "VoidResult",
]

VALIDATION_STATUSES = frozenset({"verified", "unverified", "warning", "error"})
# ShipStation v2 ``shipment.confirmation`` values ("Delivery Confirmation").
CONFIRMATIONS = frozenset(
    {
        "none",
        "delivery",
        "signature",
        "adult_signature",
        "adult_signature_restricted_delivery",
        "direct_signature",
        "delivery_mailed",
        "verbal_confirmation",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    """A postal address; `state` and `country` are normalised to upper case."""

    name: str
    street1: str
    street2: str | None = None
    city: str
    state: str
    postal_code: str
    phone: str = ""
    country: str = "US"
    company: str | None = None
    residential: bool | None = None

    def __post_init__(self) -> None:
        state = self.state.strip().upper()
        country = self.country.strip().upper()
        if len(state) != 2 or not state.isalpha():
            raise ValueError("state must be a 2-letter code")
        if len(country) != 2 or not country.isalpha():
            raise ValueError("country must be an ISO 3166-1 alpha-2 code")
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "country", country)


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationMessage:
    """One entry of an address validation result's ``messages``."""

    code: str
    message: str
    type: str  # error | warning | info
    detail_code: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressValidation:
    """One result of ``POST /v2/addresses/validate``: ``status`` is one of
    ``VALIDATION_STATUSES``; ``matched`` is the carrier's form of the address (None when
    nothing matched), with its residential indicator."""

    status: str
    matched: Address | None
    messages: tuple[ValidationMessage, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in VALIDATION_STATUSES:
            raise ValueError(f"unknown validation status {self.status!r}")


def _dimension(value: Decimal | int, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"{name} must be a Decimal or int (no floats)")
    result = Decimal(value)
    if not result.is_finite() or result <= 0:
        raise ValueError(f"{name} must be positive")
    return result


@dataclass(frozen=True, slots=True, kw_only=True)
class Parcel:
    """One package: total weight in whole ounces, dimensions in inches."""

    weight_oz: int
    length_in: Decimal
    width_in: Decimal
    height_in: Decimal

    def __post_init__(self) -> None:
        if isinstance(self.weight_oz, bool) or not isinstance(self.weight_oz, int):
            raise TypeError("weight_oz must be an int")
        if self.weight_oz <= 0:
            raise ValueError("weight_oz must be positive")
        for name in ("length_in", "width_in", "height_in"):
            object.__setattr__(self, name, _dimension(getattr(self, name), name))


@dataclass(frozen=True, slots=True, kw_only=True)
class CarrierService:
    service_code: str
    name: str
    domestic: bool = True
    international: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Carrier:
    carrier_id: str
    carrier_code: str
    name: str
    nickname: str | None = None
    balance_cents: int | None = None
    requires_funded_amount: bool = False
    services: tuple[CarrierService, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Rate:
    """A quoted price; `amount_cents` = shipping + confirmation + other + insurance."""

    rate_id: str
    carrier_id: str
    carrier_code: str
    carrier_name: str
    service_code: str
    service_name: str
    amount_cents: int
    delivery_days: int | None = None
    estimated_delivery_date: datetime | None = None
    currency: str = "usd"
    shipment_id: str | None = None
    # The parts of ``amount_cents`` (the v2 rate's amounts): what insurance and delivery
    # confirmation add, so they can be priced and shown on their own.
    insurance_cents: int = 0
    confirmation_cents: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Label:
    """A purchased label; `cost_cents` = shipment_cost + insurance_cost."""

    label_id: str
    status: str
    tracking_number: str
    shipment_id: str | None
    cost_cents: int
    pdf_url: str | None
    voided: bool
    created_at: datetime | None
    carrier_code: str | None
    service_code: str | None
    carrier_id: str | None = None
    external_shipment_id: str | None = None
    tracking_status: str | None = None
    voided_at: datetime | None = None
    currency: str = "usd"
    label_format: str = "pdf"
    label_layout: str = "4x6"
    # label_download per file format (pdf/png/zpl) with the links the carrier gave.
    downloads: tuple[tuple[str, str], ...] = ()

    @property
    def file_url(self) -> str | None:
        """The download URL of the file in the format the label was bought in."""
        return dict(self.downloads).get(self.label_format) or self.pdf_url


@dataclass(frozen=True, slots=True, kw_only=True)
class VoidResult:
    approved: bool
    message: str
    reason_code: str | None = None

    @property
    def is_voided(self) -> bool:
        """True when the label is void now, including a repeated void request."""
        return self.approved or self.reason_code == "label_already_voided"


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackingEvent:
    """One v2 ``track_event``; it has no ``description``: its words are the normalised
    ``status_description`` and the carrier's own ``carrier_status_description``."""

    occurred_at: datetime | None
    status_code: str | None = None
    status_detail_code: str | None = None
    status_description: str | None = None
    carrier_status_description: str | None = None
    event_code: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None

    @property
    def text(self) -> str:
        """What to show a person: the normalised status, else the carrier's words."""
        return self.status_description or self.carrier_status_description or ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackingInfo:
    tracking_number: str
    status_code: str | None
    status_description: str | None
    status_detail_code: str | None = None
    carrier_code: str | None = None
    tracking_url: str | None = None
    estimated_delivery_date: datetime | None = None
    actual_delivery_date: datetime | None = None
    events: tuple[TrackingEvent, ...] = field(default=())


# ShipStation v2 label files: `label_format` pdf/png/zpl and `label_layout` 4x6/letter;
# "letter" exists for pdf only.
LABEL_FILE_FORMATS = ("pdf", "png", "zpl")
_MIME = {"pdf": "application/pdf", "png": "image/png", "zpl": "application/zpl"}


@dataclass(frozen=True, slots=True)
class LabelFormat:
    """A customer's label format choice and what it means at the carrier."""

    key: str  # stored on the user and the order: pdf_4x6, pdf_letter, png, zpl
    file_format: str  # label_format
    layout: str  # label_layout

    @property
    def extension(self) -> str:
        return self.file_format

    @property
    def mime_type(self) -> str:
        return _MIME[self.file_format]


LABEL_FORMATS: dict[str, LabelFormat] = {
    f.key: f
    for f in (
        LabelFormat("pdf_4x6", "pdf", "4x6"),
        LabelFormat("pdf_letter", "pdf", "letter"),
        LabelFormat("png", "png", "4x6"),
        LabelFormat("zpl", "zpl", "4x6"),
    )
}
DEFAULT_LABEL_FORMAT = "pdf_4x6"


def label_format(key: object) -> LabelFormat:
    """The format for a stored key; anything unknown (or missing) is the default."""
    found = LABEL_FORMATS.get(key) if isinstance(key, str) else None
    return found or LABEL_FORMATS[DEFAULT_LABEL_FORMAT]


def file_mime_type(file_format: str) -> str:
    return _MIME.get(file_format, "application/octet-stream")
