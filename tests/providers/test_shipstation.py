"""ShipStationClient against the fake ShipStation over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from models.shipping import Address, Parcel
from providers.base import CircuitState
from providers.errors import (
    CircuitOpenError,
    ProviderAuthError,
    ProviderInsufficientFunds,
    ProviderInvalidAddress,
    ProviderRateLimited,
    ProviderRejected,
    ProviderResponseError,
    ProviderUnavailable,
)
from providers.shipping.shipstation import ShipStationClient
from sandbox.shipstation import _SERVICES, FakeShipStation, quote_cents, zone_for
from tests.providers.conftest import (
    PRODUCTION_KEY,
    SANDBOX_KEY,
    KeyBox,
    ManualClock,
    SleepRecorder,
    Transitions,
)

USPS = "se-1001001"
UPS = "se-1001002"

SHIP_FROM = Address(
    name="Sender Co",
    street1="100 Congress Ave",
    city="Austin",
    state="TX",
    postal_code="78701",
    phone="5125550100",
)
SHIP_TO = Address(
    name="Jane Doe",
    street1="1 Infinite Loop",
    street2="Apt 2",
    city="Cupertino",
    state="CA",
    postal_code="95014",
    phone="4085550100",
)
PARCEL = Parcel(weight_oz=34, length_in=Decimal("12.5"), width_in=Decimal(8), height_in=Decimal(4))


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def buy(
    ss: ShipStationClient, external_id: str | None = None, parcel: Parcel = PARCEL
) -> tuple[str, str]:
    rates = await ss.get_rates(
        SHIP_FROM, SHIP_TO, parcel, carrier_ids=[USPS, UPS], external_shipment_id=external_id
    )
    label = await ss.create_label_from_rate(rates[0].rate_id)
    return label.label_id, rates[0].rate_id


async def test_list_carriers(ss: ShipStationClient) -> None:
    carriers = await ss.list_carriers()
    assert [c.carrier_id for c in carriers] == [USPS, UPS]
    assert {s.service_code for s in carriers[0].services} == {
        "usps_ground_advantage",
        "usps_priority_mail",
    }


@pytest.mark.parametrize("side", ["from", "to"])
async def test_an_address_without_phone_is_never_sent(
    ss: ShipStationClient, fake_ss: FakeShipStation, side: str
) -> None:
    """ShipStation's address schema requires a non-empty phone: refuse before any call."""
    no_phone = dataclasses.replace(SHIP_FROM if side == "from" else SHIP_TO, phone="")
    ship_from, ship_to = (no_phone, SHIP_TO) if side == "from" else (SHIP_FROM, no_phone)
    with pytest.raises(ValueError, match="phone"):
        await ss.get_rates(ship_from, ship_to, PARCEL, carrier_ids=[USPS])
    assert fake_ss.call_count("get_rates") == 0


async def test_rates_sorted_and_exact_cents(ss: ShipStationClient) -> None:
    rates = await ss.get_rates(SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[UPS, USPS])
    assert len(rates) == 4
    amounts = [r.amount_cents for r in rates]
    assert amounts == sorted(amounts)
    zone = zone_for("78701", "95014")
    expected = {s.service_code: sum(quote_cents(s, 34, zone)) for s in _SERVICES}
    assert {r.service_code: r.amount_cents for r in rates} == expected
    ups_ground = next(r for r in rates if r.service_code == "ups_ground")
    shipping, other = quote_cents(
        next(s for s in _SERVICES if s.service_code == "ups_ground"), 34, zone
    )
    assert other > 0 and ups_ground.amount_cents == shipping + other  # shipping + other summed
    assert all(r.delivery_days and r.estimated_delivery_date for r in rates)
    assert all(r.shipment_id and r.carrier_name for r in rates)
    assert rates[0].service_name == "USPS Ground Advantage"


async def test_partial_rates_when_one_carrier_is_unknown(ss: ShipStationClient) -> None:
    rates = await ss.get_rates(SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS, "se-999"])
    assert {r.carrier_id for r in rates} == {USPS}


