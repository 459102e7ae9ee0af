"""``show`` and ``disarm`` against a stub bot: which Telegram refusals they tolerate."""

from __future__ import annotations

from typing import Any

import pytest
from telegram.error import BadRequest

from views.keyboards import keyboard
from views.screen import disarm


class StubBot:
    def __init__(self, error: str | None = None) -> None:
        self.error = error
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def _call(self, name: str, **kwargs: Any) -> bool:
        self.calls.append((name, kwargs))
        if self.error:
            raise BadRequest(self.error)
        return True

    async def edit_message_text(self, text: str, **kwargs: Any) -> bool:
        return await self._call("edit_message_text", text=text, **kwargs)

    async def edit_message_reply_markup(self, **kwargs: Any) -> bool:
        return await self._call("edit_message_reply_markup", **kwargs)


async def test_disarm_removes_the_keyboard_or_sets_a_status() -> None:
    bot = StubBot()
    assert await disarm(bot, 1, 2) is True  # type: ignore[arg-type]
    assert await disarm(bot, 1, 3, "✅ paid") is True  # type: ignore[arg-type]
    assert bot.calls == [
        ("edit_message_reply_markup", {"chat_id": 1, "message_id": 2, "reply_markup": None}),
        (
            "edit_message_text",
            {"text": "✅ paid", "chat_id": 1, "message_id": 3, "reply_markup": None},
        ),
    ]


@pytest.mark.parametrize(
    "error",
    [
        "Message is not modified: specified new message content and reply markup are exactly "
        "the same",
        "Message to edit not found",
        "Message can't be edited",
    ],
)
async def test_disarm_tolerates_a_message_that_has_nothing_left_to_disarm(error: str) -> None:
    assert await disarm(StubBot(error), 1, 2) is False  # type: ignore[arg-type]


async def test_disarm_raises_other_refusals() -> None:
    with pytest.raises(BadRequest):
        await disarm(StubBot("Chat not found"), 1, 2)  # type: ignore[arg-type]


def test_keyboard_refuses_callback_data_telegram_would_refuse() -> None:
    with pytest.raises(ValueError, match="1-64 bytes"):
        keyboard([[("x", "y" * 65)]])
    from bot.notices import button_markup

    with pytest.raises(ValueError):
        button_markup([[("x", "y" * 65)]])
    assert button_markup([[("Track", "lbl:trk:1")]]) == {
        "inline_keyboard": [[{"text": "Track", "callback_data": "lbl:trk:1"}]]
    }
