"""``python -m bot demo``: the real application against the offline sandbox, scripted.

Starts the Bot API emulator on 127.0.0.1, runs the production application on an
in-memory MongoDB, plays a customer (and an admin) through the main flows and prints
the chat transcript. Exits 0 when every step got the reply it expected.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TextIO

from bot.harness import BotHarness
from bot.settings import AdminEntry, Role, Settings
from sandbox.telegram import SentMessage

CUSTOMER_ID = 5550001
ADMIN_ID = 5559999
_TAG = re.compile(r"<[^>]+>")


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
            self._write(f"🤖 bot{to}: {body}")
            if message.document is not None:
                doc = message.document
                self._write(f"      📎 {doc.filename} ({doc.size} bytes)")
            for row in message.button_rows:
                self._write("      " + "  ".join(f"[{text}]" for text, _ in row))

    def section(self, title: str) -> None:
        self._write(f"\n━━━ {title} ━━━")

    def _write(self, line: str) -> None:
        self.lines.append(line)
        print(line, file=self.out)


@dataclass
class Demo:
    harness: BotHarness
    transcript: Transcript

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


SCENES: tuple[Scene, ...] = (scene_start_language_help, scene_support)


async def run_demo(settings: Settings, *, verbose: bool = False, out: TextIO = sys.stdout) -> int:
    if not verbose:
        logging.getLogger().setLevel(logging.WARNING)
    demo_settings = settings.model_copy(
        update={
            "admins": (AdminEntry(user_id=ADMIN_ID, role=Role.OWNER),),
            "outbox": settings.outbox.model_copy(update={"interval_seconds": 0.5}),
        }
    )
    harness = BotHarness(demo_settings, rate_limits=False)
    transcript = Transcript(out)
    print("ShipLabel Bot demo: the real application against the offline sandbox", file=out)
    await harness.start()
    print(f"Bot API emulator at {harness.emulator.url}, MongoDB in memory", file=out)
    harness.add_user(CUSTOMER_ID, first_name="Dana", username="dana", language_code="en")
    harness.add_user(ADMIN_ID, first_name="Alex", username="ops_alex", language_code="en")
    demo = Demo(harness, transcript)
    try:
        for scene in SCENES:
            await scene(demo)
    except (DemoFailure, TimeoutError) as exc:
        print(f"\n❌ demo failed: {exc}", file=out)
        return 1
    finally:
        await harness.close()
    print(f"\n✅ demo finished: {transcript.steps} steps, every reply as expected", file=out)
    return 0
