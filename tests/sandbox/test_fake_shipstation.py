"""The fake ShipStation on its own: wire format, determinism, PDF, control API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from sandbox.shipstation import FakeShipStation, quote_cents, zone_for

SANDBOX = "TEST_fake_shipstation_key"
LIVE = "live-production-key-000"

ADDRESS_FROM = {
    "name": "Sender",
    "phone": "5125550100",
    "address_line1": "100 Congress Ave",
    "city_locality": "Austin",
    "state_province": "TX",
    "postal_code": "78701",
    "country_code": "US",
    "address_residential_indicator": "no",
}
ADDRESS_TO = {
    "name": "Jane (Doe)",
    "phone": "2125550100",
    "address_line1": "1 Broadway",
    "city_locality": "New York",
    "state_province": "NY",
    "postal_code": "10004",
    "country_code": "US",
    "address_residential_indicator": "yes",
}


def rate_body(
    weight: dict[str, Any] | None = None, external_id: str | None = None, **shipment: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "rate_options": {"carrier_ids": ["se-1001001", "se-1001002"]},
        "shipment": {
            "ship_from": ADDRESS_FROM,
            "ship_to": ADDRESS_TO,
            "packages": [{"weight": weight or {"value": 20, "unit": "ounce"}}],
            **shipment,
        },
    }
    if external_id:
        body["shipment"]["external_shipment_id"] = external_id
    return body


@pytest.fixture
async def fake() -> AsyncIterator[FakeShipStation]:
    server = FakeShipStation(production_api_key=LIVE, instant=True)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    key: str | None = SANDBOX,
    body: Any = None,
    params: dict[str, str] | None = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    headers = {"API-Key": key} if key is not None else {}
    async with http.request(method, url, json=body, headers=headers, params=params) as response:
        raw = await response.read()
        data = await response.json(content_type=None) if raw else None
        return response.status, data, response


async def buy(http: aiohttp.ClientSession, fake: FakeShipStation, **kwargs: Any) -> dict[str, Any]:
    key = kwargs.pop("key", SANDBOX)
    _, quote, _ = await call(
        http, "POST", f"{fake.base_url}/v2/rates", key=key, body=rate_body(**kwargs)
    )
    cheapest = min(quote["rate_response"]["rates"], key=lambda r: r["shipping_amount"]["amount"])
    rate_id = cheapest["rate_id"]
    status, label, _ = await call(
        http, "POST", f"{fake.base_url}/v2/labels/rates/{rate_id}", key=key, body={}
    )
    assert status == 200, label
    return dict(label)


async def test_auth_modes(fake: FakeShipStation, http: aiohttp.ClientSession) -> None:
    url = f"{fake.base_url}/v2/carriers"
    status, data, _ = await call(http, "GET", url, key="wrong")
    assert status == 401
    assert data["request_id"] and data["errors"][0]["error_code"] == "unauthorized"
    assert (await call(http, "GET", url, key="TEST_"))[0] == 401
    assert (await call(http, "GET", url, key=None))[0] == 401
    assert (await call(http, "GET", url))[0] == 200
    status, data, _ = await call(http, "GET", url, key=LIVE)
    assert status == 200 and data["carriers"][0]["requires_funded_amount"] is True
    assert [c.mode for c in fake.calls] == [None, None, None, "sandbox", "production"]
    assert fake.call_count("list_carriers", mode="sandbox") == 1


async def test_rates_are_deterministic_by_weight_and_zone(
    fake: FakeShipStation, http: aiohttp.ClientSession
) -> None:
    url = f"{fake.base_url}/v2/rates"
    _, first, _ = await call(http, "POST", url, body=rate_body())
    _, second, _ = await call(http, "POST", url, body=rate_body())
    amounts = [
        [(r["service_code"], r["shipping_amount"]["amount"]) for r in q["rate_response"]["rates"]]
        for q in (first, second)
    ]
    assert amounts[0] == amounts[1]
    rates = first["rate_response"]["rates"]
    assert {r["service_code"] for r in rates} == {
        "usps_ground_advantage",
        "usps_priority_mail",
        "ups_ground",
        "ups_2nd_day_air",
    }
    assert zone_for("78701", "10004") == 7
    assert all(r["zone"] == 7 for r in rates)
    assert first["rate_response"]["status"] == "completed"
    _, heavier, _ = await call(
        http, "POST", url, body=rate_body(weight={"value": 3, "unit": "pound"})
    )
    by_code = {r["service_code"]: r for r in heavier["rate_response"]["rates"]}
    light = {r["service_code"]: r for r in rates}
    for code, rate in by_code.items():
        assert rate["shipping_amount"]["amount"] > light[code]["shipping_amount"]["amount"]
        assert rate["delivery_days"] == light[code]["delivery_days"]
    ga = next(r for r in rates if r["service_code"] == "usps_ground_advantage")
    assert ga["delivery_days"] == 5 and ga["carrier_code"] == "stamps_com"


def test_quote_formula_zone_and_weight() -> None:
    from sandbox.shipstation import _SERVICES

    ga = _SERVICES[0]
    assert quote_cents(ga, 16, 1) == (495, 0)
    assert quote_cents(ga, 17, 1) == (580, 0)  # rounds up to 2 lb
    assert quote_cents(ga, 16, 3) == (571, 0)
    ups = _SERVICES[2]
    shipping, other = quote_cents(ups, 16, 1)
    assert other == 129  # 12.5 % of 1035 cents, half up


async def test_rate_validation_errors(fake: FakeShipStation, http: aiohttp.ClientSession) -> None:
    url = f"{fake.base_url}/v2/rates"
    body = rate_body()
    body["rate_options"]["carrier_ids"] = []
    status, data, _ = await call(http, "POST", url, body=body)
    assert status == 400 and data["errors"][0]["field_name"] == "rate_options.carrier_ids"
    body = rate_body()
    body["shipment"]["ship_to"] = {**ADDRESS_TO, "postal_code": ""}
    status, data, _ = await call(http, "POST", url, body=body)
    assert data["errors"][0]["field_name"] == "shipment.ship_to.postal_code"
    status, data, _ = await call(http, "POST", url, body=rate_body(weight={"value": 0}))
    assert status == 400
    body = rate_body()
    body["shipment"]["ship_to"] = {**ADDRESS_TO, "postal_code": "1000"}
    status, data, _ = await call(http, "POST", url, body=body)
    assert status == 200
    assert data["rate_response"]["status"] == "error"
    assert data["rate_response"]["errors"][0]["error_code"] == "invalid_address"


async def test_label_pdf_is_valid(fake: FakeShipStation, http: aiohttp.ClientSession) -> None:
    label = await buy(http, fake)
    assert re.fullmatch(r"9400\d{18}", label["tracking_number"])
    url = label["label_download"]["pdf"]
    async with http.get(url) as response:  # no key needed: a public download URL
        assert response.status == 200
        assert response.content_type == "application/pdf"
        pdf = await response.read()
    assert pdf.startswith(b"%PDF-1.4")
    assert label["tracking_number"].encode() in pdf
    assert b"Jane \\(Doe\\)" in pdf  # parentheses escaped in the content stream
    # every xref offset points at its object
    xref_at = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert pdf[xref_at:].startswith(b"xref\n")
    entries = pdf[xref_at:].split(b"\n")[2:8]
    for number, entry in enumerate(entries[1:], start=1):
        offset = int(entry[:10])
        assert pdf[offset:].startswith(f"{number} 0 obj".encode())


async def test_tracking_numbers_unique_and_realistic(
    fake: FakeShipStation, http: aiohttp.ClientSession
) -> None:
    numbers = set()
    for _ in range(5):
        _, quote, _ = await call(http, "POST", f"{fake.base_url}/v2/rates", body=rate_body())
        for rate in quote["rate_response"]["rates"]:
            _, label, _ = await call(
                http, "POST", f"{fake.base_url}/v2/labels/rates/{rate['rate_id']}", body={}
            )
            numbers.add(label["tracking_number"])
            if label["carrier_code"] == "ups":
                assert re.fullmatch(r"1Z[0-9A-Z]{16}", label["tracking_number"])
    assert len(numbers) == 20


async def test_labels_remember_external_id_and_lookups(
    fake: FakeShipStation, http: aiohttp.ClientSession
) -> None:
    label = await buy(http, fake, external_id="order-1")
    assert label["external_shipment_id"] == "order-1"
    base = fake.base_url
    _, shipment, _ = await call(http, "GET", f"{base}/v2/shipments/external_shipment_id/order-1")
    assert shipment["shipment_id"] == label["shipment_id"]
    assert shipment["shipment_status"] == "label_purchased"
    _, listed, _ = await call(
        http, "GET", f"{base}/v2/labels", params={"shipment_id": label["shipment_id"]}
    )
    assert [lb["label_id"] for lb in listed["labels"]] == [label["label_id"]]
    _, by_ext, _ = await call(http, "GET", f"{base}/v2/labels/external_shipment_id/order-1")
    assert by_ext["label_id"] == label["label_id"]
    status, body, _ = await call(http, "GET", f"{base}/v2/labels/se-1")
    assert status == 404 and body is None  # empty body
    status, body, _ = await call(http, "GET", f"{base}/v2/shipments/external_shipment_id/nope")
    assert status == 404 and body["errors"][0]["error_code"] == "invalid_identifier"
    # production keys do not see sandbox data
    status, _, _ = await call(http, "GET", f"{base}/v2/labels/{label['label_id']}", key=LIVE)
    assert status == 404


async def test_void_rules(fake: FakeShipStation, http: aiohttp.ClientSession) -> None:
    base = fake.base_url
    label = await buy(http, fake)
    void_url = f"{base}/v2/labels/{label['label_id']}/void"
    _, result, _ = await call(http, "PUT", void_url)
    assert result["approved"] is True and "reason_code" not in result
    _, result, _ = await call(http, "PUT", void_url)
    assert result == {
        "approved": False,
        "message": "This label has already been voided.",
        "reason_code": "label_already_voided",
    }
    old = await buy(http, fake)
    fake.age_label(old["label_id"], 31)
    _, result, _ = await call(http, "PUT", f"{base}/v2/labels/{old['label_id']}/void")
    assert result["reason_code"] == "label_not_found_within_void_period"
    broken = await buy(http, fake)
    fake.set_void_outcome("error", broken["label_id"])
    status, result, _ = await call(http, "PUT", f"{base}/v2/labels/{broken['label_id']}/void")
    assert status == 500 and result["errors"][0]["error_type"] == "system"
    fake.set_void_outcome("approved")
    fake.age_label(old["label_id"], 400)
    _, result, _ = await call(http, "PUT", f"{base}/v2/labels/{old['label_id']}/void")
    assert result["approved"] is True  # a global "approved" ignores the window
    with pytest.raises(ValueError):
        fake.set_void_outcome("maybe")


async def test_failure_injection(fake: FakeShipStation, http: aiohttp.ClientSession) -> None:
    url = f"{fake.base_url}/v2/carriers"
    fake.inject_failure("list_carriers", "429", retry_after=4)
    status, data, response = await call(http, "GET", url)
    assert status == 429 and response.headers["Retry-After"] == "4"
    assert data["errors"][0]["error_code"] == "rate_limit_exceeded"
    fake.inject_failure("list_carriers", "empty_500")
    status, data, _ = await call(http, "GET", url)
    assert status == 500 and data is None
    fake.inject_failure("*", "error_500", times=2)
    assert (await call(http, "GET", url))[0] == 500
    assert (await call(http, "GET", url))[0] == 500
    assert (await call(http, "GET", url))[0] == 200
    fake.inject_failure("get_rates", "invalid_address")
    status, data, _ = await call(http, "POST", f"{fake.base_url}/v2/rates", body=rate_body())
    assert status == 400 and data["errors"][0]["error_code"] == "invalid_address"
    fake.inject_failure("list_carriers", "slow", delay=0.3)
    with pytest.raises(TimeoutError):
        async with http.get(
            url, headers={"API-Key": SANDBOX}, timeout=aiohttp.ClientTimeout(total=0.1)
        ):
            pass
    with pytest.raises(ValueError):
        fake.inject_failure("list_carriers", "meteor")
    with pytest.raises(ValueError):
        fake.inject_failure("teleport", "error_500")


async def test_http_control_api(fake: FakeShipStation, http: aiohttp.ClientSession) -> None:
    base = f"{fake.base_url}/_control"
    label = await buy(http, fake, external_id="ext-1")
    label_id = label["label_id"]
    async with http.post(f"{base}/labels/{label_id}/created_at", json={"age_days": 40}) as r:
        assert r.status == 200
    assert datetime.now(UTC) - fake.labels[label_id].created_at > timedelta(days=39)
    when = "2025-01-02T03:04:05+00:00"
    async with http.post(f"{base}/labels/{label_id}/created_at", json={"created_at": when}) as r:
        assert (await r.json())["created_at"] == "2025-01-02T03:04:05Z"
    async with http.post(f"{base}/labels/se-0/created_at", json={"age_days": 1}) as r:
        assert r.status == 404
    async with http.post(f"{base}/void_outcome", json={"outcome": "label_already_used"}) as r:
        assert r.status == 200
    _, result, _ = await call(http, "PUT", f"{fake.base_url}/v2/labels/{label_id}/void")
    assert result["reason_code"] == "label_already_used"
    async with http.post(f"{base}/labels/{label_id}/tracking", json={"status_code": "IT"}) as r:
        assert r.status == 200
    _, track, _ = await call(http, "GET", f"{fake.base_url}/v2/labels/{label_id}/track")
    assert track["status_code"] == "IT" and len(track["events"]) == 2
    async with http.post(
        f"{base}/failures", json={"operation": "list_carriers", "kind": "error_500", "times": 1}
    ) as r:
        assert r.status == 200
    assert (await call(http, "GET", f"{fake.base_url}/v2/carriers"))[0] == 500
    async with http.post(f"{base}/failures", json={"operation": "x", "kind": "error_500"}) as r:
        assert r.status == 400
    async with http.get(f"{base}/calls") as r:
        calls = await r.json()
    assert calls["counts"]["create_label"] == 1 and calls["counts"]["list_carriers"] == 1
    assert {c["mode"] for c in calls["calls"]} == {"sandbox"}
    async with http.get(f"{base}/labels") as r:
        labels = (await r.json())["labels"]
    assert labels[0]["external_shipment_id"] == "ext-1"
    async with http.post(f"{base}/latency", json={"instant": False, "latency_seconds": 0.01}) as r:
        assert (await r.json()) == {"instant": False, "latency_seconds": 0.01}
    async with http.post(f"{base}/balance", json={"cents": 50}) as r:
        assert (await r.json()) == {"cents": 50}
    async with http.post(f"{base}/reset") as r:
        assert r.status == 200
    assert fake.labels == {} and fake.calls == []


async def test_production_balance(fake: FakeShipStation, http: aiohttp.ClientSession) -> None:
    fake.production_balance_cents = 100_00
    label = await buy(http, fake, key=LIVE)
    assert fake.production_balance_cents == 100_00 - fake.labels[label["label_id"]].cost_cents
    fake.production_balance_cents = 1
    _, quote, _ = await call(http, "POST", f"{fake.base_url}/v2/rates", key=LIVE, body=rate_body())
    rate_id = quote["rate_response"]["rates"][0]["rate_id"]
    status, data, _ = await call(
        http, "POST", f"{fake.base_url}/v2/labels/rates/{rate_id}", key=LIVE, body={}
    )
    assert status == 400 and data["errors"][0]["error_code"] == "insufficient_funds"
    # a sandbox key cannot buy from a production quote
    status, data, _ = await call(http, "POST", f"{fake.base_url}/v2/labels/rates/{rate_id}")
    assert status == 400 and data["errors"][0]["error_code"] == "invalid_identifier"


async def test_restart_after_stop() -> None:
    fake = FakeShipStation(instant=True)
    first = await fake.start()
    await fake.stop()
    second = await fake.start()
    try:
        async with aiohttp.ClientSession() as http:
            status, _, _ = await call(http, "GET", f"{second}/v2/carriers")
            assert status == 200
    finally:
        await fake.stop()
    assert first.startswith("http://127.0.0.1:")


def _assert_error_shape(data: Any) -> dict[str, Any]:
    """ShipStation's 4xx envelope: request_id plus a list of typed errors."""
    assert isinstance(data["request_id"], str) and data["request_id"]
    [error] = data["errors"]
    assert set(error) >= {"error_source", "error_type", "error_code", "message"}
    assert error["error_source"] in {"carrier", "order_source", "ShipStation"}
    return dict(error)


