"""ShipStation V2 API client (https://api.shipstation.com/v2/..., header `API-Key`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from models.money import decimal_to_cents
from models.shipping import (
    CONFIRMATIONS,
    LABEL_FILE_FORMATS,
    VALIDATION_STATUSES,
    Address,
    AddressValidation,
    Carrier,
    CarrierService,
    Label,
    Parcel,
    Rate,
    TrackingEvent,
    TrackingInfo,
    ValidationMessage,
    VoidResult,
)
from providers.base import (
    BaseProviderClient,
    Clock,
    HttpResult,
    MalformedResponse,
    Sleep,
    StateChangeCallback,
    as_dict,
    as_list,
    opt_bool,
    opt_int,
    opt_iso_datetime,
    opt_str,
    req_str,
    to_amount,
)
from providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderInsufficientFunds,
    ProviderInvalidAddress,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderRejected,
    ProviderResponseError,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "EXTERNAL_ID_MAX",
    "MAX_ADDRESSES_TO_VALIDATE",
    "PROVIDER",
    "VALIDATE_ADDRESS",
    "ShipStationClient",
    "key_mode",
]

logger = logging.getLogger(__name__)

PROVIDER = "shipstation"
DEFAULT_BASE_URL = "https://api.shipstation.com"
EXTERNAL_ID_MAX = 50  # characters of external_shipment_id ShipStation keeps
_MAX_REDIRECTS = 3
MAX_ADDRESSES_TO_VALIDATE = 250  # per POST /v2/addresses/validate
VALIDATE_ADDRESS = frozenset({"no_validation", "validate_only", "validate_and_clean"})
# ``shipment.insurance_provider`` values that buy insurance (``none`` is the default).
INSURANCE_PROVIDERS = frozenset({"carrier", "shipsurance", "parcelguard", "funding_source"})
_RESIDENTIAL = {True: "yes", False: "no", None: "unknown"}

_ERROR_CLASSES: dict[str, type[ProviderRejected]] = {
    "insufficient_funds": ProviderInsufficientFunds,
    "invalid_address": ProviderInvalidAddress,
    "invalid_identifier": ProviderNotFound,
}


def key_mode(api_key: str) -> str:
    """'sandbox' for ShipStation sandbox keys (prefix TEST_), else 'production'."""
    return "sandbox" if api_key.startswith("TEST_") else "production"


def _path_id(value: str) -> str:
    if not value:
        raise ValueError("identifier must not be empty")
    return quote(value, safe="")


def _money_cents(obj: Mapping[str, Any], key: str) -> int:
    """Cents from a ShipStation money object {"currency", "amount"}; absent -> 0."""
    money = obj.get(key)
    if money is None:
        return 0
    amount = as_dict(money, key).get("amount")
    if amount is None:
        return 0
    return decimal_to_cents(to_amount(amount, key))


def _address_json(address: Address, *, phone_required: bool = True) -> dict[str, Any]:
    if not address.phone and phone_required:
        # The v2 address schema requires `phone`, a string of at least one character.
        raise ValueError("ShipStation requires a phone number on every address")
    data: dict[str, Any] = {"name": address.name}
    if address.phone:
        data["phone"] = address.phone
    data.update(_place_json(address))
    return data


def _place_json(address: Address) -> dict[str, Any]:
    data: dict[str, Any] = {
        "address_line1": address.street1,
        "city_locality": address.city,
        "state_province": address.state,
        "postal_code": address.postal_code,
        "country_code": address.country,
        "address_residential_indicator": _RESIDENTIAL[address.residential],
    }
    if address.street2:
        data["address_line2"] = address.street2
    if address.company:
        data["company_name"] = address.company
    return data


def _parse_validation(raw: Any, sent: Address) -> AddressValidation:
    obj = as_dict(raw, "address_validation")
    status = req_str(obj, "status")
    if status not in VALIDATION_STATUSES:
        raise MalformedResponse(f"unknown validation status {status!r}")
    messages = tuple(
        ValidationMessage(
            code=opt_str(m, "code") or "",
            message=opt_str(m, "message") or "",
            type=opt_str(m, "type") or "info",
            detail_code=opt_str(m, "detail_code"),
        )
        for m in (as_dict(m, "message") for m in as_list(obj.get("messages"), "messages"))
    )
    matched_raw = obj.get("matched_address")
    matched = None
    if matched_raw is not None:
        m = as_dict(matched_raw, "matched_address")
        indicator = opt_str(m, "address_residential_indicator")
        try:
            matched = Address(
                # What the customer typed stays theirs: name, company and phone.
                name=sent.name,
                company=sent.company,
                phone=sent.phone,
                street1=req_str(m, "address_line1"),
                street2=opt_str(m, "address_line2") or None,
                city=req_str(m, "city_locality"),
                state=req_str(m, "state_province"),
                postal_code=req_str(m, "postal_code"),
                country=opt_str(m, "country_code") or sent.country,
                residential={"yes": True, "no": False}.get(indicator or ""),
            )
        except ValueError as exc:
            raise MalformedResponse(f"matched_address: {exc}") from None
    return AddressValidation(status=status, matched=matched, messages=messages)


def _package_json(parcel: Parcel, insured_value_cents: int = 0) -> dict[str, Any]:
    package: dict[str, Any] = {
        "weight": {"value": parcel.weight_oz, "unit": "ounce"},
        "dimensions": {
            "unit": "inch",
            "length": parcel.length_in,
            "width": parcel.width_in,
            "height": parcel.height_in,
        },
    }
    if insured_value_cents:
        package["insured_value"] = {
            "currency": "usd",
            "amount": (Decimal(insured_value_cents) / 100).quantize(Decimal("0.01")),
        }
    return package


def _parse_rate(raw: Any, shipment_id: str | None) -> Rate:
    obj = as_dict(raw, "rate")
    insurance = _money_cents(obj, "insurance_amount")
    confirmation = _money_cents(obj, "confirmation_amount")
    total = (
        _money_cents(obj, "shipping_amount")
        + _money_cents(obj, "other_amount")
        + insurance
        + confirmation
    )
    shipping = obj.get("shipping_amount")
    currency = "usd"
    if isinstance(shipping, dict):
        currency = (opt_str(shipping, "currency") or "usd").lower()
    return Rate(
        rate_id=req_str(obj, "rate_id"),
        carrier_id=req_str(obj, "carrier_id"),
        carrier_code=opt_str(obj, "carrier_code") or "",
        carrier_name=opt_str(obj, "carrier_friendly_name")
        or opt_str(obj, "carrier_nickname")
        or opt_str(obj, "carrier_code")
        or "",
        service_code=req_str(obj, "service_code"),
        service_name=opt_str(obj, "service_type") or req_str(obj, "service_code"),
        amount_cents=total,
        delivery_days=opt_int(obj, "delivery_days"),
        estimated_delivery_date=opt_iso_datetime(obj, "estimated_delivery_date"),
        currency=currency,
        shipment_id=shipment_id,
        insurance_cents=insurance,
        confirmation_cents=confirmation,
    )


LABEL_LAYOUTS = ("4x6", "letter")


def _looks_like(body: bytes, file_format: str) -> bool:
    """A PDF starts with %PDF-, a PNG with its signature; ZPL is printable text holding
    at least one ^XA … ^XZ label (carriers may put ~ commands before the first ^XA)."""
    if file_format == "pdf":
        return body.startswith(b"%PDF-")
    if file_format == "png":
        return body.startswith(b"\x89PNG\r\n\x1a\n")
    upper = body.upper()
    return b"\x00" not in body and b"^XA" in upper and upper.rstrip().endswith(b"^XZ")


def _parse_label(raw: Any) -> Label:
    obj = as_dict(raw, "label")
    download = obj.get("label_download")
    label_format = (opt_str(obj, "label_format") or "pdf").lower()
    pdf_url = None
    downloads: list[tuple[str, str]] = []
    if isinstance(download, dict):
        for fmt in LABEL_FILE_FORMATS:
            url = opt_str(download, fmt)
            if url:
                downloads.append((fmt, url))
        href = opt_str(download, "href")
        if href and label_format in LABEL_FILE_FORMATS and not opt_str(download, label_format):
            downloads.append((label_format, href))  # `href` is the file in label_format
        pdf_url = dict(downloads).get("pdf")
    cost = obj.get("shipment_cost")
    currency = "usd"
    if isinstance(cost, dict):
        currency = (opt_str(cost, "currency") or "usd").lower()
    status = opt_str(obj, "status") or "unknown"
    return Label(
        label_id=req_str(obj, "label_id"),
        status=status,
        tracking_number=opt_str(obj, "tracking_number") or "",
        shipment_id=opt_str(obj, "shipment_id"),
        cost_cents=_money_cents(obj, "shipment_cost") + _money_cents(obj, "insurance_cost"),
        pdf_url=pdf_url,
        voided=opt_bool(obj, "voided") or status == "voided",
        created_at=opt_iso_datetime(obj, "created_at"),
        carrier_code=opt_str(obj, "carrier_code"),
        service_code=opt_str(obj, "service_code"),
        carrier_id=opt_str(obj, "carrier_id"),
        external_shipment_id=opt_str(obj, "external_shipment_id"),
        tracking_status=opt_str(obj, "tracking_status"),
        voided_at=opt_iso_datetime(obj, "voided_at"),
        currency=currency,
        label_format=label_format,
        label_layout=(opt_str(obj, "label_layout") or "4x6").lower(),
        downloads=tuple(downloads),
    )


def _parse_carrier(raw: Any) -> Carrier:
    obj = as_dict(raw, "carrier")
    services = tuple(
        CarrierService(
            service_code=req_str(service, "service_code"),
            name=opt_str(service, "name") or req_str(service, "service_code"),
            domestic=opt_bool(service, "domestic", True),
            international=opt_bool(service, "international", False),
        )
        for service in (as_dict(s, "service") for s in as_list(obj.get("services"), "services"))
    )
    balance = obj.get("balance")
    return Carrier(
        carrier_id=req_str(obj, "carrier_id"),
        carrier_code=opt_str(obj, "carrier_code") or "",
        name=opt_str(obj, "friendly_name")
        or opt_str(obj, "nickname")
        or opt_str(obj, "carrier_code")
        or "",
        nickname=opt_str(obj, "nickname"),
        balance_cents=None if balance is None else decimal_to_cents(to_amount(balance, "balance")),
        requires_funded_amount=opt_bool(obj, "requires_funded_amount"),
        services=services,
    )


def _parse_tracking(raw: Any) -> TrackingInfo:
    obj = as_dict(raw, "tracking")
    events = tuple(
        TrackingEvent(
            occurred_at=opt_iso_datetime(event, "occurred_at"),
            status_code=opt_str(event, "status_code"),
            status_detail_code=opt_str(event, "status_detail_code"),
            status_description=opt_str(event, "status_description"),
            carrier_status_description=opt_str(event, "carrier_status_description"),
            event_code=opt_str(event, "event_code"),
            city=opt_str(event, "city_locality"),
            state=opt_str(event, "state_province"),
            postal_code=opt_str(event, "postal_code"),
        )
        for event in (as_dict(e, "event") for e in as_list(obj.get("events"), "events"))
    )
    return TrackingInfo(
        tracking_number=opt_str(obj, "tracking_number") or "",
        status_code=opt_str(obj, "status_code"),
        status_description=opt_str(obj, "status_description"),
        status_detail_code=opt_str(obj, "status_detail_code"),
        carrier_code=opt_str(obj, "carrier_code"),
        tracking_url=opt_str(obj, "tracking_url"),
        estimated_delivery_date=opt_iso_datetime(obj, "estimated_delivery_date"),
        actual_delivery_date=opt_iso_datetime(obj, "actual_delivery_date"),
        events=events,
    )


def _error_entries(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, dict):
        return []
    return [e for e in as_list(data.get("errors"), "errors") if isinstance(e, dict)]


class ShipStationClient(BaseProviderClient):
    """ShipStation V2 client. `api_key` is called per logical call, so the runtime API
    mode (test/production) decides which key is used."""

    def __init__(
        self,
        base_url: str,
        api_key: Callable[[], str],
        *,
        timeout_total: float = 20.0,
        timeout_connect: float = 5.0,
        purchase_timeout: float = 60.0,
        validation_timeout: float = 5.0,
        validation_attempts: int = 2,
        max_attempts: int = 3,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
        backoff_jitter: float = 0.5,
        max_retry_after: float = 60.0,
        failure_threshold: int = 5,
        recovery_timeout: float = 30.0,
        on_state_change: StateChangeCallback | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        super().__init__(
            PROVIDER,
            base_url,
            timeout_total=timeout_total,
            timeout_connect=timeout_connect,
            max_attempts=max_attempts,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            backoff_jitter=backoff_jitter,
            max_retry_after=max_retry_after,
            failure_threshold=failure_threshold,
            recovery_timeout=recovery_timeout,
            on_state_change=on_state_change,
            clock=clock,
            sleep=sleep,
        )
        self._api_key = api_key
        self._purchase_timeout = purchase_timeout
        self._validation_timeout = validation_timeout
        self._validation_attempts = validation_attempts
        self._used_keys: dict[str, None] = {}

    # ----------------------------------------------------------------- hooks

    def _current_key(self) -> str:
        key = self._api_key()
        if not key:
            raise ProviderAuthError(PROVIDER, "no API key configured")
        return key

    def _auth_headers(self) -> dict[str, str]:
        key = self._current_key()
        # Remember the last few keys so messages are redacted even after a mode switch.
        self._used_keys.pop(key, None)
        self._used_keys[key] = None
        while len(self._used_keys) > 4:
            self._used_keys.pop(next(iter(self._used_keys)))
        return {"API-Key": key}

    def _secrets(self) -> Collection[str]:
        return tuple(self._used_keys)

    def _error_message(self, result: HttpResult) -> str:
        try:
            entries = _error_entries(result.json())
        except (MalformedResponse, ValueError):
            return ""
        if not entries:
            return ""
        entry = entries[0]
        code = entry.get("error_code")
        message = str(entry.get("message") or "")
        return f"{code}: {message}" if code else message

    def _rejected(self, operation: str, result: HttpResult) -> ProviderError:
        try:
            entries = _error_entries(result.json()) if result.body.strip() else []
        except (MalformedResponse, ValueError):
            entries = []
        return self._error_from_entry(operation, entries[0] if entries else {}, result.status)

    def _error_from_entry(
        self, operation: str, entry: Mapping[str, Any], status: int | None
    ) -> ProviderError:
        code = str(entry.get("error_code") or "")
        message = self._redact(str(entry.get("message") or ""))
        if not code:
            code = "not_found" if status == 404 else f"http_{status}"
        if not message:
            message = f"request rejected: {code}"
        if code == "unauthorized":
            return ProviderAuthError(PROVIDER, message, operation=operation, status=status)
        if code == "rate_limit_exceeded":
            return ProviderRateLimited(PROVIDER, message, operation=operation, status=status)
        cls = _ERROR_CLASSES.get(code) or (ProviderNotFound if status == 404 else ProviderRejected)
        field = entry.get("field_name")
        return cls(
            PROVIDER,
            message,
            operation=operation,
            status=status,
            code=code,
            field=str(field) if field else None,
            error_type=str(entry.get("error_type") or "") or None,
            error_source=str(entry.get("error_source") or "") or None,
        )

    # ----------------------------------------------------------------- API

    async def list_carriers(self) -> list[Carrier]:
        """GET /v2/carriers."""
        result = await self._request("list_carriers", "GET", "/v2/carriers", idempotent=True)
        with self._parsing("list_carriers"):
            data = as_dict(result.json(), "response")
            carriers = [_parse_carrier(c) for c in as_list(data.get("carriers"), "carriers")]
            partial = _error_entries(data)
        if partial:
            logger.warning(
                "partial carrier list: provider=%s errors=%s",
                PROVIDER,
                [e.get("error_code") for e in partial],
            )
        return carriers

    async def validate_addresses(self, addresses: Sequence[Address]) -> list[AddressValidation]:
        """POST /v2/addresses/validate with 1..250 addresses; one result per address, in
        order. It changes nothing at ShipStation, so it is retried like a read (and the
        circuit breaker applies), but a customer is waiting and the order goes on without
        it: at most ``validation_attempts`` attempts of ``validation_timeout`` each."""
        if not 1 <= len(addresses) <= MAX_ADDRESSES_TO_VALIDATE:
            raise ValueError(f"validate 1 to {MAX_ADDRESSES_TO_VALIDATE} addresses at a time")
        body = [_address_json(a, phone_required=False) for a in addresses]
        result = await self._request(
            "validate_addresses",
            "POST",
            "/v2/addresses/validate",
            json_body=body,
            idempotent=True,
            request_timeout=self._validation_timeout,
            max_attempts=self._validation_attempts,
            max_retry_wait=3.0,  # a customer is waiting: a long 429 skips the check
        )
        with self._parsing("validate_addresses"):
            items = as_list(result.json(), "response")
            if len(items) != len(addresses):
                raise MalformedResponse("one validation result per address expected")
            return [
                _parse_validation(raw, sent) for raw, sent in zip(items, addresses, strict=True)
            ]

    async def get_rates(
        self,
        ship_from: Address,
        ship_to: Address,
        parcel: Parcel,
        *,
        carrier_ids: Sequence[str],
        external_shipment_id: str | None = None,
        validate_address: str = "no_validation",
        service_codes: Sequence[str] | None = None,
        insured_value_cents: int = 0,
        insurance_provider: str = "carrier",
        confirmation: str = "none",
    ) -> list[Rate]:
        """POST /v2/rates. A quote: retried. Returns valid rates, cheapest first; raises
        the first provider error when no rate at all came back.

        Options (sent only when asked): ``insured_value_cents`` > 0 sets the package's
        ``insured_value`` and the shipment's ``insurance_provider``; ``confirmation``
        other than ``none`` the shipment's ``confirmation``. The rates then carry
        ``insurance_amount`` / ``confirmation_amount``, and a label bought from one keeps
        them (its ``insurance_cost`` is part of ``Label.cost_cents``). A service that
        does not offer the option comes back as an invalid rate, i.e. it is left out.

        The inline shipment is created at ShipStation, and ``external_shipment_id`` must be
        unique per account (at most 50 characters): give every quote its own. A retry may
        follow an attempt that was applied (a timeout, a 500), so retries send the id with
        ``-r<attempt>`` appended instead of repeating it."""
        if not carrier_ids:
            raise ValueError("carrier_ids must not be empty")
        if external_shipment_id and len(external_shipment_id) > EXTERNAL_ID_MAX - 3:
            raise ValueError(f"external_shipment_id must be at most {EXTERNAL_ID_MAX - 3} chars")
        if validate_address not in VALIDATE_ADDRESS:
            raise ValueError(f"unknown validate_address {validate_address!r}")
        if isinstance(insured_value_cents, bool) or not isinstance(insured_value_cents, int):
            raise TypeError("insured_value_cents must be an int")
        if insured_value_cents < 0:
            raise ValueError("insured_value_cents must not be negative")
        if insured_value_cents and insurance_provider not in INSURANCE_PROVIDERS:
            raise ValueError(f"unknown insurance_provider {insurance_provider!r}")
        if confirmation not in CONFIRMATIONS:
            raise ValueError(f"unknown confirmation {confirmation!r}")
        shipment: dict[str, Any] = {
            "validate_address": validate_address,
            "ship_from": _address_json(ship_from),
            "ship_to": _address_json(ship_to),
            "packages": [_package_json(parcel, insured_value_cents)],
        }
        if insured_value_cents:
            shipment["insurance_provider"] = insurance_provider
        if confirmation != "none":
            shipment["confirmation"] = confirmation
        rate_options: dict[str, Any] = {"carrier_ids": list(carrier_ids)}
        if service_codes:
            rate_options["service_codes"] = list(service_codes)

        def body(attempt: int) -> dict[str, Any]:
            one = dict(shipment)
            if external_shipment_id:
                suffix = "" if attempt == 1 else f"-r{attempt}"
                one["external_shipment_id"] = external_shipment_id + suffix
            return {"rate_options": dict(rate_options), "shipment": one}

        result = await self._request(
            "get_rates", "POST", "/v2/rates", json_body_for_attempt=body, idempotent=True
        )
        with self._parsing("get_rates"):
            data = as_dict(result.json(), "response")
            rate_response = as_dict(data.get("rate_response") or {}, "rate_response")
            shipment_id = opt_str(rate_response, "shipment_id") or opt_str(data, "shipment_id")
            rates = [
                _parse_rate(r, shipment_id) for r in as_list(rate_response.get("rates"), "rates")
            ]
            errors = _error_entries(rate_response) + _error_entries(data)
            invalid = [
                as_dict(r, "invalid_rate")
                for r in as_list(rate_response.get("invalid_rates"), "invalid_rates")
            ]
        invalid_messages = [
            str(message)
            for bad in invalid
            for message in as_list(bad.get("error_messages"), "error_messages")
            if message
        ]
        if errors or invalid:
            logger.warning(
                "rate errors: provider=%s rates=%s invalid=%s codes=%s",
                PROVIDER,
                len(rates),
                len(invalid),
                [e.get("error_code") for e in errors],
            )
        if not rates and (errors or invalid):
            if errors:
                raise self._error_from_entry("get_rates", errors[0], result.status)
            raise ProviderRejected(
                PROVIDER,
                self._redact(invalid_messages[0] if invalid_messages else "no rates returned"),
                operation="get_rates",
                status=result.status,
                code="no_rates_returned",
            )
        rates.sort(key=lambda r: (r.amount_cents, r.delivery_days or 99, r.service_code))
        return rates

    async def create_label_from_rate(
        self,
        rate_id: str,
        *,
        validate_address: str = "no_validation",
        label_format: str = "pdf",
        label_layout: str = "4x6",
    ) -> Label:
        """POST /v2/labels/rates/{rate_id}. Buys postage: never retried. On
        ProviderUnavailable with `outcome_unknown`, look it up with find_label_by_rate_id.
        ``letter`` layout exists for ``pdf`` only (v2 reference)."""
        if validate_address not in VALIDATE_ADDRESS:
            raise ValueError(f"unknown validate_address {validate_address!r}")
        if label_format not in LABEL_FILE_FORMATS or label_layout not in LABEL_LAYOUTS:
            raise ValueError(f"unknown label format {label_format!r}/{label_layout!r}")
        if label_layout == "letter" and label_format != "pdf":
            raise ValueError("the letter layout exists for pdf labels only")
        body = {
            "label_format": label_format,
            "label_layout": label_layout,
            "label_download_type": "url",
            "validate_address": validate_address,
        }
        result = await self._request(
            "create_label",
            "POST",
            f"/v2/labels/rates/{_path_id(rate_id)}",
            json_body=body,
            idempotent=False,
            request_timeout=self._purchase_timeout,
        )
        with self._parsing("create_label"):
            data = as_dict(result.json(), "response")
            errors = _error_entries(data)
            status = opt_str(data, "status")
            label = _parse_label(data) if data.get("label_id") else None
        if label is None or status == "error":
            entry = errors[0] if errors else {"error_code": "label_error"}
            raise self._error_from_entry("create_label", entry, result.status)
        if errors:
            logger.warning(
                "label created with errors: provider=%s label_id=%s codes=%s",
                PROVIDER,
                label.label_id,
                [e.get("error_code") for e in errors],
            )
        return label

    async def get_label(self, label_id: str) -> Label | None:
        """GET /v2/labels/{label_id}; None when ShipStation does not know it."""
        try:
            result = await self._request(
                "get_label", "GET", f"/v2/labels/{_path_id(label_id)}", idempotent=True
            )
        except ProviderNotFound:
            return None
        with self._parsing("get_label"):
            return _parse_label(result.json())

    async def find_label_by_rate_id(
        self, rate_id: str, *, shipment_id: str | None = None
    ) -> Label | None:
        """Crash recovery: the label bought from ``rate_id``, or None.

        GET /v2/labels?rate_id=… (what was actually bought, whatever the shipment's
        external id). Prefers a live label over a voided one; ignores labels in status
        `error` and, when ``shipment_id`` is given, labels of another shipment."""
        if not rate_id:
            raise ValueError("rate_id must not be empty")
        result = await self._request(
            "list_labels",
            "GET",
            "/v2/labels",
            params={
                "rate_id": rate_id,
                "page_size": "25",
                "sort_by": "created_at",
                "sort_dir": "desc",
            },
            idempotent=True,
        )
        with self._parsing("list_labels"):
            data = as_dict(result.json(), "response")
            labels = [_parse_label(raw) for raw in as_list(data.get("labels"), "labels")]
        candidates = [
            label
            for label in labels
            if label.status != "error"
            and (shipment_id is None or label.shipment_id in (None, shipment_id))
        ]
        for label in candidates:
            if not label.voided:
                return label
        return candidates[0] if candidates else None

    async def download_label_pdf(self, url: str) -> bytes:
        return await self.download_label(url, "pdf")

    async def download_label(self, url: str, file_format: str) -> bytes:
        """Downloads a label file (pdf, png or zpl) and checks it is one. The API key is
        sent only to ShipStation's own origin; redirects are followed manually (at most 3)
        without the key."""
        if file_format not in LABEL_FILE_FORMATS:
            raise ValueError(f"unknown label file format {file_format!r}")
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            same_origin = self._same_origin(current)
            if urlsplit(current).scheme not in ("https", "http"):
                raise ProviderResponseError(
                    PROVIDER, "unsupported label URL scheme", operation="download_label"
                )
            result = await self._request(
                "download_label",
                "GET",
                current,
                idempotent=True,
                auth=same_origin,
                accept_statuses={301, 302, 303, 307, 308},
            )
            if result.status in (301, 302, 303, 307, 308):
                location = result.headers.get("Location")
                if not location:
                    break
                current = urljoin(current, location)
                continue
            if not _looks_like(result.body, file_format):
                raise ProviderResponseError(
                    PROVIDER,
                    f"label download is not a {file_format.upper()} file",
                    operation="download_label",
                )
            return result.body
        raise ProviderResponseError(
            PROVIDER, "too many or broken redirects", operation="download_label"
        )

    async def void_label(self, label_id: str) -> VoidResult:
        """PUT /v2/labels/{label_id}/void. PUT is idempotent: a repeat answers
        `label_already_voided` (see VoidResult.is_voided)."""
        result = await self._request(
            "void_label", "PUT", f"/v2/labels/{_path_id(label_id)}/void", idempotent=True
        )
        with self._parsing("void_label"):
            data = as_dict(result.json(), "response")
            if not isinstance(data.get("approved"), bool):
                raise MalformedResponse("approved is missing")
            return VoidResult(
                approved=data["approved"],
                message=self._redact(opt_str(data, "message") or ""),
                reason_code=opt_str(data, "reason_code"),
            )

    async def track(self, label_id: str) -> TrackingInfo:
        """GET /v2/labels/{label_id}/track."""
        result = await self._request(
            "track", "GET", f"/v2/labels/{_path_id(label_id)}/track", idempotent=True
        )
        with self._parsing("track"):
            return _parse_tracking(result.json())

    def _same_origin(self, url: str) -> bool:
        target, base = urlsplit(url), urlsplit(self.base_url)
        return (target.scheme, target.netloc.lower()) == (base.scheme, base.netloc.lower())
