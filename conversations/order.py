"""Buying a label: sender → recipient → weight → size → rate → review → pay → label.

State diagram: ``order.mmd``. The position is derived from the draft in MongoDB: after
every input the flow asks for the first thing the draft still lacks, so editing a part
from the review (which clears that part and the quotes) comes back to the review on its
own. Buttons carry the draft id, so a button of an older order is recognised as stale.
"""

from __future__ import annotations

import html
import logging
from enum import StrEnum
from typing import Any

from telegram import Update
from telegram.error import BadRequest
from telegram.ext import CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot.context import BotContext
from bot.i18n import I18n
from bot.keyboards import Button, cancel_button, inline, main_menu
from bot.sessions import SessionConversationHandler
from bot.telegram_errors import NOT_MODIFIED, TO_EDIT_NOT_FOUND, is_bad_request
from conversations.common import cancel_handlers, conversation_key, leave_others
from handlers.common import ack, lang_of, reply
from handlers.label_files import send_label_document, send_label_with_receipt
from handlers.refunds import window_text
from providers.errors import ProviderError
from services import addresses
from services.addresses import FieldError
from services.amounts import AmountError
from services.orders import (
    CONFIRMATION_CHOICES,
    CORRECTED,
    MIN_INSURED_VALUE_CENTS,
    NO_CONFIRMATION,
    SIDES,
    AddressCheck,
    OptionNotOffered,
    QuoteRefusal,
    RatesUnavailable,
    address_of,
    has_progress,
    missing_fields,
    options_of,
    skippable,
)
from services.presets import preset_parcel
from services.shipping import CarrierUnavailable
from storage.client import Document
from views.screen import show
from views.screens import order as order_screens

_LOGGER = logging.getLogger(__name__)

NAME = "order"
STEPS = 6


class OrderState(StrEnum):
    AWAITING_ADDRESS_FIELD = "awaiting_address_field"
    AWAITING_ADDRESS_CHOICE = "awaiting_address_choice"
    AWAITING_WEIGHT = "awaiting_weight"
    AWAITING_DIMENSIONS = "awaiting_dimensions"
    AWAITING_RATE = "awaiting_rate"
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    AWAITING_INSURED_VALUE = "awaiting_insured_value"


# -- rendering ---------------------------------------------------------------------------


def field_error(i18n: I18n, lang: str, error: FieldError) -> str:
    params: dict[str, Any] = {"limit": "", "min": "", "max": "", "value": ""}
    params.update({k: str(v) for k, v in error.params.items()})
    key = f"field.error.{error.code}"
    if key not in i18n.catalogs[i18n.default].messages:
        key = "field.error.invalid"
    return i18n.t(lang, key, **params)


def format_address(address: dict[str, Any]) -> str:
    lines = [
        address.get("name"),
        address.get("street1"),
        address.get("street2"),
        " ".join(
            part
            for part in (
                f"{address.get('city', '')},".strip(",") if address.get("city") else "",
                address.get("state") or "",
                address.get("postal_code") or "",
            )
            if part
        ),
        address.get("phone"),
    ]
    return "\n".join(str(line) for line in lines if line)


def format_weight(ounces: int) -> str:
    pounds, rest = divmod(int(ounces), 16)
    if pounds and rest:
        return f"{pounds} lb {rest} oz"
    return f"{pounds} lb" if pounds else f"{rest} oz"


def dimensions_text(parcel: dict[str, Any]) -> str:
    return f"{parcel['length_in']}×{parcel['width_in']}×{parcel['height_in']}"


def preset_label(preset: Document) -> str:
    """``📦 Small box · 2 lb · 10×8×4`` (a button text: plain, at most 64 characters)."""
    parcel = dict(preset.get("parcel") or {})
    label = f"📦 {preset['name']} · {format_weight(parcel['weight_oz'])} · "
    return (label + dimensions_text(parcel))[:64]


def service_name(rate: dict[str, Any]) -> str:
    """The carrier and service in one name, the carrier said once ("USPS Ground
    Advantage", not "USPS USPS Ground Advantage"), with single spaces only."""
    carrier = " ".join(str(rate.get("carrier") or "").split())
    service = " ".join(str(rate.get("service") or "").split())
    if not carrier or service.lower().startswith(carrier.lower()):
        return service or carrier
    return f"{carrier} {service}".strip()


def _days(i18n: I18n, lang: str, days: object) -> str:
    if isinstance(days, int) and days > 0:
        return i18n.t(lang, "order.days", days=days)
    return i18n.t(lang, "order.days_unknown")


def _draft_button(i18n: I18n, lang: str, key: str, action: str, draft: Document) -> Button:
    return (i18n.t(lang, key), f"order:{action}:{draft['_id']}")


# -- navigation --------------------------------------------------------------------------


async def _advance(update: Update, context: BotContext, draft: Document) -> OrderState:
    """Asks for the first thing the draft lacks, or shows rates / the review."""
    lang = lang_of(update, context)
    i18n = context.i18n
    for index, side in enumerate(SIDES):
        missing = missing_fields(address_of(draft, side), side)
        if missing:
            await _ask_field(update, context, draft, side, missing[0], step=index + 1)
            return OrderState.AWAITING_ADDRESS_FIELD
        try:
            draft, check = await context.services.orders.check_address(draft, side)
        except LookupError:
            return await _lost_draft(update, context)  # type: ignore[return-value]
        if check is not None and check.needs_choice:
            await _show_check(update, context, draft, check)
            return OrderState.AWAITING_ADDRESS_CHOICE
        if check is not None:  # the check was unavailable: said once, the order goes on
            side_name = i18n.t(lang, f"order.side.{side}")
            await reply(update, context, i18n.t(lang, "order.validation.skipped", side=side_name))
    parcel = draft.get("parcel") or {}
    cancel = cancel_button(i18n, lang, "order:cancel")
    if "weight_oz" not in parcel:
        text = i18n.t(lang, "order.ask_weight", steps=STEPS)
        rows = await _preset_rows(update, context, draft)
        if rows:
            text += "\n\n" + i18n.t(lang, "order.preset_hint")
        await reply(update, context, text, inline([*rows, cancel]))
        return OrderState.AWAITING_WEIGHT
    if "length_in" not in parcel:
        # The weight as understood ("2 kg" -> 4 lb 7 oz), so a misreading shows at once.
        weight = i18n.t(lang, "order.weight_understood", weight=format_weight(parcel["weight_oz"]))
        text = weight + "\n\n" + i18n.t(lang, "order.ask_dimensions", steps=STEPS)
        await reply(update, context, text, inline([cancel]))
        return OrderState.AWAITING_DIMENSIONS
    if not draft.get("rates") or not draft.get("quote_id"):
        return await _load_rates(update, context, draft)  # (a draft of an older version)
    if not draft.get("rate") or not draft.get("offer_id"):
        return await _show_rates(update, context, draft)
    return await _show_summary(update, context, draft)


