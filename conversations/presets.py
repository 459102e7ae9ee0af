"""Parcel presets: list → view → rename / delete, and a new one (weight → size → name).

State diagram: ``presets.mmd``. As in ``templates.py``, every button carries the preset id
and is an entry point, checked against the database (an unknown id, or another
customer's, is answered as a stale button and changes nothing); the conversation is live
only while a text is awaited. "Save the parcel of my last label" (``pst:last:<order>``)
asks only for a name. The weight and size are parsed as at the order's parcel
step (``services/presets.py``); the parsed values wait in the session's conversation data
until the name is given. In an order, presets are offered at the weight step
(``order:pp:<draft>:<preset>``, handled by ``conversations/order.py``).
"""

from __future__ import annotations

import html
from enum import StrEnum
from typing import Any

from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot.context import BotContext
from bot.i18n import I18n
from bot.keyboards import Button, cancel_button, inline
from bot.sessions import SessionConversationHandler
from conversations.common import cancel_handlers, conversation_key, leave_others
from conversations.order import dimensions_text, field_error, format_weight, preset_label
from handlers.common import ack, lang_of, reply
from services import addresses
from services.addresses import FieldError
from services.presets import preset_parcel
from storage.client import Document

NAME = "presets"
OBJECT_ID = r"[0-9a-f]{24}"


class PresetsState(StrEnum):
    AWAITING_WEIGHT = "awaiting_weight"
    AWAITING_DIMENSIONS = "awaiting_dimensions"
    AWAITING_NAME = "awaiting_name"
    AWAITING_NEW_NAME = "awaiting_new_name"


# -- rendering ---------------------------------------------------------------------------


def _cancel(i18n: I18n, lang: str) -> list[Button]:
    return cancel_button(i18n, lang, f"{NAME}:cancel")


def _error(i18n: I18n, lang: str, error: FieldError) -> str:
    if error.code == "duplicate":
        return i18n.t(lang, "presets.duplicate")
    if error.code == "invalid_characters" and error.field == "template":
        text = i18n.t(lang, "templates.name_invalid_characters")
    else:
        text = field_error(i18n, lang, error)
    return text


async def _show_list(update: Update, context: BotContext, note: str = "") -> int:
    user = update.effective_user
    assert user is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    service = context.services.presets
    presets = await service.list(user.id)
    limit = service.config.max_per_user
    if presets:
        text = i18n.t(lang, "presets.title", count=len(presets), limit=limit)
    else:
        text = i18n.t(lang, "presets.empty", limit=limit)
    if note:
        text = f"{note}\n\n{text}"
    rows: list[list[Button]] = [
        [(preset_label(preset), f"pst:view:{preset['_id']}")] for preset in presets
    ]
    rows.append([(i18n.t(lang, "presets.new"), "pst:new")])
    last = await _last_parcel(update, context)
    if last is not None:
        order, parcel = last
        label = html.unescape(
            i18n.t(
                lang,
                "presets.from_last",
                weight=format_weight(parcel["weight_oz"]),
                dimensions=dimensions_text(parcel),
            )
        )
        rows.append([(label[:64], f"pst:last:{order['_id']}")])
    rows.append([(i18n.t(lang, "common.menu"), "menu:main")])
    await reply(update, context, text, inline(rows))
    return SessionConversationHandler.END


def _parcel_of(order: Document | None) -> dict[str, Any] | None:
    parcel = dict((order or {}).get("parcel") or {})
    if not all(k in parcel for k in ("weight_oz", "length_in", "width_in", "height_in")):
        return None
    return preset_parcel({"parcel": parcel})


async def _last_parcel(
    update: Update, context: BotContext
) -> tuple[Document, dict[str, Any]] | None:
    """The customer's newest label and its parcel (offered as "save it as a preset")."""
    user = update.effective_user
    assert user is not None
    orders, _, _ = await context.services.orders.history(user.id, 1)
    parcel = _parcel_of(orders[0]) if orders else None
    return (orders[0], parcel) if parcel is not None else None


