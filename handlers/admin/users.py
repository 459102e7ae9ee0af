"""``/user <id | @username | tracking number>``: profile, block, balance adjustment, discount.

The adjustment asks for the amount and a reason (a small conversation), then shows a
confirmation button whose id keys the ledger entry (``adjustment:<confirmation id>``):
pressing it twice applies it once. Phone numbers are masked for the support role.
"""

from __future__ import annotations

from enum import StrEnum

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.context import BotContext
from bot.i18n import Html
from bot.keyboards import inline
from bot.sessions import SessionConversationHandler
from bot.settings import Settings
from conversations.common import cancel_handlers, conversation_key, leave_others
from handlers.admin import bulk
from handlers.admin.access import ALL_ROLES, MANAGERS, admin_filter, requires, role_of
from handlers.admin.console import join_limited, when
from handlers.common import ack, lang_of, reply
from services.admin import (
    ConfirmStatus,
    InputError,
    UserProfile,
    parse_adjustment,
    parse_percent,
)
from services.receipts import margin_cents, short_order_id
from storage.client import Document

NAME = "admin_user"


class AdminUserState(StrEnum):
    AWAITING_AMOUNT = "awaiting_amount"
    AWAITING_REASON = "awaiting_reason"
    AWAITING_PERCENT = "awaiting_percent"


def _status(context: BotContext, lang: str, profile: UserProfile) -> str:
    i18n = context.i18n
    user = profile.user
    flags = []
    if user.get("blocked"):
        flags.append(i18n.t(lang, "admin.user.status.blocked"))
    if user.get("bot_blocked_at") is not None:
        at = when(user["bot_blocked_at"])
        flags.append(i18n.t(lang, "admin.user.status.bot_blocked", at=at))
    if user.get("notify_opt_out"):
        flags.append(i18n.t(lang, "admin.user.status.opted_out"))
    return ", ".join(flags) or i18n.t(lang, "admin.user.status.active")


def order_line(context: BotContext, lang: str, order: Document) -> str:
    """One of the customer's orders: when, short id (as on the receipt), status, tracking,
    and what it was sold for, what the carrier charged and the margin."""
    i18n = context.i18n
    cost = order.get("carrier_cost_cents")
    margin = margin_cents(order)
    return i18n.t(
        lang,
        "admin.user.order_line",
        at=when(order.get("created_at")),
        order=short_order_id(order["_id"]),
        status=str(order.get("status")),
        tracking=str(order.get("tracking_number") or "—"),
        price=i18n.money(lang, int(order.get("price_cents") or 0)),
        cost=i18n.money(lang, int(cost)) if isinstance(cost, int) else "—",
        margin=i18n.money(lang, margin) if margin is not None else "—",
    )


def render_profile(context: BotContext, lang: str, profile: UserProfile) -> str:
    i18n = context.i18n
    user = profile.user
    orders = [order_line(context, lang, o) for o in profile.orders] or [
        i18n.t(lang, "admin.user.none")
    ]
    payments = [
        i18n.t(
            lang,
            "admin.user.payment_row",
            at=when(p.get("created_at")),
            provider=str(p.get("provider")),
            amount=i18n.money(lang, int(p.get("amount_cents") or 0)),
            status=str(p.get("status")),
        )
        for p in profile.payments
    ] or [i18n.t(lang, "admin.user.none")]
    username = user.get("username")
    text = i18n.t(
        lang,
        "admin.user.profile",
        user_id=user["_id"],
        name=str(user.get("first_name") or ""),
        username=f"@{username}" if username else "—",
        language=str(user.get("language") or "—"),
        created=when(user.get("created_at")),
        seen=when(user.get("last_seen_at")),
        balance=i18n.money(lang, int(user.get("balance_cents") or 0)),
        discount=int(user.get("discount_percent") or 0),
        status=_status(context, lang, profile),
        phone=profile.phone or "—",
        orders=Html("\n".join(orders)),
        payments=Html("\n".join(payments)),
    )
    return join_limited(text.split("\n"))


