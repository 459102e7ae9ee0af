"""Parcel presets (parsed as in an order, unique names, limit) and when a preset button
may fill the parcel (``OrderService.awaiting_parcel``)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.addresses import FieldError
from services.orders import CORRECTED, VERIFIED, OrderConfig, OrderService
from services.presets import PresetConfig, PresetService
from services.pricing import PricingRules
from storage.client import Mongo
from storage.indexes import IndexOptions, ensure_indexes
from storage.presets import PresetsRepo

ADDRESS = {
    "name": "Dana Scully",
    "street1": "500 W 5th Ave",
    "street2": None,
    "city": "New York",
    "state": "NY",
    "postal_code": "10001",
    "phone": "+12125550123",
}


async def _service(mongo: Mongo, limit: int = 3) -> PresetService:
    await ensure_indexes(mongo.db, IndexOptions(ttl_monitor=False))
    config = PresetConfig(
        max_per_user=limit, min_weight_oz=2, max_weight_oz=2400, max_side_in=Decimal(108)
    )
    return PresetService(PresetsRepo(mongo.db), config)


async def test_weight_and_size_are_parsed_as_in_an_order(mongo: Mongo) -> None:
    service = await _service(mongo)
    preset = await service.create(1, "Box", "2,5", "10 x 8 x 4 in")
    assert preset["parcel"] == {
        "weight_oz": 40, "length_in": "10", "width_in": "8", "height_in": "4"
    }
    for weight, dims, field, code in [
        ("abc", "10x8x4", "weight", "invalid_number"),
        ("0.01 lb", "10x8x4", "weight", "too_small"),
        ("200 lb", "10x8x4", "weight", "too_large"),
        ("2 lb", "10x8", "dimensions", "invalid_format"),
        ("2 lb", "200x8x4", "dimensions", "too_large"),
    ]:
        with pytest.raises(FieldError) as caught:
            await service.create(1, f"Bad {weight} {dims}", weight, dims)
        assert (caught.value.field, caught.value.code) == (field, code)
    assert [p["name"] for p in await service.list(1)] == ["Box"]


async def test_names_are_unique_per_customer_and_the_limit_holds(mongo: Mongo) -> None:
    service = await _service(mongo, limit=2)
    box = await service.create(1, "Box", "1 lb", "6x6x6")
    with pytest.raises(FieldError) as caught:
        await service.create(1, "  bOX ", "1 lb", "6x6x6")
    assert (caught.value.field, caught.value.code) == ("preset", "duplicate")
    await service.create(2, "Box", "1 lb", "6x6x6")  # another customer's name is free
    await service.create(1, "Tube", "1 lb", "36x4x4")
    with pytest.raises(FieldError) as caught:
        await service.create(1, "Third", "1 lb", "6x6x6")
    assert (caught.value.code, caught.value.params["limit"]) == ("limit", 2)
    with pytest.raises(FieldError):
        await service.rename(1, str(box["_id"]), "TUBE")
    assert await service.rename(2, str(box["_id"]), "Mine") is None  # not theirs
    assert not await service.delete(2, str(box["_id"]))
    assert await service.get(2, str(box["_id"])) is None
    assert await service.delete(1, str(box["_id"]))
    assert await service.get(1, "not-an-id") is None


def _orders(validate: bool) -> OrderService:
    config = OrderConfig(
        pricing=PricingRules(markup_percent=Decimal(0), markup_fixed_cents=0),
        rates_max_age=timedelta(minutes=15),
        session_ttl=timedelta(minutes=60),
        min_weight_oz=2,
        max_weight_oz=2400,
        max_side_in=Decimal(108),
        templates_per_user=20,
        validate_addresses=validate,
    )
    return OrderService(None, None, None, None, config)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "validate", "expected"),
    [
        ({}, False, True),
        ({"parcel": {"weight_oz": 32}}, False, False),  # the size is being asked
        ({"to_address": {**ADDRESS, "phone": None, "city": None}}, False, False),
        ({}, True, False),  # the addresses are not checked yet
        ({"from_validation": {"status": VERIFIED}, "to_validation": {"status": VERIFIED}},
         True, True),
        ({"from_validation": {"status": VERIFIED},
          "to_validation": {"status": CORRECTED, "decision": None}}, True, False),
        ({"from_validation": {"status": VERIFIED},
          "to_validation": {"status": CORRECTED, "decision": "kept"}}, True, True),
    ],
)
def test_a_preset_fills_only_the_weight_step(
    changes: dict[str, Any], validate: bool, expected: bool
) -> None:
    draft: dict[str, Any] = {"from_address": ADDRESS, "to_address": ADDRESS, "parcel": {}}
    draft.update(changes)
    assert _orders(validate).awaiting_parcel(draft) is expected
