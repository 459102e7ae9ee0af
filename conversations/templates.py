"""Address templates: list → view → use / rename / delete, a new one from a pasted address,
and "Save recipient as template" after a purchase.

State diagram: ``templates.mmd``. Every button carries the template (or order) id and is an
entry point, so buttons of an older list keep working and are checked against the
database, never against the conversation: an unknown id, or another user's, is answered as
a stale button and changes nothing. The conversation is live only while a text is awaited
(a pasted address, a name, a new name). "Use for a new order" sends ``order:usetpl:<id>``,
which the order flow (``conversations/order.py``) handles as an entry point. "⭐ Make
default sender" (``tpl:default:<id>``) marks one template as the sender the order flow
offers first and ``/bulk`` uses; the list links to the parcel presets (``pst:list``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot.context import BotContext
from bot.i18n import I18n
from bot.keyboards import Button, cancel_button, inline
from bot.sessions import SessionConversationHandler
from conversations.common import cancel_handlers, conversation_key, leave_others
from conversations.order import field_error, format_address
from handlers.common import ack, lang_of, reply
from services import addresses
from services.addresses import FieldError
from storage.client import Document

NAME = "templates"
PAGE_SIZE = 10
OBJECT_ID = r"[0-9a-f]{24}"


class TemplatesState(StrEnum):
    AWAITING_ADDRESS = "awaiting_address"
    AWAITING_NAME = "awaiting_name"
    AWAITING_NEW_NAME = "awaiting_new_name"


# -- rendering ---------------------------------------------------------------------------


def _cancel(i18n: I18n, lang: str) -> list[Button]:
    return cancel_button(i18n, lang, f"{NAME}:cancel")


def _name_error(i18n: I18n, lang: str, error: FieldError) -> str:
    # Template names may use any script: only control/bidi characters are refused.
    if error.code == "invalid_characters":
        text = i18n.t(lang, "templates.name_invalid_characters")
    else:
        text = field_error(i18n, lang, error)
    return f"{text}\n\n{i18n.t(lang, 'templates.name_again')}"


def _address_problems(i18n: I18n, lang: str, parsed: addresses.ParsedAddress) -> str:
    lines: list[str] = []
    for name, error in parsed.errors.items():
        label = i18n.t(lang, f"order.field.{name}")  # "address" for the whole text
        lines.append(f"• {label}: {field_error(i18n, lang, error)}")
    for name in parsed.missing:
        label = i18n.t(lang, f"order.field.{name}")
        lines.append(f"• {label}: {i18n.t(lang, 'field.error.required')}")
    return "\n".join(lines)


async def _show_list(update: Update, context: BotContext, page: int = 1, note: str = "") -> int:
    user = update.effective_user
    assert user is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    orders = context.services.orders
    templates = await orders.templates(user.id)
    default = await orders.default_sender(user.id)
    default_id = default["_id"] if default is not None else None
    limit = orders.config.templates_per_user
    pages = max(1, -(-len(templates) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    if templates:
        text = i18n.t(lang, "templates.title", count=len(templates), limit=limit)
        if pages > 1:
            text += "\n" + i18n.t(lang, "templates.page", page=page, pages=pages)
    else:
        text = i18n.t(lang, "templates.empty", limit=limit)
    if note:
        text = f"{note}\n\n{text}"
    rows: list[list[Button]] = [
        [
            (
                f"{'⭐' if template['_id'] == default_id else '📇'} {template['name']}",
                f"tpl:view:{template['_id']}",
            )
        ]
        for template in templates[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    ]
    nav: list[Button] = []
    if page > 1:
        nav.append((i18n.t(lang, "common.prev"), f"tpl:list:{page - 1}"))
    if page < pages:
        nav.append((i18n.t(lang, "common.next"), f"tpl:list:{page + 1}"))
    if nav:
        rows.append(nav)
    rows.append([(i18n.t(lang, "templates.new"), "tpl:new")])
    rows.append([(i18n.t(lang, "templates.presets"), "pst:list")])
    rows.append([(i18n.t(lang, "common.menu"), "menu:main")])
    await reply(update, context, text, inline(rows))
    return SessionConversationHandler.END


async def _template_from_button(update: Update, context: BotContext) -> Document | None:
    """The user's template the button names, or ``None`` (answered as stale)."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    template = await context.services.orders.template(user.id, query.data.rsplit(":", 1)[-1])
    if template is None:
        await ack(update, context.i18n.t(lang_of(update, context), "errors.stale_button"))
        return None
    await ack(update)
    leave_others(context, conversation_key(update), keep={NAME})
    return template