def profile_buttons(
    context: BotContext, lang: str, profile: UserProfile, *, manage: bool
) -> InlineKeyboardMarkup:
    i18n = context.i18n
    uid = int(profile.user["_id"])
    rows: list[list[tuple[str, str]]] = []
    if manage:
        if profile.user.get("blocked"):
            rows.append([(i18n.t(lang, "admin.user.unblock"), f"adm:u:unblock:{uid}")])
        else:
            rows.append([(i18n.t(lang, "admin.user.block"), f"adm:u:block:{uid}")])
        rows.append([(i18n.t(lang, "admin.user.adjust"), f"adm:u:adj:{uid}")])
        rows.append([(i18n.t(lang, "admin.user.discount"), f"adm:u:disc:{uid}")])
    rows.append([(i18n.t(lang, "admin.user.refresh"), f"adm:u:show:{uid}")])
    return inline(rows)


async def show_profile(
    update: Update, context: BotContext, user_id: int, *, edit: bool = False
) -> None:
    lang = lang_of(update, context)
    role = role_of(update, context)
    manage = role in MANAGERS
    profile = await context.services.admin.profile(user_id, show_phone=manage)
    if profile is None:
        await reply(update, context, context.i18n.t(lang, "admin.user.not_found"))
        return
    text = render_profile(context, lang, profile)
    jobs = await bulk.user_lines(context, lang, user_id)
    if jobs:
        text += "\n\n" + jobs
    buttons = profile_buttons(context, lang, profile, manage=manage)
    await reply(update, context, text, buttons, edit=edit)


@requires(ALL_ROLES)
async def user_command(update: Update, context: BotContext) -> None:
    """/user <id | @username | tracking number>"""
    lang = lang_of(update, context)
    if not context.args:
        await reply(update, context, context.i18n.t(lang, "admin.user.usage"))
        return
    user = await context.services.admin.find_user(" ".join(context.args))
    if user is None:
        await reply(update, context, context.i18n.t(lang, "admin.user.not_found"))
        return
    await show_profile(update, context, int(user["_id"]))


def _target(update: Update) -> int:
    query = update.callback_query
    assert query is not None and query.data is not None
    return int(query.data.rsplit(":", 1)[-1])


@requires(ALL_ROLES)
async def refresh_button(update: Update, context: BotContext) -> None:
    await ack(update)
    await show_profile(update, context, _target(update), edit=True)


@requires(MANAGERS)
async def block_button(update: Update, context: BotContext) -> None:
    """Blocks or unblocks the account (audited; the user is told through the outbox)."""
    query = update.callback_query
    admin = update.effective_user
    assert query is not None and query.data is not None and admin is not None
    blocked = ":block:" in query.data
    lang = lang_of(update, context)
    change = await context.services.admin.set_blocked(admin.id, _target(update), blocked)
    if change is None:
        await ack(update, context.i18n.t(lang, "admin.user.not_found"), alert=True)
        return
    key = "admin.user.blocked" if blocked else "admin.user.unblocked"
    await ack(update, context.i18n.t(lang, key))
    await show_profile(update, context, change.user_id, edit=True)


# -- balance adjustment and discount (conversation) -------------------------------------


async def _allowed(update: Update, context: BotContext) -> bool:
    """Re-checks the role at every step; a demoted admin's input ends the conversation."""
    if role_of(update, context) in MANAGERS:
        return True
    await ack(update)
    return False


async def ask_amount(update: Update, context: BotContext) -> AdminUserState | int | None:
    """Remembers the target user and asks for the signed amount."""
    if not await _allowed(update, context):
        return None
    await ack(update)
    key = conversation_key(update)
    leave_others(context, key, keep={NAME})
    user_id = _target(update)
    await context.services.sessions.set_data(key, NAME, {"user_id": user_id})
    i18n = context.i18n
    lang = lang_of(update, context)
    text = i18n.t(lang, "admin.adjust.ask_amount", user_id=user_id)
    cancel = inline([[(i18n.t(lang, "admin.cancel"), f"{NAME}:cancel")]])
    await reply(update, context, text, cancel)
    return AdminUserState.AWAITING_AMOUNT