async def _preset_from_button(update: Update, context: BotContext) -> Document | None:
    """The customer's preset the button names, or ``None`` (answered as stale)."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    preset = await context.services.presets.get(user.id, query.data.rsplit(":", 1)[-1])
    if preset is None:
        await ack(update, context.i18n.t(lang_of(update, context), "errors.stale_button"))
        return None
    await ack(update)
    leave_others(context, conversation_key(update), keep={NAME})
    return preset


async def _limit_reached(update: Update, context: BotContext) -> bool:
    user = update.effective_user
    assert user is not None
    service = context.services.presets
    if not await service.full(user.id):
        return False
    note = context.i18n.t(
        lang_of(update, context), "presets.limit_reached", limit=service.config.max_per_user
    )
    await _show_list(update, context, note=note)
    return True


# -- callbacks ---------------------------------------------------------------------------


async def show_presets(update: Update, context: BotContext) -> int:
    """Lists the customer's presets with "New preset"; no text is awaited."""
    await ack(update)
    leave_others(context, conversation_key(update), keep={NAME})
    return await _show_list(update, context)


async def view_preset(update: Update, context: BotContext) -> int | None:
    """Shows one preset with Rename / Delete / Back."""
    preset = await _preset_from_button(update, context)
    if preset is None:
        return None
    lang = lang_of(update, context)
    i18n = context.i18n
    parcel = dict(preset["parcel"])
    text = i18n.t(
        lang,
        "presets.view",
        name=preset["name"],
        weight=format_weight(parcel["weight_oz"]),
        dimensions=dimensions_text(parcel),
    )
    pid = preset["_id"]
    markup = inline(
        [
            [
                (i18n.t(lang, "presets.rename"), f"pst:rename:{pid}"),
                (i18n.t(lang, "presets.delete"), f"pst:delete:{pid}"),
            ],
            [(i18n.t(lang, "presets.back"), "pst:list")],
        ]
    )
    await reply(update, context, text, markup)
    return SessionConversationHandler.END


async def ask_weight(update: Update, context: BotContext) -> PresetsState | int:
    """Asks for the new preset's weight (unless the limit is reached)."""
    await ack(update)
    leave_others(context, conversation_key(update), keep={NAME})
    if await _limit_reached(update, context):
        return SessionConversationHandler.END
    lang = lang_of(update, context)
    i18n = context.i18n
    await context.services.sessions.set_data(conversation_key(update), NAME, {})
    await reply(update, context, i18n.t(lang, "presets.ask_weight"), inline([_cancel(i18n, lang)]))
    return PresetsState.AWAITING_WEIGHT


async def receive_weight(update: Update, context: BotContext) -> PresetsState:
    """Stores the parsed weight and asks for the size; a bad weight is explained."""
    message = update.effective_message
    assert message is not None and message.text is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    try:
        ounces = context.services.presets.parse_weight(message.text)
    except FieldError as error:
        text = f"{i18n.t(lang, 'presets.weight')}: {field_error(i18n, lang, error)}"
        await reply(update, context, text, inline([_cancel(i18n, lang)]))
        return PresetsState.AWAITING_WEIGHT
    key = conversation_key(update)
    await context.services.sessions.set_data(key, NAME, {"weight_oz": ounces})
    text = i18n.t(lang, "presets.ask_dimensions", weight=format_weight(ounces))
    await reply(update, context, text, inline([_cancel(i18n, lang)]))
    return PresetsState.AWAITING_DIMENSIONS


