"""Tests for the offline Telegram Bot API emulator (sandbox/telegram.py)."""

from __future__ import annotations

import asyncio
import datetime as dtm
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    MessageEntity,
    Update,
)
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)
from telegram.ext import (
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
)

from sandbox.telegram import BotApiEmulator, EntityParseError, SentMessage, parse_html

TOKEN = "123456:TEST-token"
UID = 42


class FakeClock:
    """Manual monotonic clock for rate-limit and retention tests."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def emu() -> AsyncIterator[BotApiEmulator]:
    emulator = BotApiEmulator(TOKEN, rate_limits=False)
    emulator.add_user(UID, first_name="Ann", username="ann")
    async with emulator:
        yield emulator


@pytest.fixture
async def bot(emu: BotApiEmulator) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=emu.base_url, base_file_url=emu.base_file_url) as b:
        yield b


def keyboard(*buttons: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(text, callback_data=data)] for text, data in buttons]
    )


def has_text(message: SentMessage, text: str) -> Callable[[], bool]:
    return lambda: message.text == text


def tiny_png(width: int = 2, height: int = 3) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


async def raw_call(emu: BotApiEmulator, method: str, **data: Any) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{emu.base_url}{TOKEN}/{method}", data=data) as resp,
    ):
        return resp.status, await resp.json()


# ------------------------------------------------------------------------------------ basics


async def test_get_me_and_routing(emu: BotApiEmulator, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (123456, "shiplabel_sandbox_bot", True)

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{emu.base_url}WRONG:token/getMe") as resp:
            assert resp.status == 401
            assert await resp.json() == {
                "ok": False,
                "error_code": 401,
                "description": "Unauthorized",
            }
        async with session.get(f"{emu.base_url}{TOKEN}/noSuchMethod") as resp:
            assert resp.status == 404
            assert (await resp.json())["description"] == "Not Found"
        async with session.get(f"{emu.base_url}{TOKEN}/GETME") as resp:  # case-insensitive
            assert resp.status == 200
            assert (await resp.json())["result"]["id"] == 123456
    with pytest.raises(InvalidToken):
        async with Bot("1:bad", base_url=emu.base_url) as other:
            await other.get_me()
    assert emu.stats.requests["getMe"] >= 2


async def test_an_outage_answers_5xx_in_telegrams_error_shape(
    emu: BotApiEmulator, bot: Bot
) -> None:
    emu.fail_requests("getMe", 2, status=502)
    emu.fail_requests("sendMessage", 1, status=500, description="Internal Server Error")
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{emu.base_url}{TOKEN}/getMe") as resp,
    ):
        assert resp.status == 502
        assert await resp.json() == {
            "ok": False,
            "error_code": 502,
            "description": "Bad Gateway",
        }
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.get_me()
    assert (await bot.get_me()).id == 123456  # the outage is over
    with pytest.raises(NetworkError, match="Internal Server Error"):
        await bot.send_message(UID, "hello")
    assert (await bot.send_message(UID, "hello")).text == "hello"
    with pytest.raises(ValueError, match="5xx"):
        emu.fail_requests("getMe", 1, status=404)


async def test_injected_message_is_delivered_and_confirmed(emu: BotApiEmulator, bot: Bot) -> None:
    update_id = emu.send_message(UID, "/start ref_7")
    [update] = await bot.get_updates()
    assert update.update_id == update_id
    msg = update.message
    assert msg is not None and msg.text == "/start ref_7"
    assert msg.chat.id == UID and msg.chat.type == "private"
    assert msg.from_user is not None and msg.from_user.username == "ann"
    assert msg.entities == (MessageEntity(MessageEntity.BOT_COMMAND, 0, 6),)
    assert emu.pending_updates == 1  # not confirmed yet
    assert await bot.get_updates(offset=update_id + 1) == ()
    assert emu.pending_updates == 0
    assert emu.stats.last_get_updates_at is not None


async def test_user_edits_a_message(emu: BotApiEmulator, bot: Bot) -> None:
    """An edit arrives as ``edited_message``: same message id, chat, sender and date, the
    new text with its entities, and ``edit_date`` (Bot API ``Message.edit_date``)."""
    first = emu.send_message(UID, "12 Main St")
    message_id = emu.last_user_message_id(UID)
    edit = emu.edit_message(UID, message_id, "/order now")
    assert edit == first + 1
    original, edited = await bot.get_updates()
    assert original.message is not None and original.edited_message is None
    msg = edited.edited_message
    assert edited.message is None and msg is not None
    assert msg.message_id == message_id == original.message.message_id
    assert msg.chat.id == UID and msg.from_user is not None and msg.from_user.id == UID
    assert msg.date == original.message.date
    assert msg.edit_date is not None and msg.edit_date >= msg.date
    assert msg.text == "/order now"
    assert msg.entities == (MessageEntity(MessageEntity.BOT_COMMAND, 0, 6),)
    # Telegram sends nothing for an edit that changes nothing; edits need a text message.
    with pytest.raises(ValueError, match="unchanged"):
        emu.edit_message(UID, message_id, "/order now")
    with pytest.raises(ValueError, match="1-4096"):
        emu.edit_message(UID, message_id, "")
    with pytest.raises(LookupError):
        emu.edit_message(UID, 9999, "x")
    emu.send_successful_payment(
        UID, currency="XTR", total_amount=5, payload="p", charge_id="c1"
    )
    with pytest.raises(ValueError, match="no text"):
        emu.edit_message(UID, emu.last_user_message_id(UID), "x")
    # A later edit keeps the original date and replaces the text again.
    emu.edit_message(UID, message_id, "13 Main St")
    updates = await bot.get_updates(offset=edited.update_id + 1)
    last = updates[-1].edited_message
    assert last is not None and last.text == "13 Main St" and last.entities == ()
    assert last.date == original.message.date


async def test_negative_offset_keeps_only_the_last_updates(emu: BotApiEmulator, bot: Bot) -> None:
    ids = [emu.send_message(UID, f"m{i}") for i in range(3)]
    updates = await bot.get_updates(offset=-1)
    assert [u.update_id for u in updates] == ids[-1:]
    assert emu.pending_updates == 1
    assert len(await bot.get_updates(limit=1)) == 1


async def test_long_poll_wakes_on_new_update(emu: BotApiEmulator, bot: Bot) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await emu.wait_until(lambda: emu.stats.active_pollers == 1, timeout=2)
    emu.send_message(UID, "hello")
    updates = await asyncio.wait_for(poll, 2)  # well before the 5 s poll timeout
    assert [u.message.text for u in updates if u.message] == ["hello"]
    assert emu.stats.max_concurrent_pollers == 1
    assert emu.stats.conflicts == 0


async def test_updates_expire_after_24_hours() -> None:
    clock = FakeClock()
    async with BotApiEmulator(TOKEN, clock=clock) as emu:
        emu.send_message(UID, "old")
        clock.now += 24 * 3600 + 1
        emu.send_message(UID, "new")
        async with Bot(TOKEN, base_url=emu.base_url) as bot:
            updates = await bot.get_updates()
        assert [u.message.text for u in updates if u.message] == ["new"]


async def test_allowed_updates_filter(emu: BotApiEmulator, bot: Bot) -> None:
    sent = await bot.send_message(UID, "pick", reply_markup=keyboard(("A", "a")))
    emu.send_message(UID, "text")
    query_id = emu.press_button(UID, sent.message_id, "a")
    updates = await bot.get_updates(allowed_updates=["callback_query"])
    assert [u.callback_query.id for u in updates if u.callback_query] == [query_id]
    assert len(updates) == 1


# ------------------------------------------------------------------------------------ text


async def test_send_message_html_entities(emu: BotApiEmulator, bot: Bot) -> None:
    source = '<b>Label</b> &amp; <a href="https://t.me/x">link</a> 😀 <i>end</i>'
    msg = await bot.send_message(UID, source, parse_mode="HTML")
    assert msg.text == "Label & link 😀 end"
    assert msg.from_user is not None and msg.from_user.id == 123456
    types = [(e.type, e.offset, e.length) for e in msg.entities]
    assert types == [("bold", 0, 5), ("text_link", 8, 4), ("italic", 16, 3)]  # 😀 = 2 units
    [sent] = emu.sent_messages(UID)
    assert (sent.text, sent.source, sent.method) == (msg.text, source, "sendMessage")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("<b>unclosed", "end tag corresponding to start tag b"),
        ("a < b", 'unsupported start tag ""'),
        ("<foo>x</foo>", 'unsupported start tag "foo"'),
        ("<b>x</i>", "unmatched end tag"),
        ("Tom & Jerry", 'must be escaped as "&amp;"'),
        ('<span class="x">y</span>', "tg-spoiler"),
    ],
)
async def test_send_message_bad_html(bot: Bot, text: str, fragment: str) -> None:
    with pytest.raises(BadRequest, match="(?i)can't parse entities") as exc:
        await bot.send_message(UID, text, parse_mode="HTML")
    assert fragment.lower() in exc.value.message.lower()


async def test_text_length_limits(emu: BotApiEmulator, bot: Bot) -> None:
    await bot.send_message(UID, "x" * 4096)
    await bot.send_message(UID, "<b>" + "x" * 4096 + "</b>", parse_mode="HTML")  # after parsing
    with pytest.raises(BadRequest, match="(?i)message is too long"):
        await bot.send_message(UID, "x" * 4097)
    with pytest.raises(BadRequest, match="(?i)message text is empty"):
        await bot.send_message(UID, "<b> </b>", parse_mode="HTML")
    with pytest.raises(BadRequest, match="(?i)chat not found"):
        await bot.send_message(999, "who?")
    assert len(emu.sent_messages(UID)) == 2


async def test_callback_data_byte_limit(emu: BotApiEmulator, bot: Bot) -> None:
    await bot.send_message(UID, "ok", reply_markup=keyboard(("A", "a" * 64), ("B", "é" * 32)))
    for data in ("a" * 65, "é" * 33):
        with pytest.raises(BadRequest, match="(?i)BUTTON_DATA_INVALID"):
            await bot.send_message(UID, "no", reply_markup=keyboard(("A", data)))
    [sent] = emu.sent_messages(UID)
    assert sent.buttons == [("A", "a" * 64), ("B", "é" * 32)]


async def test_edit_message_text(emu: BotApiEmulator, bot: Bot) -> None:
    kb = keyboard(("Buy", "buy:1"))
    msg = await bot.send_message(UID, "<b>Quote</b>", parse_mode="HTML", reply_markup=kb)
    with pytest.raises(BadRequest, match="(?i)message is not modified"):
        await bot.edit_message_text(
            "<b>Quote</b>", UID, msg.message_id, parse_mode="HTML", reply_markup=kb
        )
    edited = await bot.edit_message_text("Paid", UID, msg.message_id)
    assert isinstance(edited, type(msg)) and edited.text == "Paid"
    assert edited.reply_markup is None and edited.edit_date is not None
    sent = emu.message(UID, msg.message_id)
    assert sent.edited and sent.text == "Paid" and sent.buttons == []
    assert [v.text for v in sent.history] == ["Quote"]
    assert sent.history[0].reply_markup == kb.to_dict()
    with pytest.raises(BadRequest, match="(?i)message to edit not found"):
        await bot.edit_message_text("x", UID, 999)
    await bot.edit_message_reply_markup(UID, msg.message_id, reply_markup=kb)
    assert emu.message(UID, msg.message_id).buttons == [("Buy", "buy:1")]
    assert await bot.delete_message(UID, msg.message_id) is True
    assert emu.message(UID, msg.message_id).deleted
    with pytest.raises(BadRequest, match="(?i)message to delete not found"):
        await bot.delete_message(UID, msg.message_id)


async def test_blocked_chat_is_forbidden(emu: BotApiEmulator, bot: Bot) -> None:
    emu.block_chat(UID)
    with pytest.raises(Forbidden, match="(?i)bot was blocked by the user"):
        await bot.send_message(UID, "hi")
    [update] = await bot.get_updates()
    assert update.my_chat_member is not None
    assert update.my_chat_member.new_chat_member.status == "kicked"
    emu.unblock_chat(UID, notify=False)
    await bot.send_message(UID, "welcome back")
    assert [m.text for m in emu.sent_messages(UID)] == ["welcome back"]


# ------------------------------------------------------------------------------------ limits


async def test_per_chat_rate_limit_with_injected_clock() -> None:
    clock = FakeClock()
    async with BotApiEmulator(TOKEN, clock=clock) as emu:
        emu.add_user(UID)
        async with Bot(TOKEN, base_url=emu.base_url) as bot:
            for i in range(3):
                await bot.send_message(UID, f"burst {i}")
            with pytest.raises(RetryAfter) as exc:
                await bot.send_message(UID, "one too many")
            assert exc.value.retry_after in (1, dtm.timedelta(seconds=1))
            clock.now += 1.0
            await bot.send_message(UID, "after waiting")
            stats = emu.stats
            assert stats.rate_limited == 1 and stats.rate_limited_by_chat == {UID: 1}
            assert stats.rate_limited_by_overall_bucket == 0

            emu.set_rate_limits(False)
            for i in range(5):
                await bot.send_message(UID, f"unlimited {i}")
            assert emu.stats.rate_limited == 1


async def test_overall_rate_limit_and_raw_429_shape() -> None:
    clock = FakeClock()
    async with BotApiEmulator(TOKEN, clock=clock, per_chat_capacity=100) as emu:
        emu.add_user(UID)
        for i in range(30):
            status, _ = await raw_call(emu, "sendMessage", chat_id=UID, text=f"m{i}")
            assert status == 200
        status, body = await raw_call(emu, "sendMessage", chat_id=UID, text="flood")
        assert status == 429
        assert body == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        }
        assert emu.stats.rate_limited_by_overall_bucket == 1
        # answerCallbackQuery / deleteMessage are not flood-controlled
        status, _ = await raw_call(emu, "deleteMessage", chat_id=UID, message_id=1)
        assert status == 200


async def test_second_concurrent_poller_gets_conflict(emu: BotApiEmulator, bot: Bot) -> None:
    async with Bot(TOKEN, base_url=emu.base_url) as other_instance:
        first = asyncio.create_task(bot.get_updates(timeout=5))
        await emu.wait_until(lambda: emu.stats.active_pollers == 1, timeout=2)
        second = asyncio.create_task(other_instance.get_updates(timeout=5))
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await asyncio.wait_for(first, 2)
        emu.send_message(UID, "ping")
        updates = await asyncio.wait_for(second, 2)
        assert len(updates) == 1
    stats = emu.stats
    assert (stats.conflicts, stats.max_concurrent_pollers) == (1, 2)


# ------------------------------------------------------------------------------------ files


async def test_send_document_round_trip_and_resend(emu: BotApiEmulator, bot: Bot) -> None:
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 10
    msg = await bot.send_document(
        UID, pdf, filename="label.pdf", caption="<b>Your label</b>", parse_mode="HTML"
    )
    doc = msg.document
    assert doc is not None and doc.file_name == "label.pdf"
    assert doc.mime_type == "application/pdf" and doc.file_size == len(pdf)
    assert msg.caption == "Your label" and msg.caption_entities[0].type == "bold"
    sent = emu.sent_messages(UID)[-1]
    assert sent.document is not None and sent.document.data == pdf
    assert sent.content == "Your label"

    tg_file = await bot.get_file(doc.file_id)
    assert bytes(await tg_file.download_as_bytearray()) == pdf

    again = await bot.send_document(UID, doc.file_id)
    assert again.document is not None
    assert (again.document.file_id, again.document.file_unique_id) == (
        doc.file_id,
        doc.file_unique_id,
    )
    with pytest.raises(BadRequest, match="(?i)wrong file identifier"):
        await bot.send_document(UID, "no-such-file-id")
    with pytest.raises(BadRequest, match="(?i)caption is too long"):
        await bot.send_document(UID, doc.file_id, caption="c" * 1025)


async def test_send_photo(emu: BotApiEmulator, bot: Bot) -> None:
    msg = await bot.send_photo(UID, tiny_png(2, 3), caption="qr")
    [size] = msg.photo
    assert (size.width, size.height) == (2, 3)
    with pytest.raises(BadRequest, match="(?i)IMAGE_PROCESS_FAILED"):
        await bot.send_photo(UID, b"%PDF-1.4 not an image")
    with pytest.raises(BadRequest, match="(?i)can't use file of type photo as document"):
        await bot.send_document(UID, size.file_id)
    assert (await bot.send_photo(UID, size.file_id)).photo[0].file_id == size.file_id
    assert emu.file(size.file_id) is not None


# ------------------------------------------------------------------------------------ payments


async def test_send_invoice_stars_validation(emu: BotApiEmulator, bot: Bot) -> None:
    price = [LabeledPrice("Label", 150)]
    msg = await bot.send_invoice(UID, "USPS label", "Priority Mail", "order-1", "XTR", price)
    assert msg.invoice is not None
    assert (msg.invoice.currency, msg.invoice.total_amount) == ("XTR", 150)
    assert msg.reply_markup is not None and msg.reply_markup.inline_keyboard[0][0].pay
    sent = emu.sent_messages(UID)[-1]
    assert sent.invoice is not None and sent.invoice.payload == "order-1"

    bad: list[tuple[dict[str, Any], str]] = [
        ({"prices": [LabeledPrice("a", 1), LabeledPrice("b", 2)]}, "STARS_INVOICE_INVALID"),
        ({"title": "t" * 33}, "title"),
        ({"title": ""}, "title"),
        ({"description": "d" * 256}, "description"),
        ({"payload": "é" * 65}, "payload"),
        ({"currency": "USD"}, "PAYMENT_PROVIDER_INVALID"),
    ]
    for override, fragment in bad:
        args: dict[str, Any] = {
            "chat_id": UID,
            "title": "USPS label",
            "description": "Priority Mail",
            "payload": "order-1",
            "currency": "XTR",
            "prices": price,
            **override,
        }
        with pytest.raises(BadRequest) as exc:
            await bot.send_invoice(**args)
        assert fragment.lower() in exc.value.message.lower(), override
    assert len(emu.sent_messages(UID)) == 1


async def test_pre_checkout_payment_and_refund(emu: BotApiEmulator, bot: Bot) -> None:
    query_id = emu.send_pre_checkout_query(
        UID, currency="XTR", total_amount=150, payload="order-1"
    )
    [update] = await bot.get_updates()
    assert update.pre_checkout_query is not None
    assert update.pre_checkout_query.invoice_payload == "order-1"

    status, body = await raw_call(
        emu, "answerPreCheckoutQuery", pre_checkout_query_id=query_id, ok="false"
    )
    assert status == 400 and "error_message" in body["description"]
    assert await bot.answer_pre_checkout_query(query_id, ok=True) is True
    with pytest.raises(BadRequest, match="(?i)query id is invalid"):
        await bot.answer_pre_checkout_query(query_id, ok=True)
    [answer] = emu.pre_checkout_answers
    assert (answer.ok, answer.payload, answer.total_amount) == (True, "order-1", 150)

    emu.send_successful_payment(
        UID, currency="XTR", total_amount=150, payload="order-1", charge_id="ch_1"
    )
    [update] = await bot.get_updates(offset=update.update_id + 1)
    assert update.message is not None and update.message.successful_payment is not None
    assert update.message.successful_payment.telegram_payment_charge_id == "ch_1"

    with pytest.raises(BadRequest, match="(?i)CHARGE_NOT_FOUND"):
        await bot.refund_star_payment(UID + 1, "ch_1")
    assert await bot.refund_star_payment(UID, "ch_1") is True
    with pytest.raises(BadRequest, match="(?i)CHARGE_ALREADY_REFUNDED"):
        await bot.refund_star_payment(UID, "ch_1")
    with pytest.raises(BadRequest, match="(?i)CHARGE_NOT_FOUND"):
        await bot.refund_star_payment(UID, "nope")
    assert [c.refunded for c in emu.charges] == [True]
    [refund] = await bot.get_updates(offset=update.update_id + 1)
    assert refund.message is not None and refund.message.refunded_payment is not None
    assert refund.message.refunded_payment.telegram_payment_charge_id == "ch_1"


async def test_star_transactions_follow_the_bot_api(emu: BotApiEmulator, bot: Bot) -> None:
    """Oldest first; a refund is a new, outgoing transaction (``receiver`` = the user) with
    the id of the payment it refunds, listed when it happens; offset/limit 1-100."""
    from telegram import TransactionPartnerUser

    for n in range(3):
        emu.send_successful_payment(
            UID, currency="XTR", total_amount=10 + n, payload=f"p-{n}", charge_id=f"ch_{n}"
        )
    assert await bot.refund_star_payment(UID, "ch_0") is True
    emu.send_successful_payment(
        UID, currency="XTR", total_amount=99, payload="p-3", charge_id="ch_3"
    )
    page = await bot.get_star_transactions()
    listed = [(tx.id, tx.source is not None, tx.amount) for tx in page.transactions]
    assert listed == [
        ("ch_0", True, 10),
        ("ch_1", True, 11),
        ("ch_2", True, 12),
        ("ch_0", False, 10),  # the refund, after what came before it
        ("ch_3", True, 99),
    ]
    refund = page.transactions[3]
    assert isinstance(refund.receiver, TransactionPartnerUser)
    assert refund.receiver.user.id == UID and refund.receiver.invoice_payload == "p-0"
    dates = [tx.date for tx in page.transactions]
    assert dates == sorted(dates)
    assert dates == [tx.date for tx in (await bot.get_star_transactions()).transactions]
    paged = await bot.get_star_transactions(offset=1, limit=2)
    assert [tx.id for tx in paged.transactions] == ["ch_1", "ch_2"]
    assert (await bot.get_star_transactions(offset=5)).transactions == ()
    for bad in ({"limit": 0}, {"limit": 101}, {"offset": -1}):
        with pytest.raises(BadRequest):
            await bot.get_star_transactions(**bad)
    # A fault knob: a transaction listed before ones already there (history not append-only).
    emu.send_successful_payment(
        UID, currency="XTR", total_amount=5, payload="late", charge_id="ch_late", history_index=1
    )
    ids = [tx.id for tx in (await bot.get_star_transactions()).transactions]
    assert ids == ["ch_0", "ch_late", "ch_1", "ch_2", "ch_0", "ch_3"]


async def test_fail_next_loses_the_answer_or_refuses(emu: BotApiEmulator, bot: Bot) -> None:
    from telegram.error import NetworkError

    emu.send_successful_payment(UID, currency="XTR", total_amount=7, payload="p", charge_id="c1")
    emu.fail_next("refundStarPayment", after=True)  # refunded, but the answer is a 502
    with pytest.raises(NetworkError):
        await bot.refund_star_payment(UID, "c1")
    assert [c.refunded for c in emu.charges] == [True]
    emu.send_successful_payment(UID, currency="XTR", total_amount=7, payload="p", charge_id="c2")
    emu.fail_next("refundStarPayment", after=False)  # failed before doing anything
    with pytest.raises(NetworkError):
        await bot.refund_star_payment(UID, "c2")
    assert [c.refunded for c in emu.charges] == [True, False]
    assert await bot.refund_star_payment(UID, "c2") is True
    with pytest.raises(ValueError):
        emu.fail_next("noSuchMethod")


async def test_callback_query_and_answer(emu: BotApiEmulator, bot: Bot) -> None:
    msg = await bot.send_message(UID, "Choose", reply_markup=keyboard(("Ground", "svc:ground")))
    sent = emu.message(UID, msg.message_id)
    query_id = emu.press_button(UID, msg.message_id, sent.callback_data_for("Ground"))
    [update] = await bot.get_updates()
    query = update.callback_query
    assert query is not None and query.id == query_id and query.data == "svc:ground"
    assert query.message is not None and query.message.message_id == msg.message_id
    with pytest.raises(BadRequest, match="(?i)MESSAGE_TOO_LONG"):
        await bot.answer_callback_query(query_id, text="x" * 201)
    assert await bot.answer_callback_query(query_id, text="Saved") is True
    with pytest.raises(BadRequest, match="(?i)query id is invalid"):
        await bot.answer_callback_query(query_id)
    [answer] = emu.callback_answers
    assert (answer.data, answer.text, answer.message_id) == ("svc:ground", "Saved", msg.message_id)
    with pytest.raises(ValueError, match="no button"):
        emu.press_button(UID, msg.message_id, "forged")
    with pytest.raises(LookupError):
        emu.press_button(UID, 999, "svc:ground")


async def test_commands_and_webhook_housekeeping(bot: Bot) -> None:
    assert await bot.delete_webhook(drop_pending_updates=True) is True
    assert await bot.set_my_commands([("start", "Start"), ("label", "Buy a label")]) is True
    commands = await bot.get_my_commands()
    assert [(c.command, c.description) for c in commands] == [
        ("start", "Start"),
        ("label", "Buy a label"),
    ]
    with pytest.raises(BadRequest, match="(?i)BOT_COMMAND_INVALID"):
        await bot.set_my_commands([("Bad Command", "x")])
    assert await bot.send_chat_action(UID, "typing") is True


# ------------------------------------------------------------------------------------ control


async def test_ptb_application_end_to_end(emu: BotApiEmulator) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(
            f"<b>Hi</b> {context.args}", parse_mode="HTML", reply_markup=keyboard(("Buy", "buy"))
        )

    async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("Done")
        await query.edit_message_text("Bought")

    for _ in range(2):  # a restart must not look like two concurrent bot instances
        app = (
            ApplicationBuilder()
            .token(TOKEN)
            .base_url(emu.base_url)
            .base_file_url(emu.base_file_url)
            .build()
        )
        app.add_handler(CommandHandler("start", start))
        app.add_handler(CallbackQueryHandler(on_button))
        async with app:
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(timeout=10, poll_interval=0)
            mark = emu.cursor(UID)
            emu.send_message(UID, "/start ref")
            [reply] = await emu.wait_for_messages(UID, 1, since=mark)
            assert reply.text == "Hi ['ref']" and reply.source is not None
            emu.press_button(UID, reply.message_id, reply.callback_data_for("Buy"))
            await emu.wait_until(has_text(reply, "Bought"))
            await app.updater.stop()
            await app.stop()
    assert [a.text for a in emu.callback_answers] == ["Done", "Done"]
    stats = emu.stats
    assert (stats.conflicts, stats.max_concurrent_pollers, stats.pending_updates) == (0, 1, 0)


async def test_wait_for_messages(emu: BotApiEmulator, bot: Bot) -> None:
    mark = emu.cursor(UID)

    async def reply_later() -> None:
        await asyncio.sleep(0)
        await bot.send_message(UID, "one")
        await bot.send_message(UID, "two")

    task = asyncio.create_task(reply_later())
    msgs = await emu.wait_for_messages(UID, 2, since=mark, timeout=3)
    await task
    assert [m.text for m in msgs] == ["one", "two"]
    assert [m.seq for m in msgs] == [0, 1] and emu.cursor(UID) == 2
    with pytest.raises(TimeoutError, match="got 0"):
        await emu.wait_for_messages(UID, 1, since=emu.cursor(UID), timeout=0.05)


async def test_http_control_api(emu: BotApiEmulator, bot: Bot) -> None:
    base = f"{emu.url}/_control"
    async with aiohttp.ClientSession() as http:

        async def call(method: str, path: str, payload: Any = None) -> tuple[int, Any]:
            async with http.request(method, base + path, json=payload) as resp:
                return resp.status, await resp.json()

        status, body = await call("POST", "/users", {"user_id": 7, "first_name": "Bo"})
        assert (status, body) == (200, {"ok": True, "result": True})
        status, body = await call("POST", "/users/7/messages", {"text": "/start"})
        update_id = body["result"]["update_id"]
        [update] = await bot.get_updates()
        assert update.update_id == update_id and update.message is not None
        assert update.message.from_user is not None
        assert update.message.from_user.first_name == "Bo"
        message_id = update.message.message_id
        status, body = await call("POST", f"/users/7/messages/{message_id}/edit", {"text": "x"})
        [update] = await bot.get_updates(offset=update_id + 1)
        assert update.update_id == body["result"]["update_id"]
        assert update.edited_message is not None and update.edited_message.text == "x"
        status, body = await call("POST", "/users/7/messages/999/edit", {"text": "y"})
        assert status == 404 and body["ok"] is False
        await bot.get_updates(offset=update.update_id + 1)

        waiter = asyncio.create_task(call("GET", "/chats/7/messages?since=0&count=1&wait=5"))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        sent = await bot.send_message(7, "Hi Bo", reply_markup=keyboard(("Go", "go")))
        status, body = await asyncio.wait_for(waiter, 2)
        [message] = body["result"]["messages"]
        assert (message["text"], message["buttons"], body["result"]["next"]) == (
            "Hi Bo",
            [["Go", "go"]],
            1,
        )

        status, body = await call(
            "POST", "/users/7/callbacks", {"message_id": sent.message_id, "data": "go"}
        )
        assert status == 200 and body["result"]["callback_query_id"]
        status, body = await call("POST", "/users/7/callbacks", {"message_id": 999, "data": "go"})
        assert status == 404 and body["ok"] is False
        status, body = await call("POST", "/users/7/messages", {})
        assert status == 400

        await call("POST", "/chats/7/block")
        with pytest.raises(Forbidden):
            await bot.send_message(7, "blocked")
        await call("POST", "/chats/7/unblock")

        status, body = await call("POST", "/rate_limits", {"enabled": True})
        assert body["result"] == {"enabled": True}
        status, body = await call("GET", "/stats")
        stats = body["result"]
        assert stats["rate_limits_enabled"] is True and stats["requests"]["sendMessage"] == 2
        assert stats["errors"] == {"403": 1}

        status, body = await call("GET", "/messages")
        assert [m["chat_id"] for m in body["result"]["messages"]] == [7]


# ------------------------------------------------------------------------------------ parser


def test_parse_html_entities() -> None:
    text, entities = parse_html(
        '<pre><code class="language-python">x = 1</code></pre>'
        "<blockquote expandable>q</blockquote>"
        '<span class="tg-spoiler">s</span><tg-spoiler>t</tg-spoiler>'
        '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>&#x41;&#66;&lt;&gt;&quot;'
        "<B><u>bu</u></B>"
    )
    assert text == 'x = 1qst👍AB<>"bu'
    assert entities == [
        {"type": "pre", "offset": 0, "length": 5, "language": "python"},
        {"type": "expandable_blockquote", "offset": 5, "length": 1},
        {"type": "spoiler", "offset": 6, "length": 1},
        {"type": "spoiler", "offset": 7, "length": 1},
        {
            "type": "custom_emoji",
            "offset": 8,
            "length": 2,
            "custom_emoji_id": "5368324170671202286",
        },
        {"type": "bold", "offset": 15, "length": 2},
        {"type": "underline", "offset": 15, "length": 2},
    ]


@pytest.mark.parametrize("bad", ["<b", "</b>", "&nbsp;", "<a href=x>y", "<br>", "x &# y"])
def test_parse_html_rejects(bad: str) -> None:
    with pytest.raises(EntityParseError):
        parse_html(bad)


async def test_history_is_bounded() -> None:
    async with BotApiEmulator(TOKEN, rate_limits=False, history_limit=2) as emu:
        emu.add_user(UID)
        async with Bot(TOKEN, base_url=emu.base_url) as bot:
            first = await bot.send_message(UID, "m0")
            for text in ("m1", "m2"):
                await bot.send_message(UID, text)
            assert [m.text for m in emu.sent_messages(UID)] == ["m1", "m2"]
            assert emu.cursor(UID) == 3
            assert [m.seq for m in emu.sent_messages(UID, since=2)] == [2]
            with pytest.raises(BadRequest, match="(?i)message to edit not found"):
                await bot.edit_message_text("x", UID, first.message_id)


async def test_a_user_sends_a_document_and_the_bot_downloads_it(
    emu: BotApiEmulator, bot: Bot
) -> None:
    """As Telegram delivers it: a message with ``document`` (file_id, file_unique_id,
    file_name, mime_type, file_size); getFile gives a file_path to download; files over
    the Bot API's 20 MB download limit are refused by getFile."""
    data = b"name,city\nJohn,Springfield\n"
    update_id = emu.send_document(UID, data, "parcels.csv", caption="today")
    [update] = await bot.get_updates()
    assert update.update_id == update_id
    message = update.message
    assert message is not None and message.document is not None
    doc = message.document
    assert doc.file_name == "parcels.csv" and doc.mime_type == "text/csv"
    assert doc.file_size == len(data) and doc.file_unique_id
    assert message.caption == "today" and message.text is None
    tg_file = await bot.get_file(doc.file_id)
    assert tg_file.file_path is not None and tg_file.file_size == len(data)
    assert bytes(await tg_file.download_as_bytearray()) == data

    big = emu.send_document(UID, b"x" * (20 * 1024 * 1024 + 1), "big.csv")
    [update] = await bot.get_updates(offset=update_id + 1)
    assert update.update_id == big
    assert update.message is not None and update.message.document is not None
    with pytest.raises(BadRequest, match="(?i)file is too big"):
        await bot.get_file(update.message.document.file_id)
    with pytest.raises(ValueError, match="empty"):
        emu.send_document(UID, b"", "empty.csv")


