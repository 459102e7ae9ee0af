"""Typed callback data: one small codec per prefix.

Each codec is a frozen dataclass whose fields, in order, follow its ``PREFIX`` separated by
``:``. ``pack()`` builds the string a button carries, ``pattern()`` is the regular
expression for PTB's ``CallbackQueryHandler``, ``unpack(data)`` reads a button back (None
when it is not this codec's), and every packed string is checked against Telegram's 1-64
bytes. The idea of aiogram's ``filters/callback_data.py``, written for PTB.

``pack()`` yields exactly the strings the bot has always sent, so buttons already in
customers' chats keep working (``tests/views/test_callbacks.py`` pins each one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self, get_type_hints

MAX_BYTES = 64
OBJECT_ID = r"[0-9a-f]{24}"


def check_size(data: str) -> str:
    """``data`` when Telegram accepts it as callback data (1-64 bytes), else ValueError."""
    if not 1 <= len(data.encode()) <= MAX_BYTES:
        raise ValueError(f"callback_data must be 1-{MAX_BYTES} bytes: {data!r}")
    return data


@dataclass(frozen=True)
class CallbackData:
    """Base of every codec: ``PREFIX`` and a regex per field in ``FIELDS``."""

    PREFIX: ClassVar[str]
    FIELDS: ClassVar[dict[str, str]] = {}

    def pack(self) -> str:
        parts = [self.PREFIX, *(str(getattr(self, f.name)) for f in fields(self))]
        return check_size(":".join(parts))

    @classmethod
    def pattern(cls) -> str:
        body = "".join(f":(?P<{f.name}>{cls.FIELDS[f.name]})" for f in fields(cls))
        return f"^{re.escape(cls.PREFIX)}{body}$"

    @classmethod
    def unpack(cls, data: str | None) -> Self | None:
        if data is None:
            return None
        match = _compiled(cls).match(data)
        if match is None:
            return None
        hints = _hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = match.group(f.name)
            values[f.name] = int(raw) if hints[f.name] is int else raw
        return cls(**values)


_COMPILED: dict[type, re.Pattern[str]] = {}
_HINTS: dict[type, dict[str, Any]] = {}


def _compiled(cls: type[CallbackData]) -> re.Pattern[str]:
    if cls not in _COMPILED:
        _COMPILED[cls] = re.compile(cls.pattern())
    return _COMPILED[cls]


def _hints(cls: type[CallbackData]) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


# -- menu and top-up -------------------------------------------------------------------


@dataclass(frozen=True)
class MenuTopUp(CallbackData):
    """``menu:topup``: the main menu's top-up."""

    PREFIX = "menu:topup"


@dataclass(frozen=True)
class MenuBalance(CallbackData):
    """``menu:balance``."""

    PREFIX = "menu:balance"


@dataclass(frozen=True)
class MenuMain(CallbackData):
    """``menu:main``: back to the main menu."""

    PREFIX = "menu:main"


@dataclass(frozen=True)
class TopUpTerms(CallbackData):
    """``topup:terms:<version>``: accept this version of the terms."""

    PREFIX = "topup:terms"
    FIELDS = {"version": r"[A-Za-z0-9._-]{1,32}"}
    version: str


@dataclass(frozen=True)
class TopUpAmount(CallbackData):
    """``topup:amount:<cents>``: a ready amount on the amount prompt."""

    PREFIX = "topup:amount"
    FIELDS = {"cents": r"\d{1,9}"}
    cents: int


@dataclass(frozen=True)
class TopUpMethod(CallbackData):
    """``topup:method:<crypto|card|stars>``."""

    PREFIX = "topup:method"
    FIELDS = {"method": r"crypto|card|stars"}
    method: str


@dataclass(frozen=True)
class TopUpCancel(CallbackData):
    """``topup:cancel``: leave the top-up conversation."""

    PREFIX = "topup:cancel"


@dataclass(frozen=True)
class CancelInvoice(CallbackData):
    """``topup:cancelinv:<payment id>``: withdraw this pending invoice."""

    PREFIX = "topup:cancelinv"
    FIELDS = {"payment_id": OBJECT_ID}
    payment_id: str


@dataclass(frozen=True)
class BalancePage(CallbackData):
    """``bal:page:<n>``: this page of the balance history."""

    PREFIX = "bal:page"
    FIELDS = {"page": r"\d{1,4}"}
    page: int


@dataclass(frozen=True)
class LegalShow(CallbackData):
    """``legal:show:<document>``."""

    PREFIX = "legal:show"
    FIELDS = {"document": r"terms|privacy|paysupport"}
    document: str


# -- admin buttons on payment alerts (bot/notices.py) -----------------------------------