async def test_rate_errors_in_2xx_become_typed_errors(ss: ShipStationClient) -> None:
    bad_zip = Address(
        name="X",
        street1="1 Road",
        city="Nowhere",
        state="TX",
        postal_code="ABCDE",
        phone="5125550199",
    )
    with pytest.raises(ProviderInvalidAddress) as excinfo:
        await ss.get_rates(SHIP_FROM, bad_zip, PARCEL, carrier_ids=[USPS])
    assert excinfo.value.status == 200
    with pytest.raises(ProviderRejected) as excinfo2:
        await ss.get_rates(SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=["se-999"])
    assert excinfo2.value.code == "carrier_not_connected"


async def test_label_purchase_and_pdf_download(
    ss: ShipStationClient, fake_ss: FakeShipStation
) -> None:
    rates = await ss.get_rates(SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS, UPS])
    label = await ss.create_label_from_rate(rates[0].rate_id)
    assert label.status == "completed"
    assert re.fullmatch(r"9400\d{18}", label.tracking_number)
    assert label.cost_cents == rates[0].amount_cents
    assert label.created_at is not None and label.created_at.tzinfo is not None
    assert label.pdf_url and label.pdf_url.startswith(fake_ss.base_url)
    pdf = await ss.download_label_pdf(label.pdf_url)
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert label.tracking_number.encode() in pdf
    again = await ss.get_label(label.label_id)
    assert again == label


async def test_create_label_is_never_retried(
    ss: ShipStationClient, fake_ss: FakeShipStation, sleeps: SleepRecorder
) -> None:
    rates = await ss.get_rates(SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS])
    fake_ss.inject_failure("create_label", "error_500", times=5)
    with pytest.raises(ProviderUnavailable) as excinfo:
        await ss.create_label_from_rate(rates[0].rate_id)
    assert excinfo.value.outcome_unknown
    assert excinfo.value.status == 500
    assert fake_ss.call_count("create_label") == 1
    assert sleeps.delays == []


async def test_get_rates_retried_on_500_then_succeeds(
    ss: ShipStationClient, fake_ss: FakeShipStation, sleeps: SleepRecorder
) -> None:
    before = sample(
        "provider_retries_total", {"provider": "shipstation", "operation": "get_rates"}
    )
    fake_ss.inject_failure("get_rates", "error_500", times=1)
    fake_ss.inject_failure("get_rates", "empty_500", times=1)
    rates = await ss.get_rates(SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS])
    assert rates
    assert fake_ss.call_count("get_rates") == 3
    assert len(sleeps.delays) == 2
    after = sample("provider_retries_total", {"provider": "shipstation", "operation": "get_rates"})
    assert after - before == 2


async def test_retries_stop_at_max_attempts(
    ss: ShipStationClient, fake_ss: FakeShipStation
) -> None:
    fake_ss.inject_failure("list_carriers", "error_500", times=10)
    with pytest.raises(ProviderUnavailable):
        await ss.list_carriers()
    assert fake_ss.call_count("list_carriers") == 3


async def test_429_retry_after_is_a_minimum_wait_and_capped(
    make_ss: Callable[..., ShipStationClient], fake_ss: FakeShipStation, sleeps: SleepRecorder
) -> None:
    ss = make_ss(max_retry_after=30.0)
    fake_ss.inject_failure("list_carriers", "rate_limit", retry_after=7)
    await ss.list_carriers()
    fake_ss.inject_failure("list_carriers", "rate_limit", retry_after=500)
    await ss.list_carriers()
    assert sleeps.delays == [7.0, 30.0]
    assert fake_ss.call_count("list_carriers") == 4


async def test_timeout_is_provider_unavailable(
    make_ss: Callable[..., ShipStationClient], fake_ss: FakeShipStation
) -> None:
    ss = make_ss(timeout_total=0.2, max_attempts=1)
    label_id, _ = await buy(ss)
    fake_ss.inject_failure("get_label", "slow", delay=1.0)
    with pytest.raises(ProviderUnavailable) as excinfo:
        await ss.get_label(label_id)
    assert excinfo.value.reason == "timeout"
    assert not excinfo.value.outcome_unknown  # a GET has no side effect


