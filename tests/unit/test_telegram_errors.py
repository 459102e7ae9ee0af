"""Telegram's expected refusals are recognised as PTB reports them."""

from __future__ import annotations

from telegram.error import BadRequest, Forbidden

from bot.telegram_errors import NOT_MODIFIED, TO_EDIT_NOT_FOUND, is_bad_request


def test_ptb_capitalises_what_telegram_sends_and_it_is_still_recognised() -> None:
    exc = BadRequest(
        "Bad Request: message is not modified: specified new message content and reply "
        "markup are exactly the same as a current content and reply markup of the message"
    )
    assert exc.message.startswith("Message is not modified")  # why a plain `in` failed
    assert is_bad_request(exc, NOT_MODIFIED)
    assert is_bad_request(
        BadRequest("Bad Request: message to edit not found"), NOT_MODIFIED, TO_EDIT_NOT_FOUND
    )
    assert not is_bad_request(BadRequest("Bad Request: chat not found"), NOT_MODIFIED)
    assert not is_bad_request(Forbidden("Forbidden: message is not modified"), NOT_MODIFIED)