@dataclass(frozen=True)
class AdminPayCredit(CallbackData):
    """``adm:paycredit:<payment id>``: credit the received amount of a suspicious payment."""

    PREFIX = "adm:paycredit"
    FIELDS = {"payment_id": OBJECT_ID}
    payment_id: str


@dataclass(frozen=True)
class AdminPayAmount(CallbackData):
    """``adm:payamt:<payment id>``: type the received amount of a suspicious payment."""

    PREFIX = "adm:payamt"
    FIELDS = {"payment_id": OBJECT_ID}
    payment_id: str


# -- the order flow (defined for phase 2; conversations/order.py still builds its own) ----


@dataclass(frozen=True)
class OrderTopUp(CallbackData):
    """``order:topup``: top up from the order (the top-up offers the way back)."""

    PREFIX = "order:topup"


@dataclass(frozen=True)
class OrderSummary(CallbackData):
    """``order:summary``: the review of the current draft again."""

    PREFIX = "order:summary"


@dataclass(frozen=True)
class OrderCancel(CallbackData):
    """``order:cancel``."""

    PREFIX = "order:cancel"


@dataclass(frozen=True)
class OrderPay(CallbackData):
    """``order:pay:<draft>:<offer>:<cents>``: buy this offer of this draft at this price
    (at most 54 bytes). ``offer`` is ``<quote>-<position>``."""

    PREFIX = "order:pay"
    FIELDS = {"draft": OBJECT_ID, "offer": r"\d{1,9}-\d", "cents": r"\d{1,9}"}
    draft: str
    offer: str
    cents: int


@dataclass(frozen=True)
class OrderTemplate(CallbackData):
    """``order:tpl:<side>:<template id>``: fill this side from a template."""

    PREFIX = "order:tpl"
    FIELDS = {"side": r"from|to", "template_id": OBJECT_ID}
    side: str
    template_id: str


@dataclass(frozen=True)
class OrderSkip(CallbackData):
    """``order:skip:<side>:<field>``: skip this optional field of this side."""

    PREFIX = "order:skip"
    FIELDS = {"side": r"from|to", "field": r"[a-z0-9_]+"}
    side: str
    field: str


@dataclass(frozen=True)
class OrderRate(CallbackData):
    """``order:rate:<draft>:<n>``: choose the n-th rate shown for this draft."""

    PREFIX = "order:rate"
    FIELDS = {"draft": OBJECT_ID, "index": r"\d"}
    draft: str
    index: int


@dataclass(frozen=True)
class OrderRetry(CallbackData):
    """``order:retry:<draft>``: ask the carrier again."""

    PREFIX = "order:retry"
    FIELDS = {"draft": OBJECT_ID}
    draft: str


@dataclass(frozen=True)
class OrderUseTemplate(CallbackData):
    """``order:usetpl:<template id>``: a new order with this template as the sender."""

    PREFIX = "order:usetpl"
    FIELDS = {"template_id": OBJECT_ID}
    template_id: str


@dataclass(frozen=True)
class OrderAddressCheck(CallbackData):
    """``order:av:<use|keep|edit>:<draft>:<side>:<check>``: the answer to the carrier's
    address check ``check`` (8 hex digits) of this side."""

    PREFIX = "order:av"
    FIELDS = {
        "choice": r"use|keep|edit",
        "draft": OBJECT_ID,
        "side": r"from|to",
        "check": r"[0-9a-f]{8}",
    }
    choice: str
    draft: str
    side: str
    check: str


@dataclass(frozen=True)
class OrderEdit(CallbackData):
    """``order:edit-<part>:<draft>``: edit this part of this draft from the review (the
    part joins the prefix with ``-``, as the bot has always sent it)."""

    PREFIX = "order:edit"
    FIELDS = {"part": r"from|to|parcel|rate", "draft": OBJECT_ID}
    part: str
    draft: str

    def pack(self) -> str:
        return check_size(f"{self.PREFIX}-{self.part}:{self.draft}")

    @classmethod
    def pattern(cls) -> str:
        return (
            f"^{re.escape(cls.PREFIX)}-(?P<part>{cls.FIELDS['part']})"
            f":(?P<draft>{cls.FIELDS['draft']})$"
        )


CODECS: tuple[type[CallbackData], ...] = (
    MenuTopUp,
    MenuBalance,
    MenuMain,
    TopUpTerms,
    TopUpAmount,
    TopUpMethod,
    TopUpCancel,
    CancelInvoice,
    BalancePage,
    LegalShow,
    AdminPayCredit,
    AdminPayAmount,
    OrderTopUp,
    OrderSummary,
    OrderCancel,
    OrderPay,
    OrderTemplate,
    OrderSkip,
    OrderRate,
    OrderRetry,
    OrderUseTemplate,
    OrderAddressCheck,
    OrderEdit,
)


