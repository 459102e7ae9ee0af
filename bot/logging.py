"""structlog configuration: JSON lines (or console in the demo) for our logs and stdlib's.

PTB, APScheduler and aiohttp log through stdlib ``logging``; their records go through the
same ``ProcessorFormatter`` so every line has one shape. The very last step replaces every
known secret value in the rendered line, so a token can never reach a log even when a
library (PTB logs its API URL at DEBUG) prints it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO
from urllib.parse import quote

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"

# Loggers that print request URLs (and with them the bot token) at INFO/DEBUG.
_NOISY_LOGGERS = ("httpx", "httpcore", "hpack", "aiohttp.access", "pymongo")


class SecretRedactor:
    """Replaces secret values (and their URL-encoded forms) in rendered text."""

    def __init__(self) -> None:
        self._needles: list[str] = []

    def set_secrets(self, secrets: Iterable[str]) -> None:
        needles: set[str] = set()
        for secret in secrets:
            if len(secret) >= 6:
                needles.update({secret, quote(secret, safe=""), quote(secret)})
        # Longest first so a secret that contains another is replaced whole.
        self._needles = sorted(needles, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            if needle in text:
                text = text.replace(needle, REDACTED)
        return text


redactor = SecretRedactor()


def _redacting(renderer: Processor) -> Processor:
    def render(logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
        rendered = renderer(logger, name, event_dict)
        return redactor(rendered if isinstance(rendered, str) else str(rendered))

    return render


def configure_logging(
    *,
    level: str = "INFO",
    fmt: str = "json",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and stdlib logging once per process (idempotent)."""
    redactor.set_secrets(secrets)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redacting(renderer),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def bind_update_context(**values: Any) -> None:
    """Bind per-update fields (``update_id``, ``user_id``, ``chat_id``) for every log line."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**values)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
