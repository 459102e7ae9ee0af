"""The admin menu, ``/audit``, ``/maintenance`` and ``/apimode``.

Every command is registered only for the roles that may use it (anyone else gets the
normal "didn't understand" reply), and every callback re-checks the role when pressed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot.context import BotContext
from bot.i18n import Html
from bot.keyboards import inline
from bot.settings import Role, Settings
from handlers.admin.access import ALL_ROLES, MANAGERS, OWNER_ONLY, admin_filter, requires, role_of
from handlers.admin.payments import list_pending
from handlers.admin.refunds import list_review
from handlers.admin.stats import render_stats
from handlers.common import ack, lang_of, reply
from services.admin import API_MODES, ConfirmStatus, InputError

MESSAGE_LIMIT = 4000
_JSON_LIMIT = 160

# (item, roles that see and may press it, label key); "broadcast" opens its conversation.
MENU: tuple[tuple[str, frozenset[Role], str], ...] = (
    ("stats", ALL_ROLES, "admin.menu.stats"),
    ("audit", ALL_ROLES, "admin.menu.audit"),
    ("user", ALL_ROLES, "admin.menu.user"),
    ("refunds", ALL_ROLES, "admin.menu.refunds"),
    ("payments", ALL_ROLES, "admin.menu.payments"),
    ("export", ALL_ROLES, "admin.menu.export"),
    ("maintenance", MANAGERS, "admin.menu.maintenance"),
    ("broadcast", MANAGERS, "admin.menu.broadcast"),
    ("apimode", OWNER_ONLY, "admin.menu.apimode"),
)
_MENU_ROLES = {item: roles for item, roles, _ in MENU}


def when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else "—"


def _compact(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= _JSON_LIMIT else text[: _JSON_LIMIT - 1] + "…"


def join_limited(lines: list[str], limit: int = MESSAGE_LIMIT) -> str:
    """Joins lines until the message would exceed Telegram's limit."""
    out: list[str] = []
    size = 0
    for line in lines:
        size += len(line) + 1
        if size > limit:
            out.append("…")
            break
        out.append(line)
    return "\n".join(out)


# -- /admin ---------------------------------------------------------------------------------


@requires(ALL_ROLES)
async def show_menu(update: Update, context: BotContext) -> None:
    """/admin: a button for each tool the role may use."""
    await ack(update)
    lang = lang_of(update, context)
    role = role_of(update, context)
    i18n = context.i18n
    rows = [
        [(i18n.t(lang, label), f"adm:menu:{item}")]
        for item, roles, label in MENU
        if role in roles
    ]
    text = i18n.t(lang, "admin.menu.title", role=i18n.t(lang, f"admin.role.{role}"))
    await reply(update, context, text, inline(rows))


async def menu_item(update: Update, context: BotContext) -> None:
    """A menu button: the role is checked again for the item pressed."""
    query = update.callback_query
    assert query is not None and query.data is not None
    item = query.data.rsplit(":", 1)[-1]
    roles = _MENU_ROLES.get(item)
    if roles is None or role_of(update, context) not in roles:
        await ack(update)
        return
    lang = lang_of(update, context)
    i18n = context.i18n
    actions: dict[str, Callable[[], Awaitable[None]]] = {
        "stats": lambda: render_stats(update, context, "today"),
        "audit": lambda: render_audit(update, context, None),
        "refunds": lambda: list_review(update, context),
        "payments": lambda: list_pending(update, context),
        "maintenance": lambda: render_maintenance(update, context),
        "apimode": lambda: render_api_mode(update, context),
    }
    action = actions.get(item)
    if action is not None:
        await ack(update)
        await action()
        return
    await ack(update)
    await reply(update, context, i18n.t(lang, f"admin.{item}.usage"))


# -- /audit [n] -----------------------------------------------------------------------------


@requires(ALL_ROLES)
async def audit_command(update: Update, context: BotContext) -> None:
    """/audit [n]: the latest audit entries."""
    count: int | None = None
    if context.args:
        raw = context.args[0]
        if not raw.isdigit() or not 1 <= int(raw) <= 50:
            text = context.i18n.t(lang_of(update, context), "admin.audit.usage")
            await reply(update, context, text)
            return
        count = int(raw)
    await render_audit(update, context, count)


async def render_audit(update: Update, context: BotContext, count: int | None) -> None:
    lang = lang_of(update, context)
    i18n = context.i18n
    limit = count or context.settings.admin_console.audit_default_entries
    entries = await context.services.audit.latest(limit)
    if not entries:
        await reply(update, context, i18n.t(lang, "admin.audit.none"))
        return
    lines = [i18n.t(lang, "admin.audit.title", count=len(entries))]
    for entry in entries:
        lines.append(
            i18n.t(
                lang,
                "admin.audit.row",
                at=when(entry.get("at")),
                actor=entry.get("actor"),
                action=str(entry.get("action")),
                target=str(entry.get("target")),
                before=_compact(entry.get("before")),
                after=_compact(entry.get("after")),
            )
        )
    await reply(update, context, join_limited(lines))


# -- /maintenance on|off [message] ----------------------------------------------------------


async def render_maintenance(update: Update, context: BotContext) -> None:
    lang = lang_of(update, context)
    i18n = context.i18n
    state = await context.services.admin.maintenance()
    status = i18n.t(lang, "admin.maintenance.on" if state.enabled else "admin.maintenance.off")
    text = i18n.t(
        lang, "admin.maintenance.status", status=Html(status), message=state.message or "—"
    )
    target = "off" if state.enabled else "on"
    button = i18n.t(lang, f"admin.maintenance.turn_{target}")
    await reply(update, context, text, inline([[(button, f"adm:maint:{target}")]]))