async def test_external_shipment_id_is_unique_per_account(
    fake: FakeShipStation, http: aiohttp.ClientSession
) -> None:
    url = f"{fake.base_url}/v2/rates"
    status, first, _ = await call(http, "POST", url, body=rate_body(external_id="order-7"))
    assert status == 200 and first["external_shipment_id"] == "order-7"
    status, data, _ = await call(http, "POST", url, body=rate_body(external_id="order-7"))
    assert status == 400
    error = _assert_error_shape(data)
    assert error["error_code"] == "identifier_conflict"
    assert error["field_name"] == "shipment.external_shipment_id"
    assert len(fake.labels) == 0 and fake.call_count("get_rates") == 2
    # The refused request created nothing: the id still names the first shipment.
    _, shipment, _ = await call(
        http, "GET", f"{fake.base_url}/v2/shipments/external_shipment_id/order-7"
    )
    assert shipment["shipment_id"] == first["shipment_id"]
    # Another account (the production key) has its own ids; no id at all is never a clash.
    production = await call(http, "POST", url, key=LIVE, body=rate_body(external_id="order-7"))
    assert production[0] == 200
    assert (await call(http, "POST", url, body=rate_body()))[0] == 200
    assert (await call(http, "POST", url, body=rate_body()))[0] == 200