async def test_circuit_opens_fails_fast_half_opens_and_closes(
    make_ss: Callable[..., ShipStationClient],
    fake_ss: FakeShipStation,
    mono: ManualClock,
    transitions: Transitions,
) -> None:
    ss = make_ss(max_attempts=1, failure_threshold=3, recovery_timeout=30.0)
    fake_ss.inject_failure("list_carriers", "error_500", times=3)
    for _ in range(3):
        with pytest.raises(ProviderUnavailable):
            await ss.list_carriers()
    assert ss.breaker.state is CircuitState.OPEN
    assert REGISTRY.get_sample_value("provider_circuit_state", {"provider": "shipstation"}) == 2
    before = sample(
        "provider_calls_total",
        {"provider": "shipstation", "operation": "list_carriers", "outcome": "circuit_open"},
    )
    with pytest.raises(CircuitOpenError):
        await ss.list_carriers()
    assert fake_ss.call_count("list_carriers") == 3  # no HTTP while open
    after = sample(
        "provider_calls_total",
        {"provider": "shipstation", "operation": "list_carriers", "outcome": "circuit_open"},
    )
    assert after - before == 1
    mono.advance(31)
    assert await ss.list_carriers()  # the half-open trial succeeds
    assert ss.breaker.state is CircuitState.CLOSED
    assert transitions.calls == [
        ("shipstation", CircuitState.CLOSED, CircuitState.OPEN),
        ("shipstation", CircuitState.OPEN, CircuitState.HALF_OPEN),
        ("shipstation", CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]


async def test_failed_trial_reopens_the_circuit(
    make_ss: Callable[..., ShipStationClient],
    fake_ss: FakeShipStation,
    mono: ManualClock,
    transitions: Transitions,
) -> None:
    ss = make_ss(max_attempts=1, failure_threshold=1, recovery_timeout=10.0)
    fake_ss.inject_failure("list_carriers", "rate_limit", times=2)  # 429 counts as a failure
    with pytest.raises(Exception):  # noqa: B017 - ProviderRateLimited
        await ss.list_carriers()
    mono.advance(11)
    with pytest.raises(Exception):  # noqa: B017
        await ss.list_carriers()
    assert ss.breaker.state is CircuitState.OPEN
    assert [new for _, _, new in transitions.calls] == [
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
        CircuitState.OPEN,
    ]


async def test_business_errors_do_not_open_the_circuit(
    make_ss: Callable[..., ShipStationClient], fake_ss: FakeShipStation
) -> None:
    ss = make_ss(failure_threshold=2)
    rates = await ss.get_rates(SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS])
    fake_ss.inject_failure("create_label", "insufficient_funds", times=4)
    for _ in range(4):
        with pytest.raises(ProviderInsufficientFunds) as excinfo:
            await ss.create_label_from_rate(rates[0].rate_id)
    assert excinfo.value.code == "insufficient_funds"
    assert excinfo.value.error_type == "account_status"
    assert ss.breaker.state is CircuitState.CLOSED


async def test_invalid_address_is_typed(ss: ShipStationClient, fake_ss: FakeShipStation) -> None:
    fake_ss.inject_failure("get_rates", "invalid_address")
    with pytest.raises(ProviderInvalidAddress) as excinfo:
        await ss.get_rates(SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS])
    assert excinfo.value.field == "ship_to.address_line1"
    assert fake_ss.call_count("get_rates") == 1  # a 4xx is not retried


async def test_production_balance_runs_out(
    ss: ShipStationClient, fake_ss: FakeShipStation, key_box: KeyBox
) -> None:
    key_box.key = PRODUCTION_KEY
    fake_ss.production_balance_cents = 100
    rates = await ss.get_rates(SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS])
    with pytest.raises(ProviderInsufficientFunds):
        await ss.create_label_from_rate(rates[0].rate_id)