@requires(MANAGERS)
async def maintenance_command(update: Update, context: BotContext) -> None:
    """/maintenance on|off [message]: customers are told through a broadcast."""
    message = update.effective_message
    assert message is not None and message.text is not None
    parts = message.text.split(maxsplit=2)
    if len(parts) < 2:
        await render_maintenance(update, context)
        return
    mode = parts[1].lower()
    if mode not in ("on", "off"):
        text = context.i18n.t(lang_of(update, context), "admin.maintenance.usage")
        await reply(update, context, text)
        return
    notice = parts[2].strip()[:500] if len(parts) > 2 and mode == "on" else None
    await switch_maintenance(update, context, mode == "on", notice or None)


@requires(MANAGERS)
async def maintenance_button(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    await ack(update)
    await switch_maintenance(update, context, query.data.endswith(":on"), None)


async def switch_maintenance(
    update: Update, context: BotContext, enabled: bool, notice: str | None
) -> None:
    """The service switches, audits and (on a transition) tells customers; the progress
    message is shown here, after the confirmation."""
    admin = update.effective_user
    chat = update.effective_chat
    assert admin is not None and chat is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    service = context.services.admin
    outcome = await service.set_maintenance(admin.id, enabled, notice)
    key = "admin.maintenance.enabled" if enabled else "admin.maintenance.disabled"
    await reply(update, context, i18n.t(lang, key, message=notice or "—"))

    async def open_progress() -> tuple[int, int]:
        progress = await context.bot.send_message(chat.id, i18n.t(lang, "admin.broadcast.queued"))
        return chat.id, progress.message_id

    await service.announce_maintenance(
        admin.id, outcome, notice, admin_language=lang, open_progress=open_progress
    )


# -- /apimode test|production ---------------------------------------------------------------


async def render_api_mode(update: Update, context: BotContext) -> None:
    lang = lang_of(update, context)
    i18n = context.i18n
    mode = await context.services.admin.api_mode()
    rows = [
        [(i18n.t(lang, "admin.apimode.switch_to", mode=other), f"adm:api:ask:{other}")]
        for other in API_MODES
        if other != mode
    ]
    await reply(update, context, i18n.t(lang, "admin.apimode.current", mode=mode), inline(rows))


@requires(OWNER_ONLY)
async def api_mode_command(update: Update, context: BotContext) -> None:
    """/apimode test|production: asks for a confirmation button."""
    if not context.args:
        await render_api_mode(update, context)
        return
    await ask_api_mode(update, context, context.args[0].lower())


@requires(OWNER_ONLY)
async def api_mode_button(update: Update, context: BotContext) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    await ack(update)
    await ask_api_mode(update, context, query.data.rsplit(":", 1)[-1])


async def ask_api_mode(update: Update, context: BotContext, mode: str) -> None:
    admin = update.effective_user
    assert admin is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    current = await context.services.admin.api_mode()
    if mode == current:
        await reply(update, context, i18n.t(lang, "admin.apimode.already", mode=mode))
        return
    try:
        confirmation = await context.services.admin.request_api_mode(admin.id, mode)
    except InputError:
        await reply(update, context, i18n.t(lang, "admin.apimode.usage"))
        return
    cid = str(confirmation["_id"])
    rows = [
        [(i18n.t(lang, "admin.confirm"), f"adm:api:ok:{cid}")],
        [(i18n.t(lang, "admin.cancel"), f"adm:api:no:{cid}")],
    ]
    text = i18n.t(lang, "admin.apimode.confirm", before=current, after=mode)
    await reply(update, context, text, inline(rows))


@requires(OWNER_ONLY)
async def api_mode_decide(update: Update, context: BotContext) -> None:
    query = update.callback_query
    admin = update.effective_user
    assert query is not None and query.data is not None and admin is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    _, _, action, cid = query.data.split(":")
    if action == "no":
        await ack(update)
        if await context.services.admin.cancel(admin.id, cid):
            await reply(update, context, i18n.t(lang, "admin.cancelled"), edit=True)
        return
    outcome = await context.services.admin.confirm_api_mode(admin.id, cid)
    if outcome.status == ConfirmStatus.APPLIED and outcome.confirmation is not None:
        await ack(update)
        after = outcome.confirmation["payload"]["mode"]
        text = i18n.t(lang, "admin.apimode.switched", before=outcome.before or "?", after=after)
        await reply(update, context, text, edit=True)
        return
    await ack(update, i18n.t(lang, f"admin.confirmation.{outcome.status}"), alert=True)


def build_handlers(settings: Settings) -> list[BaseHandler[Update, BotContext, None]]:
    menu_items = "|".join(item for item, _, _ in MENU if item != "broadcast")
    return [
        CommandHandler("admin", show_menu, filters=admin_filter(settings, ALL_ROLES)),
        CommandHandler("audit", audit_command, filters=admin_filter(settings, ALL_ROLES)),
        CommandHandler(
            "maintenance", maintenance_command, filters=admin_filter(settings, MANAGERS)
        ),
        CommandHandler("apimode", api_mode_command, filters=admin_filter(settings, OWNER_ONLY)),
        CallbackQueryHandler(menu_item, pattern=rf"^adm:menu:({menu_items})$"),
        CallbackQueryHandler(maintenance_button, pattern=r"^adm:maint:(on|off)$"),
        CallbackQueryHandler(api_mode_button, pattern=r"^adm:api:ask:(test|production)$"),
        CallbackQueryHandler(api_mode_decide, pattern=r"^adm:api:(ok|no):[0-9a-f]{24}$"),
    ]