async def test_external_shipment_id_is_cut_to_50_characters(
    fake: FakeShipStation, http: aiohttp.ClientSession
) -> None:
    url = f"{fake.base_url}/v2/rates"
    long_id = "x" * 50 + "-first"
    _, data, _ = await call(http, "POST", url, body=rate_body(external_id=long_id))
    assert data["external_shipment_id"] == "x" * 50  # "additional characters are truncated"
    status, data, _ = await call(http, "POST", url, body=rate_body(external_id="x" * 50 + "-2"))
    assert status == 400 and _assert_error_shape(data)["error_code"] == "identifier_conflict"


@pytest.mark.parametrize("phone", ["", None, 5125550100])
@pytest.mark.parametrize("side", ["ship_from", "ship_to"])
async def test_phone_is_a_required_non_empty_string(
    fake: FakeShipStation, http: aiohttp.ClientSession, side: str, phone: Any
) -> None:
    body = rate_body()
    address = dict(ADDRESS_FROM if side == "ship_from" else ADDRESS_TO)
    if phone is None:
        del address["phone"]
    else:
        address["phone"] = phone
    body["shipment"][side] = address
    status, data, _ = await call(http, "POST", f"{fake.base_url}/v2/rates", body=body)
    assert status == 400
    error = _assert_error_shape(data)
    assert error["field_name"] == f"shipment.{side}.phone"
    assert error["error_type"] == "validation"