async def receive_amount(update: Update, context: BotContext) -> AdminUserState | int:
    """Stores the amount (may be negative) and asks for the mandatory reason."""
    if not await _allowed(update, context):
        return SessionConversationHandler.END
    message = update.effective_message
    assert message is not None and message.text is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    try:
        cents = parse_adjustment(message.text, lang)
    except InputError as exc:
        await reply(update, context, i18n.t(lang, f"admin.input.{exc.code}"))
        return AdminUserState.AWAITING_AMOUNT
    key = conversation_key(update)
    data = await context.services.sessions.get_data(key, NAME)
    await context.services.sessions.set_data(key, NAME, {**data, "amount_cents": cents})
    sign = "+" if cents > 0 else "−"
    amount = f"{sign}{i18n.money(lang, abs(cents))}"
    await reply(update, context, i18n.t(lang, "admin.adjust.ask_reason", amount=amount))
    return AdminUserState.AWAITING_REASON


async def receive_reason(update: Update, context: BotContext) -> AdminUserState | int:
    """Writes the confirmation and shows its button; nothing moves until it is pressed."""
    if not await _allowed(update, context):
        return SessionConversationHandler.END
    message = update.effective_message
    admin = update.effective_user
    assert message is not None and message.text is not None and admin is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    key = conversation_key(update)
    data = await context.services.sessions.get_data(key, NAME)
    if "user_id" not in data or "amount_cents" not in data:
        await reply(update, context, i18n.t(lang, "errors.stale_button"))
        return SessionConversationHandler.END
    user_id = int(str(data["user_id"]))
    cents = int(str(data["amount_cents"]))
    try:
        confirmation = await context.services.admin.prepare_adjustment(
            admin.id, user_id, cents, message.text
        )
    except InputError as exc:
        await reply(update, context, i18n.t(lang, f"admin.input.{exc.code}"))
        return (
            AdminUserState.AWAITING_REASON
            if exc.code.startswith("reason.")
            else SessionConversationHandler.END
        )
    cid = str(confirmation["_id"])
    sign = "+" if cents > 0 else "−"
    text = i18n.t(
        lang,
        "admin.adjust.confirm",
        amount=f"{sign}{i18n.money(lang, abs(cents))}",
        user_id=user_id,
        reason=str(confirmation["payload"]["reason"]),
    )
    rows = [
        [(i18n.t(lang, "admin.confirm"), f"adm:adj:ok:{cid}")],
        [(i18n.t(lang, "admin.cancel"), f"adm:adj:no:{cid}")],
    ]
    await reply(update, context, text, inline(rows))
    return SessionConversationHandler.END


async def ask_percent(update: Update, context: BotContext) -> AdminUserState | int | None:
    """Remembers the target user and asks for the discount percent."""
    if not await _allowed(update, context):
        return None
    await ack(update)
    key = conversation_key(update)
    leave_others(context, key, keep={NAME})
    user_id = _target(update)
    await context.services.sessions.set_data(key, NAME, {"user_id": user_id})
    i18n = context.i18n
    lang = lang_of(update, context)
    text = i18n.t(lang, "admin.discount.ask", user_id=user_id)
    cancel = inline([[(i18n.t(lang, "admin.cancel"), f"{NAME}:cancel")]])
    await reply(update, context, text, cancel)
    return AdminUserState.AWAITING_PERCENT


async def receive_percent(update: Update, context: BotContext) -> AdminUserState | int:
    """Sets the discount (audited, the user told) and ends."""
    if not await _allowed(update, context):
        return SessionConversationHandler.END
    message = update.effective_message
    admin = update.effective_user
    assert message is not None and message.text is not None and admin is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    try:
        percent = parse_percent(message.text)
    except InputError as exc:
        await reply(update, context, i18n.t(lang, f"admin.input.{exc.code}"))
        return AdminUserState.AWAITING_PERCENT
    data = await context.services.sessions.get_data(conversation_key(update), NAME)
    if "user_id" not in data:
        await reply(update, context, i18n.t(lang, "errors.stale_button"))
        return SessionConversationHandler.END
    target = int(str(data["user_id"]))
    change = await context.services.admin.set_discount(admin.id, target, percent)
    if change is None:
        await reply(update, context, i18n.t(lang, "admin.user.not_found"))
        return SessionConversationHandler.END
    text = i18n.t(
        lang, "admin.discount.done", user_id=change.user_id, before=change.before, after=percent
    )
    await reply(update, context, text)
    return SessionConversationHandler.END