def check_data(draft: Document, check: AddressCheck, choice: str) -> str:
    """``order:av:<choice>:<draft>:<side>:<token>`` (at most 9 + 5 + 24 + 6 + 8 = 52
    bytes): the answer names the draft and the very check it answers, so a button of an
    older check (the address was edited since) or of another draft applies nothing."""
    return f"order:av:{choice}:{draft['_id']}:{check.side}:{check.token}"


def _reason(i18n: I18n, lang: str, code: str, message: str) -> str:
    key = f"order.validation.reason.{code}"
    if key in i18n.catalogs[i18n.default].messages:
        return i18n.t(lang, key)
    return i18n.t(lang, "order.validation.reason.other", message=message)


async def _show_check(
    update: Update, context: BotContext, draft: Document, check: AddressCheck
) -> None:
    """The carrier's correction ("did you mean") or its doubt, with one-tap answers."""
    lang = lang_of(update, context)
    i18n = context.i18n
    side = i18n.t(lang, f"order.side.{check.side}")
    typed = address_of(draft, check.side)
    rows: list[list[Button]] = []
    if check.status == CORRECTED:
        suggested = {**typed, **(check.suggestion or {})}
        text = i18n.t(
            lang,
            "order.validation.corrected",
            side=side,
            suggested=format_address(suggested),
            typed=format_address(typed),
        )
        rows.append([(i18n.t(lang, "order.validation.use"), check_data(draft, check, "use"))])
    else:
        reasons = [_reason(i18n, lang, code, message) for code, message in check.reasons]
        text = i18n.t(
            lang,
            "order.validation.unverified",
            side=side,
            typed=format_address(typed),
            reason="\n".join(reasons) or i18n.t(lang, "order.validation.reason.unknown"),
        )
    rows.append(
        [
            (i18n.t(lang, "order.validation.keep"), check_data(draft, check, "keep")),
            (i18n.t(lang, "order.validation.edit"), check_data(draft, check, "edit")),
        ]
    )
    rows.append(cancel_button(i18n, lang, "order:cancel"))
    await reply(update, context, text, inline(rows))


async def _ask_field(
    update: Update, context: BotContext, draft: Document, side: str, field: str, *, step: int
) -> None:
    lang = lang_of(update, context)
    i18n = context.i18n
    text = i18n.t(
        lang,
        "order.ask_field",
        step=step,
        steps=STEPS,
        side=i18n.t(lang, f"order.side.{side}"),
        field=i18n.t(lang, f"order.field.{field}"),
    )
    rows: list[list[Button]] = []
    if field == addresses.ADDRESS_FIELDS[0] and not address_of(draft, side):
        text += "\n\n" + i18n.t(lang, "order.paste_hint")
        user = update.effective_user
        assert user is not None
        default = None
        if side == "from":
            default = await context.services.orders.default_sender(user.id)
        if default is not None:
            # "Step 1: use your default sender Dana Scully, New York?" — one tap.
            where = dict(default["address"])
            args = {"name": where.get("name") or default["name"], "city": where.get("city", "")}
            text += "\n\n" + i18n.t(lang, "order.default_sender_hint", **args)
            label = html.unescape(i18n.t(lang, "order.default_sender", **args))[:64]
            rows.append([(label, default_sender_data(draft, default))])
        for template in (await context.services.orders.templates(user.id))[:8]:
            if default is not None and template["_id"] == default["_id"]:
                continue
            rows.append([(f"📇 {template['name']}", f"order:tpl:{side}:{template['_id']}")])
    if skippable(side, field):
        # The button names what it skips: pressed on an older screen, it skips nothing else.
        rows.append([(i18n.t(lang, "order.skip"), f"order:skip:{side}:{field}")])
    rows.append(cancel_button(i18n, lang, "order:cancel"))
    await reply(update, context, text, inline(rows))


def default_sender_data(draft: Document, template: Document) -> str:
    """``order:dfl:<draft>:<template>`` (10 + 24 + 1 + 24 = 59 bytes of Telegram's 64)."""
    return f"order:dfl:{draft['_id']}:{template['_id']}"


def preset_data(draft: Document, preset: Document) -> str:
    """``order:pp:<draft>:<preset>`` (9 + 24 + 1 + 24 = 58 bytes)."""
    return f"order:pp:{draft['_id']}:{preset['_id']}"


async def _preset_rows(
    update: Update, context: BotContext, draft: Document
) -> list[list[Button]]:
    """One button per saved parcel: weight and size at once."""
    user = update.effective_user
    assert user is not None
    presets = (await context.services.presets.list(user.id))[:10]
    return [[(preset_label(preset), preset_data(draft, preset))] for preset in presets]