# -- lists and settings: templates, presets, My labels, refunds, menu, format, language ----


@dataclass(frozen=True)
class MenuOrder(CallbackData):
    """``menu:order``: a new order from the menu."""

    PREFIX = "menu:order"


@dataclass(frozen=True)
class MenuLabels(CallbackData):
    """``menu:labels``: My labels, first page."""

    PREFIX = "menu:labels"


@dataclass(frozen=True)
class MenuTemplates(CallbackData):
    """``menu:templates``: the address templates, first page."""

    PREFIX = "menu:templates"


@dataclass(frozen=True)
class MenuRefunds(CallbackData):
    """``menu:refunds``: the Refunds menu."""

    PREFIX = "menu:refunds"


@dataclass(frozen=True)
class MenuSupport(CallbackData):
    """``menu:support``: write to support."""

    PREFIX = "menu:support"


@dataclass(frozen=True)
class MenuLanguage(CallbackData):
    """``menu:language``: the language choice."""

    PREFIX = "menu:language"


@dataclass(frozen=True)
class MenuFormat(CallbackData):
    """``menu:format``: the label format choice."""

    PREFIX = "menu:format"


@dataclass(frozen=True)
class MenuHelp(CallbackData):
    """``menu:help``."""

    PREFIX = "menu:help"


@dataclass(frozen=True)
class SetLanguage(CallbackData):
    """``lang:<code>``: speak this language from now on."""

    PREFIX = "lang"
    FIELDS = {"code": r"[a-z]{2}"}
    code: str


@dataclass(frozen=True)
class SetFormat(CallbackData):
    """``fmt:set:<format key>``: the file format of the next labels."""

    PREFIX = "fmt:set"
    FIELDS = {"key": r"[A-Za-z0-9_.-]{1,32}"}
    key: str


@dataclass(frozen=True)
class TemplateList(CallbackData):
    """``tpl:list:<n>``: this page of the templates."""

    PREFIX = "tpl:list"
    FIELDS = {"page": r"\d{1,3}"}
    page: int


@dataclass(frozen=True)
class TemplateNew(CallbackData):
    """``tpl:new``: a new template from a pasted address."""

    PREFIX = "tpl:new"


@dataclass(frozen=True)
class TemplateView(CallbackData):
    """``tpl:view:<template id>``."""

    PREFIX = "tpl:view"
    FIELDS = {"template_id": OBJECT_ID}
    template_id: str


@dataclass(frozen=True)
class TemplateRename(CallbackData):
    """``tpl:rename:<template id>``."""

    PREFIX = "tpl:rename"
    FIELDS = {"template_id": OBJECT_ID}
    template_id: str


@dataclass(frozen=True)
class TemplateDefault(CallbackData):
    """``tpl:default:<template id>``: make it the default sender."""

    PREFIX = "tpl:default"
    FIELDS = {"template_id": OBJECT_ID}
    template_id: str


@dataclass(frozen=True)
class TemplateUndefault(CallbackData):
    """``tpl:undefault:<template id>``: it stops being the default sender."""

    PREFIX = "tpl:undefault"
    FIELDS = {"template_id": OBJECT_ID}
    template_id: str


@dataclass(frozen=True)
class TemplateDelete(CallbackData):
    """``tpl:delete:<template id>``: asks to confirm."""

    PREFIX = "tpl:delete"
    FIELDS = {"template_id": OBJECT_ID}
    template_id: str


@dataclass(frozen=True)
class TemplateDeleteYes(CallbackData):
    """``tpl:delete-yes:<template id>``: the confirmed deletion."""

    PREFIX = "tpl:delete-yes"
    FIELDS = {"template_id": OBJECT_ID}
    template_id: str


@dataclass(frozen=True)
class TemplateSave(CallbackData):
    """``tpl:save:<order id>``: save this order's recipient as a template."""

    PREFIX = "tpl:save"
    FIELDS = {"order_id": OBJECT_ID}
    order_id: str


@dataclass(frozen=True)
class PresetList(CallbackData):
    """``pst:list``: the parcel presets."""

    PREFIX = "pst:list"


@dataclass(frozen=True)
class PresetNew(CallbackData):
    """``pst:new``: a new preset (weight, size, name)."""

    PREFIX = "pst:new"


@dataclass(frozen=True)
class PresetView(CallbackData):
    """``pst:view:<preset id>``."""

    PREFIX = "pst:view"
    FIELDS = {"preset_id": OBJECT_ID}
    preset_id: str


