"""``python -m bot demo``: the real application against the offline sandbox, scripted.

Starts the Bot API emulator on 127.0.0.1, runs the production application on an
in-memory MongoDB, plays a customer (and an admin) through the main flows and prints
the chat transcript. Exits 0 when every step got the reply it expected.
"""

from __future__ import annotations

import logging
import re
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from pydantic import SecretStr

from bot.harness import BotHarness
from bot.settings import AdminEntry, Role, Secrets, Settings
from sandbox.oxapay import FakeOxaPay
from sandbox.shipstation import FakeShipStation
from sandbox.telegram import SentMessage

CUSTOMER_ID = 5550001
ADMIN_ID = 5559999
_TAG = re.compile(r"<[^>]+>")
DEMO_OXAPAY_KEY = "demo-oxapay-merchant-key"  # noqa: S105 - the fake's key
DEMO_PROVIDER_TOKEN = "284685063:TEST:demo-provider"  # noqa: S105 - a test-mode token
# The sender is typed as the carrier knows it (ZIP+4): verified, no question. The
# recipient's "Place" and ZIP5 are corrected by the carrier's address check.
DEMO_SENDER = "Dana Scully\n500 W 5th Ave Suite 200\nNew York, NY 10001-2062\n(212) 555-0123"
DEMO_RECIPIENT = "Fox Mulder, 2630 Hegal Place Apt 42, Alexandria, VA 22314"


class DemoFailure(Exception):
    pass


@dataclass
class Transcript:
    out: TextIO
    steps: int = 0
    lines: list[str] = field(default_factory=list)

    def user(self, who: str, text: str) -> None:
        self._write(f"\n👤 {who}: {text}")

    def bot(self, messages: list[SentMessage], to: str = "") -> None:
        for message in messages:
            body = message.content.strip().replace("\n", "\n      ")
            if message.invoice is not None and not body:
                inv = message.invoice
                body = f"🧾 invoice «{inv.title}»: {inv.description}"
            self._write(f"🤖 bot{to}: {body}")
            if message.document is not None:
                doc = message.document
                self._write(f"      📎 {doc.filename} ({doc.size} bytes)")
            for row in message.button_rows:
                self._write("      " + "  ".join(f"[{text}]" for text, _ in row))

    def note(self, text: str) -> None:
        self._write(f"   {text}")

    def section(self, title: str) -> None:
        self._write(f"\n━━━ {title} ━━━")

    def _write(self, line: str) -> None:
        self.lines.append(line)
        print(line, file=self.out)


@dataclass
class Demo:
    harness: BotHarness
    transcript: Transcript
    extras: dict[str, Any] = field(default_factory=dict)

    async def say(self, user_id: int, text: str, expect: str) -> list[SentMessage]:
        self.transcript.user(self._name(user_id), text)
        replies = await self.harness.say(user_id, text)
        return self._check(replies, expect)

    async def press(
        self, user_id: int, message: SentMessage, label: str, expect: str
    ) -> list[SentMessage]:
        self.transcript.user(self._name(user_id), f"(taps «{label}»)")
        replies = await self.harness.press(user_id, message, label)
        edited = self.harness.emulator.message(user_id, message.message_id)
        if edited.edited and edited not in replies:
            replies = [edited, *replies]
        return self._check(replies, expect)

    def _check(self, replies: list[SentMessage], expect: str) -> list[SentMessage]:
        self.transcript.bot(replies)
        self.transcript.steps += 1
        if not any(expect in _TAG.sub("", m.content) for m in replies):
            raise DemoFailure(f"expected a reply containing {expect!r}")
        return replies

    @staticmethod
    def _name(user_id: int) -> str:
        return "admin" if user_id == ADMIN_ID else "customer"


Scene = Callable[[Demo], Awaitable[None]]


async def scene_start_language_help(demo: Demo) -> None:
    demo.transcript.section("Start, language, help")
    await demo.say(CUSTOMER_ID, "/start", "Welcome")
    [choose] = await demo.say(CUSTOMER_ID, "/language", "Choose your language")
    await demo.press(CUSTOMER_ID, choose, "Русский", "Язык: русский")
    await demo.say(CUSTOMER_ID, "/help", "Как это работает")
    [choose] = await demo.say(CUSTOMER_ID, "/language", "Выберите язык")
    await demo.press(CUSTOMER_ID, choose, "English", "Language set to English")


async def scene_support(demo: Demo) -> None:
    demo.transcript.section("Contact support (delivered to the admin through the outbox)")
    [topics] = await demo.say(CUSTOMER_ID, "/support", "Step 1 of 2")
    await demo.press(CUSTOMER_ID, topics, "payment", "Step 2 of 2")
    await demo.say(CUSTOMER_ID, "Is <b>crypto</b> accepted?", "Thank you")
    emulator = demo.harness.emulator
    mark = 0
    alerts = await emulator.wait_for_messages(ADMIN_ID, 1, since=mark, timeout=15)
    demo.transcript.bot(alerts, to=" → admin")
    await demo.say(CUSTOMER_ID, "/cancel", "nothing to cancel")