async def _load_rates(update: Update, context: BotContext, draft: Document) -> OrderState:
    lang = lang_of(update, context)
    i18n = context.i18n
    retry = inline(
        [
            [_draft_button(i18n, lang, "order.retry", "retry", draft)],
            cancel_button(i18n, lang, "order:cancel"),
        ]
    )
    try:
        draft = await context.services.orders.fetch_rates(draft)
    except RatesUnavailable as exc:  # the service names the carrier's refusals
        if exc.reason is QuoteRefusal.INVALID_ADDRESS:
            text = i18n.t(lang, "order.invalid_address", message=exc.message)
        else:
            text = i18n.t(lang, "order.no_rates")
        await reply(update, context, text, _summary_edit_markup(i18n, lang, draft))
        return OrderState.AWAITING_CONFIRMATION
    except (ProviderError, CarrierUnavailable):
        await reply(update, context, i18n.t(lang, "order.carrier_unavailable"), retry)
        return OrderState.AWAITING_CONFIRMATION
    return await _show_rates(update, context, draft)


async def _show_rates(update: Update, context: BotContext, draft: Document) -> OrderState:
    lang = lang_of(update, context)
    i18n = context.i18n
    rows: list[list[Button]] = []
    for index, rate in enumerate(draft.get("rates") or []):
        label = i18n.t(
            lang,
            "order.rate_button",
            price=i18n.money(lang, rate["price_cents"]),
            service=service_name(rate),
            days=_days(i18n, lang, rate.get("delivery_days")),
        )
        rows.append([(label[:64], f"order:rate:{draft['_id']}:{index}")])
    rows.append(cancel_button(i18n, lang, "order:cancel"))
    await reply(update, context, i18n.t(lang, "order.choose_rate", steps=STEPS), inline(rows))
    return OrderState.AWAITING_RATE


def _summary_edit_markup(i18n: I18n, lang: str, draft: Document) -> Any:
    return inline(
        [
            [
                _draft_button(i18n, lang, "order.edit_from", "edit-from", draft),
                _draft_button(i18n, lang, "order.edit_to", "edit-to", draft),
            ],
            [_draft_button(i18n, lang, "order.edit_parcel", "edit-parcel", draft)],
            cancel_button(i18n, lang, "order:cancel"),
        ]
    )


async def _show_summary(
    update: Update, context: BotContext, draft: Document, note: str = ""
) -> OrderState:
    lang = lang_of(update, context)
    i18n = context.i18n
    user = update.effective_user
    assert user is not None
    balance = await context.services.balance.balance_cents(user.id)
    rate = draft["rate"]
    parcel = draft["parcel"]
    price = i18n.money(lang, draft["price_cents"])
    text = i18n.t(
        lang,
        "order.summary",
        steps=STEPS,
        from_address=format_address(address_of(draft, "from")),
        to_address=format_address(address_of(draft, "to")),
        weight=format_weight(parcel["weight_oz"]),
        dimensions=f"{parcel['length_in']}×{parcel['width_in']}×{parcel['height_in']}",
        service=service_name(rate),
        days=_days(i18n, lang, rate.get("delivery_days")),
        price=price,
        balance=i18n.money(lang, balance),
    )
    extras = _extras_lines(i18n, lang, draft)
    if extras:
        text += "\n\n" + i18n.t(lang, "order.summary.extras", lines="\n".join(extras))
    if note:
        text = f"{note}\n\n{text}"
    markup = inline(
        [
            [(i18n.t(lang, "order.pay", price=price), pay_data(draft))],
            [
                _draft_button(i18n, lang, "order.insure_button", "insure", draft),
                _draft_button(i18n, lang, "order.sign_button", "sign", draft),
            ],
            [
                _draft_button(i18n, lang, "order.edit_from", "edit-from", draft),
                _draft_button(i18n, lang, "order.edit_to", "edit-to", draft),
            ],
            [
                _draft_button(i18n, lang, "order.edit_parcel", "edit-parcel", draft),
                _draft_button(i18n, lang, "order.edit_rate", "edit-rate", draft),
            ],
            cancel_button(i18n, lang, "order:cancel"),
        ]
    )
    await _send_review(update, context, text, markup)
    return OrderState.AWAITING_CONFIRMATION


def _extras_lines(i18n: I18n, lang: str, draft: Document) -> list[str]:
    """The review's insurance and signature lines (what they add to the price)."""
    lines = []
    insured, confirmation = options_of(draft)
    if insured:
        lines.append(
            i18n.t(
                lang,
                "order.summary.insurance",
                declared=i18n.money(lang, insured),
                price=i18n.money(lang, int(draft.get("insurance_price_cents") or 0)),
            )
        )
    if confirmation != NO_CONFIRMATION:
        lines.append(
            i18n.t(
                lang,
                f"order.summary.confirmation.{confirmation}",
                price=i18n.money(lang, int(draft.get("confirmation_price_cents") or 0)),
            )
        )
    return lines


def pay_data(draft: Document) -> str:
    """``order:pay:<draft>:<offer>:<cents>``: the button names what it buys and for how
    much (at most 10 + 24 + 1 + 9 + 1 + 9 = 54 bytes of Telegram's 64)."""
    return f"order:pay:{draft['_id']}:{draft['offer_id']}:{int(draft['price_cents'])}"


def parse_pay_data(data: str) -> tuple[str | None, int | None]:
    """(offer, cents) from a Pay button; (None, None) for a button of an older version."""
    parts = data.split(":")
    if len(parts) != 5 or not parts[4].isdigit():
        return None, None
    return parts[3], int(parts[4])


async def _send_review(
    update: Update, context: BotContext, text: str, markup: Any
) -> None:
    """Sends the review; the previous review of this chat loses its buttons, so only the
    newest one can be paid from. Its message id is kept with the session."""
    chat = update.effective_chat
    assert chat is not None
    key = conversation_key(update)
    sessions = context.services.sessions
    previous = (await sessions.get_data(key, NAME)).get("review_message_id")
    sent = await context.bot.send_message(chat.id, text, reply_markup=markup)
    await sessions.set_data(key, NAME, {"review_message_id": sent.message_id})
    if isinstance(previous, int) and previous != sent.message_id:
        try:
            await context.bot.edit_message_reply_markup(chat.id, previous, reply_markup=None)
        except BadRequest as exc:
            # The message to disarm has already changed or is gone.
            if not is_bad_request(exc, NOT_MODIFIED, TO_EDIT_NOT_FOUND):
                raise