@dataclass(frozen=True)
class PresetFromLabel(CallbackData):
    """``pst:last:<order id>``: save the parcel of this label as a preset."""

    PREFIX = "pst:last"
    FIELDS = {"order_id": OBJECT_ID}
    order_id: str


@dataclass(frozen=True)
class PresetRename(CallbackData):
    """``pst:rename:<preset id>``."""

    PREFIX = "pst:rename"
    FIELDS = {"preset_id": OBJECT_ID}
    preset_id: str


@dataclass(frozen=True)
class PresetDelete(CallbackData):
    """``pst:delete:<preset id>``: asks to confirm."""

    PREFIX = "pst:delete"
    FIELDS = {"preset_id": OBJECT_ID}
    preset_id: str


@dataclass(frozen=True)
class PresetDeleteYes(CallbackData):
    """``pst:delete-yes:<preset id>``: the confirmed deletion."""

    PREFIX = "pst:delete-yes"
    FIELDS = {"preset_id": OBJECT_ID}
    preset_id: str


@dataclass(frozen=True)
class LabelsPage(CallbackData):
    """``lbl:page:<n>``: this page of My labels."""

    PREFIX = "lbl:page"
    FIELDS = {"page": r"\d{1,4}"}
    page: int


@dataclass(frozen=True)
class LabelPdf(CallbackData):
    """``lbl:pdf:<order id>``: the label file again."""

    PREFIX = "lbl:pdf"
    FIELDS = {"order_id": OBJECT_ID}
    order_id: str


@dataclass(frozen=True)
class LabelFormats(CallbackData):
    """``lbl:fmt:<order id>``: the formats the carrier links for this label."""

    PREFIX = "lbl:fmt"
    FIELDS = {"order_id": OBJECT_ID}
    order_id: str


@dataclass(frozen=True)
class LabelDownload(CallbackData):
    """``lbl:dl:<order id>:<format>``: the label in this format."""

    PREFIX = "lbl:dl"
    FIELDS = {"order_id": OBJECT_ID, "fmt": r"[A-Za-z0-9_.-]{1,16}"}
    order_id: str
    fmt: str


@dataclass(frozen=True)
class LabelTrack(CallbackData):
    """``lbl:trk:<order id>``: the carrier's latest events."""

    PREFIX = "lbl:trk"
    FIELDS = {"order_id": OBJECT_ID}
    order_id: str


@dataclass(frozen=True)
class LabelReceipt(CallbackData):
    """``lbl:rcp:<order id>``: the label's receipt."""

    PREFIX = "lbl:rcp"
    FIELDS = {"order_id": OBJECT_ID}
    order_id: str


@dataclass(frozen=True)
class RefundRequest(CallbackData):
    """``rf:request``: a refund request (paste tracking numbers)."""

    PREFIX = "rf:request"


@dataclass(frozen=True)
class RefundList(CallbackData):
    """``rf:list``: My refunds."""

    PREFIX = "rf:list"


@dataclass(frozen=True)
class RefundOne(CallbackData):
    """``rf:one:<order id>``: the Refund button on a label in My labels."""

    PREFIX = "rf:one"
    FIELDS = {"order_id": OBJECT_ID}
    order_id: str


@dataclass(frozen=True)
class PrivacyDelete(CallbackData):
    """``privacy:delete:<deletion id>``: the confirmed data deletion."""

    PREFIX = "privacy:delete"
    FIELDS = {"deletion_id": OBJECT_ID}
    deletion_id: str


@dataclass(frozen=True)
class PrivacyKeep(CallbackData):
    """``privacy:keep:<deletion id>``: keep my data."""

    PREFIX = "privacy:keep"
    FIELDS = {"deletion_id": OBJECT_ID}
    deletion_id: str


LIST_CODECS: tuple[type[CallbackData], ...] = (
    MenuOrder,
    MenuLabels,
    MenuTemplates,
    MenuRefunds,
    MenuSupport,
    MenuLanguage,
    MenuFormat,
    MenuHelp,
    SetLanguage,
    SetFormat,
    TemplateList,
    TemplateNew,
    TemplateView,
    TemplateRename,
    TemplateDefault,
    TemplateUndefault,
    TemplateDelete,
    TemplateDeleteYes,
    TemplateSave,
    PresetList,
    PresetNew,
    PresetView,
    PresetFromLabel,
    PresetRename,
    PresetDelete,
    PresetDeleteYes,
    LabelsPage,
    LabelPdf,
    LabelFormats,
    LabelDownload,
    LabelTrack,
    LabelReceipt,
    RefundRequest,
    RefundList,
    RefundOne,
    PrivacyDelete,
    PrivacyKeep,
)
CODECS = (*CODECS, *LIST_CODECS)