async def test_crash_recovery_by_rate_id(ss: ShipStationClient, fake_ss: FakeShipStation) -> None:
    assert await ss.find_label_by_rate_id("se-404") is None
    quoted = await ss.get_rates(
        SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS], external_shipment_id="order-1-q1"
    )
    assert await ss.find_label_by_rate_id(quoted[0].rate_id) is None  # quoted, never bought

    rates = await ss.get_rates(
        SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS], external_shipment_id="order-42-q1"
    )
    # The purchase "times out" on our side but completes at ShipStation.
    fake_ss.inject_failure("create_label", "slow", delay=0.3)
    slow = ShipStationClient(fake_ss.base_url, lambda: SANDBOX_KEY, purchase_timeout=0.1)
    try:
        with pytest.raises(ProviderUnavailable) as excinfo:
            await slow.create_label_from_rate(rates[0].rate_id)
    finally:
        await slow.close()
    assert excinfo.value.outcome_unknown
    # A later quote of the same order (its own external id) must not hide the bought label.
    again = await ss.get_rates(
        SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS], external_shipment_id="order-42-q2"
    )
    for _ in range(50):
        if fake_ss.labels:
            break
        await asyncio.sleep(0.02)
    found = await ss.find_label_by_rate_id(rates[0].rate_id, shipment_id=rates[0].shipment_id)
    assert found is not None and found.label_id in fake_ss.labels
    assert found.external_shipment_id == "order-42-q1"
    assert await ss.find_label_by_rate_id(rates[0].rate_id, shipment_id="se-other") is None
    assert await ss.find_label_by_rate_id(again[0].rate_id) is None
    assert await ss.find_label_by_rate_id(rates[1].rate_id) is None  # another rate, same quote
    assert fake_ss.call_count("create_label") == 1


async def test_requote_with_the_same_external_id_is_refused(ss: ShipStationClient) -> None:
    """ShipStation keeps external_shipment_id unique per account: a second quote needs its
    own id (our OrderService gives every quote one)."""
    await ss.get_rates(SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS], external_shipment_id="o-1")
    with pytest.raises(ProviderRejected) as excinfo:
        await ss.get_rates(
            SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS], external_shipment_id="o-1"
        )
    assert excinfo.value.code == "identifier_conflict"
    assert excinfo.value.status == 400


async def test_a_retried_quote_sends_a_fresh_external_id(
    make_ss: Callable[..., ShipStationClient], fake_ss: FakeShipStation
) -> None:
    """The first attempt times out on our side but creates its shipment at ShipStation; the
    retry must not repeat that external id (it would be refused as a duplicate)."""

    async def wait_for_first_attempt(_delay: float) -> None:
        await fake_ss.wait_for_shipments(1)  # the first attempt was applied after all

    ss = make_ss(timeout_total=0.1, sleep=wait_for_first_attempt)
    fake_ss.inject_failure("get_rates", "slow", delay=0.3)
    rates = await ss.get_rates(
        SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS], external_shipment_id="order-9-q1"
    )
    assert rates
    ids = [sh["external_shipment_id"] for sh in fake_ss.shipments()]
    assert ids == ["order-9-q1", "order-9-q1-r2"]
    assert rates[0].shipment_id == fake_ss.shipments()[1]["shipment_id"]
    with pytest.raises(ValueError, match="external_shipment_id"):
        await ss.get_rates(
            SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS], external_shipment_id="x" * 48
        )


async def test_get_label_unknown_is_none(ss: ShipStationClient) -> None:
    assert await ss.get_label("se-404404") is None