# -- callbacks ---------------------------------------------------------------------------


async def _current_draft(update: Update, context: BotContext) -> Document | None:
    user = update.effective_user
    assert user is not None
    return await context.services.orders.draft(user.id)


async def _lost_draft(update: Update, context: BotContext) -> int:
    lang = lang_of(update, context)
    i18n = context.i18n
    await reply(update, context, i18n.t(lang, "order.no_draft"), main_menu(i18n, lang))
    return SessionConversationHandler.END


def open_draft_markup(i18n: I18n, lang: str) -> Any:
    """An unfinished order: continue it, or start over (which discards it)."""
    return inline(
        [
            [
                (i18n.t(lang, "order.continue"), "order:resume"),
                (i18n.t(lang, "order.start_over"), "order:new"),
            ],
            [(i18n.t(lang, "common.menu"), "menu:main")],
        ]
    )


async def start(update: Update, context: BotContext) -> OrderState:
    """Starts a new draft and asks for the sender's name (or a pasted address). An
    unfinished order (anything typed into it) is discarded, and the customer is told so
    (/start offers "Continue order" instead; ``order:new`` is its "Start over")."""
    await ack(update)
    user = update.effective_user
    assert user is not None
    leave_others(context, conversation_key(update), keep={NAME})
    orders = context.services.orders
    current = await orders.draft(user.id)
    if current is not None and has_progress(current):
        await reply(update, context, context.i18n.t(lang_of(update, context), "order.discarded"))
    draft = await orders.start_draft(user.id)
    return await _advance(update, context, draft)


async def resume(update: Update, context: BotContext) -> OrderState | int:
    """"Continue order": the unfinished order's current step, asked again."""
    await ack(update)
    draft = await _current_draft(update, context)
    if draft is None:
        return await _lost_draft(update, context)
    leave_others(context, conversation_key(update), keep={NAME})
    return await _advance(update, context, draft)


