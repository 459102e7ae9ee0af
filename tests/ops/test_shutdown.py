"""Shutdown hands over cleanly: everything is written before the poller lease is released."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from telegram import Update

from bot.harness import BotHarness
from bot.inbox import Inbox
from bot.lease import lease_of
from bot.settings import Settings
from storage.client import Mongo
from tests.conftest import FakeClock


@pytest.fixture
async def harness(settings: Settings, mongo: Mongo, clock: FakeClock) -> AsyncIterator[BotHarness]:
    h = BotHarness(settings, mongo=mongo, clock=clock)
    await h.start()
    try:
        yield h
    finally:
        await h.close()


async def test_the_lease_is_released_only_after_the_last_write(
    harness: BotHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A standby taking over reloads conversation positions and replays the inbox from
    MongoDB: the leader writes both before it lets the lease go (PTB's ``stop()`` does not
    flush persistence, ``shutdown()`` does)."""
    app = harness.application
    lease = lease_of(app.bot_data)
    assert lease is not None and lease.held
    harness.add_user(130)
    await harness.say(130, "/support")
    await harness.flush()
    events: list[str] = []
    persistence = app.persistence
    assert persistence is not None
    write = persistence.update_conversation

    async def update_conversation(name: str, key: Any, new_state: object | None) -> None:
        await write(name, key, new_state)
        events.append(f"persist:{name}:{new_state}")

    monkeypatch.setattr(persistence, "update_conversation", update_conversation)
    inbox = app.bot_data.extras["inbox"]
    assert isinstance(inbox, Inbox)
    delete = inbox._repo.delete  # noqa: SLF001 - the write to record

    async def delete_handled(ids: Any) -> None:
        ids = list(ids)
        await delete(ids)
        events.append(f"inbox:{ids}")

    monkeypatch.setattr(inbox._repo, "delete", delete_handled)  # noqa: SLF001
    release = lease.store.release

    async def release_lease(*args: Any, **kwargs: Any) -> Any:
        events.append("release")
        return await release(*args, **kwargs)

    monkeypatch.setattr(lease.store, "release", release_lease)
    # Changes made right before the stop, with no await in between: only the last flush
    # (persistence) and the last inbox cleanup can write them.
    assert app.bot_data.conversations["support"].forget((130, 130))
    inbox.done(Update(10**9))
    await harness.stop()
    assert events[-1] == "release", events
    assert "persist:support:None" in events
    assert any(e.startswith("inbox:") and str(10**9) in e for e in events)
