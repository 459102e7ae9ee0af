"""``/export orders|payments|users [from] [to]``: a CSV document, streamed to a file first."""

from __future__ import annotations

import contextlib

from telegram import Update
from telegram.constants import ChatAction
from telegram.ext import BaseHandler, CommandHandler

from bot.context import BotContext
from bot.settings import Settings
from handlers.admin.access import ALL_ROLES, MANAGERS, admin_filter, requires, role_of
from handlers.common import lang_of, reply
from services.export import KINDS, ExportError, day_text, parse_day


@requires(ALL_ROLES)
async def export_command(update: Update, context: BotContext) -> None:
    """Phones are masked unless the role is owner or admin; the service audits the export."""
    admin = update.effective_user
    chat = update.effective_chat
    assert admin is not None and chat is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    args = context.args or []
    if not args or args[0].lower() not in KINDS or len(args) > 3:
        await reply(update, context, i18n.t(lang, "admin.export.usage"))
        return
    kind = args[0].lower()
    show_phones = role_of(update, context) in MANAGERS
    try:
        since = parse_day(args[1]) if len(args) > 1 else None
        until = parse_day(args[2]) if len(args) > 2 else None
        await context.bot.send_chat_action(chat.id, ChatAction.UPLOAD_DOCUMENT)
        result = await context.services.exports.write_csv(
            kind, actor=admin.id, since=since, until=until, show_phones=show_phones
        )
    except ExportError as exc:
        await reply(update, context, i18n.t(lang, f"admin.export.{exc.code}"))
        return
    try:
        caption = i18n.t(
            lang,
            "admin.export.done",
            kind=kind,
            rows=result.rows,
            since=day_text(result.since),
            until=day_text(result.until),
        )
        await context.bot.send_document(
            chat.id, result.path, filename=result.filename, caption=caption
        )
    finally:
        with contextlib.suppress(OSError):
            result.path.unlink()


def build_handlers(settings: Settings) -> list[BaseHandler[Update, BotContext, None]]:
    return [CommandHandler("export", export_command, filters=admin_filter(settings, ALL_ROLES))]