async def test_tracking_events_follow_the_v2_schema(
    fake: FakeShipStation, http: aiohttp.ClientSession
) -> None:
    label = await buy(http, fake)
    fake.set_tracking_status(label["label_id"], "DE")
    _, track, _ = await call(http, "GET", f"{fake.base_url}/v2/labels/{label['label_id']}/track")
    required = {
        "occurred_at",
        "city_locality",
        "state_province",
        "postal_code",
        "carrier_detail_code",
        "status_code",
        "status_description",
        "carrier_status_code",
        "carrier_status_description",
    }
    assert len(track["events"]) == 2
    for event in track["events"]:
        assert "description" not in event
        assert set(event) >= required | {"event_code"}
        assert event["status_description"] and event["carrier_status_code"]
    latest = track["events"][0]
    assert latest["status_description"] == "Delivered"
    assert latest["city_locality"] == ADDRESS_TO["city_locality"]


async def test_labels_are_listed_by_rate_id(
    fake: FakeShipStation, http: aiohttp.ClientSession
) -> None:
    _, quote, _ = await call(http, "POST", f"{fake.base_url}/v2/rates", body=rate_body())
    first, second = quote["rate_response"]["rates"][:2]
    _, label, _ = await call(
        http, "POST", f"{fake.base_url}/v2/labels/rates/{first['rate_id']}", body={}
    )
    await buy(http, fake)  # another shipment's label
    url = f"{fake.base_url}/v2/labels"
    _, listed, _ = await call(http, "GET", url, params={"rate_id": first["rate_id"]})
    assert [lb["label_id"] for lb in listed["labels"]] == [label["label_id"]]
    _, listed, _ = await call(http, "GET", url, params={"rate_id": second["rate_id"]})
    assert listed["labels"] == [] and listed["total"] == 0
    _, listed, _ = await call(
        http, "GET", url, params={"rate_id": first["rate_id"]}, key=LIVE
    )
    assert listed["labels"] == []  # another account sees nothing