async def _limit_reached(update: Update, context: BotContext) -> bool:
    user = update.effective_user
    assert user is not None
    orders = context.services.orders
    limit = orders.config.templates_per_user
    if len(await orders.templates(user.id)) < limit:
        return False
    lang = lang_of(update, context)
    i18n = context.i18n
    markup = inline(
        [
            [(i18n.t(lang, "menu.templates"), "tpl:list:1")],
            [(i18n.t(lang, "common.menu"), "menu:main")],
        ]
    )
    await reply(update, context, i18n.t(lang, "templates.limit_reached", limit=limit), markup)
    return True


# -- callbacks ---------------------------------------------------------------------------


async def show_templates(update: Update, context: BotContext) -> int:
    """Lists the user's templates (one page) with "New template"; no text is awaited."""
    await ack(update)
    leave_others(context, conversation_key(update), keep={NAME})
    page = 1
    query = update.callback_query
    if query is not None and query.data and query.data.startswith("tpl:list:"):
        page = int(query.data.rsplit(":", 1)[-1])
    return await _show_list(update, context, page)


async def view_template(update: Update, context: BotContext) -> int | None:
    """Shows one template's address with Use / Make default / Rename / Delete / Back."""
    template = await _template_from_button(update, context)
    if template is None:
        return None
    return await _show_template(update, context, template)


async def _show_template(
    update: Update, context: BotContext, template: Document, note: str = ""
) -> int:
    user = update.effective_user
    assert user is not None
    default = await context.services.orders.default_sender(user.id)
    is_default = default is not None and default["_id"] == template["_id"]
    lang = lang_of(update, context)
    i18n = context.i18n
    tid = template["_id"]
    text = i18n.t(
        lang,
        "templates.view",
        name=template["name"],
        address=format_address(dict(template["address"])),
    )
    if is_default:
        text += "\n\n" + i18n.t(lang, "templates.is_default")
    if note:
        text = f"{note}\n\n{text}"
    if is_default:
        star = (i18n.t(lang, "templates.unmake_default"), f"tpl:undefault:{tid}")
    else:
        star = (i18n.t(lang, "templates.make_default"), f"tpl:default:{tid}")
    markup = inline(
        [
            [(i18n.t(lang, "templates.use"), f"order:usetpl:{tid}")],
            [star],
            [
                (i18n.t(lang, "templates.rename"), f"tpl:rename:{tid}"),
                (i18n.t(lang, "templates.delete"), f"tpl:delete:{tid}"),
            ],
            [(i18n.t(lang, "templates.back"), "tpl:list:1")],
        ]
    )
    await reply(update, context, text, markup)
    return SessionConversationHandler.END


async def make_default(update: Update, context: BotContext) -> int | None:
    """Makes the template the default sender (the previous one stops being it)."""
    template = await _template_from_button(update, context)
    user = update.effective_user
    if template is None or user is None:
        return None
    lang = lang_of(update, context)
    i18n = context.i18n
    marked = await context.services.orders.set_default_sender(user.id, str(template["_id"]))
    if marked is None:  # deleted meanwhile, or another switch won at the same moment
        return await _show_list(update, context, note=i18n.t(lang, "templates.default_failed"))
    note = i18n.t(lang, "templates.default_set", name=marked["name"])
    return await _show_template(update, context, marked, note)


async def unmake_default(update: Update, context: BotContext) -> int | None:
    """The template stops being the default sender (the customer then has none)."""
    template = await _template_from_button(update, context)
    user = update.effective_user
    if template is None or user is None:
        return None
    await context.services.orders.clear_default_sender(user.id, str(template["_id"]))
    note = context.i18n.t(
        lang_of(update, context), "templates.default_cleared", name=template["name"]
    )
    return await _show_template(update, context, template, note)