async def test_send_invoice_provider_validation(emu: BotApiEmulator, bot: Bot) -> None:
    """A payment-provider invoice needs a provider token, a known currency and a total
    within that currency's limits in minor units (Telegram's currencies.json)."""
    price = [LabeledPrice("Top-up", 2500)]
    msg = await bot.send_invoice(
        UID, "Top-up", "Adds $25.00", "card:1", "USD", price, provider_token="284685063:TEST:x"
    )
    assert msg.invoice is not None
    assert (msg.invoice.currency, msg.invoice.total_amount) == ("USD", 2500)
    assert msg.reply_markup is not None and msg.reply_markup.inline_keyboard[0][0].pay
    bad: list[tuple[dict[str, Any], str]] = [
        ({"provider_token": ""}, "PAYMENT_PROVIDER_INVALID"),
        ({"currency": "ZZZ"}, "CURRENCY_INVALID"),
        ({"prices": [LabeledPrice("Top-up", 99)]}, "CURRENCY_TOTAL_AMOUNT_INVALID"),
        ({"prices": [LabeledPrice("Top-up", 1_000_001)]}, "CURRENCY_TOTAL_AMOUNT_INVALID"),
        ({"prices": [LabeledPrice("Top-up", 0)]}, "CURRENCY_TOTAL_AMOUNT_INVALID"),
    ]
    for override, fragment in bad:
        args: dict[str, Any] = {
            "chat_id": UID,
            "title": "Top-up",
            "description": "Adds $25.00",
            "payload": "card:1",
            "currency": "USD",
            "prices": price,
            "provider_token": "284685063:TEST:x",
            **override,
        }
        with pytest.raises(BadRequest) as exc:
            await bot.send_invoice(**args)
        assert fragment.lower() in exc.value.message.lower(), override
    assert len(emu.sent_messages(UID)) == 1