async def text_expected(update: Update, context: BotContext) -> None:
    await reply(update, context, context.i18n.t(lang_of(update, context), "admin.input.text_only"))


@requires(MANAGERS)
async def decide_adjustment(update: Update, context: BotContext) -> None:
    """The confirmation button: applies the adjustment once, however often it is pressed."""
    query = update.callback_query
    admin = update.effective_user
    assert query is not None and query.data is not None and admin is not None
    lang = lang_of(update, context)
    i18n = context.i18n
    _, _, action, cid = query.data.split(":")
    admin_service = context.services.admin
    if action == "no":
        await ack(update)
        if await admin_service.cancel(admin.id, cid):
            await reply(update, context, i18n.t(lang, "admin.cancelled"), edit=True)
        return
    outcome = await admin_service.apply_adjustment(admin.id, cid)
    doc = outcome.confirmation
    if outcome.status == ConfirmStatus.APPLIED and doc is not None:
        await ack(update)
        cents = int(doc["payload"]["amount_cents"])
        sign = "+" if cents > 0 else "−"
        text = i18n.t(
            lang,
            "admin.adjust.applied",
            amount=f"{sign}{i18n.money(lang, abs(cents))}",
            user_id=int(doc["payload"]["user_id"]),
            balance=i18n.money(lang, int(outcome.balance_cents or 0)),
            reason=str(doc["payload"]["reason"]),
        )
        await reply(update, context, text, edit=True)
        return
    if outcome.status == ConfirmStatus.INSUFFICIENT and doc is not None:
        await ack(update)
        text = i18n.t(
            lang,
            "admin.adjust.insufficient",
            balance=i18n.money(lang, int(outcome.balance_cents or 0)),
            amount=i18n.money(lang, abs(int(doc["payload"]["amount_cents"]))),
        )
        await reply(update, context, text, edit=True)
        return
    await ack(update, i18n.t(lang, f"admin.confirmation.{outcome.status}"), alert=True)


def build_handlers(settings: Settings) -> list[BaseHandler[Update, BotContext, None]]:
    text = filters.TEXT & ~filters.COMMAND
    not_text = ~filters.TEXT & ~filters.COMMAND & ~filters.StatusUpdate.ALL
    conversation = SessionConversationHandler(
        name=NAME,
        entry_points=[
            CallbackQueryHandler(ask_amount, pattern=r"^adm:u:adj:\d+$"),
            CallbackQueryHandler(ask_percent, pattern=r"^adm:u:disc:\d+$"),
        ],
        states={
            AdminUserState.AWAITING_AMOUNT: [
                MessageHandler(text, receive_amount),
                MessageHandler(not_text, text_expected),
            ],
            AdminUserState.AWAITING_REASON: [
                MessageHandler(text, receive_reason),
                MessageHandler(not_text, text_expected),
            ],
            AdminUserState.AWAITING_PERCENT: [
                MessageHandler(text, receive_percent),
                MessageHandler(not_text, text_expected),
            ],
        },
        fallbacks=cancel_handlers(NAME),
    )
    return [
        conversation,
        CommandHandler("user", user_command, filters=admin_filter(settings, ALL_ROLES)),
        CallbackQueryHandler(refresh_button, pattern=r"^adm:u:show:\d+$"),
        CallbackQueryHandler(block_button, pattern=r"^adm:u:(block|unblock):\d+$"),
        CallbackQueryHandler(decide_adjustment, pattern=r"^adm:adj:(ok|no):[0-9a-f]{24}$"),
    ]