async def test_tracking_advances_through_the_parcel_life_by_control(
    fake: FakeShipStation, http: aiohttp.ClientSession
) -> None:
    label = await buy(http, fake)
    url = f"{fake.base_url}/v2/labels/{label['label_id']}/track"
    _, fresh, _ = await call(http, "GET", url)
    # A label never scanned: not yet in system, no events.
    assert (fresh["status_code"], fresh["events"]) == ("NY", [])
    control = f"{fake.base_url}/_control/labels/{label['label_id']}/tracking"
    for step in ("accepted", "in_transit", "out_for_delivery", "delivered"):
        async with http.post(control, json={"step": step}) as response:
            assert response.status == 200
    _, track, _ = await call(http, "GET", url)
    codes = [(e["status_code"], e["status_detail_code"]) for e in reversed(track["events"])]
    assert codes == [
        ("AC", "CARRIER_ACCEPTED"),
        ("IT", "IN_TRANSIT"),
        ("IT", "OUT_FOR_DELIVERY"),
        ("DE", "DELIVERED"),
    ]
    assert track["status_code"] == "DE" and track["actual_delivery_date"] is not None
    assert all("description" not in e for e in track["events"])
    async with http.post(control, json={"step": "teleported"}) as response:
        assert response.status == 400
    _, got, _ = await call(http, "GET", f"{fake.base_url}/v2/labels/{label['label_id']}")
    assert got["tracking_status"] == "delivered"
