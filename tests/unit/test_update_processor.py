"""Per-chat ordering with concurrency across chats, and no leaked locks."""

import asyncio
import time

from telegram import Chat, Message, PreCheckoutQuery, SuccessfulPayment, Update, User

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


def _payment_update(update_id: int, chat_id: int) -> Update:
    user = User(chat_id, "u", False)
    chat = Chat(chat_id, Chat.PRIVATE)
    paid = SuccessfulPayment("XTR", 10, "topup:x", "charge", "")
    message = Message(
        update_id, None, chat, from_user=user, successful_payment=paid  # type: ignore[arg-type]
    )
    return Update(update_id, message=message)


def _pre_checkout_update(update_id: int, user_id: int) -> Update:
    query = PreCheckoutQuery(str(update_id), User(user_id, "u", False), "XTR", 10, "topup:x")
    return Update(update_id, pre_checkout_query=query)


async def test_one_chat_cannot_hold_every_slot() -> None:
    """Chat A's first update hangs (a slow carrier call) and A queues more updates than
    there are slots: chat B is still served."""
    processor = PerChatUpdateProcessor(2, max_queued_per_chat=50)
    release_a = asyncio.Event()
    handled: list[int] = []

    async def slow(update: Update) -> None:
        await release_a.wait()
        handled.append(update.update_id)

    async def fast(update: Update) -> None:
        handled.append(update.update_id)

    tasks = []
    for update_id in range(1, 6):  # A: one running, four queued; more than two slots
        upd = _update(update_id, 1)
        tasks.append(asyncio.create_task(processor.process_update(upd, slow(upd))))
    b = _update(100, 2)
    b_task = asyncio.create_task(processor.process_update(b, fast(b)))
    await asyncio.wait_for(b_task, timeout=5)  # a bound for the failure, not a timing
    assert handled == [100]
    assert processor.current_concurrent_updates == 1  # only A's running update holds a slot
    release_a.set()
    await asyncio.gather(*tasks)
    assert handled == [100, 1, 2, 3, 4, 5]
    assert processor.active_chats == 0
    assert processor.in_flight == 0


async def test_a_chat_queue_is_capped_and_the_excess_dropped() -> None:
    processor = PerChatUpdateProcessor(4, max_queued_per_chat=3)
    release = asyncio.Event()
    ran: list[int] = []
    done: list[int] = []
    dropped: list[int] = []
    processor.done_listeners.append(lambda u: done.append(u.update_id))  # type: ignore[attr-defined]
    processor.drop_listeners.append(lambda u: dropped.append(u.update_id))  # type: ignore[attr-defined]

    async def handle(update: Update) -> None:
        await release.wait()
        ran.append(update.update_id)

    coroutines = []
    tasks = []
    for update_id in range(1, 9):
        upd = _update(update_id, 1)
        coroutine = handle(upd)
        coroutines.append(coroutine)
        tasks.append(asyncio.create_task(processor.process_update(upd, coroutine)))
    # Payments are never dropped by the cap, however long the chat's queue.
    pay = _payment_update(50, 1)
    pre = _pre_checkout_update(51, 1)
    tasks.append(asyncio.create_task(processor.process_update(pay, handle(pay))))
    tasks.append(asyncio.create_task(processor.process_update(pre, handle(pre))))
    for _ in range(5):
        await asyncio.sleep(0)
    assert dropped == [4, 5, 6, 7, 8]
    # A dropped update counts as done (the inbox forgets it) and its coroutine never runs.
    assert done[:5] == [4, 5, 6, 7, 8]
    assert all(c.cr_frame is None for c in coroutines[3:])  # closed, never awaited
    release.set()
    await asyncio.gather(*tasks)
    assert sorted(ran) == [1, 2, 3, 50, 51]
    assert ran.index(1) < ran.index(2) < ran.index(3)
    assert sorted(done) == [1, 2, 3, 4, 5, 6, 7, 8, 50, 51]
    assert processor.in_flight == 0 and processor.active_chats == 0


async def test_payments_skip_a_busy_chat_and_the_slots() -> None:
    """A pre-checkout must be answered within 10 s and a payment credited at once: they do
    not wait behind the chat's queue or for a slot."""
    processor = PerChatUpdateProcessor(1)
    release = asyncio.Event()
    ran: list[int] = []

    async def slow(update: Update) -> None:
        await release.wait()
        ran.append(update.update_id)

    async def fast(update: Update) -> None:
        ran.append(update.update_id)

    blocked = [_update(1, 1), _update(2, 1), _update(3, 2)]
    tasks = [asyncio.create_task(processor.process_update(u, slow(u))) for u in blocked]
    pay, pre = _payment_update(10, 1), _pre_checkout_update(11, 1)
    await asyncio.wait_for(processor.process_update(pay, fast(pay)), timeout=5)
    await asyncio.wait_for(processor.process_update(pre, fast(pre)), timeout=5)
    assert ran == [10, 11]
    release.set()
    await asyncio.gather(*tasks)
    assert sorted(ran[2:]) == [1, 2, 3]


async def test_an_update_cancelled_with_its_worker_is_not_done() -> None:
    """A worker that dies mid-handling must not tell the inbox the update was handled
    (the inbox would forget it, and a card payment has no other trace); one that finished
    or failed is done."""
    processor = PerChatUpdateProcessor(4)
    done: list[int] = []
    processor.done_listeners.append(lambda u: done.append(u.update_id))  # type: ignore[attr-defined]
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    async def fail() -> None:
        raise RuntimeError("handler bug")

    killed = asyncio.create_task(processor.process_update(_payment_update(1, 1), hang()))
    await started.wait()
    killed.cancel()
    await asyncio.gather(killed, return_exceptions=True)
    failed = asyncio.create_task(processor.process_update(_update(2, 2), fail()))
    await asyncio.gather(failed, return_exceptions=True)
    assert done == [2]
    assert processor.in_flight == 0 and processor.active_chats == 0