async def ask_new_address(update: Update, context: BotContext) -> TemplatesState | int:
    """Asks for a whole pasted address for a new template (unless the limit is reached)."""
    await ack(update)
    leave_others(context, conversation_key(update), keep={NAME})
    if await _limit_reached(update, context):
        return SessionConversationHandler.END
    lang = lang_of(update, context)
    i18n = context.i18n
    await context.services.sessions.set_data(conversation_key(update), NAME, {})
    text = i18n.t(lang, "templates.ask_address")
    await reply(update, context, text, inline([_cancel(i18n, lang)]))
    return TemplatesState.AWAITING_ADDRESS


async def receive_address(update: Update, context: BotContext) -> TemplatesState:
    """Stores a complete pasted address and asks for a name; else lists the problems."""
    message = update.effective_message
    assert message is not None and message.text is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    parsed = addresses.parse_address(message.text)
    if not parsed.is_complete:
        problems = _address_problems(i18n, lang, parsed)
        text = i18n.t(lang, "templates.address_incomplete", problems=problems)
        await reply(update, context, text, inline([_cancel(i18n, lang)]))
        return TemplatesState.AWAITING_ADDRESS
    # Skippable parts the paste did not contain count as skipped (``None``), as in an order.
    address: dict[str, Any] = {name: parsed.values.get(name) for name in addresses.ADDRESS_FIELDS}
    return await _ask_name(update, context, address)


