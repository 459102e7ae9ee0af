"""Fake ShipStation V2 API: an aiohttp app on 127.0.0.1 for the demo and the tests.

Wire format follows ShipStation V2 (`/v2/...`, header `API-Key`, error envelope
`{"request_id", "errors": [...]}`). Keys starting with `TEST_` are sandbox keys; one
configured production key is accepted too, and each call records the mode it used.
Sandbox and production data are isolated from each other, as on the real service.

Control API: Python methods on `FakeShipStation`, and the same over HTTP under
`/_control/...` for out-of-process use (see `_control_routes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
import uuid
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Self

from aiohttp import web

__all__ = [
    "FAILURE_KINDS",
    "VOID_OUTCOMES",
    "CallRecord",
    "FakeLabel",
    "FakeShipStation",
]

SANDBOX_PREFIX = "TEST_"
EXTERNAL_ID_MAX = 50

FAILURE_KINDS = frozenset(
    {"error_500", "empty_500", "rate_limit", "slow", "insufficient_funds", "invalid_address"}
)
_FAILURE_ALIASES = {"500": "error_500", "429": "rate_limit", "timeout": "slow"}

VOID_OUTCOMES = frozenset(
    {
        "auto",  # approved inside the void window, else label_not_found_within_void_period
        "approved",
        "label_already_used",
        "label_not_found_within_void_period",
        "unknown",
        "error",  # HTTP 500
    }
)

OPERATIONS = frozenset(
    {
        "list_carriers",
        "get_rates",
        "create_label",
        "list_labels",
        "get_label",
        "get_label_by_external_id",
        "void_label",
        "track",
        "get_shipment",
        "get_shipment_by_external_id",
        "download",
        "validate_addresses",
    }
)

# v2 `label_format` / `label_layout`: "`4x6` is supported for all label formats, whereas
# `letter` (8.5" x 11") is only supported for `pdf` format" (create-label request body).
LABEL_FORMATS = ("pdf", "png", "zpl")
LABEL_LAYOUTS = ("4x6", "letter")

_US_ZIP = re.compile(r"^\d{5}(-\d{4})?$")
_WEIGHT_TO_OZ = {
    "ounce": Decimal(1),
    "pound": Decimal(16),
    "gram": Decimal("0.03527396195"),
    "kilogram": Decimal("35.27396195"),
}


# --------------------------------------------------------------------------- helpers


def _dumps(value: Any) -> str:
    """JSON with Decimals written as exact numbers."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    return json.dumps(value)


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        text=_dumps(data), status=status, content_type="application/json", headers=headers
    )


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _money(cents: int) -> dict[str, Any]:
    return {"currency": "usd", "amount": (Decimal(cents) / 100).quantize(Decimal("0.01"))}


def _error_envelope(
    code: str,
    message: str,
    *,
    error_type: str = "validation",
    source: str = "ShipStation",
    field_name: str | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "error_source": source,
        "error_type": error_type,
        "error_code": code,
        "message": message,
    }
    if field_name:
        error["field_name"] = field_name
    return {"request_id": str(uuid.uuid4()), "errors": [error]}


def _error(status: int, code: str, message: str, **kwargs: Any) -> web.Response:
    return _json(_error_envelope(code, message, **kwargs), status=status)


def _pdf(lines: list[str], *, letter: bool = False) -> bytes:
    """A minimal valid one-page PDF (4x6in, or 8.5x11in for `letter`) showing `lines`."""

    def escape(text: str) -> str:
        ascii_text = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
        return ascii_text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    text_ops = "".join(f"({escape(line)}) Tj T*\n" for line in lines)
    top, box = (760, b"612 792") if letter else (400, b"288 432")
    content = f"BT /F1 12 Tf 18 {top} Td 16 TL\n{text_ops}ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 " + box + b"] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref_at = len(out)
    out += f"xref\n0 {len(objects) + 1}\n".encode()
    out += b"0000000000 65535 f \n"
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref_at}\n%%EOF\n"
    ).encode()
    return bytes(out)


