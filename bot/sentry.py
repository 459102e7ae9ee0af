"""Optional error reporting to Sentry (``SENTRY_DSN`` + the ``sentry`` extra installed).

Nothing leaves the process unscrubbed: ``before_send`` and ``before_breadcrumb`` walk the
whole event (message, log entry, exception values, stack-frame variables, breadcrumbs,
request data, extra, contexts, tags) and replace

* every configured secret value (the same ``SecretRedactor`` as the logs), any Telegram
  bot token (``<digits>:<35 chars>``, also the one in Bot API URLs) and the values of keys
  named like credentials (``token``, ``api_key``, ``authorization``, ``hmac``, …);
* phone numbers: ``+`` followed by 8-15 digits (E.164, e.g. ``+15551234567``), and the US
  formats ``(555) 123-4567``, ``555-123-4567``, ``555.123.4567``, ``555 123 4567``, each
  with an optional ``+1``/``1`` prefix. A bare run of ten digits is left alone: Telegram
  user and chat ids look exactly like that and are needed to debug.

``send_default_pii`` stays off and request bodies are never attached.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from bot.logging import REDACTED, SecretRedactor, redactor

_LOGGER = logging.getLogger(__name__)

PHONE_REDACTED = "[PHONE]"
FILTERED = "[Filtered]"

_BOT_TOKEN = re.compile(r"(?<!\d)\d{5,12}:[A-Za-z0-9_-]{30,}")
_PHONE = re.compile(
    r"""
    (?<![\w+])\+[1-9]\d{7,14}(?!\w)                                   # E.164: +15551234567
    | (?<![\w+])(?:\+?1[\s.-]?)?\(\d{3}\)[\s.-]?\d{3}[\s.-]\d{4}(?!\w)    # (555) 123-4567
    | (?<![\w+])(?:\+?1[\s.-])?\d{3}([\s.-])\d{3}\1\d{4}(?!\w)          # 555-123-4567
    | (?<![\w+])\+1[\s.-]?\d{3}[\s.-]?\d{3}[\s.-]?\d{4}(?!\w)           # +1 555 1234567
    """,
    re.VERBOSE,
)
_SENSITIVE_KEY = re.compile(
    r"token|secret|password|passwd|api[_-]?key|apikey|authorization|cookie|hmac|dsn|"
    r"signature|credential|private[_-]?key|mongo[_-]?url",
    re.IGNORECASE,
)
_MAX_DEPTH = 20


class Scrubber:
    """Redacts secrets and phone numbers from any JSON-like structure."""

    def __init__(self, secrets: Iterable[str] = (), *, shared: SecretRedactor | None = None):
        self._own = SecretRedactor()
        self._own.set_secrets(secrets)
        self._shared = shared

    def text(self, value: str) -> str:
        value = self._own(value)
        if self._shared is not None:
            value = self._shared(value)
        value = _BOT_TOKEN.sub(REDACTED, value)
        return _PHONE.sub(PHONE_REDACTED, value)

    def value(self, value: Any, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                key: (
                    FILTERED
                    if isinstance(key, str) and _SENSITIVE_KEY.search(key) and item
                    else self.value(item, depth + 1)
                )
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(item, depth + 1) for item in value]
        return value

    def event(self, event: dict[str, Any], hint: Any = None) -> dict[str, Any]:
        """``before_send``: the scrubbed event (never drops it)."""
        scrubbed = self.value(event)
        assert isinstance(scrubbed, dict)
        return scrubbed

    def breadcrumb(self, crumb: dict[str, Any], hint: Any = None) -> dict[str, Any]:
        scrubbed = self.value(crumb)
        assert isinstance(scrubbed, dict)
        return scrubbed


def scrub_event(
    event: dict[str, Any], hint: Any = None, *, secrets: Iterable[str] = ()
) -> dict[str, Any]:
    """Scrubs one event with the given secrets plus those the logs were configured with."""
    return Scrubber(secrets, shared=redactor).event(event, hint)


def init_sentry(
    dsn: str | None,
    secrets: Iterable[str] = (),
    *,
    environment: str | None = None,
    release: str | None = None,
) -> bool:
    """Starts Sentry when a DSN is set and ``sentry_sdk`` is installed; True if started."""
    if not dsn or not dsn.strip():
        return False
    try:
        sentry_sdk: Any = importlib.import_module("sentry_sdk")
    except ImportError:
        _LOGGER.warning("SENTRY_DSN is set but sentry-sdk is not installed (extra: sentry)")
        return False
    scrubber = Scrubber(secrets, shared=redactor)
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        send_default_pii=False,
        max_request_body_size="never",
        include_local_variables=True,
        before_send=scrubber.event,
        before_breadcrumb=scrubber.breadcrumb,
        traces_sample_rate=0.0,
    )
    _LOGGER.info("Sentry error reporting enabled")
    return True