async def save_from_order(update: Update, context: BotContext) -> TemplatesState | int | None:
    """Stores the recipient of the user's own order and asks for a name for it."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    lang = lang_of(update, context)
    order = await context.services.orders.get(user.id, query.data.rsplit(":", 1)[-1])
    address = dict((order or {}).get("to_address") or {})
    if order is None or any(not address.get(name) for name in addresses.REQUIRED_FIELDS):
        await ack(update, context.i18n.t(lang, "templates.order_not_found"), alert=True)
        return None
    await ack(update)
    leave_others(context, conversation_key(update), keep={NAME})
    if await _limit_reached(update, context):
        return SessionConversationHandler.END
    return await _ask_name(
        update, context, {name: address.get(name) for name in addresses.ADDRESS_FIELDS}
    )


async def _ask_name(
    update: Update, context: BotContext, address: dict[str, Any]
) -> TemplatesState:
    lang = lang_of(update, context)
    i18n = context.i18n
    await context.services.sessions.set_data(conversation_key(update), NAME, {"address": address})
    text = i18n.t(
        lang,
        "templates.ask_name",
        address=format_address(address),
        limit=addresses.TEMPLATE_NAME_MAX,
    )
    await reply(update, context, text, inline([_cancel(i18n, lang)]))
    return TemplatesState.AWAITING_NAME


async def receive_name(update: Update, context: BotContext) -> TemplatesState | int:
    """Saves the stored address under the name, or explains why not and asks again."""
    message = update.effective_message
    user = update.effective_user
    assert message is not None and message.text is not None and user is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    data = await context.services.sessions.get_data(conversation_key(update), NAME)
    address = data.get("address")
    if not isinstance(address, dict):
        return await _show_list(update, context)
    try:
        template = await context.services.orders.save_template(user.id, message.text, address)
    except FieldError as error:
        if error.code == "limit":
            limit = context.services.orders.config.templates_per_user
            note = i18n.t(lang, "templates.limit_reached", limit=limit)
            return await _show_list(update, context, note=note)
        await reply(update, context, _name_error(i18n, lang, error), inline([_cancel(i18n, lang)]))
        return TemplatesState.AWAITING_NAME
    note = i18n.t(lang, "templates.saved", name=template["name"])
    return await _show_list(update, context, note=note)


async def ask_rename(update: Update, context: BotContext) -> TemplatesState | None:
    """Stores which template to rename and asks for its new name."""
    template = await _template_from_button(update, context)
    if template is None:
        return None
    lang = lang_of(update, context)
    i18n = context.i18n
    await context.services.sessions.set_data(
        conversation_key(update), NAME, {"template_id": str(template["_id"])}
    )
    text = i18n.t(
        lang, "templates.ask_rename", name=template["name"], limit=addresses.TEMPLATE_NAME_MAX
    )
    await reply(update, context, text, inline([_cancel(i18n, lang)]))
    return TemplatesState.AWAITING_NEW_NAME


async def receive_new_name(update: Update, context: BotContext) -> TemplatesState | int:
    """Renames the template (unique per user, any case), or explains why not and asks again."""
    message = update.effective_message
    user = update.effective_user
    assert message is not None and message.text is not None and user is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    data = await context.services.sessions.get_data(conversation_key(update), NAME)
    template_id = str(data.get("template_id") or "")
    try:
        renamed = await context.services.orders.rename_template(user.id, template_id, message.text)
    except FieldError as error:
        await reply(update, context, _name_error(i18n, lang, error), inline([_cancel(i18n, lang)]))
        return TemplatesState.AWAITING_NEW_NAME
    if renamed is None:  # deleted meanwhile (from another message)
        return await _show_list(update, context, note=i18n.t(lang, "templates.not_found"))
    note = i18n.t(lang, "templates.renamed", name=renamed["name"])
    return await _show_list(update, context, note=note)


async def confirm_delete(update: Update, context: BotContext) -> int | None:
    """Asks to confirm deleting the template (Yes deletes, No goes back to it)."""
    template = await _template_from_button(update, context)
    if template is None:
        return None
    lang = lang_of(update, context)
    i18n = context.i18n
    tid = template["_id"]
    markup = inline(
        [
            [(i18n.t(lang, "templates.delete_yes"), f"tpl:delete-yes:{tid}")],
            [(i18n.t(lang, "templates.delete_no"), f"tpl:view:{tid}")],
        ]
    )
    text = i18n.t(lang, "templates.confirm_delete", name=template["name"])
    await reply(update, context, text, markup)
    return SessionConversationHandler.END


async def delete_template(update: Update, context: BotContext) -> int | None:
    """Deletes the confirmed template and shows the list."""
    template = await _template_from_button(update, context)
    user = update.effective_user
    if template is None or user is None:
        return None
    await context.services.orders.delete_template(user.id, str(template["_id"]))
    lang = lang_of(update, context)
    note = context.i18n.t(lang, "templates.deleted", name=template["name"])
    return await _show_list(update, context, note=note)


async def text_expected(update: Update, context: BotContext) -> None:
    """Not a text (a photo, a sticker…): the same question stands."""
    await reply(update, context, context.i18n.t(lang_of(update, context), "templates.text_only"))


def build_templates_conversation() -> SessionConversationHandler:
    text = filters.TEXT & ~filters.COMMAND
    not_text = ~filters.TEXT & ~filters.COMMAND & ~filters.StatusUpdate.ALL
    return SessionConversationHandler(
        name=NAME,
        # Buttons are entry points (allow_reentry): they work from any older message too.
        entry_points=[
            CommandHandler("templates", show_templates),
            CallbackQueryHandler(show_templates, pattern=r"^(menu:templates|tpl:list:\d{1,3})$"),
            CallbackQueryHandler(view_template, pattern=rf"^tpl:view:{OBJECT_ID}$"),
            CallbackQueryHandler(ask_new_address, pattern=r"^tpl:new$"),
            CallbackQueryHandler(ask_rename, pattern=rf"^tpl:rename:{OBJECT_ID}$"),
            CallbackQueryHandler(make_default, pattern=rf"^tpl:default:{OBJECT_ID}$"),
            CallbackQueryHandler(unmake_default, pattern=rf"^tpl:undefault:{OBJECT_ID}$"),
            CallbackQueryHandler(confirm_delete, pattern=rf"^tpl:delete:{OBJECT_ID}$"),
            CallbackQueryHandler(delete_template, pattern=rf"^tpl:delete-yes:{OBJECT_ID}$"),
            CallbackQueryHandler(save_from_order, pattern=rf"^tpl:save:{OBJECT_ID}$"),
        ],
        states={
            TemplatesState.AWAITING_ADDRESS: [
                MessageHandler(text, receive_address),
                MessageHandler(not_text, text_expected),
            ],
            TemplatesState.AWAITING_NAME: [
                MessageHandler(text, receive_name),
                MessageHandler(not_text, text_expected),
            ],
            TemplatesState.AWAITING_NEW_NAME: [
                MessageHandler(text, receive_new_name),
                MessageHandler(not_text, text_expected),
            ],
        },
        fallbacks=cancel_handlers(NAME),
    )