# -- address validation (POST /v2/addresses/validate) ----------------------------------

TO_VALIDATE = {
    "name": "Jane Doe",
    "phone": "2125550100",
    "address_line1": "123 Main Street",
    "city_locality": "springfield",
    "state_province": "IL",
    "postal_code": "62704",
    "country_code": "US",
    "address_residential_indicator": "unknown",
}


async def test_validate_corrects_zip_suffix_and_city(
    fake: FakeShipStation, http: aiohttp.ClientSession
) -> None:
    url = f"{fake.base_url}/v2/addresses/validate"
    status, data, _ = await call(http, "POST", url, body=[TO_VALIDATE])
    assert status == 200 and isinstance(data, list) and len(data) == 1
    [result] = data
    assert result["status"] == "verified"
    assert result["original_address"]["address_line1"] == "123 Main Street"
    matched = result["matched_address"]
    assert matched["address_line1"] == "123 Main St"
    assert matched["city_locality"] == "SPRINGFIELD"
    assert re.fullmatch(r"62704-\d{4}", matched["postal_code"])
    assert matched["address_residential_indicator"] == "yes"
    assert {m["type"] for m in result["messages"]} <= {"info", "warning", "error"}
    assert all(set(m) == {"code", "message", "type", "detail_code"} for m in result["messages"])
    # Deterministic: the same address gets the same +4; a suite makes it commercial.
    _, again, _ = await call(
        http, "POST", url, body=[TO_VALIDATE, {**TO_VALIDATE, "address_line2": "Suite 200"}]
    )
    assert again[0]["matched_address"] == matched
    assert again[1]["matched_address"]["address_residential_indicator"] == "no"


async def test_validate_unknown_street_and_bad_zip_are_errors(
    fake: FakeShipStation, http: aiohttp.ClientSession
) -> None:
    url = f"{fake.base_url}/v2/addresses/validate"
    body = [
        {**TO_VALIDATE, "address_line1": "Unknown Road"},
        {**TO_VALIDATE, "postal_code": "627"},
        {**TO_VALIDATE, "country_code": "CA"},
    ]
    status, data, _ = await call(http, "POST", url, body=body)
    assert status == 200
    assert [r["status"] for r in data] == ["error", "error", "unverified"]
    assert data[0]["matched_address"] is None
    assert data[0]["messages"][0]["detail_code"] == "address_not_found"
    assert data[0]["messages"][0]["type"] == "error"
    assert data[1]["messages"][0]["detail_code"] == "invalid_postal_code"


async def test_validate_rejects_what_shipstation_rejects(
    fake: FakeShipStation, http: aiohttp.ClientSession
) -> None:
    url = f"{fake.base_url}/v2/addresses/validate"
    status, data, _ = await call(http, "POST", url, body=TO_VALIDATE)  # not an array
    assert status == 400 and data["errors"][0]["error_code"] == "invalid_field_value"
    status, data, _ = await call(http, "POST", url, body=[])
    assert status == 400
    status, data, _ = await call(http, "POST", url, body=[TO_VALIDATE] * 251)
    assert status == 400 and "250" in data["errors"][0]["message"]
    status, data, _ = await call(http, "POST", url, body=[TO_VALIDATE] * 250)
    assert status == 200 and len(data) == 250
    missing = {k: v for k, v in TO_VALIDATE.items() if k != "address_line1"}
    status, data, _ = await call(http, "POST", url, body=[TO_VALIDATE, missing])
    assert status == 400
    assert data["errors"][0]["error_code"] == "field_value_required"
    assert data["errors"][0]["field_name"] == "[1].address_line1"
    assert set(data) == {"request_id", "errors"}
    bad = {**TO_VALIDATE, "address_residential_indicator": "maybe"}
    status, _, _ = await call(http, "POST", url, body=[bad])
    assert status == 400
    status, _, _ = await call(http, "POST", url, key=None, body=[TO_VALIDATE])
    assert status == 401


async def test_validate_address_option_is_checked_and_recorded(
    fake: FakeShipStation, http: aiohttp.ClientSession
) -> None:
    url = f"{fake.base_url}/v2/rates"
    status, _, _ = await call(http, "POST", url, body=rate_body(validate_address="clean_it"))
    assert status == 400
    status, quote, _ = await call(
        http, "POST", url, body=rate_body(validate_address="validate_and_clean")
    )
    assert status == 200
    assert fake.shipments()[-1]["validate_address"] == "validate_and_clean"
    rate_id = quote["rate_response"]["rates"][0]["rate_id"]
    label_url = f"{fake.base_url}/v2/labels/rates/{rate_id}"
    status, _, _ = await call(http, "POST", label_url, body={"validate_address": "yes"})
    assert status == 400
    status, label, _ = await call(
        http, "POST", label_url, body={"validate_address": "validate_and_clean"}
    )
    assert status == 200
    assert fake.labels[label["label_id"]].validate_address == "validate_and_clean"