async def _wait_for(demo: Demo, user_id: int, text: str, timeout: float = 20) -> SentMessage:  # noqa: ASYNC109
    emulator = demo.harness.emulator

    def found() -> SentMessage | None:
        for message in reversed(emulator.sent_messages(user_id)):
            if text in _TAG.sub("", message.content):
                return message
        return None

    await emulator.wait_until(lambda: found() is not None, timeout=timeout)
    message = found()
    assert message is not None
    demo.transcript.bot([message], to=" → admin" if user_id == ADMIN_ID else "")
    return message


async def scene_topup_crypto(demo: Demo) -> None:
    demo.transcript.section("Top-up with crypto: OxaPay invoice, signed callback, credit")
    [terms] = await demo.say(CUSTOMER_ID, "/topup", "Before your first top-up")
    await demo.press(CUSTOMER_ID, terms, "I accept", "step 1 of 2")
    [method] = await demo.say(CUSTOMER_ID, "25", "How would you like to pay")
    await demo.press(CUSTOMER_ID, method, "Crypto", "Invoice for $25.00")
    payment = await demo.harness.mongo.db["payments"].find_one({"user_id": CUSTOMER_ID})
    assert payment is not None
    oxapay = demo.extras["oxapay"]
    demo.transcript.note("(the customer pays; OxaPay posts a signed callback to the bot)")
    await oxapay.mark_paid(payment["provider_ref"])
    await _wait_for(demo, CUSTOMER_ID, "Payment received")


async def scene_topup_card(demo: Demo) -> None:
    demo.transcript.section("Top-up by card: Telegram Payments with a payment provider")
    await demo.say(CUSTOMER_ID, "/topup", "step 1 of 2")
    [method] = await demo.say(CUSTOMER_ID, "10", "How would you like to pay")
    replies = await demo.press(CUSTOMER_ID, method, "Card", "Pay the invoice above by card")
    invoice = next(m for m in replies if m.invoice is not None)
    assert invoice.invoice is not None
    emulator = demo.harness.emulator
    amount = invoice.invoice.total_amount
    demo.transcript.note(
        f"(the customer pays by card in Telegram: {amount} minor units of "
        f"{invoice.invoice.currency}; Telegram asks the bot first: pre-checkout)"
    )
    query_id = emulator.checkout(CUSTOMER_ID, invoice.message_id)
    await emulator.wait_until(
        lambda: any(a.query_id == query_id for a in emulator.pre_checkout_answers)
    )
    answer = next(a for a in emulator.pre_checkout_answers if a.query_id == query_id)
    if not answer.ok:
        raise DemoFailure(f"pre-checkout refused: {answer.error_message}")
    demo.transcript.note("(pre-checkout answered ok; the provider charges the card)")
    emulator.complete_checkout(query_id)
    await _wait_for(demo, CUSTOMER_ID, "Payment received: $10.00")
    await demo.say(CUSTOMER_ID, "/balance", "$35.00")


async def scene_buy_label(demo: Demo) -> None:
    demo.transcript.section("Buying a label (the carrier corrects the recipient's address)")
    await demo.say(CUSTOMER_ID, "/order", "Step 1 of 6")
    await demo.say(CUSTOMER_ID, DEMO_SENDER, "Step 2 of 6")
    replies = await demo.say(CUSTOMER_ID, DEMO_RECIPIENT, "corrected form")
    await demo.press(CUSTOMER_ID, replies[-1], "Use this", "Step 3 of 6")
    await demo.say(CUSTOMER_ID, "2 lb 4 oz", "Step 4 of 6")
    [rates] = await demo.say(CUSTOMER_ID, "10x8x4", "Step 5 of 6")
    label = rates.buttons[0][0]
    replies = await demo.press(CUSTOMER_ID, rates, label[:12], "Step 6 of 6")
    await demo.press(CUSTOMER_ID, replies[-1], "Pay", "Label bought")


async def scene_refund(demo: Demo) -> None:
    demo.transcript.section("Refund reminder and one-tap refund of an unused label")
    order = await demo.harness.mongo.db["orders"].find_one(
        {"user_id": CUSTOMER_ID, "status": "purchased"}
    )
    assert order is not None
    clock = demo.extras["clock"]
    clock.travel(days=24)
    demo.transcript.note("(24 days pass; the label is unused, its last refund day is near)")
    services = demo.harness.application.bot_data.require_services()
    await services.refunds.remind_unused()
    reminder = await _wait_for(demo, CUSTOMER_ID, "has not been used")
    await demo.press(CUSTOMER_ID, reminder, "Refund it", "accepted")
    demo.transcript.note("(the refund-check job runs: the carrier voids the label)")
    await services.refunds.process_due()
    await _wait_for(demo, CUSTOMER_ID, "Refund credited")
    await _wait_for(demo, ADMIN_ID, "new refund request")
    await demo.say(CUSTOMER_ID, "/balance", "$35.00")


