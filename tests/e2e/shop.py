"""The shop fixture: the bot with a fake ShipStation, for order and refund tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from bot.harness import BotHarness
from bot.settings import Secrets
from sandbox.shipstation import FakeShipStation
from sandbox.telegram import SentMessage
from storage.client import Mongo
from tests.conftest import OWNER_ID, FakeClock, make_settings

USER = 7001
SENDER = "Jane Doe\n500 W 5th Ave Suite 200\nNew York, NY 10001\n(212) 555-0123"
RECIPIENT = "John Smith, 123 Main St Apt 4, Springfield, IL 62704"


@dataclass
class ShopEnv:
    harness: BotHarness
    carrier: FakeShipStation
    mongo: Mongo

    async def fund(self, user_id: int, cents: int, key: str = "seed") -> None:
        storage = self.harness.application.bot_data.require_storage()
        await storage.ledger.apply(
            user_id=user_id,
            amount_cents=cents,
            kind="topup",
            key=f"{key}:{user_id}",
            now=self.harness.clock(),
        )

    async def balance(self, user_id: int = USER) -> int:
        user = await self.mongo.db["users"].find_one({"_id": user_id})
        return int(user["balance_cents"]) if user else 0

    async def audit_ok(self) -> None:
        storage = self.harness.application.bot_data.require_storage()
        _, mismatches = await storage.ledger.audit()
        assert mismatches == []

    async def to_summary(self, user_id: int = USER) -> SentMessage:
        """Runs the flow up to the review; returns the review message."""
        h = self.harness
        [ask] = await h.say(user_id, "/order")
        assert "Step 1 of 6" in ask.content
        replies = await h.say(user_id, SENDER)
        assert "Jane Doe" in replies[0].content  # shown back as understood
        assert "Step 2 of 6" in replies[-1].content
        replies = await h.say(user_id, RECIPIENT)
        assert "Step 3 of 6" in replies[-1].content
        [dims] = await h.say(user_id, "2 lb 4 oz")
        assert "Step 4 of 6" in dims.content
        [rates] = await h.say(user_id, "10x8x4")
        assert "Step 5 of 6" in rates.content
        replies = await h.press(user_id, rates, data=rates.buttons[0][1])
        summary = replies[-1]
        assert "Step 6 of 6" in summary.content
        return summary


@pytest.fixture
async def shop(mongo: Mongo, clock: FakeClock) -> AsyncIterator[ShopEnv]:
    carrier = FakeShipStation(instant=True)
    await carrier.start()
    base = make_settings()
    shipping = base.shipping.model_copy(
        update={
            "base_url": carrier.base_url,
            "purchase_timeout_seconds": 10,
            "recovery_after_seconds": 30,
        }
    )
    secrets = Secrets.model_construct(
        telegram_bot_token=None,
        mongo_url=None,
        shipstation_test_api_key=SecretStr("TEST_sandbox_key"),
        # A top-up rail, so the top-up conversation opens (payments are not made here).
        telegram_payment_provider_token=SecretStr("284685063:TEST:shop"),
    )
    harness = BotHarness(
        make_settings(shipping=shipping, secrets=secrets),
        mongo=mongo,
        clock=clock,
        rate_limits=False,
    )
    await harness.start()
    harness.add_user(USER, first_name="Buyer")
    harness.add_user(OWNER_ID)
    await harness.say(USER, "/start")
    try:
        yield ShopEnv(harness, carrier, mongo)
    finally:
        await harness.close()
        await carrier.stop()


def pay_button(summary: SentMessage) -> str:
    return summary.callback_data_for("Pay")


def run_jobs_only_when_called(shop: ShopEnv, *names: str) -> None:
    """Removes the scheduled runs of these jobs: a run fired by the timer in the middle of
    a test would make its counts depend on the machine's speed."""
    queue = shop.harness.application.job_queue
    assert queue is not None
    for name in names:
        for job in queue.get_jobs_by_name(name):
            job.schedule_removal()


async def buy_label(shop: ShopEnv, user_id: int = USER) -> dict[str, Any]:
    """Walks ``user_id`` to the review a minute later and pays; returns the newest label."""
    assert isinstance(shop.harness.clock, FakeClock)
    shop.harness.clock.advance(minutes=1)
    summary = await shop.to_summary(user_id)
    await shop.harness.press(user_id, summary, data=pay_button(summary))
    orders = (
        await shop.mongo.db["orders"]
        .find({"user_id": user_id, "status": "purchased"})
        .sort("created_at", -1)
        .to_list(None)
    )
    return dict(orders[0])