async def test_void_outcomes(ss: ShipStationClient, fake_ss: FakeShipStation) -> None:
    first, _ = await buy(ss)
    result = await ss.void_label(first)
    assert result.approved and result.is_voided and result.reason_code is None
    again = await ss.void_label(first)
    assert not again.approved and again.reason_code == "label_already_voided"
    assert again.is_voided
    voided = await ss.get_label(first)
    assert voided is not None and voided.voided and voided.status == "voided"

    used, _ = await buy(ss)
    fake_ss.set_void_outcome("label_already_used", label_id=used)
    result = await ss.void_label(used)
    assert not result.approved and result.reason_code == "label_already_used"

    old, _ = await buy(ss)
    fake_ss.age_label(old, days=45)
    result = await ss.void_label(old)
    assert result.reason_code == "label_not_found_within_void_period"

    fake_ss.set_void_outcome("unknown")
    odd, _ = await buy(ss)
    assert (await ss.void_label(odd)).reason_code == "unknown"

    fake_ss.set_void_outcome("error")
    broken, _ = await buy(ss)
    with pytest.raises(ProviderUnavailable):
        await ss.void_label(broken)
    assert fake_ss.labels[broken].void_attempts == 3  # PUT is idempotent: retried


async def test_track(ss: ShipStationClient, fake_ss: FakeShipStation) -> None:
    label_id, _ = await buy(ss)
    fake_ss.set_tracking_status(label_id, "DE")
    info = await ss.track(label_id)
    assert info.status_code == "DE"
    assert info.actual_delivery_date is not None
    latest, created = info.events
    # v2 track events have no `description`: the words come from the status fields.
    assert (latest.status_code, latest.status_description) == ("DE", "Delivered")
    assert latest.carrier_status_description == "DELIVERED" and latest.event_code == "01"
    assert latest.text == "Delivered"
    assert (latest.city, latest.state, latest.postal_code) == ("Cupertino", "CA", "95014")
    assert latest.occurred_at is not None
    assert created.status_description == "Accepted" and created.city == "Austin"


async def test_wrong_key_is_auth_error_without_the_key(
    make_ss: Callable[..., ShipStationClient], fake_ss: FakeShipStation
) -> None:
    secret = "live_wrong_secret_key_value_1234"
    ss = ShipStationClient(fake_ss.base_url, lambda: secret)
    try:
        with pytest.raises(ProviderAuthError) as excinfo:
            await ss.list_carriers()
    finally:
        await ss.close()
    assert excinfo.value.status == 401
    assert secret not in str(excinfo.value)
    assert secret not in repr(excinfo.value)
    assert fake_ss.calls[-1].mode is None


async def test_api_mode_switch_and_isolation(
    ss: ShipStationClient, fake_ss: FakeShipStation, key_box: KeyBox
) -> None:
    sandbox_label, _ = await buy(ss)
    key_box.key = PRODUCTION_KEY
    prod_label, _ = await buy(ss)
    assert fake_ss.labels[sandbox_label].mode == "sandbox"
    assert fake_ss.labels[prod_label].mode == "production"
    assert await ss.get_label(sandbox_label) is None  # other mode's data is invisible
    assert fake_ss.call_count("create_label", mode="production") == 1
    assert fake_ss.call_count("create_label", mode="sandbox") == 1


async def test_metrics_count_success(ss: ShipStationClient) -> None:
    labels = {"provider": "shipstation", "operation": "list_carriers", "outcome": "success"}
    before = sample("provider_calls_total", labels)
    await ss.list_carriers()
    assert sample("provider_calls_total", labels) - before == 1
    count = REGISTRY.get_sample_value(
        "provider_call_latency_seconds_count",
        {"provider": "shipstation", "operation": "list_carriers"},
    )
    assert count and count >= 1


async def test_connection_refused_is_unavailable_not_unknown(
    make_ss: Callable[..., ShipStationClient],
) -> None:
    ss = ShipStationClient("http://127.0.0.1:9", lambda: SANDBOX_KEY, max_attempts=1)
    try:
        with pytest.raises(ProviderUnavailable) as excinfo:
            await ss.create_label_from_rate("se-1")
    finally:
        await ss.close()
    assert excinfo.value.reason == "connection"
    assert not excinfo.value.outcome_unknown