async def test_checkout_of_a_provider_invoice() -> None:
    """Pay on an invoice sends its pre-checkout query; only an ``ok`` answer given within
    10 s is charged, reported with Telegram's and the provider's charge ids."""
    clock = FakeClock()
    emu = BotApiEmulator(TOKEN, rate_limits=False, clock=clock)
    emu.add_user(UID, first_name="Ann")
    async with emu, Bot(TOKEN, base_url=emu.base_url, base_file_url=emu.base_file_url) as bot:
        msg = await bot.send_invoice(
            UID, "Top-up", "d", "card:1", "USD", [LabeledPrice("x", 1000)], provider_token="t:1"
        )
        query_id = emu.checkout(UID, msg.message_id)
        [update] = await bot.get_updates()
        query = update.pre_checkout_query
        assert query is not None
        assert (query.currency, query.total_amount, query.invoice_payload) == (
            "USD", 1000, "card:1"
        )
        with pytest.raises(ValueError, match="not answered ok"):
            emu.complete_checkout(query_id)
        assert await bot.answer_pre_checkout_query(query_id, ok=True) is True
        emu.complete_checkout(query_id)
        [update] = await bot.get_updates(offset=update.update_id + 1)
        assert update.message is not None and update.message.successful_payment is not None
        paid = update.message.successful_payment
        assert paid.provider_payment_charge_id.startswith("pi_")
        assert paid.telegram_payment_charge_id and paid.total_amount == 1000

        refused = emu.checkout(UID, msg.message_id)
        await bot.answer_pre_checkout_query(refused, ok=False, error_message="no")
        with pytest.raises(ValueError):
            emu.complete_checkout(refused)
        late = emu.checkout(UID, msg.message_id)
        clock.now += 11
        with pytest.raises(BadRequest, match="(?i)query is too old"):
            await bot.answer_pre_checkout_query(late, ok=True)


