"""What the customer's chat shows right now: the checks issue 17 asks of every screen.

The emulator edits a ``SentMessage`` in place, so these look at each message as it is now
(its current keyboard), not as it was sent. A flow's walk calls them after every step:

* ``pay_screens``: messages that still carry a button which would take money (an order's
  Pay, a top-up invoice's payment-method or Pay button): at most one may exist at a time.
* ``superseded``: messages other than the newest that still carry a keyboard, except the
  ones that stand on their own (a label file with its buttons, a notice the caller names).
* ``assert_way_on``: a final screen offers a way on (a button to a menu or another screen).
"""

from __future__ import annotations

from collections.abc import Iterable

from sandbox.telegram import BotApiEmulator, SentMessage

# Buttons that spend or collect money when pressed (an open invoice: its Cancel button).
PAY_PREFIXES = ("order:pay:", "topup:method:", "topup:cancelinv:", "bulk:pay:")
# Buttons that lead on from a final screen.
WAY_ON_PREFIXES = ("menu:", "order:new", "order:resume", "lbl:", "tpl:", "ref:", "order:summary")


def live(emulator: BotApiEmulator, chat_id: int) -> list[SentMessage]:
    return [m for m in emulator.sent_messages(chat_id) if not m.deleted]


def armed(emulator: BotApiEmulator, chat_id: int) -> list[SentMessage]:
    """Messages that carry at least one callback button now."""
    return [m for m in live(emulator, chat_id) if any(data for _, data in m.buttons)]


def pay_screens(emulator: BotApiEmulator, chat_id: int) -> list[SentMessage]:
    return [
        m
        for m in live(emulator, chat_id)
        if any((data or "").startswith(PAY_PREFIXES) for _, data in m.buttons)
    ]


def superseded(
    emulator: BotApiEmulator, chat_id: int, *, standing: Iterable[int] = ()
) -> list[SentMessage]:
    """Armed messages that are not the newest bot message, not a label file (its buttons
    stay useful: save the recipient, buy another) and not in ``standing`` (message ids the
    caller knows stand on their own, e.g. a tracking notice with its Track button)."""
    messages = live(emulator, chat_id)
    if not messages:
        return []
    newest = messages[-1].message_id
    keep = set(standing) | {newest}
    return [
        m
        for m in armed(emulator, chat_id)
        if m.message_id not in keep and m.document is None
    ]


def assert_way_on(message: SentMessage) -> None:
    data = [d or "" for _, d in message.buttons]
    assert any(d.startswith(WAY_ON_PREFIXES) for d in data), (
        f"a final screen without a way on: {message.content[:80]!r} {message.buttons!r}"
    )


def assert_screen_rules(
    emulator: BotApiEmulator, chat_id: int, *, standing: Iterable[int] = ()
) -> None:
    """At most one message can take money, and no superseded screen keeps its buttons."""
    paying = pay_screens(emulator, chat_id)
    assert len(paying) <= 1, [m.content[:60] for m in paying]
    stale = superseded(emulator, chat_id, standing=standing)
    assert not stale, [(m.message_id, m.content[:60], m.buttons) for m in stale]
