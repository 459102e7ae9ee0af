"""Telegram's expected refusals, recognised by their description.

PTB strips "Bad Request: " from Telegram's description and capitalises what is left
("Message is not modified: …"), so descriptions are compared case-insensitively, by prefix.
"""

from __future__ import annotations

from telegram.error import BadRequest

NOT_MODIFIED = "message is not modified"
TO_EDIT_NOT_FOUND = "message to edit not found"


def is_bad_request(exc: BaseException, *descriptions: str) -> bool:
    """Whether ``exc`` is a ``BadRequest`` whose description starts with one of these."""
    if not isinstance(exc, BadRequest):
        return False
    message = exc.message.lower()
    return any(message.startswith(description) for description in descriptions)