async def test_track_parses_the_detail_code(
    ss: ShipStationClient, fake_ss: FakeShipStation
) -> None:
    label_id, _ = await buy(ss)
    fresh = await ss.track(label_id)
    assert (fresh.status_code, fresh.events) == ("NY", ())  # not scanned yet
    fake_ss.advance_tracking(label_id, "accepted")
    fake_ss.advance_tracking(label_id, "out_for_delivery")
    info = await ss.track(label_id)
    assert (info.status_code, info.status_detail_code) == ("IT", "OUT_FOR_DELIVERY")
    latest, accepted = info.events
    assert latest.status_detail_code == "OUT_FOR_DELIVERY"
    assert (accepted.status_code, accepted.status_detail_code) == ("AC", "CARRIER_ACCEPTED")
# -- address validation ----------------------------------------------------------------

TYPED = Address(
    name="John Smith",
    street1="123 Main Street",
    city="springfield",
    state="IL",
    postal_code="62704",
)


async def test_validate_addresses_parses_matched_form(ss: ShipStationClient) -> None:
    bad = dataclasses.replace(TYPED, street1="Unknown Road")
    good, wrong = await ss.validate_addresses([TYPED, bad])  # no phone: not needed here
    assert good.status == "verified" and good.matched is not None
    assert good.matched.street1 == "123 Main St"
    assert good.matched.city == "SPRINGFIELD"
    assert re.fullmatch(r"62704-\d{4}", good.matched.postal_code)
    assert good.matched.residential is True
    assert good.matched.name == "John Smith"  # the customer's own parts are kept
    assert wrong.status == "error" and wrong.matched is None
    assert wrong.messages[0].detail_code == "address_not_found"
    with pytest.raises(ValueError):
        await ss.validate_addresses([])
    with pytest.raises(ValueError):
        await ss.validate_addresses([TYPED] * 251)


async def test_validate_addresses_is_retried_on_429_and_500(
    make_ss: Callable[..., ShipStationClient], fake_ss: FakeShipStation, sleeps: SleepRecorder
) -> None:
    ss = make_ss(validation_attempts=3)
    fake_ss.inject_failure("validate_addresses", "rate_limit", retry_after=2)
    fake_ss.inject_failure("validate_addresses", "error_500")
    [result] = await ss.validate_addresses([TYPED])
    assert result.status == "verified"
    assert fake_ss.call_count("validate_addresses") == 3
    assert 2 in [round(d) for d in sleeps.delays]


async def test_validate_addresses_never_waits_out_a_long_retry_after(
    make_ss: Callable[..., ShipStationClient], fake_ss: FakeShipStation, sleeps: SleepRecorder
) -> None:
    """A customer is waiting: a 429 asking for 30 s skips the check at once."""
    ss = make_ss(validation_attempts=3)
    fake_ss.inject_failure("validate_addresses", "rate_limit", retry_after=30)
    with pytest.raises(ProviderRateLimited):
        await ss.validate_addresses([TYPED])
    assert fake_ss.call_count("validate_addresses") == 1
    assert sleeps.delays == []


async def test_validate_addresses_gives_up_after_its_own_attempts(
    ss: ShipStationClient, fake_ss: FakeShipStation
) -> None:
    """A customer is waiting and the order goes on without the check: two attempts (the
    client's own max_attempts is 3), then the error."""
    fake_ss.inject_failure("validate_addresses", "error_500", times=5)
    with pytest.raises(ProviderUnavailable):
        await ss.validate_addresses([TYPED])
    assert fake_ss.call_count("validate_addresses") == 2


async def test_validate_addresses_slow_gives_up_within_its_timeout(
    make_ss: Callable[..., ShipStationClient], fake_ss: FakeShipStation
) -> None:
    ss = make_ss(validation_timeout=0.05, max_attempts=1)
    fake_ss.inject_failure("validate_addresses", "slow", delay=0.3)
    with pytest.raises(ProviderUnavailable):
        await ss.validate_addresses([TYPED])


