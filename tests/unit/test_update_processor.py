"""Per-chat ordering with concurrency across chats, and no leaked locks."""

import asyncio
import time

from telegram import Chat, Message, Update, User

from bot.update_processor import PerChatUpdateProcessor


def _update(update_id: int, chat_id: int) -> Update:
    user = User(chat_id, "u", False)
    chat = Chat(chat_id, Chat.PRIVATE)
    message = Message(update_id, None, chat, from_user=user, text="x")  # type: ignore[arg-type]
    return Update(update_id, message=message)


async def test_order_within_chat_and_concurrency_across_chats() -> None:
    processor = PerChatUpdateProcessor(1024)
    seen: dict[int, list[int]] = {}
    delay = 0.02

    async def handle(update: Update) -> None:
        assert update.effective_chat is not None
        # Varying sleeps would reorder updates if the processor did not serialise a chat.
        await asyncio.sleep(delay * (1 if update.update_id % 2 else 0.1))
        seen.setdefault(update.effective_chat.id, []).append(update.update_id)

    tasks = []
    update_id = 0
    one_chat = 1
    for _ in range(20):
        update_id += 1
        upd = _update(update_id, one_chat)
        tasks.append(asyncio.create_task(processor.process_update(upd, handle(upd))))
    for chat_id in range(100, 300):
        update_id += 1
        upd = _update(update_id, chat_id)
        tasks.append(asyncio.create_task(processor.process_update(upd, handle(upd))))
    started = time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    assert seen[one_chat] == list(range(1, 21))
    assert len(seen) == 201
    serial = 20 * delay * 0.55 + 200 * delay * 0.55
    assert elapsed < serial / 3, (elapsed, serial)
    assert processor.active_chats == 0
