"""``POST /callbacks/oxapay``: signed payment callbacks from OxaPay.

Answers ``200 ok`` only after the outcome is stored (so OxaPay retries anything we could
not store), ``401`` for a missing or bad signature (logged as a security event), ``400``
for a malformed body, ``413``/``415`` for oversized or non-JSON requests.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.metrics import PAYMENT_CALLBACKS, PAYMENT_OUTCOMES
from providers.errors import InvalidCallback
from providers.payments.oxapay import parse_callback, verify_callback_signature
from services.payments import OXAPAY, Outcome, PaymentService

_LOGGER = logging.getLogger(__name__)
_SECURITY = logging.getLogger("security")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_oxapay_callback(
    payments: Callable[[], PaymentService],
    merchant_key: Callable[[], str | None],
    *,
    max_bytes: int,
) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.content_type != "application/json":
            PAYMENT_CALLBACKS.labels(result="bad_content_type").inc()
            return web.Response(status=415, text="expected application/json")
        if request.content_length is not None and request.content_length > max_bytes:
            PAYMENT_CALLBACKS.labels(result="too_large").inc()
            return web.Response(status=413, text="too large")
        body = await request.content.read(max_bytes + 1)
        if len(body) > max_bytes:
            PAYMENT_CALLBACKS.labels(result="too_large").inc()
            return web.Response(status=413, text="too large")
        key = merchant_key()
        if not key or not verify_callback_signature(body, request.headers.get("HMAC"), key):
            PAYMENT_CALLBACKS.labels(result="bad_signature").inc()
            _SECURITY.warning(
                "SECURITY: OxaPay callback with a missing or invalid HMAC signature "
                "from %s (%d bytes)",
                request.remote,
                len(body),
            )
            return web.Response(status=401, text="invalid signature")
        try:
            callback = parse_callback(body)
        except InvalidCallback:
            PAYMENT_CALLBACKS.labels(result="malformed").inc()
            return web.Response(status=400, text="malformed callback")
        if callback.type not in (None, "invoice"):
            PAYMENT_CALLBACKS.labels(result="ignored_type").inc()
            return web.Response(text="ok")
        outcome = await payments().on_oxapay_status(
            track_id=callback.track_id,
            status=callback.status,
            paid_amount_cents=callback.paid_amount_cents,
            source="callback",
        )
        PAYMENT_OUTCOMES.labels(provider=OXAPAY, source="callback", outcome=str(outcome)).inc()
        result = "duplicate" if outcome == Outcome.ALREADY_CREDITED else "ok"
        PAYMENT_CALLBACKS.labels(result=result).inc()
        return web.Response(text="ok")

    return handle
