"""Quoting translates the carrier's business errors into domain reasons."""

from __future__ import annotations

from providers.errors import ProviderInsufficientFunds, ProviderInvalidAddress
from services.orders import QuoteRefusal, QuoteRefused, RatesUnavailable


def test_provider_refusals_become_domain_reasons() -> None:
    invalid = QuoteRefused.from_provider(
        ProviderInvalidAddress("shipstation", "ZIP does not match", code="invalid_address")
    )
    assert isinstance(invalid, RatesUnavailable)  # every caller's "no rate" branch holds
    assert (invalid.reason, invalid.message) == (
        QuoteRefusal.INVALID_ADDRESS, "ZIP does not match"
    )
    other = QuoteRefused.from_provider(
        ProviderInsufficientFunds("shipstation", "no funds", code="insufficient_funds")
    )
    assert other.reason is QuoteRefusal.REJECTED
    assert RatesUnavailable().reason is QuoteRefusal.NO_RATES
    assert QuoteRefusal.INVALID_ADDRESS == "invalid_address"  # stored row errors unchanged