async def test_rates_and_label_send_residential_and_validate_address(
    ss: ShipStationClient, fake_ss: FakeShipStation
) -> None:
    ship_to = dataclasses.replace(SHIP_TO, residential=True)
    rates = await ss.get_rates(
        SHIP_FROM, ship_to, PARCEL, carrier_ids=[USPS], validate_address="validate_and_clean"
    )
    [shipment] = fake_ss.shipments()
    assert shipment["ship_to"]["address_residential_indicator"] == "yes"
    assert shipment["ship_from"]["address_residential_indicator"] == "unknown"
    assert shipment["validate_address"] == "validate_and_clean"
    label = await ss.create_label_from_rate(
        rates[0].rate_id, validate_address="validate_and_clean"
    )
    assert fake_ss.labels[label.label_id].validate_address == "validate_and_clean"
    with pytest.raises(ValueError):
        await ss.create_label_from_rate(rates[0].rate_id, validate_address="clean")


async def test_insurance_and_confirmation_are_sent_and_split_in_the_rate(
    ss: ShipStationClient, fake_ss: FakeShipStation
) -> None:
    plain = {
        r.service_code: r
        for r in await ss.get_rates(SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS])
    }
    assert all(r.insurance_cents == r.confirmation_cents == 0 for r in plain.values())
    sent = fake_ss.shipments()[-1]  # nothing asked: nothing sent, the defaults apply
    assert sent["insurance_provider"] == "none" and sent["confirmation"] == "none"
    rates = await ss.get_rates(
        SHIP_FROM,
        SHIP_TO,
        PARCEL,
        carrier_ids=[USPS],
        insured_value_cents=25_000,
        confirmation="adult_signature",
    )
    shipment = fake_ss.shipments()[-1]
    assert shipment["insured_value_cents"] == 25_000
    assert shipment["insurance_provider"] == "carrier"
    assert shipment["confirmation"] == "adult_signature"
    # Ground Advantage has no adult signature: an invalid rate, left out.
    [priority] = rates
    assert priority.service_code == "usps_priority_mail"
    assert priority.insurance_cents == 3 * 165 and priority.confirmation_cents == 1025
    assert priority.amount_cents == plain["usps_priority_mail"].amount_cents + 3 * 165 + 1025
    label = await ss.create_label_from_rate(priority.rate_id)
    assert label.cost_cents == priority.amount_cents  # shipment_cost + insurance_cost
    # Only asked services, and a confirmation nobody offers: no rates, a typed error.
    with pytest.raises(ProviderRejected) as caught:
        await ss.get_rates(
            SHIP_FROM,
            SHIP_TO,
            PARCEL,
            carrier_ids=[USPS],
            service_codes=["usps_ground_advantage"],
            confirmation="adult_signature",
        )
    assert caught.value.code == "no_rates_returned"
    with pytest.raises(ValueError):
        await ss.get_rates(SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS], confirmation="sig")
    with pytest.raises(ValueError):
        await ss.get_rates(SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS], insured_value_cents=-1)


async def test_zpl_label_round_trip_with_the_fake(
    ss: ShipStationClient, fake_ss: FakeShipStation
) -> None:
    rates = await ss.get_rates(SHIP_FROM, SHIP_TO, PARCEL, carrier_ids=[USPS])
    label = await ss.create_label_from_rate(rates[0].rate_id, label_format="zpl")
    assert fake_ss.labels[label.label_id].label_format == "zpl"
    assert label.label_format == "zpl" and label.file_url and label.file_url.endswith(".zpl")
    assert {fmt for fmt, _ in label.downloads} == {"pdf", "png", "zpl"}
    zpl = await ss.download_label(label.file_url, "zpl")
    assert zpl.startswith(b"^XA") and zpl.rstrip().endswith(b"^XZ")
    with pytest.raises(ProviderResponseError):
        await ss.download_label(label.file_url, "pdf")  # a ZPL file is not a PDF
    letter = await ss.create_label_from_rate(rates[1].rate_id, label_layout="letter")
    assert dict(letter.downloads).keys() == {"pdf"}
    assert (await ss.download_label(str(letter.file_url), "pdf")).startswith(b"%PDF-")
