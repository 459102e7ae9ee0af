"""Edited messages are not new input (PTB's message filters match edits too)."""

from __future__ import annotations

from bot.harness import BotHarness
from storage.client import Mongo
from tests.conftest import ADMIN_ID, OWNER_ID
from tests.e2e.shop import RECIPIENT, SENDER, USER, ShopEnv

EDIT_NOTICE = "Edits are not applied"


async def test_editing_the_sender_while_asked_for_the_recipient_is_not_stored(
    shop: ShopEnv, mongo: Mongo
) -> None:
    h = shop.harness
    await h.say(USER, "/order")
    replies = await h.say(USER, SENDER)
    assert "Step 2 of 6" in replies[-1].content
    sender_message = h.emulator.last_user_message_id(USER)
    # The user corrects the sender address in place while the bot asks for the recipient.
    [notice] = await h.edit(USER, sender_message, "Jane Roe\n1 Other St\nBoston, MA 02101")
    assert EDIT_NOTICE in notice.content
    draft = await mongo.db["orders"].find_one({"user_id": USER, "status": "draft"})
    assert draft is not None and draft["to_address"] == {}
    assert "Jane Doe" in str(draft["from_address"])
    # A second edit soon after is ignored silently: one notice per chat per period.
    assert await h.edit(USER, sender_message, "Jane Poe\n2 Other St\nBoston, MA 02101") == []
    # The conversation still waits for the recipient, as a new message.
    replies = await h.say(USER, RECIPIENT)
    assert "Step 3 of 6" in replies[-1].content
    draft = await mongo.db["orders"].find_one({"_id": draft["_id"]})
    assert draft is not None and "John Smith" in str(draft["to_address"])
    assert "Jane Doe" in str(draft["from_address"])


async def test_an_edited_support_text_sends_no_second_ticket(
    harness: BotHarness, mongo: Mongo
) -> None:
    harness.add_user(120, first_name="Ann")
    harness.add_user(OWNER_ID)
    harness.add_user(ADMIN_ID)
    [topics] = await harness.say(120, "/support")
    await harness.press(120, topics, "order")
    [done] = await harness.say(120, "My label did not arrive")
    assert "Thank you" in done.content
    ticket = harness.emulator.last_user_message_id(120)
    # Outside any conversation an edit is ignored silently.
    assert await harness.edit(120, ticket, "My label did not arrive!") == []
    # Asked for a new message, an edit of the old one is not a second ticket.
    [topics] = await harness.say(120, "/support")
    [ask] = await harness.press(120, topics, "payment")
    assert "Step 2 of 2" in ask.content
    [notice] = await harness.edit(120, ticket, "My label did not arrive, please help")
    assert EDIT_NOTICE in notice.content
    alerts = await mongo.db["outbox"].find({"kind": "admin_alert"}).to_list(None)
    tickets = [a for a in alerts if "did not arrive" in a["text"]]
    assert len(tickets) == len({a["chat_id"] for a in tickets})  # one ticket, per admin
    assert all("please help" not in a["text"] for a in tickets)
    # The corrected text sent as a new message is the second ticket.
    [done] = await harness.say(120, "Where is my refund?")
    assert "Thank you" in done.content
