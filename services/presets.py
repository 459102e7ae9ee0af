"""Parcel presets: a customer's saved parcels (name, weight, size), one tap in an order.

Weight and size are parsed exactly as the order flow parses them (``services/parcel.py``,
with the same limits), so "2 lb", "2,5" or "10x8x4 in" mean the same here and there.
Names follow the template rules (1-32 characters, any script) and are unique per customer
regardless of case and surrounding spaces; a customer keeps at most
``presets.max_per_user``. Every read and write names the owner: another customer's preset
id finds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services import addresses
from services.addresses import FieldError
from services.clock import Clock, utc_now
from services.orders import parse_id
from services.parcel import parse_dimensions, parse_weight
from storage.client import Document
from storage.presets import DuplicatePresetName, PresetsRepo


@dataclass(frozen=True)
class PresetConfig:
    max_per_user: int
    min_weight_oz: int
    max_weight_oz: int
    max_side_in: Decimal


def preset_parcel(preset: Document) -> dict[str, Any]:
    """The parcel as the order draft stores it."""
    parcel = dict(preset.get("parcel") or {})
    return {
        "weight_oz": int(parcel["weight_oz"]),
        "length_in": str(parcel["length_in"]),
        "width_in": str(parcel["width_in"]),
        "height_in": str(parcel["height_in"]),
    }


class PresetService:
    def __init__(
        self, presets: PresetsRepo, config: PresetConfig, *, clock: Clock = utc_now
    ) -> None:
        self._presets = presets
        self._config = config
        self._clock = clock

    @property
    def config(self) -> PresetConfig:
        return self._config

    async def list(self, user_id: int) -> list[Document]:
        return await self._presets.list(user_id)

    async def get(self, user_id: int, preset_id: str) -> Document | None:
        oid = parse_id(preset_id)
        return await self._presets.get(user_id, oid) if oid else None

    async def full(self, user_id: int) -> bool:
        return await self._presets.count(user_id) >= self._config.max_per_user

    def parse_weight(self, raw: str) -> int:
        """Whole ounces, or ``FieldError("weight")`` (as at the order's weight step)."""
        return parse_weight(
            raw, min_oz=self._config.min_weight_oz, max_oz=self._config.max_weight_oz
        )

    def parse_dimensions(self, raw: str) -> dict[str, str]:
        """The three sides in inches, or ``FieldError("dimensions")`` (as in an order)."""
        length, width, height = parse_dimensions(raw, max_side=self._config.max_side_in)
        return {"length_in": str(length), "width_in": str(width), "height_in": str(height)}

    async def check_name(self, user_id: int, name: str) -> str:
        """The cleaned name, or ``FieldError("preset", …)``: invalid or already used."""
        name = addresses.validate_template_name(name)
        key = name.strip().casefold()
        if any(p.get("name_key") == key for p in await self._presets.list(user_id)):
            raise FieldError("preset", "duplicate")
        return name

    async def create(self, user_id: int, name: str, weight: str, dimensions: str) -> Document:
        """Saves a preset from the texts the customer typed. Raises ``FieldError``: the
        weight or size is invalid (``weight``/``dimensions``), the name is invalid or used
        (``preset``/``duplicate``), or the limit is reached (``preset``/``limit``)."""
        parcel: dict[str, Any] = {"weight_oz": self.parse_weight(weight)}
        parcel.update(self.parse_dimensions(dimensions))
        return await self.save(user_id, name, parcel)

    async def save(self, user_id: int, name: str, parcel: dict[str, Any]) -> Document:
        """Saves an already parsed parcel (``weight_oz`` and the three sides)."""
        name = addresses.validate_template_name(name)
        if await self.full(user_id):
            raise FieldError("preset", "limit", limit=self._config.max_per_user)
        try:
            return await self._presets.create(
                user_id, name, preset_parcel({"parcel": parcel}), now=self._clock()
            )
        except DuplicatePresetName:
            raise FieldError("preset", "duplicate") from None

    async def rename(self, user_id: int, preset_id: str, name: str) -> Document | None:
        """None when the customer has no such preset; ``FieldError`` as in ``save``."""
        name = addresses.validate_template_name(name)
        oid = parse_id(preset_id)
        if oid is None:
            return None
        try:
            return await self._presets.rename(user_id, oid, name)
        except DuplicatePresetName:
            raise FieldError("preset", "duplicate") from None

    async def delete(self, user_id: int, preset_id: str) -> bool:
        oid = parse_id(preset_id)
        return await self._presets.delete(user_id, oid) if oid else False