async def receive_dimensions(update: Update, context: BotContext) -> PresetsState | int:
    """Stores the parsed size and asks for a name; a bad size is explained."""
    message = update.effective_message
    assert message is not None and message.text is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    key = conversation_key(update)
    data = await context.services.sessions.get_data(key, NAME)
    ounces = data.get("weight_oz")
    if not isinstance(ounces, int):
        return await _show_list(update, context)
    try:
        sides = context.services.presets.parse_dimensions(message.text)
    except FieldError as error:
        text = f"{i18n.t(lang, 'presets.dimensions')}: {field_error(i18n, lang, error)}"
        await reply(update, context, text, inline([_cancel(i18n, lang)]))
        return PresetsState.AWAITING_DIMENSIONS
    parcel = {"weight_oz": ounces, **sides}
    await context.services.sessions.set_data(key, NAME, {"parcel": parcel})
    text = i18n.t(
        lang,
        "presets.ask_name",
        weight=format_weight(ounces),
        dimensions=dimensions_text(parcel),
        limit=addresses.TEMPLATE_NAME_MAX,
    )
    await reply(update, context, text, inline([_cancel(i18n, lang)]))
    return PresetsState.AWAITING_NAME


async def save_from_label(update: Update, context: BotContext) -> PresetsState | int | None:
    """Takes the parcel of the customer's own label the button names and asks a name."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    order = await context.services.orders.get(user.id, query.data.rsplit(":", 1)[-1])
    parcel = _parcel_of(order) if order is not None and order.get("status") != "draft" else None
    if parcel is None:
        await ack(update, i18n.t(lang, "errors.stale_button"))
        return None
    await ack(update)
    leave_others(context, conversation_key(update), keep={NAME})
    if await _limit_reached(update, context):
        return SessionConversationHandler.END
    await context.services.sessions.set_data(conversation_key(update), NAME, {"parcel": parcel})
    text = i18n.t(
        lang,
        "presets.ask_name",
        weight=format_weight(parcel["weight_oz"]),
        dimensions=dimensions_text(parcel),
        limit=addresses.TEMPLATE_NAME_MAX,
    )
    await reply(update, context, text, inline([_cancel(i18n, lang)]))
    return PresetsState.AWAITING_NAME


async def receive_name(update: Update, context: BotContext) -> PresetsState | int:
    """Saves the parcel under the name, or explains why not (used, invalid, limit)."""
    message = update.effective_message
    user = update.effective_user
    assert message is not None and message.text is not None and user is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    data = await context.services.sessions.get_data(conversation_key(update), NAME)
    parcel = data.get("parcel")
    if not isinstance(parcel, dict):
        return await _show_list(update, context)
    service = context.services.presets
    try:
        preset = await service.save(user.id, message.text, parcel)
    except FieldError as error:
        if error.code == "limit":
            note = i18n.t(lang, "presets.limit_reached", limit=service.config.max_per_user)
            return await _show_list(update, context, note=note)
        text = f"{_error(i18n, lang, error)}\n\n{i18n.t(lang, 'presets.name_again')}"
        await reply(update, context, text, inline([_cancel(i18n, lang)]))
        return PresetsState.AWAITING_NAME
    note = i18n.t(lang, "presets.saved", name=preset["name"])
    return await _show_list(update, context, note=note)


async def ask_rename(update: Update, context: BotContext) -> PresetsState | None:
    """Stores which preset to rename and asks for its new name."""
    preset = await _preset_from_button(update, context)
    if preset is None:
        return None
    lang = lang_of(update, context)
    i18n = context.i18n
    await context.services.sessions.set_data(
        conversation_key(update), NAME, {"preset_id": str(preset["_id"])}
    )
    text = i18n.t(
        lang, "presets.ask_rename", name=preset["name"], limit=addresses.TEMPLATE_NAME_MAX
    )
    await reply(update, context, text, inline([_cancel(i18n, lang)]))
    return PresetsState.AWAITING_NEW_NAME


async def receive_new_name(update: Update, context: BotContext) -> PresetsState | int:
    """Renames the preset (unique per customer, any case), or explains why not."""
    message = update.effective_message
    user = update.effective_user
    assert message is not None and message.text is not None and user is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    data = await context.services.sessions.get_data(conversation_key(update), NAME)
    preset_id = str(data.get("preset_id") or "")
    try:
        renamed = await context.services.presets.rename(user.id, preset_id, message.text)
    except FieldError as error:
        text = f"{_error(i18n, lang, error)}\n\n{i18n.t(lang, 'presets.name_again')}"
        await reply(update, context, text, inline([_cancel(i18n, lang)]))
        return PresetsState.AWAITING_NEW_NAME
    if renamed is None:  # deleted meanwhile
        return await _show_list(update, context, note=i18n.t(lang, "presets.not_found"))
    return await _show_list(
        update, context, note=i18n.t(lang, "presets.renamed", name=renamed["name"])
    )


async def confirm_delete(update: Update, context: BotContext) -> int | None:
    """Asks to confirm deleting the preset (Yes deletes, No goes back to it)."""
    preset = await _preset_from_button(update, context)
    if preset is None:
        return None
    lang = lang_of(update, context)
    i18n = context.i18n
    pid = preset["_id"]
    markup = inline(
        [
            [(i18n.t(lang, "presets.delete_yes"), f"pst:delete-yes:{pid}")],
            [(i18n.t(lang, "presets.delete_no"), f"pst:view:{pid}")],
        ]
    )
    text = i18n.t(lang, "presets.confirm_delete", name=preset["name"])
    await reply(update, context, text, markup)
    return SessionConversationHandler.END


async def delete_preset(update: Update, context: BotContext) -> int | None:
    """Deletes the confirmed preset and shows the list."""
    preset = await _preset_from_button(update, context)
    user = update.effective_user
    if preset is None or user is None:
        return None
    await context.services.presets.delete(user.id, str(preset["_id"]))
    note = context.i18n.t(lang_of(update, context), "presets.deleted", name=preset["name"])
    return await _show_list(update, context, note=note)


async def text_expected(update: Update, context: BotContext) -> None:
    """Not a text (a photo, a sticker…): the same question stands."""
    await reply(update, context, context.i18n.t(lang_of(update, context), "templates.text_only"))


def build_presets_conversation() -> SessionConversationHandler:
    text = filters.TEXT & ~filters.COMMAND
    not_text = ~filters.TEXT & ~filters.COMMAND & ~filters.StatusUpdate.ALL
    return SessionConversationHandler(
        name=NAME,
        # Buttons are entry points (allow_reentry): they work from any older message too.
        entry_points=[
            CommandHandler("presets", show_presets),
            CallbackQueryHandler(show_presets, pattern=r"^pst:list$"),
            CallbackQueryHandler(view_preset, pattern=rf"^pst:view:{OBJECT_ID}$"),
            CallbackQueryHandler(ask_weight, pattern=r"^pst:new$"),
            CallbackQueryHandler(save_from_label, pattern=rf"^pst:last:{OBJECT_ID}$"),
            CallbackQueryHandler(ask_rename, pattern=rf"^pst:rename:{OBJECT_ID}$"),
            CallbackQueryHandler(confirm_delete, pattern=rf"^pst:delete:{OBJECT_ID}$"),
            CallbackQueryHandler(delete_preset, pattern=rf"^pst:delete-yes:{OBJECT_ID}$"),
        ],
        states={
            PresetsState.AWAITING_WEIGHT: [
                MessageHandler(text, receive_weight),
                MessageHandler(not_text, text_expected),
            ],
            PresetsState.AWAITING_DIMENSIONS: [
                MessageHandler(text, receive_dimensions),
                MessageHandler(not_text, text_expected),
            ],
            PresetsState.AWAITING_NAME: [
                MessageHandler(text, receive_name),
                MessageHandler(not_text, text_expected),
            ],
            PresetsState.AWAITING_NEW_NAME: [
                MessageHandler(text, receive_new_name),
                MessageHandler(not_text, text_expected),
            ],
        },
        fallbacks=cancel_handlers(NAME),
    )