def _png(lines: list[str]) -> bytes:
    """A valid tiny greyscale PNG (4x6 aspect, 40x60 px); `lines` go into a tEXt chunk."""
    width, height = 40, 60
    rows = b"".join(
        b"\x00" + bytes(0 if 4 <= y < 8 and 4 <= x < 36 else 255 for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return len(data).to_bytes(4, "big") + kind + data + crc.to_bytes(4, "big")

    text = "\n".join(lines).encode("latin-1", "replace")
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x00\x00\x00\x00"
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"tEXt", b"Comment\x00" + text)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _zpl(lines: list[str]) -> bytes:
    """One ZPL II label (4x6 at 203 dpi): ``^XA`` … ``^XZ``, one text field per line."""

    def field(text: str) -> str:
        return "".join(c if 32 <= ord(c) < 127 and c not in "^~" else "?" for c in text)

    body = "".join(
        f"^FO30,{30 + 40 * n}^A0N,28,28^FD{field(line)}^FS\n"
        for n, line in enumerate(lines)
        if line
    )
    return f"^XA\n^PW812\n^LL1218\n{body}^XZ\n".encode("ascii")


# --------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class _Service:
    carrier_id: str
    carrier_code: str
    carrier_name: str
    service_code: str
    name: str
    base_cents: int
    per_lb_cents: int
    per_zone_cents: int
    surcharge_bp: int  # fuel surcharge in basis points, reported as other_amount
    days_base: int
    days_zone_divisor: int  # 0: fixed days

    def delivery_days(self, zone: int) -> int:
        if not self.days_zone_divisor:
            return self.days_base
        return self.days_base + (zone - 1) // self.days_zone_divisor


_CARRIERS: tuple[dict[str, str], ...] = (
    {"carrier_id": "se-1001001", "carrier_code": "stamps_com", "name": "USPS"},
    {"carrier_id": "se-1001002", "carrier_code": "ups", "name": "UPS"},
)

_SERVICES: tuple[_Service, ...] = (
    _Service(
        "se-1001001",
        "stamps_com",
        "USPS",
        "usps_ground_advantage",
        "USPS Ground Advantage",
        495,
        85,
        38,
        0,
        2,
        2,
    ),
    _Service(
        "se-1001001",
        "stamps_com",
        "USPS",
        "usps_priority_mail",
        "USPS Priority Mail",
        910,
        120,
        62,
        0,
        1,
        3,
    ),
    _Service("se-1001002", "ups", "UPS", "ups_ground", "UPS Ground", 1035, 105, 55, 1250, 1, 2),
    _Service(
        "se-1001002", "ups", "UPS", "ups_2nd_day_air", "UPS 2nd Day Air", 2150, 210, 95, 1250, 2, 0
    ),
)


def zone_for(from_zip: str, to_zip: str) -> int:
    """Zone 1-8 from the distance between the first digits of the two ZIP codes."""
    return min(8, 1 + abs(int(from_zip[0]) - int(to_zip[0])))


def quote_cents(service: _Service, weight_oz: int, zone: int) -> tuple[int, int]:
    """(shipping_cents, other_cents) for `service`; deterministic."""
    pounds = max(1, -(-weight_oz // 16))
    shipping = (
        service.base_cents
        + service.per_lb_cents * (pounds - 1)
        + service.per_zone_cents * (zone - 1)
    )
    other = int(
        (Decimal(shipping) * service.surcharge_bp / 10000).quantize(
            Decimal(1), rounding=ROUND_HALF_UP
        )
    )
    return shipping, other


# `shipment.confirmation` (v2 "Delivery Confirmation"): the enumerated values; a value
# outside it is refused (400). Each service offers some of them, at a fee reported as the
# rate's `confirmation_amount`; a service that does not offer the requested one comes back
# in `invalid_rates` with an error message (as the carrier refuses it), the others rate.
CONFIRMATION_VALUES = frozenset(
    {
        "none",
        "delivery",
        "signature",
        "adult_signature",
        "adult_signature_restricted_delivery",
        "direct_signature",  # FedEx only
        "delivery_mailed",  # UPS only
        "verbal_confirmation",
    }
)
CONFIRMATION_CENTS: dict[str, dict[str, int]] = {
    # USPS Ground Advantage: signature confirmation, no adult signature.
    "usps_ground_advantage": {"none": 0, "delivery": 0, "signature": 445},
    "usps_priority_mail": {
        "none": 0,
        "delivery": 0,
        "signature": 445,
        "adult_signature": 1025,
        "adult_signature_restricted_delivery": 1065,
    },
    "ups_ground": {
        "none": 0,
        "delivery": 265,
        "signature": 595,
        "adult_signature": 735,
        "delivery_mailed": 200,
    },
    "ups_2nd_day_air": {
        "none": 0,
        "delivery": 265,
        "signature": 595,
        "adult_signature": 735,
        "delivery_mailed": 200,
    },
}
# `shipment.insurance_provider` (v2 "Parcel Insurance"); `packages[].insured_value`
# {currency, amount}. `none` (default) and `third_party` add nothing to the price.
INSURANCE_PROVIDERS = frozenset(
    {"none", "shipsurance", "carrier", "third_party", "parcelguard", "funding_source", "xcover"}
)
# Fee per started $100 of declared value, and the most a provider insures, in cents.
INSURANCE_RATES: dict[str, tuple[int, int]] = {
    "carrier:stamps_com": (165, 5_000_00),
    "carrier:ups": (135, 50_000_00),
    "shipsurance": (99, 10_000_00),
    "parcelguard": (99, 10_000_00),
    "funding_source": (99, 10_000_00),
    "xcover": (110, 10_000_00),
}


def insurance_cents(provider: str, carrier_code: str, insured_cents: int) -> int | None:
    """The insurance fee for ``insured_cents`` declared; None when the provider does not
    insure that much (or at all) for the carrier."""
    if provider in ("none", "third_party") or insured_cents <= 0:
        return 0
    key = f"carrier:{carrier_code}" if provider == "carrier" else provider
    if key not in INSURANCE_RATES:
        return None
    per_100, most = INSURANCE_RATES[key]
    if insured_cents > most:
        return None
    return per_100 * -(-insured_cents // 10_000)


# --------------------------------------------------------------------------- state


@dataclass
class CallRecord:
    operation: str
    method: str
    path: str
    mode: str | None  # "sandbox" | "production" | None (rejected key)
    status: int = 0


@dataclass
class _Failure:
    kind: str
    remaining: int
    retry_after: int
    delay: float


@dataclass
class _Shipment:
    shipment_id: str
    external_shipment_id: str | None
    mode: str
    ship_from: dict[str, Any]
    ship_to: dict[str, Any]
    packages: list[Any]
    weight_oz: int
    zone: int
    created_at: datetime
    validate_address: str = "no_validation"
    confirmation: str = "none"
    insurance_provider: str = "none"
    insured_cents: int = 0


@dataclass
class _Rate:
    rate_id: str
    shipment_id: str
    mode: str
    service: _Service
    shipping_cents: int
    other_cents: int
    delivery_days: int
    estimated_delivery: datetime
    confirmation_cents: int = 0
    insurance_cents: int = 0


@dataclass
class FakeLabel:
    label_id: str
    shipment_id: str
    external_shipment_id: str | None
    mode: str
    rate_id: str
    carrier_id: str
    carrier_code: str
    service_code: str
    service_name: str
    tracking_number: str
    cost_cents: int
    created_at: datetime
    token: str
    ship_to: dict[str, Any]
    ship_from: dict[str, Any]
    status: str = "completed"
    voided: bool = False
    voided_at: datetime | None = None
    # A new label is "not yet in system" until the carrier's first scan.
    tracking_code: str = "NY"
    tracking_events: list[dict[str, Any]] = field(default_factory=list)  # newest first
    void_attempts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    validate_address: str = "no_validation"
    insurance_cents: int = 0  # `insurance_cost`; `cost_cents` is `shipment_cost`
    confirmation: str = "none"
    label_format: str = "pdf"
    label_layout: str = "4x6"


# v2 tracking status codes (status_code) and their normalised words.
_TRACKING = {
    "UN": "Unknown",
    "NY": "Not Yet In System",
    "AC": "Accepted",
    "IT": "In Transit",
    "AT": "Delivery Attempt",
    "DE": "Delivered",
    "SP": "Delivered To Collection Location",
    "EX": "Exception",
}

# Carrier-side event codes (USPS-style) reported as event_code / carrier_status_code.
_CARRIER_EVENT_CODES = {
    "UN": "NT", "NY": "GX", "AC": "OA", "IT": "T1", "AT": "53",
    "DE": "01", "SP": "30", "EX": "07",
}

# Named steps of a parcel's life for the control API: (status_code, status_detail_code,
# status_detail_description). "Out for delivery" is an IT status with its detail code.
TRACKING_STEPS: dict[str, tuple[str, str | None, str]] = {
    "accepted": ("AC", "CARRIER_ACCEPTED", "Carrier accepted the package"),
    "in_transit": ("IT", "IN_TRANSIT", "In transit"),
    "out_for_delivery": ("IT", "OUT_FOR_DELIVERY", "Out for delivery"),
    "delivery_attempt": ("AT", "DELIVERY_ATTEMPTED", "Delivery attempted"),
    "delivered": ("DE", "DELIVERED", "Delivered"),
    "exception": ("EX", "EXCEPTION", "Exception"),
    "returned": ("EX", "RETURNED_TO_SENDER", "Returned to sender"),
}

_VOID_MESSAGES = {
    "label_already_used": "This label has already been used and cannot be voided.",
    "label_not_found_within_void_period": "Label not found within the void period.",
    "label_already_voided": "This label has already been voided.",
    "unknown": "The carrier could not void this label.",
}


MAX_ADDRESSES_TO_VALIDATE = 250
VALIDATE_ADDRESS_VALUES = frozenset({"no_validation", "validate_only", "validate_and_clean"})
_ADDRESS_KEYS = (
    "name",
    "phone",
    "email",
    "company_name",
    "address_line1",
    "address_line2",
    "address_line3",
    "city_locality",
    "state_province",
    "postal_code",
    "country_code",
    "address_residential_indicator",
)
_SUFFIXES = {
    "street": "St",
    "avenue": "Ave",
    "road": "Rd",
    "drive": "Dr",
    "boulevard": "Blvd",
    "lane": "Ln",
    "court": "Ct",
    "place": "Pl",
    "terrace": "Ter",
    "parkway": "Pkwy",
    "highway": "Hwy",
}
_NOT_RESIDENTIAL = re.compile(r"\b(suite|ste|fl|floor|unit\s+[a-z]?\d+-?[a-z]?)\b", re.I)


def _message(code: str, message: str, kind: str, detail: str) -> dict[str, str]:
    return {"code": code, "message": message, "type": kind, "detail_code": detail}


def _standard_line(line: str) -> str:
    words = line.split()
    return " ".join(_SUFFIXES.get(word.lower().rstrip("."), word) for word in words)


def _validate_one(address: dict[str, Any]) -> dict[str, Any]:
    original = {key: address.get(key) for key in _ADDRESS_KEYS}
    original["address_residential_indicator"] = address.get(
        "address_residential_indicator", "unknown"
    )
    line1 = str(address.get("address_line1") or "").strip()
    postal = str(address.get("postal_code") or "").strip()
    country = str(address.get("country_code") or "").strip().upper()
    result: dict[str, Any] = {
        "status": "verified",
        "original_address": original,
        "matched_address": None,
        "messages": [],
    }
    if country != "US":
        result["status"] = "unverified"
        result["messages"].append(
            _message(
                "a1001",
                "Country not supported for address validation.",
                "warning",
                "unsupported_country",
            )
        )
        return result
    if not any(ch.isdigit() for ch in line1) or "unknown" in line1.lower():
        result["status"] = "error"
        result["messages"].append(
            _message("a1004", "Address not found.", "error", "address_not_found")
        )
        return result
    if not _US_ZIP.match(postal):
        result["status"] = "error"
        result["messages"].append(
            _message("a1003", "Invalid postal code.", "error", "invalid_postal_code")
        )
        return result
    matched: dict[str, Any] = dict(original)
    street = _standard_line(line1)
    matched["address_line1"] = street
    if address.get("address_line2"):
        matched["address_line2"] = _standard_line(str(address["address_line2"]))
    city = str(address.get("city_locality") or "")
    matched["city_locality"] = city.upper()
    matched["state_province"] = str(address.get("state_province") or "").upper()
    if len(postal) == 5:
        plus4 = zlib.crc32(street.upper().encode()) % 10000
        matched["postal_code"] = f"{postal}-{plus4:04d}"
        result["messages"].append(
            _message(
                "a1007", "The postal code was extended to ZIP+4.", "info", "postal_code_changed"
            )
        )
    if street != line1:
        result["messages"].append(
            _message(
                "a1008",
                "The street suffix was standardized.",
                "info",
                "street_suffix_standardized",
            )
        )
    business = bool(address.get("company_name")) or bool(
        _NOT_RESIDENTIAL.search(
            " ".join(str(address.get(k) or "") for k in ("address_line1", "address_line2"))
        )
    )
    matched["address_residential_indicator"] = "no" if business else "yes"
    result["matched_address"] = matched
    return result


class FakeShipStation:
    """In-memory ShipStation V2 stand-in. Start with `await fake.start()`; the API is at
    `fake.base_url` (`/v2/...`), control endpoints under `/_control/...`."""

    def __init__(
        self,
        *,
        production_api_key: str | None = None,
        latency_seconds: float = 0.15,
        instant: bool = False,
        void_window_days: int = 28,  # USPS via Stamps.com: within 28 days of printing
        production_balance_cents: int = 100_000,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._production_key = production_api_key
        self.latency_seconds = latency_seconds
        self.instant = instant
        self.void_window = timedelta(days=void_window_days)
        self._initial_balance = production_balance_cents
        self._now = now or (lambda: datetime.now(UTC))
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._stopping = asyncio.Event()
        self.app = self._build_app()
        self.reset()

    # ----------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("fake ShipStation is not started")
        return self._base_url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Starts serving; port 0 picks a free port. Returns the base URL."""
        if self._runner is not None:
            return self.base_url
        self._stopping = asyncio.Event()
        if self.app.frozen:  # an aiohttp app can be served once: rebuild after a stop
            self.app = self._build_app()
        runner = web.AppRunner(
            self.app, access_log=None, handler_cancellation=False, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self._base_url = f"http://{bound_host}:{bound_port}"
        return self._base_url

    async def stop(self) -> None:
        self._stopping.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._base_url = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ----------------------------------------------------------------- control (Python)

    def reset(self) -> None:
        """Forgets every shipment, label, failure, outcome and counter."""
        self._ids = itertools.count(28529731)
        self._rng = random.Random(20240601)
        self._shipments: dict[str, _Shipment] = {}
        self._shipment_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._external: dict[tuple[str, str], str] = {}  # unique per account (mode)
        self._rates: dict[str, _Rate] = {}
        self.labels: dict[str, FakeLabel] = {}
        self._tracking_numbers: set[str] = set()
        self._failures: dict[str, list[_Failure]] = {}
        self._void_outcomes: dict[str, str] = {}
        self.default_void_outcome = "auto"
        self.production_balance_cents = self._initial_balance
        self.calls: list[CallRecord] = []

    def set_instant(self, instant: bool = True) -> None:
        """True: answer without the artificial latency."""
        self.instant = instant

    def inject_failure(
        self,
        operation: str,
        kind: str,
        times: int = 1,
        *,
        retry_after: int = 1,
        delay: float = 2.0,
    ) -> None:
        """Makes the next `times` calls of `operation` (or "*" for any) fail with `kind`:
        error_500, empty_500, rate_limit (429 + Retry-After), slow (answer after `delay`
        seconds, still processing the call), insufficient_funds, invalid_address."""
        kind = _FAILURE_ALIASES.get(kind, kind)
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}")
        if operation != "*" and operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        self._failures.setdefault(operation, []).append(
            _Failure(kind, max(1, times), retry_after, delay)
        )

    def clear_failures(self) -> None:
        self._failures.clear()

    def set_void_outcome(self, outcome: str, label_id: str | None = None) -> None:
        """Outcome of the next void requests, for one label or (None) for all labels."""
        if outcome not in VOID_OUTCOMES:
            raise ValueError(f"unknown void outcome {outcome!r}")
        if label_id is None:
            self.default_void_outcome = outcome
        else:
            self._void_outcomes[label_id] = outcome

    def set_label_created_at(self, label_id: str, created_at: datetime) -> None:
        if created_at.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        self._label(label_id).created_at = created_at

    def age_label(self, label_id: str, days: float) -> None:
        """Moves the label's creation `days` into the past (for refund-window demos)."""
        self.set_label_created_at(label_id, self._now() - timedelta(days=days))

    def set_tracking_status(self, label_id: str, status_code: str) -> None:
        """Adds a scan with ``status_code`` (a label never scanned gets its acceptance
        scan first)."""
        if status_code not in _TRACKING:
            raise ValueError(f"status_code must be one of {sorted(_TRACKING)}")
        label = self._label(label_id)
        if not label.tracking_events and status_code not in ("AC", "UN", "NY"):
            self._add_event(label, "AC", "CARRIER_ACCEPTED", "Carrier accepted the package")
        self._add_event(label, status_code, None, "")

    def advance_tracking(self, label_id: str, step: str) -> None:
        """Adds the scan of a named step: accepted, in_transit, out_for_delivery,
        delivery_attempt, delivered, exception, returned (see ``TRACKING_STEPS``)."""
        if step not in TRACKING_STEPS:
            raise ValueError(f"step must be one of {sorted(TRACKING_STEPS)}")
        code, detail, detail_text = TRACKING_STEPS[step]
        self._add_event(self._label(label_id), code, detail, detail_text)

    def _add_event(
        self, label: FakeLabel, code: str, detail: str | None, detail_text: str
    ) -> None:
        where = label.ship_from if code == "AC" else label.ship_to
        label.tracking_code = code
        label.extra["tracking_detail"] = (detail, detail_text)
        label.tracking_events.insert(
            0, self._track_event(label, code, self._now(), where, detail, detail_text)
        )

    def call_count(self, operation: str | None = None, *, mode: str | None = None) -> int:
        return sum(
            1
            for call in self.calls
            if (operation is None or call.operation == operation)
            and (mode is None or call.mode == mode)
        )

    def call_counts(self) -> dict[str, int]:
        return dict(Counter(call.operation for call in self.calls))

    def reset_calls(self) -> None:
        self.calls.clear()

    def shipments(self, mode: str | None = None) -> list[dict[str, Any]]:
        """Every shipment created so far (rate requests create them), oldest first, as
        {shipment_id, external_shipment_id, mode, ship_from, ship_to, packages, created_at}."""
        return [
            {
                "shipment_id": sh.shipment_id,
                "external_shipment_id": sh.external_shipment_id,
                "mode": sh.mode,
                "ship_from": dict(sh.ship_from),
                "ship_to": dict(sh.ship_to),
                "packages": list(sh.packages),
                "created_at": sh.created_at,
                "validate_address": sh.validate_address,
                "confirmation": sh.confirmation,
                "insurance_provider": sh.insurance_provider,
                "insured_value_cents": sh.insured_cents,
            }
            for sh in self._shipments.values()
            if mode is None or sh.mode == mode
        ]

    async def wait_for_shipments(self, count: int) -> None:
        """Returns once at least ``count`` shipments exist (e.g. a slow call was applied)."""
        if len(self._shipments) >= count:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._shipment_waiters.append((count, waiter))
        await waiter

    def _shipment_added(self) -> None:
        for entry in list(self._shipment_waiters):
            count, waiter = entry
            if len(self._shipments) >= count:
                self._shipment_waiters.remove(entry)
                if not waiter.done():
                    waiter.set_result(None)

    def label_by_tracking(self, tracking_number: str) -> FakeLabel | None:
        return next(
            (lb for lb in self.labels.values() if lb.tracking_number == tracking_number), None
        )

    def _label(self, label_id: str) -> FakeLabel:
        try:
            return self.labels[label_id]
        except KeyError:
            raise KeyError(f"no label {label_id}") from None

    # ----------------------------------------------------------------- plumbing

    def _build_app(self) -> web.Application:
        app = web.Application()
        api: list[tuple[str, str, str, Callable[[web.Request, str], Awaitable[web.Response]]]] = [
            ("GET", "/v2/carriers", "list_carriers", self._list_carriers),
            ("POST", "/v2/rates", "get_rates", self._get_rates),
            (
                "POST",
                "/v2/addresses/validate",
                "validate_addresses",
                self._validate_addresses,
            ),
            ("POST", "/v2/labels/rates/{rate_id}", "create_label", self._create_label),
            ("GET", "/v2/labels", "list_labels", self._list_labels),
            (
                "GET",
                "/v2/labels/external_shipment_id/{external_id}",
                "get_label_by_external_id",
                self._get_label_by_external_id,
            ),
            ("GET", "/v2/labels/{label_id}", "get_label", self._get_label),
            ("PUT", "/v2/labels/{label_id}/void", "void_label", self._void_label),
            ("GET", "/v2/labels/{label_id}/track", "track", self._track),
            (
                "GET",
                "/v2/shipments/external_shipment_id/{external_id}",
                "get_shipment_by_external_id",
                self._get_shipment_by_external_id,
            ),
            ("GET", "/v2/shipments/{shipment_id}", "get_shipment", self._get_shipment),
        ]
        for method, path, operation, handler in api:
            app.router.add_route(method, path, self._endpoint(operation, handler))
        app.router.add_get("/v2/downloads/{bucket}/{token}/{filename}", self._download)
        for method, path, control in self._control_routes():
            app.router.add_route(method, path, control)
        return app

    def _endpoint(
        self,
        operation: str,
        handler: Callable[[web.Request, str], Awaitable[web.Response]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def endpoint(request: web.Request) -> web.Response:
            record = CallRecord(operation, request.method, request.path, self._mode(request))
            self.calls.append(record)
            response = await self._serve(request, record, handler)
            record.status = response.status
            return response

        return endpoint

    def _mode(self, request: web.Request) -> str | None:
        key = request.headers.get("API-Key", "")
        if key.startswith(SANDBOX_PREFIX) and len(key) > len(SANDBOX_PREFIX):
            return "sandbox"
        if self._production_key and key == self._production_key:
            return "production"
        return None

    async def _serve(
        self,
        request: web.Request,
        record: CallRecord,
        handler: Callable[[web.Request, str], Awaitable[web.Response]],
    ) -> web.Response:
        await self._pause(0.0 if self.instant else self.latency_seconds)
        if record.mode is None:
            return _error(
                401,
                "unauthorized",
                "The API key is invalid. Please check your API key and try again.",
                error_type="security",
            )
        failure = self._take_failure(record.operation)
        if failure is not None:
            if failure.kind == "slow":
                # The call is still processed after the client gave up: keep its body
                # (aiohttp caches it), which cannot be read once the connection is gone.
                await request.read()
                await self._pause(failure.delay)
            else:
                return self._failure_response(failure)
        return await handler(request, record.mode)

    def _take_failure(self, operation: str) -> _Failure | None:
        for key in (operation, "*"):
            queue = self._failures.get(key)
            if queue:
                failure = queue[0]
                failure.remaining -= 1
                if failure.remaining <= 0:
                    queue.pop(0)
                return failure
        return None

    @staticmethod
    def _failure_response(failure: _Failure) -> web.Response:
        if failure.kind == "empty_500":
            return web.Response(status=500)
        if failure.kind == "error_500":
            return _error(500, "unspecified", "An unexpected error occurred.", error_type="system")
        if failure.kind == "rate_limit":
            return _json(
                _error_envelope(
                    "rate_limit_exceeded",
                    "You have exceeded the rate limit.",
                    error_type="system",
                ),
                status=429,
                headers={"Retry-After": str(failure.retry_after)},
            )
        if failure.kind == "insufficient_funds":
            return _error(
                400,
                "insufficient_funds",
                "You do not have sufficient funds to purchase this label.",
                error_type="account_status",
            )
        return _error(
            400,
            "invalid_address",
            "Invalid address: the street address could not be found.",
            source="carrier",
            field_name="ship_to.address_line1",
        )

    async def _pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def _next_id(self) -> str:
        return f"se-{next(self._ids)}"

    # ----------------------------------------------------------------- API handlers

    async def _list_carriers(self, request: web.Request, mode: str) -> web.Response:
        carriers = []
        for carrier in _CARRIERS:
            services = [s for s in _SERVICES if s.carrier_id == carrier["carrier_id"]]
            funded = mode == "production"
            carriers.append(
                {
                    "carrier_id": carrier["carrier_id"],
                    "carrier_code": carrier["carrier_code"],
                    "account_number": "FAKE-" + carrier["carrier_code"].upper(),
                    "requires_funded_amount": funded,
                    "balance": (Decimal(self.production_balance_cents) / 100).quantize(
                        Decimal("0.01")
                    )
                    if funded
                    else Decimal("0.00"),
                    "nickname": carrier["name"],
                    "friendly_name": carrier["name"],
                    "primary": carrier["carrier_id"] == "se-1001001",
                    "has_multi_package_supporting_services": False,
                    "supports_label_messages": True,
                    "disabled_by_billing_plan": False,
                    "services": [
                        {
                            "carrier_id": s.carrier_id,
                            "carrier_code": s.carrier_code,
                            "service_code": s.service_code,
                            "name": s.name,
                            "domestic": True,
                            "international": False,
                            "is_multi_package_supported": False,
                        }
                        for s in services
                    ],
                    "packages": [],
                    "options": [],
                }
            )
        return _json({"carriers": carriers})

    @staticmethod
    def _address_problem(address: Any, prefix: str) -> str | None:
        if not isinstance(address, dict):
            return prefix
        for name in (
            "name",
            "address_line1",
            "city_locality",
            "state_province",
            "postal_code",
            "country_code",
        ):
            if not str(address.get(name) or "").strip():
                return f"{prefix}.{name}"
        # The address schema requires `phone`: a string of at least one character.
        phone = address.get("phone")
        if not isinstance(phone, str) or not phone:
            return f"{prefix}.phone"
        return None

    async def _validate_addresses(self, request: web.Request, mode: str) -> web.Response:
        """POST /v2/addresses/validate: a JSON array of 1..250 addresses; one result per
        address, in order: ``status`` (verified|unverified|warning|error),
        ``original_address``, ``matched_address`` (null when nothing matched), and
        ``messages`` [{code, message, type, detail_code}].

        Deterministic rules standing in for the carrier's database (US only):

        * no house number in ``address_line1``, or the word "unknown" in it → ``error``,
          ``address_not_found``; a postal code that is no US ZIP → ``error``,
          ``invalid_postal_code``; a country other than US → ``unverified``;
        * otherwise ``verified``, standardised as carriers return it: a ZIP5 gains its +4
          (derived from the street), a spelled-out street suffix is abbreviated
          ("Street" → "St"), the city is upper case;
        * residential indicator: ``no`` when there is a company name or a suite/floor,
          else ``yes``.
        """
        try:
            body = json.loads(await request.read(), parse_float=Decimal)
        except ValueError:
            return _error(400, "invalid_body", "The request body is not valid JSON.")
        if not isinstance(body, list) or not body:
            return _error(
                400,
                "invalid_field_value",
                "The request body must be an array of 1 to 250 addresses.",
            )
        if len(body) > MAX_ADDRESSES_TO_VALIDATE:
            return _error(
                400,
                "invalid_field_value",
                f"A maximum of {MAX_ADDRESSES_TO_VALIDATE} addresses can be validated "
                "per request.",
            )
        for index, address in enumerate(body):
            if not isinstance(address, dict):
                return _error(
                    400,
                    "invalid_field_value",
                    "Each address must be an object.",
                    field_name=f"[{index}]",
                )
            for name in ("address_line1", "country_code"):
                if not isinstance(address.get(name), str) or not address[name].strip():
                    problem = f"[{index}].{name}"
                    return _error(
                        400,
                        "field_value_required",
                        f"{problem} is required.",
                        field_name=problem,
                    )
            indicator = address.get("address_residential_indicator", "unknown")
            if indicator not in ("unknown", "yes", "no"):
                problem = f"[{index}].address_residential_indicator"
                return _error(
                    400,
                    "invalid_field_value",
                    f"{problem} must be unknown, yes or no.",
                    field_name=problem,
                )
        return _json([_validate_one(address) for address in body])

    async def _get_rates(self, request: web.Request, mode: str) -> web.Response:
        try:
            body = json.loads(await request.read(), parse_float=Decimal)
        except ValueError:
            return _error(400, "invalid_body", "The request body is not valid JSON.")
        if not isinstance(body, dict):
            return _error(400, "invalid_body", "The request body must be an object.")
        options = body.get("rate_options")
        carrier_ids = options.get("carrier_ids") if isinstance(options, dict) else None
        if not isinstance(carrier_ids, list) or not carrier_ids:
            return _error(
                400,
                "field_value_required",
                "carrier_ids is required.",
                field_name="rate_options.carrier_ids",
            )
        shipment = body.get("shipment")
        if not isinstance(shipment, dict):
            return _error(
                400, "field_value_required", "shipment is required.", field_name="shipment"
            )
        for prefix in ("ship_from", "ship_to"):
            problem = self._address_problem(shipment.get(prefix), f"shipment.{prefix}")
            if problem:
                return _error(
                    400, "field_value_required", f"{problem} is required.", field_name=problem
                )
        validate = shipment.get("validate_address", "no_validation")
        if validate not in VALIDATE_ADDRESS_VALUES:
            return _error(
                400,
                "invalid_field_value",
                "validate_address must be no_validation, validate_only or validate_and_clean.",
                field_name="shipment.validate_address",
            )
        packages = shipment.get("packages")
        weight_oz = self._weight_oz(packages)
        if weight_oz is None:
            return _error(
                400,
                "invalid_field_value",
                "packages[0].weight must be a positive weight.",
                field_name="shipment.packages",
            )
        confirmation = shipment.get("confirmation", "none")
        if confirmation not in CONFIRMATION_VALUES:
            return _error(
                400,
                "invalid_field_value",
                "confirmation must be one of " + ", ".join(sorted(CONFIRMATION_VALUES)) + ".",
                field_name="shipment.confirmation",
            )
        provider = shipment.get("insurance_provider", "none")
        if provider not in INSURANCE_PROVIDERS:
            return _error(
                400,
                "invalid_field_value",
                "insurance_provider must be one of "
                + ", ".join(sorted(INSURANCE_PROVIDERS))
                + ".",
                field_name="shipment.insurance_provider",
            )
        insured = self._insured_cents(packages if isinstance(packages, list) else [])
        if isinstance(insured, str):
            return _error(400, "invalid_field_value", insured, field_name="shipment.packages")
        service_codes = options.get("service_codes") if isinstance(options, dict) else None
        if service_codes is not None and not (
            isinstance(service_codes, list) and all(isinstance(c, str) for c in service_codes)
        ):
            return _error(
                400,
                "invalid_field_value",
                "service_codes must be an array of strings.",
                field_name="rate_options.service_codes",
            )
        ship_from, ship_to = shipment["ship_from"], shipment["ship_to"]
        external_id = shipment.get("external_shipment_id")
        # "Limited to 50 characters. Any additional characters will be truncated."
        external_id = str(external_id)[:EXTERNAL_ID_MAX] if external_id else None
        if external_id and (mode, external_id) in self._external:
            # "Must be unique per account": a rate request with an inline shipment creates
            # a shipment, and a duplicate external_shipment_id is refused.
            return _error(
                400,
                "identifier_conflict",
                f"A shipment with external_shipment_id {external_id} already exists.",
                field_name="shipment.external_shipment_id",
            )
        now = self._now()
        shipment_id = self._next_id()
        from_zip, to_zip = str(ship_from["postal_code"]), str(ship_to["postal_code"])
        zips_ok = bool(_US_ZIP.match(from_zip) and _US_ZIP.match(to_zip))
        zone = zone_for(from_zip, to_zip) if zips_ok else 0
        record = _Shipment(
            shipment_id,
            external_id,
            mode,
            ship_from,
            ship_to,
            packages if isinstance(packages, list) else [],
            weight_oz,
            zone,
            now,
            validate,
            confirmation,
            provider,
            insured,
        )
        self._shipments[shipment_id] = record
        self._shipment_added()
        if external_id:
            self._external[(mode, external_id)] = shipment_id

        rates: list[dict[str, Any]] = []
        invalid: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        if not zips_ok:
            errors.append(
                _error_envelope(
                    "invalid_address",
                    "The postal code is not a valid US ZIP code.",
                    source="carrier",
                    field_name="postal_code",
                )["errors"][0]
            )
        else:
            known = {c["carrier_id"] for c in _CARRIERS}
            for carrier_id in carrier_ids:
                if carrier_id not in known:
                    errors.append(
                        _error_envelope(
                            "carrier_not_connected",
                            f"Carrier {carrier_id} is not connected to this account.",
                            error_type="business_rules",
                        )["errors"][0]
                    )
            # Deliberately not price-ordered: the client sorts.
            for service in reversed(_SERVICES):
                if service.carrier_id not in carrier_ids:
                    continue
                if service_codes is not None and service.service_code not in service_codes:
                    continue
                problem = self._option_problem(record, service)
                if problem:
                    invalid.append(self._invalid_rate(record, service, problem, now))
                else:
                    rates.append(self._new_rate(record, service, now))
        status = "completed" if not errors else ("partial" if rates else "error")
        response = {
            "shipment_id": shipment_id,
            "carrier_id": None,
            "service_code": None,
            "external_shipment_id": external_id,
            "ship_date": _iso(now),
            "created_at": _iso(now),
            "shipment_status": "pending",
            "ship_to": ship_to,
            "ship_from": ship_from,
            "packages": packages,
            "total_weight": {"value": weight_oz, "unit": "ounce"},
            "confirmation": confirmation,
            "insurance_provider": provider,
            "rate_response": {
                "rates": rates,
                "invalid_rates": invalid,
                "rate_request_id": self._next_id(),
                "shipment_id": shipment_id,
                "created_at": _iso(now),
                "status": status,
                "errors": errors,
            },
        }
        return _json(response)

    @staticmethod
    def _weight_oz(packages: Any) -> int | None:
        if not isinstance(packages, list) or not packages:
            return None
        total = Decimal(0)
        for package in packages:
            weight = package.get("weight") if isinstance(package, dict) else None
            if not isinstance(weight, dict):
                return None
            factor = _WEIGHT_TO_OZ.get(str(weight.get("unit", "")))
            try:
                value = Decimal(str(weight.get("value")))
            except InvalidOperation:
                return None
            if factor is None or not value.is_finite() or value <= 0:
                return None
            total += value * factor
        return int(total.to_integral_value(rounding=ROUND_CEILING))

    @staticmethod
    def _insured_cents(packages: list[Any]) -> int | str:
        """The declared value of all packages in cents, or what is wrong with it."""
        total = 0
        for index, package in enumerate(packages):
            value = package.get("insured_value")
            if value is None:
                continue
            if not isinstance(value, dict):
                return f"packages[{index}].insured_value must be a money object."
            if str(value.get("currency") or "").lower() != "usd":
                return f"packages[{index}].insured_value.currency must be usd."
            try:
                amount = Decimal(str(value.get("amount")))
            except InvalidOperation:
                return f"packages[{index}].insured_value.amount must be a number."
            if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
                return f"packages[{index}].insured_value.amount must be a positive amount."
            total += int(amount * 100)
        return total

    @staticmethod
    def _option_problem(shipment: _Shipment, service: _Service) -> str | None:
        """Why ``service`` cannot carry the shipment's confirmation or insurance."""
        if shipment.confirmation not in CONFIRMATION_CENTS.get(service.service_code, {}):
            return (
                f"The confirmation type {shipment.confirmation} is not supported "
                f"by {service.name}."
            )
        fee = insurance_cents(
            shipment.insurance_provider, service.carrier_code, shipment.insured_cents
        )
        if fee is None:
            return (
                f"Insurance by {shipment.insurance_provider} is not available for "
                f"{service.name} at the declared value."
            )
        return None

    def _invalid_rate(
        self, shipment: _Shipment, service: _Service, message: str, now: datetime
    ) -> dict[str, Any]:
        return {
            "rate_id": self._next_id(),
            "rate_type": "shipment",
            "carrier_id": service.carrier_id,
            "shipping_amount": _money(0),
            "insurance_amount": _money(0),
            "confirmation_amount": _money(0),
            "other_amount": _money(0),
            "zone": shipment.zone,
            "package_type": "package",
            "ship_date": _iso(now),
            "service_type": service.name,
            "service_code": service.service_code,
            "carrier_code": service.carrier_code,
            "carrier_nickname": service.carrier_name,
            "carrier_friendly_name": service.carrier_name,
            "validation_status": "invalid",
            "warning_messages": [],
            "error_messages": [message],
        }

    def _new_rate(self, shipment: _Shipment, service: _Service, now: datetime) -> dict[str, Any]:
        shipping, other = quote_cents(service, shipment.weight_oz, shipment.zone)
        confirmation = CONFIRMATION_CENTS[service.service_code][shipment.confirmation]
        insurance = insurance_cents(
            shipment.insurance_provider, service.carrier_code, shipment.insured_cents
        )
        assert insurance is not None  # _option_problem sent it to invalid_rates
        days = service.delivery_days(shipment.zone)
        eta = (now + timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
        rate = _Rate(
            self._next_id(),
            shipment.shipment_id,
            shipment.mode,
            service,
            shipping,
            other,
            days,
            eta,
            confirmation,
            insurance,
        )
        self._rates[rate.rate_id] = rate
        return {
            "rate_id": rate.rate_id,
            "rate_type": "shipment",
            "carrier_id": service.carrier_id,
            "shipping_amount": _money(shipping),
            "insurance_amount": _money(insurance),
            "confirmation_amount": _money(confirmation),
            "other_amount": _money(other),
            "tax_amount": None,
            "requested_comparison_amount": None,
            "zone": shipment.zone,
            "package_type": "package",
            "delivery_days": days,
            "guaranteed_service": service.service_code == "ups_2nd_day_air",
            "estimated_delivery_date": _iso(eta),
            "carrier_delivery_days": str(days),
            "ship_date": _iso(now),
            "negotiated_rate": False,
            "service_type": service.name,
            "service_code": service.service_code,
            "trackable": True,
            "carrier_code": service.carrier_code,
            "carrier_nickname": service.carrier_name,
            "carrier_friendly_name": service.carrier_name,
            "validation_status": "valid",
            "warning_messages": [],
            "error_messages": [],
        }

    def _tracking_number(self, carrier_code: str) -> str:
        while True:
            if carrier_code == "ups":
                number = "1Z" + "F7A392" + "03" + "".join(self._rng.choices("0123456789", k=8))
            else:
                number = "9400" + "".join(self._rng.choices("0123456789", k=18))
            if number not in self._tracking_numbers:
                self._tracking_numbers.add(number)
                return number

    async def _create_label(self, request: web.Request, mode: str) -> web.Response:
        rate_id = request.match_info["rate_id"]
        rate = self._rates.get(rate_id)
        if rate is None or rate.mode != mode:
            return _error(
                400,
                "invalid_identifier",
                f"rate_id {rate_id} was not found.",
                field_name="rate_id",
            )
        raw = await request.read()
        try:
            options = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return _error(400, "invalid_body", "The request body is not valid JSON.")
        validate = (
            options.get("validate_address", "no_validation") if isinstance(options, dict) else None
        )
        if validate not in VALIDATE_ADDRESS_VALUES:
            return _error(
                400,
                "invalid_field_value",
                "validate_address must be no_validation, validate_only or validate_and_clean.",
                field_name="validate_address",
            )
        problem = _label_options_problem(options if isinstance(options, dict) else {})
        if problem is not None:
            return problem
        shipment = self._shipments[rate.shipment_id]
        # `shipment_cost` excludes insurance, which is charged as `insurance_cost`.
        cost = rate.shipping_cents + rate.other_cents + rate.confirmation_cents
        if mode == "production":
            if cost + rate.insurance_cents > self.production_balance_cents:
                return _failure_to_funds()
            self.production_balance_cents -= cost + rate.insurance_cents
        label_id = self._next_id()
        label = FakeLabel(
            label_id=label_id,
            shipment_id=shipment.shipment_id,
            external_shipment_id=shipment.external_shipment_id,
            mode=mode,
            rate_id=rate_id,
            carrier_id=rate.service.carrier_id,
            carrier_code=rate.service.carrier_code,
            service_code=rate.service.service_code,
            service_name=rate.service.name,
            tracking_number=self._tracking_number(rate.service.carrier_code),
            cost_cents=cost,
            created_at=self._now(),
            token=uuid.uuid4().hex,
            ship_to=shipment.ship_to,
            ship_from=shipment.ship_from,
            validate_address=str(validate),
            insurance_cents=rate.insurance_cents,
            confirmation=shipment.confirmation,
            label_format=str(options.get("label_format") or "pdf"),
            label_layout=str(options.get("label_layout") or "4x6"),
        )
        self.labels[label_id] = label
        return _json(self._label_json(label, request))

    def _label_json(self, label: FakeLabel, request: web.Request) -> dict[str, Any]:
        base = f"{request.scheme}://{request.host}"
        stem = f"{base}/v2/downloads/6/{label.token}/label-{label.label_id[3:]}"
        # As in the v2 reference's example response, a 4x6 label links every format and
        # `href` is the one bought; a letter-size label exists as a PDF only.
        links = {fmt: f"{stem}.{fmt}" for fmt in LABEL_FORMATS}
        download: dict[str, str | None] = {"href": links[label.label_format]}
        for fmt in LABEL_FORMATS:
            download[fmt] = links[fmt] if label.label_layout == "4x6" or fmt == "pdf" else None
        return {
            "label_id": label.label_id,
            "status": label.status,
            "shipment_id": label.shipment_id,
            "external_shipment_id": label.external_shipment_id,
            "ship_date": _iso(label.created_at),
            "created_at": _iso(label.created_at),
            "shipment_cost": _money(label.cost_cents),
            "insurance_cost": _money(label.insurance_cents),
            "tracking_number": label.tracking_number,
            "is_return_label": False,
            "rma_number": None,
            "is_international": False,
            "batch_id": "",
            "carrier_id": label.carrier_id,
            "charge_event": "carrier_default",
            "service_code": label.service_code,
            "package_code": "package",
            "voided": label.voided,
            "voided_at": _iso(label.voided_at),
            "label_format": label.label_format,
            "display_scheme": "label",
            "label_layout": label.label_layout,
            "trackable": True,
            "label_image_id": None,
            "carrier_code": label.carrier_code,
            "tracking_status": {
                "IT": "in_transit", "AT": "in_transit", "DE": "delivered", "SP": "delivered",
                "EX": "error",
            }.get(label.tracking_code, "unknown"),
            "label_download": download,
            "form_download": None,
            "qr_code_download": None,
            "insurance_claim": None,
            "packages": [
                {
                    "package_code": "package",
                    "tracking_number": label.tracking_number,
                    "label_download": download,
                }
            ],
        }

    def _visible_label(self, label_id: str, mode: str) -> FakeLabel | None:
        label = self.labels.get(label_id)
        return label if label is not None and label.mode == mode else None

    async def _get_label(self, request: web.Request, mode: str) -> web.Response:
        label = self._visible_label(request.match_info["label_id"], mode)
        if label is None:
            return web.Response(status=404)  # the spec: 404 with an empty body
        return _json(self._label_json(label, request))

    async def _list_labels(self, request: web.Request, mode: str) -> web.Response:
        query = request.query
        labels = [lb for lb in self.labels.values() if lb.mode == mode]
        for key in (
            "rate_id",
            "shipment_id",
            "external_shipment_id",
            "tracking_number",
            "carrier_id",
        ):
            if key in query:
                labels = [lb for lb in labels if getattr(lb, key) == query[key]]
        if "label_status" in query:
            labels = [lb for lb in labels if lb.status == query["label_status"]]
        labels.sort(key=lambda lb: lb.created_at, reverse=query.get("sort_dir", "desc") == "desc")
        try:
            page = max(1, int(query.get("page", "1")))
            size = min(500, max(1, int(query.get("page_size", "25"))))
        except ValueError:
            return _error(400, "invalid_field_value", "page and page_size must be integers.")
        chunk = labels[(page - 1) * size : page * size]
        pages = max(1, -(-len(labels) // size))
        return _json(
            {
                "labels": [self._label_json(lb, request) for lb in chunk],
                "total": len(labels),
                "page": page,
                "pages": pages,
                "links": {"first": {}, "last": {}, "prev": {}, "next": {}},
            }
        )

    async def _get_label_by_external_id(self, request: web.Request, mode: str) -> web.Response:
        external_id = request.match_info["external_id"]
        matches = [
            lb
            for lb in self.labels.values()
            if lb.mode == mode and lb.external_shipment_id == external_id
        ]
        if not matches:
            return web.Response(status=404)
        return _json(self._label_json(min(matches, key=lambda lb: lb.created_at), request))

    def _shipment_json(self, shipment: _Shipment) -> dict[str, Any]:
        return {
            "shipment_id": shipment.shipment_id,
            "external_shipment_id": shipment.external_shipment_id,
            "carrier_id": None,
            "service_code": None,
            "ship_date": _iso(shipment.created_at),
            "created_at": _iso(shipment.created_at),
            "modified_at": _iso(shipment.created_at),
            "shipment_status": "label_purchased"
            if any(lb.shipment_id == shipment.shipment_id for lb in self.labels.values())
            else "pending",
            "ship_to": shipment.ship_to,
            "ship_from": shipment.ship_from,
            "packages": shipment.packages,
            "total_weight": {"value": shipment.weight_oz, "unit": "ounce"},
            "confirmation": shipment.confirmation,
            "insurance_provider": shipment.insurance_provider,
        }

    async def _get_shipment(self, request: web.Request, mode: str) -> web.Response:
        shipment = self._shipments.get(request.match_info["shipment_id"])
        if shipment is None or shipment.mode != mode:
            return _error(
                404, "invalid_identifier", "shipment_id was not found.", field_name="shipment_id"
            )
        return _json(self._shipment_json(shipment))

    async def _get_shipment_by_external_id(self, request: web.Request, mode: str) -> web.Response:
        shipment_id = self._external.get((mode, request.match_info["external_id"]))
        if shipment_id is None:
            return _error(
                404,
                "invalid_identifier",
                "No shipment with this external_shipment_id.",
                field_name="external_shipment_id",
            )
        return _json(self._shipment_json(self._shipments[shipment_id]))

    async def _void_label(self, request: web.Request, mode: str) -> web.Response:
        label = self._visible_label(request.match_info["label_id"], mode)
        if label is None:
            return _error(
                404, "invalid_identifier", "label_id was not found.", field_name="label_id"
            )
        label.void_attempts += 1
        if label.voided:
            return self._void_denied("label_already_voided")
        outcome = self._void_outcomes.get(label.label_id, self.default_void_outcome)
        if outcome == "error":
            return _error(500, "unspecified", "The void request failed.", error_type="system")
        if outcome == "auto":
            within = self._now() - label.created_at <= self.void_window
            outcome = "approved" if within else "label_not_found_within_void_period"
        if outcome != "approved":
            return self._void_denied(outcome)
        label.voided = True
        label.status = "voided"
        label.voided_at = self._now()
        return _json(
            {
                "approved": True,
                "message": "Request for refund submitted. This label has been voided.",
                "voided_label_ids": [label.label_id],
            }
        )

    @staticmethod
    def _void_denied(reason: str) -> web.Response:
        return _json(
            {
                "approved": False,
                "message": _VOID_MESSAGES.get(reason, "The label could not be voided."),
                "reason_code": reason,
            }
        )

    @staticmethod
    def _track_event(
        label: FakeLabel,
        code: str,
        at: datetime,
        where: dict[str, Any],
        detail: str | None = None,
        detail_text: str = "",
    ) -> dict[str, Any]:
        """One v2 ``track_event``: no ``description``; the words are in
        ``status_description`` / ``carrier_status_description``, the codes in
        ``event_code`` / ``status_code`` / ``carrier_*_code``."""
        carrier_text = (detail_text or _TRACKING[code]).upper()
        return {
            "occurred_at": _iso(at),
            "carrier_occurred_at": _iso(at),
            "city_locality": str(where.get("city_locality", "")),
            "state_province": str(where.get("state_province", "")),
            "postal_code": str(where.get("postal_code", "")),
            "country_code": "US",
            "company_name": "",
            "signer": "",
            "event_code": _CARRIER_EVENT_CODES[code],
            "carrier_detail_code": _CARRIER_EVENT_CODES[code],
            "status_code": code,
            "status_detail_code": detail,
            "status_description": _TRACKING[code],
            "status_detail_description": detail_text,
            "carrier_status_code": _CARRIER_EVENT_CODES[code],
            "carrier_status_description": carrier_text,
        }

    async def _track(self, request: web.Request, mode: str) -> web.Response:
        label = self._visible_label(request.match_info["label_id"], mode)
        if label is None:
            return _error(
                404, "invalid_identifier", "label_id was not found.", field_name="label_id"
            )
        code = label.tracking_code
        detail, detail_text = label.extra.get("tracking_detail", (None, ""))
        latest = label.tracking_events[0] if label.tracking_events else None
        delivered = code in ("DE", "SP")
        return _json(
            {
                "tracking_number": label.tracking_number,
                "tracking_url": f"https://tracking.example.invalid/{label.tracking_number}",
                "status_code": code,
                "status_detail_code": detail,
                "status_description": _TRACKING[code],
                "status_detail_description": detail_text or None,
                "carrier_code": label.carrier_code,
                "carrier_status_code": _CARRIER_EVENT_CODES[code],
                "carrier_detail_code": _CARRIER_EVENT_CODES[code],
                "carrier_status_description": (detail_text or _TRACKING[code]).upper(),
                "ship_date": _iso(label.created_at),
                "estimated_delivery_date": None,
                "actual_delivery_date": latest["occurred_at"] if delivered and latest else None,
                "exception_description": detail_text if code == "EX" else None,
                "events": list(label.tracking_events),
            }
        )

    async def _download(self, request: web.Request) -> web.Response:
        record = CallRecord("download", request.method, request.path, self._mode(request))
        self.calls.append(record)
        failure = self._take_failure("download")
        if failure is not None:
            if failure.kind == "slow":
                await self._pause(failure.delay)
            else:
                response = self._failure_response(failure)
                record.status = response.status
                return response
        token = request.match_info["token"]
        label = next((lb for lb in self.labels.values() if lb.token == token), None)
        filename = request.match_info["filename"]
        fmt = filename.rsplit(".", 1)[-1] if "." in filename else ""
        if (
            label is None
            or filename != f"label-{label.label_id[3:]}.{fmt}"
            or fmt not in LABEL_FORMATS
            or (label.label_layout == "letter" and fmt != "pdf")
        ):
            record.status = 404
            return web.Response(status=404)
        to = label.ship_to
        frm = label.ship_from
        lines = [
            "FAKE SHIPSTATION - NOT VALID POSTAGE"
            if label.mode == "sandbox"
            else "FAKE SHIPSTATION (production mode)",
            f"{label.carrier_code.upper()} - {label.service_name}",
            f"TRACKING #: {label.tracking_number}",
            f"LABEL: {label.label_id}",
            "",
            "FROM:",
            str(frm.get("name", "")),
            str(frm.get("address_line1", "")),
            f"{frm.get('city_locality', '')}, {frm.get('state_province', '')} "
            f"{frm.get('postal_code', '')}",
            "",
            "SHIP TO:",
            str(to.get("name", "")),
            str(to.get("address_line1", "")),
            str(to.get("address_line2") or ""),
            f"{to.get('city_locality', '')}, {to.get('state_province', '')} "
            f"{to.get('postal_code', '')}",
        ]
        record.status = 200
        if fmt == "png":
            return web.Response(body=_png(lines), content_type="image/png")
        if fmt == "zpl":
            return web.Response(body=_zpl(lines), content_type="application/zpl")
        return web.Response(
            body=_pdf(lines, letter=label.label_layout == "letter"),
            content_type="application/pdf",
        )

    # ----------------------------------------------------------------- control (HTTP)

    def _control_routes(
        self,
    ) -> list[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]]]]:
        """HTTP control API (no auth; the fake listens on 127.0.0.1 only):

        GET    /_control/calls                       -> {"counts": {...}, "calls": [...]}
        POST   /_control/reset                       -> forget everything
        POST   /_control/failures    {"operation", "kind", "times"?, "retry_after"?, "delay"?}
        DELETE /_control/failures
        POST   /_control/void_outcome {"outcome", "label_id"?}
        POST   /_control/labels/{label_id}/created_at {"created_at": ISO} | {"age_days": n}
        POST   /_control/labels/{label_id}/tracking  {"status_code": "AC|IT|DE|EX|…"}
                                                     or {"step": "accepted|in_transit|
                                                     out_for_delivery|delivered|exception|…"}
        GET    /_control/labels
        POST   /_control/latency     {"instant": bool, "latency_seconds"?: float}
        POST   /_control/balance     {"cents": int}
        """
        return [
            ("GET", "/_control/calls", self._c_calls),
            ("POST", "/_control/reset", self._c_reset),
            ("POST", "/_control/failures", self._c_failures),
            ("DELETE", "/_control/failures", self._c_clear_failures),
            ("POST", "/_control/void_outcome", self._c_void_outcome),
            ("POST", "/_control/labels/{label_id}/created_at", self._c_created_at),
            ("POST", "/_control/labels/{label_id}/tracking", self._c_tracking),
            ("GET", "/_control/labels", self._c_labels),
            ("POST", "/_control/latency", self._c_latency),
            ("POST", "/_control/balance", self._c_balance),
        ]

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            data = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="body must be JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return data

    async def _c_calls(self, request: web.Request) -> web.Response:
        return _json(
            {
                "counts": self.call_counts(),
                "calls": [
                    {
                        "operation": c.operation,
                        "method": c.method,
                        "path": c.path,
                        "mode": c.mode,
                        "status": c.status,
                    }
                    for c in self.calls
                ],
            }
        )

    async def _c_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return _json({"ok": True})

    async def _c_failures(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        try:
            self.inject_failure(
                str(body.get("operation", "*")),
                str(body.get("kind", "")),
                int(body.get("times", 1)),
                retry_after=int(body.get("retry_after", 1)),
                delay=float(body.get("delay", 2.0)),
            )
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return _json({"ok": True})

    async def _c_clear_failures(self, request: web.Request) -> web.Response:
        self.clear_failures()
        return _json({"ok": True})

    async def _c_void_outcome(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        label_id = body.get("label_id")
        try:
            self.set_void_outcome(
                str(body.get("outcome", "")), str(label_id) if label_id else None
            )
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return _json({"ok": True})

    async def _c_created_at(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        label_id = request.match_info["label_id"]
        try:
            if "age_days" in body:
                self.age_label(label_id, float(body["age_days"]))
            else:
                self.set_label_created_at(
                    label_id, datetime.fromisoformat(str(body["created_at"]))
                )
        except KeyError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return _json({"ok": True, "created_at": _iso(self.labels[label_id].created_at)})

    async def _c_tracking(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        try:
            if "step" in body:
                self.advance_tracking(request.match_info["label_id"], str(body["step"]))
            else:
                self.set_tracking_status(
                    request.match_info["label_id"], str(body.get("status_code"))
                )
        except KeyError as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return _json({"ok": True})

    async def _c_labels(self, request: web.Request) -> web.Response:
        return _json(
            {
                "labels": [
                    {
                        "label_id": lb.label_id,
                        "mode": lb.mode,
                        "tracking_number": lb.tracking_number,
                        "external_shipment_id": lb.external_shipment_id,
                        "status": lb.status,
                        "voided": lb.voided,
                        "created_at": _iso(lb.created_at),
                        "cost_cents": lb.cost_cents,
                    }
                    for lb in self.labels.values()
                ]
            }
        )

    async def _c_latency(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.set_instant(bool(body.get("instant", True)))
        if "latency_seconds" in body:
            self.latency_seconds = float(body["latency_seconds"])
        return _json({"instant": self.instant, "latency_seconds": self.latency_seconds})

    async def _c_balance(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        try:
            self.production_balance_cents = int(body["cents"])
        except (KeyError, TypeError, ValueError):
            raise web.HTTPBadRequest(text="cents must be an integer") from None
        return _json({"cents": self.production_balance_cents})


def _label_options_problem(options: Mapping[str, Any]) -> web.Response | None:
    """The 400 ShipStation answers for a bad `label_format` / `label_layout` pair, or
    None when they are acceptable."""
    fmt = options.get("label_format", "pdf")
    layout = options.get("label_layout", "4x6")
    if fmt not in LABEL_FORMATS:
        return _error(
            400,
            "invalid_field_value",
            "label_format must be pdf, png or zpl.",
            field_name="label_format",
        )
    if layout not in LABEL_LAYOUTS:
        return _error(
            400,
            "invalid_field_value",
            "label_layout must be 4x6 or letter.",
            field_name="label_layout",
        )
    if layout == "letter" and fmt != "pdf":
        return _error(
            400,
            "invalid_field_value",
            "The letter label_layout is only supported for the pdf label_format.",
            field_name="label_layout",
        )
    return None


def _failure_to_funds() -> web.Response:
    return _error(
        400,
        "insufficient_funds",
        "You do not have sufficient funds to purchase this label.",
        error_type="account_status",
    )