async def scene_tracking(demo: Demo) -> None:
    demo.transcript.section("Tracking in the chat")
    await scene_buy_label(demo)
    order = await demo.harness.mongo.db["orders"].find_one(
        {"user_id": CUSTOMER_ID, "status": "purchased"}
    )
    assert order is not None
    carrier = demo.extras["carrier"]
    services = demo.harness.application.bot_data.require_services()
    demo.transcript.note("(the carrier scans the parcel; the tracking job checks the label)")
    carrier.advance_tracking(order["label_id"], "accepted")
    carrier.advance_tracking(order["label_id"], "in_transit")
    demo.extras["clock"].travel(hours=3)
    await services.tracking.check_due()
    notice = await _wait_for(demo, CUSTOMER_ID, "is on its way")
    await demo.press(CUSTOMER_ID, notice, "Track", "Status: In Transit")


SCENES: tuple[Scene, ...] = (
    scene_start_language_help,
    scene_support,
    scene_topup_crypto,
    scene_topup_card,
    scene_buy_label,
    scene_refund,
    scene_tracking,
)


class TravelClock:
    """The real UTC time plus an offset the demo can move forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def travel(self, **kwargs: float) -> None:
        self.offset += timedelta(**kwargs)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def run_demo(settings: Settings, *, verbose: bool = False, out: TextIO = sys.stdout) -> int:
    if not verbose:
        logging.getLogger().setLevel(logging.WARNING)
    clock = TravelClock()
    carrier = FakeShipStation(instant=True, now=clock)  # its scans happen on the demo's days
    await carrier.start()
    oxapay = FakeOxaPay(merchant_api_key=DEMO_OXAPAY_KEY, instant=True)
    await oxapay.start()
    web_port = _free_port()
    payments = settings.payments
    demo_settings = settings.model_copy(
        update={
            "admins": (AdminEntry(user_id=ADMIN_ID, role=Role.OWNER),),
            "outbox": settings.outbox.model_copy(update={"interval_seconds": 0.5}),
            # The scripted customer types faster than any person: no flood limit here.
            "flood": settings.flood.model_copy(update={"max_updates": 10_000}),
            "web": settings.web.model_copy(update={"port": web_port}),
            # The demo shows the carrier's address check ("did you mean") whatever the
            # configuration says.
            "shipping": settings.shipping.model_copy(
                update={"base_url": carrier.base_url, "validate_addresses": True}
            ),
            "payments": payments.model_copy(
                update={
                    "oxapay": payments.oxapay.model_copy(
                        update={
                            "base_url": oxapay.base_url,
                            "sandbox": True,
                            "callback_url": f"http://127.0.0.1:{web_port}/callbacks/oxapay",
                        }
                    )
                }
            ),
            "secrets": Secrets.model_construct(
                telegram_bot_token=None,
                mongo_url=None,
                shipstation_test_api_key=SecretStr("TEST_demo_shipstation"),
                oxapay_merchant_api_key=SecretStr(DEMO_OXAPAY_KEY),
                telegram_payment_provider_token=SecretStr(DEMO_PROVIDER_TOKEN),
            ),
        }
    )
    harness = BotHarness(demo_settings, rate_limits=False, clock=clock)
    transcript = Transcript(out)
    print("ShipLabel Bot demo: the real application against the offline sandbox", file=out)
    await harness.start()
    print(
        f"Bot API emulator {harness.emulator.url} · fake ShipStation {carrier.base_url} · "
        f"fake OxaPay {oxapay.base_url} · web {web_port} · MongoDB in memory",
        file=out,
    )
    harness.add_user(CUSTOMER_ID, first_name="Dana", username="dana", language_code="en")
    harness.add_user(ADMIN_ID, first_name="Alex", username="ops_alex", language_code="en")
    demo = Demo(harness, transcript, {"oxapay": oxapay, "clock": clock, "carrier": carrier})
    try:
        for scene in SCENES:
            await scene(demo)
        storage = harness.application.bot_data.require_storage()
        checked, mismatches = await storage.ledger.audit()
        transcript.section("audit-ledger")
        transcript.note(f"{checked} users checked, {len(mismatches)} mismatches")
        if mismatches:
            raise DemoFailure("the ledger does not add up")
    except (DemoFailure, TimeoutError, AssertionError) as exc:
        print(f"\n❌ demo failed: {exc!r}", file=out)
        return 1
    finally:
        await harness.close()
        await oxapay.stop()
        await carrier.stop()
    print(f"\n✅ demo finished: {transcript.steps} steps, every reply as expected", file=out)
    return 0