def _amount(money: dict[str, Any]) -> int:
    return int(Decimal(str(money["amount"])) * 100)


async def test_insurance_and_confirmation_are_priced_and_charged(
    fake: FakeShipStation, http: aiohttp.ClientSession
) -> None:
    """The v2 options: `insurance_provider` on the shipment, `insured_value` on each
    package, `confirmation`; the rate splits the amounts, the label charges them."""
    url = f"{fake.base_url}/v2/rates"
    _, plain, _ = await call(http, "POST", url, body=rate_body())
    body = rate_body(insurance_provider="carrier", confirmation="signature")
    body["shipment"]["packages"][0]["insured_value"] = {"currency": "usd", "amount": 250}
    status, quote, _ = await call(http, "POST", url, body=body)
    assert status == 200
    base = {r["service_code"]: r for r in plain["rate_response"]["rates"]}
    rates = {r["service_code"]: r for r in quote["rate_response"]["rates"]}
    usps = rates["usps_ground_advantage"]
    assert _amount(usps["insurance_amount"]) == 3 * 165  # three started $100
    assert _amount(usps["confirmation_amount"]) == 445
    assert usps["shipping_amount"] == base["usps_ground_advantage"]["shipping_amount"]
    assert _amount(rates["ups_ground"]["insurance_amount"]) == 3 * 135
    assert quote["confirmation"] == "signature" and quote["insurance_provider"] == "carrier"
    status, label, _ = await call(
        http, "POST", f"{fake.base_url}/v2/labels/rates/{usps['rate_id']}", body={}
    )
    assert status == 200
    assert _amount(label["insurance_cost"]) == 3 * 165
    assert _amount(label["shipment_cost"]) == _amount(usps["shipping_amount"]) + 445
    [shipment] = [s for s in fake.shipments() if s["shipment_id"] == quote["shipment_id"]]
    assert shipment["insured_value_cents"] == 25_000 and shipment["confirmation"] == "signature"


async def test_unsupported_confirmation_is_an_invalid_rate(
    fake: FakeShipStation, http: aiohttp.ClientSession
) -> None:
    url = f"{fake.base_url}/v2/rates"
    _, quote, _ = await call(http, "POST", url, body=rate_body(confirmation="adult_signature"))
    valid = {r["service_code"] for r in quote["rate_response"]["rates"]}
    invalid = quote["rate_response"]["invalid_rates"]
    assert "usps_ground_advantage" not in valid and "usps_priority_mail" in valid
    [ground] = [r for r in invalid if r["service_code"] == "usps_ground_advantage"]
    assert ground["validation_status"] == "invalid"
    assert "adult_signature" in ground["error_messages"][0]
    # Only the asked service: rate_options.service_codes.
    body = rate_body(confirmation="adult_signature")
    body["rate_options"]["service_codes"] = ["usps_ground_advantage"]
    _, only, _ = await call(http, "POST", url, body=body)
    assert only["rate_response"]["rates"] == []
    assert [r["service_code"] for r in only["rate_response"]["invalid_rates"]] == [
        "usps_ground_advantage"
    ]


async def test_bad_insurance_and_confirmation_values_are_refused(
    fake: FakeShipStation, http: aiohttp.ClientSession
) -> None:
    url = f"{fake.base_url}/v2/rates"
    status, data, _ = await call(http, "POST", url, body=rate_body(confirmation="sig"))
    assert status == 400 and _assert_error_shape(data)["field_name"] == "shipment.confirmation"
    status, data, _ = await call(http, "POST", url, body=rate_body(insurance_provider="acme"))
    assert status == 400
    assert _assert_error_shape(data)["field_name"] == "shipment.insurance_provider"
    for value in (
        {"currency": "usd", "amount": -5},
        {"currency": "eur", "amount": 5},
        {"currency": "usd", "amount": "abc"},
        {"currency": "usd", "amount": "1.005"},
    ):
        body = rate_body(insurance_provider="carrier")
        body["shipment"]["packages"][0]["insured_value"] = value
        status, data, _ = await call(http, "POST", url, body=body)
        assert status == 400, value
        assert _assert_error_shape(data)["error_code"] == "invalid_field_value"
    # Above what the carrier insures: that carrier's services are invalid, others rate.
    body = rate_body(insurance_provider="carrier")
    body["shipment"]["packages"][0]["insured_value"] = {"currency": "usd", "amount": 6000}
    _, quote, _ = await call(http, "POST", url, body=body)
    assert {r["carrier_code"] for r in quote["rate_response"]["rates"]} == {"ups"}
    # third_party: insured elsewhere, nothing added.
    body = rate_body(insurance_provider="third_party")
    body["shipment"]["packages"][0]["insured_value"] = {"currency": "usd", "amount": 200}
    _, quote, _ = await call(http, "POST", url, body=body)
    assert all(_amount(r["insurance_amount"]) == 0 for r in quote["rate_response"]["rates"])


