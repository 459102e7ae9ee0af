"""Label formats end to end: /format, a label bought and delivered in the chosen format,
My labels' ⬇️ Formats (only what the carrier links), forged buttons refused."""

from __future__ import annotations

from typing import Any

from sandbox.telegram import SentMessage
from tests.e2e.shop import USER, ShopEnv, buy_label

OTHER = 7002


async def _forge(shop: ShopEnv, message: SentMessage, data: str) -> list[SentMessage]:
    """A modified client sends ``data`` from ``message`` (no such button was shown)."""
    stored = shop.harness.emulator.message(USER, message.message_id)
    assert stored.reply_markup is not None
    stored.reply_markup["inline_keyboard"][0][0]["callback_data"] = data
    return await shop.harness.press(USER, stored, data=data)


async def _user(shop: ShopEnv, user_id: int = USER) -> dict[str, Any]:
    return dict(await shop.mongo.db["users"].find_one({"_id": user_id}) or {})


async def _choose(shop: ShopEnv, label: str, user_id: int = USER) -> SentMessage:
    h = shop.harness
    [screen] = await h.say(user_id, "/format")
    replies = await h.press(user_id, screen, label)
    return replies[-1] if replies else h.emulator.message(user_id, screen.message_id)


async def test_format_screen_shows_the_default_and_stores_a_choice(shop: ShopEnv) -> None:
    h = shop.harness
    [screen] = await h.say(USER, "/format")
    assert "Your labels come as: PDF 4×6 in" in screen.content
    assert [label for label, _ in screen.buttons][:4] == [
        "✅ PDF 4×6 in (label printers)",
        "PDF letter size (office printers)",
        "PNG image 4×6 in",
        "ZPL (Zebra thermal printers)",
    ]
    await h.press(USER, screen, "ZPL")
    edited = h.emulator.message(USER, screen.message_id)
    assert "Your next labels come as ZPL" in edited.content
    assert "✅ ZPL (Zebra thermal printers)" in [label for label, _ in edited.buttons]
    assert (await _user(shop))["label_format"] == "zpl"
    # the main menu opens the same screen, in Russian too
    await h.say(USER, "/start")
    [menu] = [m for m in h.emulator.sent_messages(USER)[-2:] if m.buttons]
    [again] = await h.press(USER, menu, data="menu:format")
    assert "Your labels come as: ZPL" in again.content


async def test_forged_or_unknown_format_button_changes_nothing(shop: ShopEnv) -> None:
    h = shop.harness
    [screen] = await h.say(USER, "/format")
    for data in ("fmt:set:tiff", "fmt:set:PDF_4X6", "fmt:set:zpl.x"):
        assert await _forge(shop, screen, data) == []
        answer = h.emulator.callback_answers[-1]
        assert answer.data == data and answer.show_alert
        assert answer.text == "This label format is not available; nothing was changed."
    assert "label_format" not in await _user(shop)


async def test_a_zpl_customer_gets_a_zpl_label(shop: ShopEnv) -> None:
    await shop.fund(USER, 10_000)
    await _choose(shop, "ZPL")
    h = shop.harness
    mark = h.emulator.cursor(USER)
    order = await buy_label(shop)
    [doc] = [m for m in h.emulator.sent_messages(USER, since=mark) if m.document]
    assert doc.document is not None
    assert doc.document.filename == f"label-{order['tracking_number']}.zpl"
    assert doc.document.mime_type == "application/zpl"
    text = doc.document.data.decode("ascii").strip()
    assert text.startswith("^XA") and text.endswith("^XZ")
    assert str(order["tracking_number"]) in text
    fake = shop.carrier.labels[str(order["label_id"])]
    assert (fake.label_format, fake.label_layout) == ("zpl", "4x6")
    assert order["label_format"] == "zpl" and order["label_file_format"] == "zpl"
    assert str(order["label_url"]).endswith(".zpl")
    assert set(order["label_downloads"]) == {"pdf", "png", "zpl"}
    # My labels' resend button sends the same file again (by its Telegram file id)
    [labels] = await h.say(USER, "/labels")
    [again] = await h.press(USER, labels, data=f"lbl:pdf:{order['_id']}")
    assert again.document is not None and again.document.filename == doc.document.filename
    await shop.audit_ok()


