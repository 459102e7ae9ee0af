"""The carrier API by runtime mode: one ShipStation client per key (test, production).

Rates and labels of one order always use the same mode: it is stored on the order when
rates are fetched, and recovery and voids use the order's mode, not the current one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from models.shipping import (
    Address,
    AddressValidation,
    Label,
    Parcel,
    Rate,
    TrackingInfo,
    VoidResult,
)
from providers.errors import ProviderUnavailable
from providers.shipping.shipstation import ShipStationClient


class CarrierUnavailable(Exception):
    """No client is configured for the mode (its API key is missing)."""


class ShippingGateway:
    def __init__(
        self,
        clients: Mapping[str, ShipStationClient],
        current_mode: Callable[[], Awaitable[str]],
    ) -> None:
        self._clients = dict(clients)
        self._current_mode = current_mode
        self._carrier_ids: dict[str, list[str]] = {}

    async def mode(self) -> str:
        return await self._current_mode()

    def client(self, mode: str) -> ShipStationClient:
        client = self._clients.get(mode)
        if client is None:
            raise CarrierUnavailable(mode)
        return client

    async def carrier_ids(self, mode: str) -> list[str]:
        cached = self._carrier_ids.get(mode)
        if cached:
            return cached
        carriers = await self.client(mode).list_carriers()
        ids = [carrier.carrier_id for carrier in carriers]
        if not ids:
            raise ProviderUnavailable("shipstation", "no carriers", operation="list_carriers")
        self._carrier_ids[mode] = ids
        return ids

    async def rates(
        self,
        mode: str,
        ship_from: Address,
        ship_to: Address,
        parcel: Parcel,
        reference: str,
        *,
        validate_address: str = "no_validation",
        carrier_ids: Sequence[str] | None = None,
        service_codes: Sequence[str] | None = None,
        insured_value_cents: int = 0,
        insurance_provider: str = "carrier",
        confirmation: str = "none",
    ) -> list[Rate]:
        """``reference`` becomes the shipment's ``external_shipment_id``: unique per quote.
        ``carrier_ids``/``service_codes`` narrow the quote (default: every carrier); the
        insurance and confirmation options are sent only when asked."""
        client = self.client(mode)
        ids = list(carrier_ids) if carrier_ids else await self.carrier_ids(mode)
        return await client.get_rates(
            ship_from,
            ship_to,
            parcel,
            carrier_ids=ids,
            external_shipment_id=reference,
            validate_address=validate_address,
            service_codes=service_codes,
            insured_value_cents=insured_value_cents,
            insurance_provider=insurance_provider,
            confirmation=confirmation,
        )

    async def validate(self, mode: str, addresses: Sequence[Address]) -> list[AddressValidation]:
        return await self.client(mode).validate_addresses(addresses)

    async def buy(
        self,
        mode: str,
        rate_id: str,
        *,
        validate_address: str = "no_validation",
        label_format: str = "pdf",
        label_layout: str = "4x6",
    ) -> Label:
        return await self.client(mode).create_label_from_rate(
            rate_id,
            validate_address=validate_address,
            label_format=label_format,
            label_layout=label_layout,
        )

    async def find_label(
        self, mode: str, rate_id: str, *, shipment_id: str | None = None
    ) -> Label | None:
        """The label bought from ``rate_id`` (what the order tried to buy), or None."""
        return await self.client(mode).find_label_by_rate_id(rate_id, shipment_id=shipment_id)

    async def download(self, mode: str, url: str, file_format: str = "pdf") -> bytes:
        return await self.client(mode).download_label(url, file_format)

    async def void(self, mode: str, label_id: str) -> VoidResult:
        return await self.client(mode).void_label(label_id)

    async def track(self, mode: str, label_id: str) -> TrackingInfo:
        return await self.client(mode).track(label_id)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