async def _buy_with(
    http: aiohttp.ClientSession, fake: FakeShipStation, options: dict[str, Any]
) -> tuple[int, Any]:
    _, quote, _ = await call(http, "POST", f"{fake.base_url}/v2/rates", body=rate_body())
    rate_id = quote["rate_response"]["rates"][0]["rate_id"]
    status, data, _ = await call(
        http, "POST", f"{fake.base_url}/v2/labels/rates/{rate_id}", body=options
    )
    return status, data


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, str, bytes]:
    async with http.get(url) as response:
        return response.status, response.content_type, await response.read()


async def test_label_formats_png_and_zpl(
    fake: FakeShipStation, http: aiohttp.ClientSession
) -> None:
    status, label = await _buy_with(http, fake, {"label_format": "zpl", "label_layout": "4x6"})
    assert status == 200, label
    assert label["label_format"] == "zpl" and label["label_layout"] == "4x6"
    links = label["label_download"]
    assert links["href"] == links["zpl"] and links["zpl"].endswith(".zpl")
    status, kind, zpl = await _get(http, links["zpl"])
    assert status == 200
    text = zpl.decode("ascii").strip()
    assert text.startswith("^XA") and text.endswith("^XZ") and text.count("^XA") == 1
    assert label["tracking_number"] in text
    # a 4x6 label links the other formats too (as in the reference's example response)
    status, kind, png = await _get(http, links["png"])
    assert status == 200 and kind == "image/png"
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")
    status, kind, pdf = await _get(http, links["pdf"])
    assert status == 200 and pdf.startswith(b"%PDF-")


async def test_png_is_well_formed(fake: FakeShipStation, http: aiohttp.ClientSession) -> None:
    import struct
    import zlib

    status, label = await _buy_with(http, fake, {"label_format": "png"})
    assert status == 200 and label["label_layout"] == "4x6"
    status, _, png = await _get(http, label["label_download"]["href"])
    assert status == 200
    at, chunks = 8, []
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, data = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", png[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + data) & 0xFFFFFFFF == crc
        chunks.append((kind, data))
        at += 12 + length
    assert [kind for kind, _ in chunks][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height = struct.unpack(">II", chunks[0][1][:8])
    raw = zlib.decompress(b"".join(data for kind, data in chunks if kind == b"IDAT"))
    assert len(raw) == height * (width + 1)


async def test_letter_layout_is_pdf_only(
    fake: FakeShipStation, http: aiohttp.ClientSession
) -> None:
    status, label = await _buy_with(http, fake, {"label_format": "pdf", "label_layout": "letter"})
    assert status == 200 and label["label_layout"] == "letter"
    links = label["label_download"]
    assert links["png"] is None and links["zpl"] is None
    status, _, pdf = await _get(http, links["pdf"])
    assert status == 200 and b"/MediaBox [0 0 612 792]" in pdf
    # the other formats of a letter label do not exist
    assert (await _get(http, links["pdf"][: -len("pdf")] + "zpl"))[0] == 404


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"label_format": "zpl", "label_layout": "letter"}, "label_layout"),
        ({"label_format": "png", "label_layout": "letter"}, "label_layout"),
        ({"label_format": "gif"}, "label_format"),
        ({"label_format": "PDF"}, "label_format"),
        ({"label_layout": "a4"}, "label_layout"),
        ({"label_format": None}, "label_format"),
    ],
)
async def test_bad_label_options_rejected(
    fake: FakeShipStation, http: aiohttp.ClientSession, options: dict[str, Any], field: str
) -> None:
    status, data = await _buy_with(http, fake, options)
    assert status == 400
    assert data["request_id"]
    error = data["errors"][0]
    assert error["error_code"] == "invalid_field_value" and error["field_name"] == field
    assert error["error_source"] == "ShipStation" and error["error_type"] == "validation"
    assert fake.labels == {}