async def test_letter_and_png_labels(shop: ShopEnv) -> None:
    await shop.fund(USER, 10_000)
    h = shop.harness
    await _choose(shop, "PDF letter")
    mark = h.emulator.cursor(USER)
    letter = await buy_label(shop)
    [doc] = [m for m in h.emulator.sent_messages(USER, since=mark) if m.document]
    assert doc.document is not None and doc.document.filename.endswith(".pdf")
    assert doc.document.mime_type == "application/pdf"
    assert b"/MediaBox [0 0 612 792]" in doc.document.data
    assert shop.carrier.labels[str(letter["label_id"])].label_layout == "letter"
    await _choose(shop, "PNG")
    mark = h.emulator.cursor(USER)
    png = await buy_label(shop)
    [doc] = [m for m in h.emulator.sent_messages(USER, since=mark) if m.document]
    assert doc.document is not None and doc.document.filename.endswith(".png")
    assert doc.document.mime_type == "image/png"
    assert doc.document.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert png["label_format"] == "png"
    # the letter-size label exists as a PDF only: My labels says so, offers nothing else
    [labels] = await h.say(USER, "/labels")
    [answer] = await h.press(USER, labels, data=f"lbl:fmt:{letter['_id']}")
    assert "available only as PDF letter size" in answer.content
    assert "cannot convert" in answer.content and answer.buttons == []
    assert await _forge(shop, labels, f"lbl:dl:{letter['_id']}:zpl") == []
    reply = h.emulator.callback_answers[-1]
    assert reply.show_alert and reply.text == "This format is not available for this label."


async def test_my_labels_downloads_another_format_and_refuses_forged_ones(
    shop: ShopEnv,
) -> None:
    h = shop.harness
    h.add_user(OTHER)
    await h.say(OTHER, "/start")
    await shop.fund(USER, 10_000)
    await shop.fund(OTHER, 10_000)
    order = await buy_label(shop)  # the default: a 4x6 PDF
    foreign = await buy_label(shop, OTHER)
    [labels] = await h.say(USER, "/labels")
    assert f"lbl:fmt:{order['_id']}" in [data for _, data in labels.buttons]
    [choices] = await h.press(USER, labels, data=f"lbl:fmt:{order['_id']}")
    assert "was bought as PDF 4×6 in" in choices.content
    assert [label for label, _ in choices.buttons] == ["📄 PDF", "🖼 PNG", "🖨 ZPL"]
    [zpl] = await h.press(USER, choices, "ZPL")
    assert zpl.document is not None
    assert zpl.document.filename == f"label-{order['tracking_number']}.zpl"
    assert zpl.document.data.startswith(b"^XA")
    assert zpl.caption == f"Label {order['tracking_number']} (🖨 ZPL)"
    # the bought file's id stays the PDF's
    stored = await shop.mongo.db["orders"].find_one({"_id": order["_id"]})
    assert stored is not None and stored.get("label_file_format") == "pdf"
    # forged: another customer's label, an unknown id, a format that does not exist
    for data, text in (
        (f"lbl:dl:{foreign['_id']}:zpl", "Label not found."),
        (f"lbl:fmt:{foreign['_id']}", "Label not found."),
        ("lbl:dl:0123456789abcdef01234567:pdf", "Label not found."),
        (f"lbl:dl:{order['_id']}:gif", "This format is not available for this label."),
        (f"lbl:dl:{order['_id']}:href", "This format is not available for this label."),
    ):
        mark = h.emulator.cursor(USER)
        assert await _forge(shop, labels, data) == []
        answer = h.emulator.callback_answers[-1]
        assert answer.data == data and answer.show_alert and answer.text == text
        assert h.emulator.sent_messages(USER, since=mark) == []
    # the carrier's file store down: a clear message, no crash
    shop.carrier.inject_failure("download", "error_500", times=10)
    [down] = await h.press(USER, choices, "PNG")
    assert "could not be downloaded right now" in down.content


async def test_format_in_the_command_menu_and_help(shop: ShopEnv) -> None:
    h = shop.harness
    [help_msg] = await h.say(USER, "/help")
    assert "/format — label file format" in help_msg.content