async def start_from_template(update: Update, context: BotContext) -> OrderState | None:
    """Starts a new draft with a saved template as the sender (from the templates list)."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    orders = context.services.orders
    template = await orders.template(user.id, query.data.rsplit(":", 1)[-1])
    if template is None:
        await ack(update, context.i18n.t(lang_of(update, context), "errors.stale_button"))
        return None
    await ack(update)
    leave_others(context, conversation_key(update), keep={NAME})
    draft = await orders.start_draft(user.id)
    draft = await orders.set_address(draft, "from", dict(template["address"]))
    return await _advance(update, context, draft)


async def receive_text(update: Update, context: BotContext) -> OrderState | int:
    """Stores an address field, or a whole pasted address, and asks for what is next."""
    message = update.effective_message
    assert message is not None and message.text is not None
    draft = await _current_draft(update, context)
    if draft is None:
        return await _lost_draft(update, context)
    lang = lang_of(update, context)
    i18n = context.i18n
    orders = context.services.orders
    side, field = _cursor(draft)
    if side is None or field is None:
        return await _advance(update, context, draft)
    text = message.text
    if addresses.looks_like_full_address(text):
        draft, errors = await orders.apply_pasted_address(draft, side, text)
        understood = format_address(address_of(draft, side))
        if understood:
            side_name = i18n.t(lang, f"order.side.{side}")
            await reply(
                update,
                context,
                i18n.t(lang, "order.understood", side=side_name, address=understood),
            )
        for error in errors.values():
            if error.field == addresses.WHOLE_ADDRESS:  # e.g. "US addresses only for now"
                await reply(update, context, field_error(i18n, lang, error))
                continue
            label = i18n.t(lang, f"order.field.{error.field}")
            await reply(update, context, f"{label}: {field_error(i18n, lang, error)}")
        return await _advance(update, context, draft)
    try:
        draft = await orders.set_address_field(draft, side, field, text)
    except FieldError as error:
        await reply(update, context, field_error(i18n, lang, error))
        return OrderState.AWAITING_ADDRESS_FIELD
    except LookupError:
        return await _lost_draft(update, context)
    return await _advance(update, context, draft)


def _cursor(draft: Document) -> tuple[str | None, str | None]:
    for side in SIDES:
        missing = missing_fields(address_of(draft, side), side)
        if missing:
            return side, missing[0]
    return None, None


async def skip_field(update: Update, context: BotContext) -> OrderState | int:
    """Skips the field the button was shown for, if it is still the one asked."""
    query = update.callback_query
    assert query is not None and query.data is not None
    draft = await _current_draft(update, context)
    if draft is None:
        await ack(update)
        return await _lost_draft(update, context)
    side, field = _cursor(draft)
    if side is None or field is None or query.data != f"order:skip:{side}:{field}":
        await ack(update, context.i18n.t(lang_of(update, context), "errors.stale_button"))
        return await _advance(update, context, draft)
    await ack(update)
    if skippable(side, field):
        draft = await context.services.orders.set_address_field(draft, side, field, None)
    return await _advance(update, context, draft)


async def use_template(update: Update, context: BotContext) -> OrderState | int:
    """Fills the side the button was shown for from a saved template, if that side is
    still the one asked (an older screen's button fills nothing else)."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    draft = await _current_draft(update, context)
    if draft is None:
        await ack(update)
        return await _lost_draft(update, context)
    side, _ = _cursor(draft)
    _, _, shown_for, template_id = query.data.split(":")
    template = await context.services.orders.template(user.id, template_id)
    if template is None or side is None or shown_for != side:
        await ack(update, context.i18n.t(lang_of(update, context), "errors.stale_button"))
        return await _advance(update, context, draft)
    await ack(update)
    draft = await context.services.orders.set_address(draft, side, dict(template["address"]))
    return await _advance(update, context, draft)


async def use_default_sender(update: Update, context: BotContext) -> OrderState | int:
    """Fills the sender from the template the button names, if the button is of this
    draft, the template is the customer's and the sender is still the side asked; else
    fills nothing and asks the current step again."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    draft = await _current_draft(update, context)
    if draft is None:
        await ack(update)
        return await _lost_draft(update, context)
    _, _, draft_id, template_id = query.data.split(":")
    orders = context.services.orders
    template = None
    if draft_id == str(draft["_id"]) and _cursor(draft)[0] == "from":
        template = await orders.template(user.id, template_id)
    if template is None:
        await ack(update, context.i18n.t(lang_of(update, context), "errors.stale_button"))
        return await _advance(update, context, draft)
    await ack(update)
    draft = await orders.set_address(draft, "from", dict(template["address"]))
    return await _advance(update, context, draft)


async def use_preset(update: Update, context: BotContext) -> OrderState | int:
    """Fills weight and size from the preset the button names, if the button is of this
    draft, the preset is the customer's and the weight is the question being asked; else
    fills nothing and asks the current step again."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and query.data is not None and user is not None
    draft = await _current_draft(update, context)
    if draft is None:
        await ack(update)
        return await _lost_draft(update, context)
    _, _, draft_id, preset_id = query.data.split(":")
    orders = context.services.orders
    preset = None
    if draft_id == str(draft["_id"]) and orders.awaiting_parcel(draft):
        preset = await context.services.presets.get(user.id, preset_id)
    if preset is None:
        await ack(update, context.i18n.t(lang_of(update, context), "errors.stale_button"))
        return await _advance(update, context, draft)
    await ack(update)
    draft = await orders.set_parcel(draft, preset_parcel(preset))
    return await _advance(update, context, draft)


async def _parcel_input(
    update: Update, context: BotContext, state: OrderState
) -> OrderState | int:
    """Stores the weight or the size typed at ``state`` and asks for what is next."""
    message = update.effective_message
    assert message is not None and message.text is not None
    draft = await _current_draft(update, context)
    if draft is None:
        return await _lost_draft(update, context)
    orders = context.services.orders
    store = orders.set_weight if state is OrderState.AWAITING_WEIGHT else orders.set_dimensions
    try:
        draft = await store(draft, message.text)
    except FieldError as error:
        await reply(update, context, field_error(context.i18n, lang_of(update, context), error))
        return state
    return await _advance(update, context, draft)


async def receive_weight(update: Update, context: BotContext) -> OrderState | int:
    """Stores the weight and asks for the size."""
    return await _parcel_input(update, context, OrderState.AWAITING_WEIGHT)


async def receive_dimensions(update: Update, context: BotContext) -> OrderState | int:
    """Stores the size and fetches rates."""
    return await _parcel_input(update, context, OrderState.AWAITING_DIMENSIONS)


async def _draft_from_button(update: Update, context: BotContext) -> Document | None:
    """The draft a button refers to, or ``None`` (answered as stale) for an older one."""
    query = update.callback_query
    assert query is not None and query.data is not None
    parts = query.data.split(":")
    draft = await _current_draft(update, context)
    if draft is None or len(parts) < 3 or parts[2] != str(draft["_id"]):
        await ack(update, context.i18n.t(lang_of(update, context), "order.stale"), alert=True)
        return None
    await ack(update)
    return draft


async def choose_rate(update: Update, context: BotContext) -> OrderState | int:
    draft = await _draft_from_button(update, context)
    if draft is None:
        return OrderState.AWAITING_RATE
    query = update.callback_query
    assert query is not None and query.data is not None
    index = int(query.data.rsplit(":", 1)[-1])
    pick = f"{query.message.message_id if query.message else 0}:{index}"
    try:
        chosen = await context.services.orders.claim_rate(draft, index, pick)
    except (LookupError, ValueError):
        current = await _current_draft(update, context)
        if current is None:
            return await _lost_draft(update, context)
        return await _advance(update, context, current)
    if chosen is None:  # the same button pressed again (a double tap): one review
        return OrderState.AWAITING_CONFIRMATION
    return await _advance(update, context, chosen)


PARCEL_PARTS = ("weight", "size")


async def edit_part(update: Update, context: BotContext) -> OrderState | int:
    """Shows the part's current values with a ✏️ button per field and "Keep" (back to the
    review); the rate shows the rate list."""
    draft = await _draft_from_button(update, context)
    if draft is None:
        return OrderState.AWAITING_CONFIRMATION
    query = update.callback_query
    assert query is not None and query.data is not None
    action = query.data.split(":")[1]
    if action == "edit-rate":
        return await _show_rates(update, context, draft)
    lang = lang_of(update, context)
    i18n = context.i18n
    rows: list[list[Button]] = []
    if action == "edit-parcel":
        parcel = draft.get("parcel") or {}
        current = i18n.t(
            lang,
            "order.edit_parcel_now",
            weight=format_weight(int(parcel.get("weight_oz") or 0)),
            dimensions=f"{parcel.get('length_in')}×{parcel.get('width_in')}×"
            f"{parcel.get('height_in')}",
        )
        buttons = [
            (i18n.t(lang, f"order.fix.{part}"), f"order:fix:{draft['_id']}:parcel:{part}")
            for part in PARCEL_PARTS
        ]
        rows.append(buttons)
    else:
        side = "from" if action == "edit-from" else "to"
        current = i18n.t(
            lang,
            "order.edit_address_now",
            side=i18n.t(lang, f"order.side.{side}"),
            address=format_address(address_of(draft, side)),
        )
        buttons = [
            (i18n.t(lang, f"order.fix.{name}"), f"order:fix:{draft['_id']}:{side}:{name}")
            for name in addresses.ADDRESS_FIELDS
        ]
        rows.extend(buttons[i : i + 2] for i in range(0, len(buttons), 2))
        rows.append([(i18n.t(lang, "order.fix.all"), f"order:reset:{draft['_id']}:{side}")])
    rows.append([(i18n.t(lang, "order.fix.keep"), "order:summary")])
    await reply(update, context, current, inline(rows))
    return OrderState.AWAITING_CONFIRMATION


async def fix_field(update: Update, context: BotContext) -> OrderState | int:
    """✏️ on one field: only that field is asked again (the rest is kept), then the flow
    re-quotes and comes back to the review. "Re-enter all" asks the whole address."""
    draft = await _draft_from_button(update, context)
    if draft is None:
        return OrderState.AWAITING_CONFIRMATION
    query = update.callback_query
    assert query is not None and query.data is not None
    parts = query.data.split(":")
    orders = context.services.orders
    if parts[1] == "reset":
        draft = await orders.clear_address(draft, parts[3])
    else:
        draft = await orders.clear_field(draft, parts[3], parts[4])
    return await _advance(update, context, draft)


async def answer_check(update: Update, context: BotContext) -> OrderState | int:
    """Use this / Keep mine / Edit on a carrier check. A button of another draft or of an
    older check applies nothing; the current step is shown again."""
    query = update.callback_query
    assert query is not None and query.data is not None
    _, _, choice, draft_id, side, token = query.data.split(":")
    draft = await _current_draft(update, context)
    if draft is None:
        await ack(update)
        return await _lost_draft(update, context)
    decided = None
    if draft_id == str(draft["_id"]):
        decided = await context.services.orders.decide_address(draft, side, token, choice)
    if decided is None:
        await ack(update)
        await reply(
            update, context, context.i18n.t(lang_of(update, context), "order.validation.stale")
        )
        draft = await _current_draft(update, context) or draft
        return await _advance(update, context, draft)
    await ack(update)
    return await _advance(update, context, decided)


async def repeat_step(update: Update, context: BotContext) -> OrderState | int:
    """Text while a button answer is expected: the question again."""
    draft = await _current_draft(update, context)
    if draft is None:
        return await _lost_draft(update, context)
    return await _advance(update, context, draft)


async def retry_rates(update: Update, context: BotContext) -> OrderState | int:
    draft = await _draft_from_button(update, context)
    if draft is None:
        return OrderState.AWAITING_CONFIRMATION
    return await _advance(update, context, draft)


async def show_summary(update: Update, context: BotContext) -> OrderState | int:
    """Back from a top-up: the review of the same draft."""
    await ack(update)
    draft = await _current_draft(update, context)
    if draft is None:
        return await _lost_draft(update, context)
    return await _advance(update, context, draft)


async def _review_again(update: Update, context: BotContext, draft: Document) -> OrderState | int:
    """A Pay button that no longer shows what the draft would buy: the current review."""
    note = context.i18n.t(lang_of(update, context), "order.review_changed")
    if draft.get("rate") and draft.get("offer_id"):
        return await _show_summary(update, context, draft, note)
    await reply(update, context, note)
    return await _advance(update, context, draft)


async def ask_insurance(update: Update, context: BotContext) -> OrderState | int:
    """🛡 Insure: asks for the declared value (or removes the insurance)."""
    draft = await _draft_from_button(update, context)
    if draft is None:
        return OrderState.AWAITING_CONFIRMATION
    if not draft.get("rate"):
        return await _advance(update, context, draft)
    lang = lang_of(update, context)
    i18n = context.i18n
    limits = context.services.orders.config
    text = i18n.t(
        lang,
        "order.insure.ask",
        min=i18n.money(lang, MIN_INSURED_VALUE_CENTS),
        max=i18n.money(lang, limits.max_insured_value_cents),
    )
    rows: list[list[Button]] = []
    if options_of(draft)[0]:
        rows.append([_draft_button(i18n, lang, "order.insure.remove", "insure-off", draft)])
    rows.append([(i18n.t(lang, "order.back_to_summary"), "order:summary")])
    await reply(update, context, text, inline(rows))
    return OrderState.AWAITING_INSURED_VALUE


async def receive_insured_value(update: Update, context: BotContext) -> OrderState | int:
    """Stores the declared value typed, re-quotes with insurance and shows the review."""
    message = update.effective_message
    assert message is not None and message.text is not None
    draft = await _current_draft(update, context)
    if draft is None:
        return await _lost_draft(update, context)
    if not draft.get("rate"):
        return await _advance(update, context, draft)
    lang = lang_of(update, context)
    i18n = context.i18n
    orders = context.services.orders
    try:
        cents = orders.parse_declared_value(message.text, lang)
    except AmountError as error:
        text = i18n.t(
            lang,
            f"order.insure.error.{error.code}",
            min=i18n.money(lang, MIN_INSURED_VALUE_CENTS),
            max=i18n.money(lang, orders.config.max_insured_value_cents),
        )
        await reply(update, context, text)
        return OrderState.AWAITING_INSURED_VALUE
    note = i18n.t(lang, "order.insure.added", declared=i18n.money(lang, cents))
    return await _change_options(update, context, draft, note, insured_value_cents=cents)


async def remove_insurance(update: Update, context: BotContext) -> OrderState | int:
    draft = await _draft_from_button(update, context)
    if draft is None:
        return OrderState.AWAITING_CONFIRMATION
    note = context.i18n.t(lang_of(update, context), "order.insure.removed")
    return await _change_options(update, context, draft, note, insured_value_cents=0)


async def ask_confirmation(update: Update, context: BotContext) -> OrderState | int:
    """✍️ Signature: the confirmations the chosen service offers, with their prices."""
    draft = await _draft_from_button(update, context)
    if draft is None:
        return OrderState.AWAITING_CONFIRMATION
    if not draft.get("rate"):
        return await _advance(update, context, draft)
    lang = lang_of(update, context)
    i18n = context.i18n
    try:
        offers = await context.services.orders.confirmation_offers(draft)
    except (ProviderError, CarrierUnavailable):
        return await _show_summary(
            update, context, draft, i18n.t(lang, "order.carrier_unavailable")
        )
    except LookupError:
        return await _lost_draft(update, context)
    service = service_name(draft["rate"])
    current = options_of(draft)[1]
    if not offers and current == NO_CONFIRMATION:
        note = i18n.t(lang, "order.sign.none_offered", service=service)
        return await _show_summary(update, context, draft, note)
    rows: list[list[Button]] = [
        [
            (
                i18n.t(lang, f"order.sign.choice.{kind}", price=i18n.money(lang, cents)),
                f"order:sign:{draft['_id']}:{kind}",
            )
        ]
        for kind, cents in offers
    ]
    if current != NO_CONFIRMATION:
        rows.append(
            [(i18n.t(lang, "order.sign.choice.none"), f"order:sign:{draft['_id']}:none")]
        )
    rows.append([(i18n.t(lang, "order.back_to_summary"), "order:summary")])
    await reply(update, context, i18n.t(lang, "order.sign.ask", service=service), inline(rows))
    return OrderState.AWAITING_CONFIRMATION


async def choose_confirmation(update: Update, context: BotContext) -> OrderState | int:
    """Applies the confirmation the button names (if the service still offers it)."""
    draft = await _draft_from_button(update, context)
    if draft is None:
        return OrderState.AWAITING_CONFIRMATION
    query = update.callback_query
    assert query is not None and query.data is not None
    kind = query.data.rsplit(":", 1)[-1]
    note = context.i18n.t(lang_of(update, context), f"order.sign.chosen.{kind}")
    return await _change_options(update, context, draft, note, confirmation=kind)


async def _change_options(
    update: Update,
    context: BotContext,
    draft: Document,
    note: str,
    *,
    insured_value_cents: int | None = None,
    confirmation: str | None = None,
) -> OrderState | int:
    """Re-quotes with the new option and shows the new review (its Pay button carries the
    new total); when the service does not offer it, or the carrier is down, the draft is
    unchanged and the review is shown again with why."""
    lang = lang_of(update, context)
    i18n = context.i18n
    if not draft.get("rate"):
        return await _advance(update, context, draft)
    try:
        draft = await context.services.orders.set_options(
            draft, insured_value_cents=insured_value_cents, confirmation=confirmation
        )
    except OptionNotOffered:
        service = service_name(draft["rate"])
        note = i18n.t(lang, "order.option.not_offered", service=service)
    except (ProviderError, CarrierUnavailable):
        note = i18n.t(lang, "order.carrier_unavailable")
    except LookupError:
        return await _lost_draft(update, context)
    return await _show_summary(update, context, draft, note)


async def pay(update: Update, context: BotContext) -> OrderState | int:
    """Refreshes an old quote, then buys what the button shows: debit, label, PDF."""
    draft = await _draft_from_button(update, context)
    if draft is None:
        return OrderState.AWAITING_CONFIRMATION
    query = update.callback_query
    assert query is not None and query.data is not None
    offer, cents = parse_pay_data(query.data)
    orders = context.services.orders
    if not orders.offer_matches(draft, offer, cents):
        return await _review_again(update, context, draft)
    lang = lang_of(update, context)
    i18n = context.i18n
    services = context.services
    user = update.effective_user
    assert user is not None
    try:
        draft, changed = await services.orders.refresh_chosen_rate(draft)
    except (ProviderError, CarrierUnavailable, RatesUnavailable):
        retry = inline([[_draft_button(i18n, lang, "order.retry", "retry", draft)]])
        await reply(update, context, i18n.t(lang, "order.carrier_unavailable"), retry)
        return OrderState.AWAITING_CONFIRMATION
    if changed:
        if not draft.get("rate"):
            return await _show_rates(update, context, draft)
        return await _show_summary(update, context, draft, i18n.t(lang, "order.price_changed"))
    # A refreshed quote with the same service and price is what the button promised; the
    # purchase itself checks again, atomically, that the draft still holds this offer.
    result = await services.purchase.purchase(
        user.id, draft["_id"], offer_id=str(draft["offer_id"]), price_cents=int(cents or 0)
    )
    if result.status == "changed" and result.order is not None:
        return await _review_again(update, context, result.order)
    price = i18n.money(lang, int(draft["price_cents"]))
    if result.status == "insufficient":
        topup = services.payments.topup_for_shortfall(result.shortfall_cents)
        screen = order_screens.insufficient(
            context.tr, result.balance_cents, int(draft["price_cents"]), topup
        )
        await show(update, context, screen)
        return OrderState.AWAITING_CONFIRMATION
    if result.status == "already":
        await reply(update, context, i18n.t(lang, "order.already_paid"))
        return SessionConversationHandler.END
    if result.status == "pending":
        await reply(update, context, i18n.t(lang, "order.pending"), main_menu(i18n, lang))
        return SessionConversationHandler.END
    if result.status == "failed":
        reason_key = f"order.failed_reason.{result.reason}"
        if reason_key not in i18n.catalogs[i18n.default].messages:
            reason_key = "order.failed_reason.other"
        text = i18n.t(lang, "order.failed", reason=i18n.t(lang, reason_key), price=price)
        await reply(update, context, text, main_menu(i18n, lang))
        return SessionConversationHandler.END
    if result.status != "purchased" or result.order is None:
        return await _lost_draft(update, context)
    await deliver_label(update, context, result.order, balance_cents=result.balance_cents)
    return SessionConversationHandler.END


async def deliver_label(
    update: Update, context: BotContext, order: Document, *, balance_cents: int | None = None
) -> None:
    """After the purchase (``balance_cents`` known): one message, the label PDF captioned
    with the receipt, the refund window and a Save-template button (the receipt and a
    note as text if the PDF cannot be fetched yet). Otherwise (My labels): the PDF again."""
    lang = lang_of(update, context)
    i18n = context.i18n
    chat = update.effective_chat
    assert chat is not None
    if balance_cents is None:
        caption = i18n.t(lang, "order.pdf_caption", tracking=str(order.get("tracking_number")))
        try:
            await send_label_document(context, chat.id, order, caption)
        except ProviderError:
            _LOGGER.warning("label PDF download failed; the delivery job will retry")
            await reply(update, context, i18n.t(lang, "order.pdf_later"))
        return
    await send_label_with_receipt(
        context,
        chat.id,
        lang,
        order,
        balance_cents=balance_cents,
        head=i18n.t(lang, "receipt.bought"),
        tail=window_text(context, lang, context.services.refunds.window(order)),
        markup=purchased_markup(i18n, lang, order),
        text_if_no_pdf=i18n.t(lang, "order.pdf_later"),
    )


def purchased_markup(i18n: I18n, lang: str, order: Document) -> Any:
    """After a purchase: save the recipient, and a way on (menu, another label, labels)."""
    return inline(
        [
            [(i18n.t(lang, "order.save_template"), f"tpl:save:{order['_id']}")],
            [
                (i18n.t(lang, "order.buy_another"), "menu:order"),
                (i18n.t(lang, "menu.labels"), "menu:labels"),
            ],
            [(i18n.t(lang, "common.menu"), "menu:main")],
        ]
    )


async def text_expected(update: Update, context: BotContext) -> None:
    await reply(update, context, context.i18n.t(lang_of(update, context), "errors.not_understood"))


def build_order_conversation() -> SessionConversationHandler:
    text = filters.TEXT & ~filters.COMMAND
    draft_button = r"[0-9a-f]{24}"
    check_button = rf"^order:av:(use|keep|edit):{draft_button}:(from|to):[0-9a-f]{{8}}$"
    kinds = "|".join((NO_CONFIRMATION, *CONFIRMATION_CHOICES))
    option_handlers = [
        CallbackQueryHandler(ask_insurance, pattern=rf"^order:insure:{draft_button}$"),
        CallbackQueryHandler(remove_insurance, pattern=rf"^order:insure-off:{draft_button}$"),
        CallbackQueryHandler(ask_confirmation, pattern=rf"^order:sign:{draft_button}$"),
        CallbackQueryHandler(
            choose_confirmation, pattern=rf"^order:sign:{draft_button}:({kinds})$"
        ),
    ]
    fields = "|".join(addresses.ADDRESS_FIELDS)
    fix_button = (
        rf"^order:(fix:{draft_button}:((from|to):({fields})|parcel:(weight|size))"
        rf"|reset:{draft_button}:(from|to))$"
    )
    default_button = rf"^order:dfl:{draft_button}:{draft_button}$"
    preset_button = rf"^order:pp:{draft_button}:{draft_button}$"
    return SessionConversationHandler(
        name=NAME,
        entry_points=[
            CommandHandler("order", start),
            CallbackQueryHandler(start, pattern=r"^(menu:order|order:new)$"),
            CallbackQueryHandler(resume, pattern=r"^order:resume$"),
            CallbackQueryHandler(start_from_template, pattern=rf"^order:usetpl:{draft_button}$"),
        ],
        states={
            OrderState.AWAITING_ADDRESS_FIELD: [
                MessageHandler(text, receive_text),
                CallbackQueryHandler(skip_field, pattern=r"^order:skip:(from|to):[a-z0-9_]+$"),
                CallbackQueryHandler(
                    use_template, pattern=rf"^order:tpl:(from|to):{draft_button}$"
                ),
                CallbackQueryHandler(use_default_sender, pattern=default_button),
            ],
            OrderState.AWAITING_ADDRESS_CHOICE: [
                CallbackQueryHandler(answer_check, pattern=check_button),
                MessageHandler(text, repeat_step),
            ],
            OrderState.AWAITING_WEIGHT: [
                MessageHandler(text, receive_weight),
                CallbackQueryHandler(use_preset, pattern=preset_button),
            ],
            OrderState.AWAITING_DIMENSIONS: [MessageHandler(text, receive_dimensions)],
            OrderState.AWAITING_RATE: [
                CallbackQueryHandler(choose_rate, pattern=rf"^order:rate:{draft_button}:\d$"),
            ],
            OrderState.AWAITING_CONFIRMATION: [
                CallbackQueryHandler(
                    pay, pattern=rf"^order:pay:{draft_button}(:\d{{1,9}}-\d:\d{{1,9}})?$"
                ),
                CallbackQueryHandler(
                    edit_part,
                    pattern=rf"^order:edit-(from|to|parcel|rate):{draft_button}$",
                ),
                CallbackQueryHandler(retry_rates, pattern=rf"^order:retry:{draft_button}$"),
                CallbackQueryHandler(show_summary, pattern=r"^order:summary$"),
                *option_handlers,
                CallbackQueryHandler(fix_field, pattern=fix_button),
            ],
            OrderState.AWAITING_INSURED_VALUE: [
                MessageHandler(text, receive_insured_value),
                CallbackQueryHandler(
                    pay, pattern=rf"^order:pay:{draft_button}(:\d{{1,9}}-\d:\d{{1,9}})?$"
                ),
                CallbackQueryHandler(show_summary, pattern=r"^order:summary$"),
                *option_handlers,
            ],
        },
        fallbacks=[
            *cancel_handlers(NAME),
            CallbackQueryHandler(answer_check, pattern=check_button),
            CallbackQueryHandler(
                edit_part, pattern=rf"^order:edit-(from|to|parcel|rate):{draft_button}$"
            ),
            CallbackQueryHandler(choose_rate, pattern=rf"^order:rate:{draft_button}:\d$"),
            CallbackQueryHandler(retry_rates, pattern=rf"^order:retry:{draft_button}$"),
            CallbackQueryHandler(fix_field, pattern=fix_button),
            # Pressed at another step: they fill nothing and ask the current step again.
            CallbackQueryHandler(use_default_sender, pattern=default_button),
            CallbackQueryHandler(use_preset, pattern=preset_button),
        ],
    )
