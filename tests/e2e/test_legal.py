"""/paysupport, /terms, /privacy, the terms before top-ups and "Delete my data", end to end."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr

from bot.harness import BotHarness
from bot.settings import LegalSettings, Secrets, Settings
from tests.conftest import OWNER_ID, FakeClock, make_settings
from tests.e2e.shop import SENDER, USER, ShopEnv, pay_button


@pytest.fixture
def settings() -> Settings:
    """A shop that takes cards: with no payment rail on, a top-up asks for no terms."""
    secrets = Secrets.model_construct(
        telegram_bot_token=None,
        mongo_url=None,
        telegram_payment_provider_token=SecretStr("284685063:TEST:legal"),
    )
    return make_settings(secrets=secrets)


HEADINGS = {
    "en": ("Terms of service", "Privacy notice", "Payment support"),
    "ru": ("Условия использования", "Политика конфиденциальности", "Поддержка по оплате"),
    "uk": ("Умови використання", "Політика конфіденційності", "Підтримка з оплати"),
}


@pytest.mark.parametrize("language", ["en", "ru", "uk"])
async def test_terms_privacy_and_paysupport_in_each_language(
    harness: BotHarness, language: str
) -> None:
    harness.add_user(301, language_code=language)
    await harness.say(301, "/start")
    terms_heading, privacy_heading, support_heading = HEADINGS[language]
    settings = harness.settings
    [terms] = await harness.say(301, "/terms")
    assert terms_heading in terms.content
    assert f"({settings.legal.terms_version})" in terms.content.replace("version ", "").replace(
        "версия ", ""
    ).replace("версія ", "")
    assert str(settings.refunds.max_label_age_days) in terms.content
    [privacy] = await harness.say(301, "/privacy")
    assert privacy_heading in privacy.content
    for number in (
        settings.sessions.ttl_minutes,
        settings.updates.processed_ttl_hours,
        settings.legal.backup_retention_days,
        settings.legal.log_retention_days,
    ):
        assert str(number) in privacy.content
    assert "/delete_my_data" in privacy.content
    [support] = await harness.say(301, "/paysupport")
    assert support_heading in support.content
    assert settings.support_contact in support.content
    assert support.callback_data_for("") == "menu:support"  # its one button opens /support


async def test_command_menus_in_each_language(harness: BotHarness) -> None:
    bot = harness.application.bot
    default = await bot.get_my_commands()
    english = await bot.get_my_commands(language_code="en")
    russian = await bot.get_my_commands(language_code="ru")
    ukrainian = await bot.get_my_commands(language_code="uk")
    assert [c.command for c in default][:2] == ["start", "help"]
    assert default == english
    names = {c.command for c in russian}
    assert {"paysupport", "terms", "privacy", "delete_my_data"} <= names
    ru = {c.command: c.description for c in russian}
    uk = {c.command: c.description for c in ukrainian}
    assert ru["paysupport"] == "Помощь с оплатой и возвраты"
    assert uk["privacy"] == "Конфіденційність і ваші дані"
    assert ru["order"] != {c.command: c.description for c in english}["order"]


async def test_terms_are_accepted_before_the_first_topup_and_after_a_new_version(
    harness: BotHarness, clock: FakeClock
) -> None:
    users = harness.mongo.db["users"]
    harness.add_user(302)
    harness.add_user(303)
    await harness.say(302, "/start")
    await harness.say(303, "/start")
    [ask] = await harness.say(302, "/topup")
    assert "Before your first top-up" in ask.content and "version 1" in ask.content
    assert "step 1 of 2" not in ask.content
    [read] = await harness.press(302, ask, "Read the terms")
    assert "Terms of service" in read.content
    replies = await harness.press(302, ask, "I accept")
    assert "you accepted the terms (version 1)" in harness.emulator.message(
        302, ask.message_id
    ).content
    amount = replies[-1]
    assert "step 1 of 2" in amount.content
    assert "/terms" in amount.content and "/paysupport" in amount.content  # linked
    stored = await users.find_one({"_id": 302})
    assert stored is not None
    assert stored["terms_version"] == "1"
    assert stored["terms_accepted_at"].replace(tzinfo=None) == clock().replace(tzinfo=None)
    await harness.say(302, "/cancel")
    [again] = await harness.say(302, "/topup")
    assert "step 1 of 2" in again.content  # asked once per version
    await harness.say(302, "/cancel")
    # 303 sees the version-1 terms but does not accept them yet.
    [old_prompt] = await harness.say(303, "/topup")
    assert "version 1" in old_prompt.content

    harness.settings = harness.settings.model_copy(
        update={"legal": LegalSettings(terms_version="2")}
    )
    await harness.restart()
    [changed] = await harness.say(302, "/topup")
    assert "Our terms have changed" in changed.content and "version 2" in changed.content
    replies = await harness.press(302, changed, "I accept")
    assert "step 1 of 2" in replies[-1].content
    stored = await users.find_one({"_id": 302})
    assert stored is not None and stored["terms_version"] == "2"
    assert [entry["version"] for entry in stored["terms_history"]] == ["1", "2"]
    # A button of the old version accepts nothing: the current terms are shown again.
    [shown] = await harness.press(303, old_prompt, "I accept")
    assert "version 2" in shown.content
    stored = await users.find_one({"_id": 303})
    assert stored is not None and "terms_version" not in stored
    replies = await harness.press(303, shown, "I accept")
    assert "step 1 of 2" in replies[-1].content
    stored = await users.find_one({"_id": 303})
    assert stored is not None and stored["terms_version"] == "2"


# -- Delete my data ---------------------------------------------------------------------


async def _buy(shop: ShopEnv) -> dict[str, object]:
    summary = await shop.to_summary()
    await shop.harness.press(USER, summary, data=pay_button(summary))
    order = await shop.mongo.db["orders"].find_one({"user_id": USER, "status": "purchased"})
    assert order is not None
    return dict(order)


def _services(shop: ShopEnv):  # type: ignore[no-untyped-def]
    return shop.harness.application.bot_data.require_services()


async def test_delete_my_data_waits_for_open_things_then_erases_once(
    shop: ShopEnv, clock: FakeClock
) -> None:
    h, db = shop.harness, shop.mongo.db
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    storage = h.application.bot_data.require_storage()
    address = {"name": "Jane Doe", "street1": "500 W 5th Ave", "city": "New York",
               "state": "NY", "postal_code": "10001", "phone": "+12125550123"}
    await storage.templates.create(USER, "Home", address, now=clock())
    # An invoice waiting for payment (as the top-up conversation leaves it, any rail).
    payment = await storage.payments.create(
        {"user_id": USER, "provider": "oxapay", "order_id": "legal-test", "amount_cents": 1500,
         "status": "pending", "created_at": clock(), "updated_at": clock()}
    )
    await db["orders"].update_one(
        {"_id": order["_id"]}, {"$set": {"purchased_at": clock() - timedelta(days=6)}}
    )
    verdict = await _services(shop).refunds.request_for_order(USER, str(order["_id"]))
    assert verdict.verdict == "accepted"
    await h.say(USER, "/order")
    await h.say(USER, SENDER)  # a draft with the sender's address and phone

    [refused] = await h.say(USER, "/delete_my_data")
    assert "cannot be deleted right now" in refused.content
    assert "refund is still open" in refused.content
    assert "waiting for payment" in refused.content
    assert not refused.buttons
    assert await db["templates"].count_documents({"user_id": USER}) == 1

    # The refund is credited (the carrier voids the label) and the invoice withdrawn.
    shop.carrier.set_void_outcome("approved")
    await _services(shop).refunds.process_due()
    assert await _services(shop).payments.cancel(USER, str(payment["_id"]))
    balance = await shop.balance()
    assert balance == 10_000  # the label's price came back
    before = await db["orders"].find_one({"_id": order["_id"]})
    assert before is not None and before["status"] == "refunded"

    await h.emulator.wait_until(
        lambda: any("Refund credited" in m.content for m in h.emulator.sent_messages(USER)),
        timeout=15,
    )
    sent_before = [
        doc["_id"]
        for doc in await db["outbox"].find({"chat_id": USER}).to_list(None)
        if doc.get("delivered_at") is not None
    ]
    assert sent_before  # the refund notice, with the tracking number
    [confirm] = await h.say(USER, "/delete_my_data")
    assert "address templates (1)" in confirm.content
    assert "orders (1)" in confirm.content
    assert "$100.00 stays on your account" in confirm.content
    assert "cannot be undone" in confirm.content
    await h.press(USER, confirm, "Yes, delete my data")
    result = h.emulator.message(USER, confirm.message_id)
    assert "Your data is deleted" in result.content
    assert "$100.00 stays on your account" in result.content
    assert not result.buttons

    assert await db["templates"].count_documents({"user_id": USER}) == 0
    assert await db["orders"].count_documents({"user_id": USER, "status": "draft"}) == 0
    kept = await db["orders"].find_one({"_id": order["_id"]})
    assert kept is not None
    assert kept["from_address"] == {"anonymised": True}
    assert kept["to_address"] == {"anonymised": True}
    assert "label_file_id" not in kept and "label_url" not in kept
    for name in ("tracking_number", "price_cents", "carrier_code", "service_code", "created_at",
                 "purchased_at", "label_id"):
        assert kept.get(name) == before.get(name), name
    user = await db["users"].find_one({"_id": USER})
    assert user is not None
    assert user["username"] is None and user["first_name"] == ""
    assert user["balance_cents"] == balance
    assert "Jane" not in str(await db["orders"].find({"user_id": USER}).to_list(None))
    assert await db["outbox"].count_documents({"_id": {"$in": sent_before}}) == 0
    assert await db["sessions"].count_documents({"_id": f"{USER}:{USER}", "data": {}}) == 1
    await shop.audit_ok()
    entries = await db["audit"].find({"action": "privacy.delete_data"}).to_list(None)
    assert len(entries) == 1
    assert entries[0]["actor"] == USER
    assert entries[0]["after"]["balance_cents_kept"] == balance
    await h.emulator.wait_until(
        lambda: any(
            f"Customer {USER} deleted their data: 1 templates deleted, 1 orders anonymised"
            in m.content
            for m in h.emulator.sent_messages(OWNER_ID)
        ),
        timeout=15,
    )

    # Exactly once: the same confirmation again changes nothing.
    [deletion] = await db["data_deletions"].find({"user_id": USER}).to_list(None)
    assert deletion["status"] == "done"
    outcome = await _services(shop).privacy.confirm_deletion(USER, str(deletion["_id"]))
    assert outcome.status == "already"
    assert await db["audit"].count_documents({"action": "privacy.delete_data"}) == 1
    assert await shop.balance() == balance
    await shop.audit_ok()
    # The label's PDF went with the data: My labels offers no re-send.
    [labels] = await h.say(USER, "/labels")
    assert not any(data and data.startswith("lbl:pdf:") for _, data in labels.buttons)


async def test_delete_my_data_refused_when_a_purchase_starts_before_the_confirmation(
    shop: ShopEnv, clock: FakeClock
) -> None:
    h, db = shop.harness, shop.mongo.db
    storage = h.application.bot_data.require_storage()
    await storage.templates.create(USER, "Home", {"name": "Jane"}, now=clock())
    [confirm] = await h.say(USER, "/delete_my_data")
    assert "$0.00 stays on your account" in confirm.content
    await shop.fund(USER, 5_000)
    summary = await shop.to_summary()
    assert summary.buttons
    # The purchase is in flight (claimed, carrier call pending) when the button is pressed.
    await db["orders"].update_one(
        {"user_id": USER, "status": "draft"},
        {"$set": {"status": "purchasing", "purchase_started_at": clock()}},
    )
    await h.press(USER, confirm, "Yes, delete my data")
    result = h.emulator.message(USER, confirm.message_id)
    assert "cannot be deleted right now" in result.content
    assert "a label is being bought" in result.content
    assert await db["templates"].count_documents({"user_id": USER}) == 1
    [deletion] = await db["data_deletions"].find({"user_id": USER}).to_list(None)
    assert deletion["status"] == "refused"
    assert await db["audit"].count_documents({"action": "privacy.delete_data"}) == 0


async def test_keeping_the_data_or_an_expired_confirmation_deletes_nothing(
    shop: ShopEnv, clock: FakeClock
) -> None:
    h, db = shop.harness, shop.mongo.db
    storage = h.application.bot_data.require_storage()
    await storage.templates.create(USER, "Home", {"name": "Jane"}, now=clock())
    [first] = await h.say(USER, "/delete_my_data")
    await h.press(USER, first, "Keep my data")
    assert "Nothing was deleted" in h.emulator.message(USER, first.message_id).content
    [second] = await h.say(USER, "/delete_my_data")
    clock.advance(minutes=h.settings.legal.deletion_confirm_minutes + 1)
    await h.press(USER, second, "Yes, delete my data")
    assert "has expired" in h.emulator.message(USER, second.message_id).content
    assert await db["templates"].count_documents({"user_id": USER}) == 1
    statuses = sorted(d["status"] for d in await db["data_deletions"].find().to_list(None))
    assert statuses == ["cancelled", "offered"]


async def test_deletion_erases_the_carriers_address_corrections_too(
    shop: ShopEnv, clock: FakeClock
) -> None:
    """Address validation stores the carrier's suggested form on the order
    (``<side>_validation.suggestion``): it is an address like the typed one."""
    h, db = shop.harness, shop.mongo.db
    await shop.fund(USER, 10_000)
    order = await _buy(shop)
    suggestion = {"name": "JOHN SMITH", "street1": "123 MAIN ST APT 4", "phone": "2175550100"}
    await db["orders"].update_one(
        {"_id": order["_id"]},
        {"$set": {"to_validation": {"status": "corrected", "suggestion": suggestion,
                                    "decision": "accepted", "token": "t1"}}},
    )
    [confirm] = await h.say(USER, "/delete_my_data")
    await h.press(USER, confirm, "Yes, delete my data")
    assert "Your data is deleted" in h.emulator.message(USER, confirm.message_id).content
    kept = await db["orders"].find_one({"_id": order["_id"]})
    assert kept is not None
    assert "MAIN ST" not in str(kept) and "JOHN" not in str(kept)
    assert kept["tracking_number"] == order["tracking_number"]


async def test_a_deletion_cut_short_is_finished_by_pressing_again(
    shop: ShopEnv, clock: FakeClock
) -> None:
    """A crash after the claim and part of the erasure: the run is finished, once."""
    h, db = shop.harness, shop.mongo.db
    storage = h.application.bot_data.require_storage()
    await storage.templates.create(USER, "Home", {"name": "Jane"}, now=clock())
    await storage.templates.create(USER, "Work", {"name": "Jane"}, now=clock())
    [confirm] = await h.say(USER, "/delete_my_data")
    [deletion] = await db["data_deletions"].find({"user_id": USER}).to_list(None)
    # What the crashed run had done: claimed, counted, deleted the templates.
    await db["data_deletions"].update_one(
        {"_id": deletion["_id"]},
        {"$set": {"status": "running", "counts": {"templates": 2, "orders": 0}}},
    )
    await storage.templates.delete_all(USER)
    await h.press(USER, confirm, "Yes, delete my data")
    result = h.emulator.message(USER, confirm.message_id)
    assert "2 address templates removed" in result.content
    user = await db["users"].find_one({"_id": USER})
    assert user is not None and user["first_name"] == ""
    assert await db["audit"].count_documents({"action": "privacy.delete_data"}) == 1
    done = await db["data_deletions"].find_one({"_id": deletion["_id"]})
    assert done is not None and done["status"] == "done"