async def test_http_control_checkout(emu: BotApiEmulator, bot: Bot) -> None:
    msg = await bot.send_invoice(
        UID, "Top-up", "d", "card:9", "USD", [LabeledPrice("x", 1500)], provider_token="t:1"
    )
    async with aiohttp.ClientSession() as http:

        async def call(path: str, payload: Any = None) -> tuple[int, Any]:
            async with http.post(f"{emu.url}/_control{path}", json=payload) as resp:
                return resp.status, await resp.json()

        status, body = await call(f"/users/{UID}/checkout", {"message_id": msg.message_id})
        assert status == 200
        query_id = body["result"]["pre_checkout_query_id"]
        status, body = await call(f"/pre_checkout_queries/{query_id}/complete")
        assert status == 400 and "not answered ok" in body["description"]
        await bot.answer_pre_checkout_query(query_id, ok=True)
        status, body = await call(f"/pre_checkout_queries/{query_id}/complete")
        assert status == 200 and body["result"]["update_id"]
        status, body = await call(f"/users/{UID}/checkout", {"message_id": 999})
        assert status == 404
        status, body = await call(
            f"/users/{UID}/payments",
            {"currency": "USD", "total_amount": 1500, "payload": "card:9", "charge_id": "c2",
             "provider_payment_charge_id": "pi_2"},
        )
        assert status == 200
    [charge] = [c for c in emu.charges if c.charge_id == "c2"]
    assert charge.payload == "card:9"
