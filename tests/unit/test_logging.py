"""The bot token never appears in a log line, even at DEBUG, whoever logs it."""

import io
import json
import logging

import structlog

from bot.logging import REDACTED, bind_update_context, configure_logging, get_logger

TOKEN = "987654:SECRET-token-for-logging-test"


def test_token_is_redacted_everywhere() -> None:
    stream = io.StringIO()
    configure_logging(level="DEBUG", fmt="json", secrets=[TOKEN], stream=stream)
    try:
        logging.getLogger("telegram.ext").debug("Set Bot API URL: %s", f"https://x/bot{TOKEN}")
        logging.getLogger("httpx").warning("HTTP Request: POST https://x/bot%s/getMe", TOKEN)
        get_logger("test").info("structlog event", url=f"https://x/bot{TOKEN}/sendMessage")
        logging.getLogger("x").debug("url-encoded %s", TOKEN.replace(":", "%3A"))
        try:
            raise RuntimeError(f"boom with {TOKEN}")
        except RuntimeError:
            logging.getLogger("y").exception("failed")
    finally:
        structlog.contextvars.clear_contextvars()
    output = stream.getvalue()
    assert TOKEN not in output
    assert TOKEN.replace(":", "%3A") not in output
    assert output.count(REDACTED) >= 5
    for line in output.strip().splitlines():
        json.loads(line)


def test_httpx_stays_at_warning_even_at_debug() -> None:
    configure_logging(level="DEBUG", fmt="json", secrets=[], stream=io.StringIO())
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() == logging.WARNING


def test_update_fields_on_every_line() -> None:
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", secrets=[], stream=stream)
    bind_update_context(update_id=7, user_id=8, chat_id=9)
    try:
        logging.getLogger("telegram.ext.Application").info("from stdlib")
        get_logger("ours").info("from structlog")
    finally:
        structlog.contextvars.clear_contextvars()
    lines = [json.loads(line) for line in stream.getvalue().strip().splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert (line["update_id"], line["user_id"], line["chat_id"]) == (7, 8, 9)
