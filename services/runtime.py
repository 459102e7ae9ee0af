"""Runtime flags (maintenance mode, carrier API mode) read with a short cache."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from services.clock import Clock, utc_now
from storage.runtime_settings import RuntimeSettingsRepo


@dataclass(frozen=True)
class Maintenance:
    enabled: bool
    message: str | None


class RuntimeFlags:
    """Every update checks maintenance mode; a 2-second cache keeps that off MongoDB."""

    def __init__(
        self,
        repo: RuntimeSettingsRepo,
        *,
        cache_seconds: float = 2.0,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        default_api_mode: str = "test",
    ) -> None:
        self._default_mode = default_api_mode
        self._mode: str | None = None
        self._mode_at = 0.0
        self._repo = repo
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._cached: Maintenance | None = None
        self._cached_at = 0.0

    async def maintenance(self) -> Maintenance:
        now = self._monotonic()
        if self._cached is None or now - self._cached_at > self._cache_seconds:
            doc = await self._repo.get()
            self._cached = Maintenance(
                enabled=bool(doc.get("maintenance_enabled", False)),
                message=doc.get("maintenance_message"),
            )
            self._cached_at = now
        return self._cached

    async def api_mode(self) -> str:
        """The carrier API mode (``test`` or ``production``), cached like maintenance."""
        now = self._monotonic()
        if self._mode is None or now - self._mode_at > self._cache_seconds:
            doc = await self._repo.get()
            self._mode = str(doc.get("carrier_api_mode") or self._default_mode)
            self._mode_at = now
        return self._mode

    async def set_api_mode(self, mode: str) -> str:
        before = await self._repo.set_fields({"carrier_api_mode": mode}, now=self._clock())
        self._mode = None
        return str(before.get("carrier_api_mode") or self._default_mode)

    async def get_counter(self, name: str) -> int:
        doc = await self._repo.get()
        return int(doc.get(name, 0) or 0)

    async def set_counter(self, name: str, value: int) -> None:
        await self._repo.set_fields({name: value}, now=self._clock())

    async def set_maintenance(self, enabled: bool, message: str | None) -> Maintenance:
        """Switches maintenance mode; returns the previous state."""
        before = await self._repo.set_fields(
            {"maintenance_enabled": enabled, "maintenance_message": message}, now=self._clock()
        )
        self._cached = None
        return Maintenance(
            enabled=bool(before.get("maintenance_enabled", False)),
            message=before.get("maintenance_message"),
        )
