"""Offline Telegram Bot API emulator (an aiohttp server) for tests, demos and benchmarks.

The real python-telegram-bot stack talks to it over real HTTP::

    emu = BotApiEmulator("123456:TEST")
    await emu.start()                      # 127.0.0.1, free port
    app = (ApplicationBuilder().token(emu.token)
           .base_url(emu.base_url).base_file_url(emu.base_file_url).build())
    mark = emu.cursor(42)
    emu.send_message(42, "/start")         # a user writes to the bot
    [reply] = await emu.wait_for_messages(42, 1, since=mark)
    emu.press_button(42, reply.message_id, reply.callback_data_for("Buy"))
    await emu.stop()                       # or ``async with BotApiEmulator(...) as emu:``

It depends on the standard library and aiohttp only and keeps all state on the instance.

Bot API (``GET|POST /bot{token}/{method}``, method names case-insensitive, form, multipart
and JSON bodies): getMe, getUpdates (long polling, offset confirmation incl. negative offsets,
``allowed_updates``, 24 h retention, 409 for the *older* of two concurrent pollers),
deleteWebhook, getWebhookInfo, setWebhook (always 400), setMyCommands, getMyCommands,
deleteMyCommands, setMyDescription, setMyShortDescription, close, logOut, sendMessage,
sendChatAction, editMessageText, editMessageReplyMarkup, editMessageCaption, deleteMessage,
answerCallbackQuery, sendDocument, sendPhoto, getFile, sendInvoice, answerPreCheckoutQuery,
refundStarPayment, getStarTransactions (the bot's Stars history, oldest first: a payment is
an incoming transaction whose ``source`` is the user, a refund a later outgoing one whose
``receiver`` is the user, with the id of the payment it refunds; ``offset``/``limit`` 1-100).
Files: ``GET /file/bot{token}/{file_path}``.

Telegram rules enforced: text 1-4096 / caption 0-1024 characters after entity parsing; strict
``parse_mode=HTML`` (Telegram's tags only, balanced tags, ``<``/``&`` must be escaped; stricter
than Telegram for a bare ``&``); inline keyboards (``callback_data`` 1-64 bytes); "message is not
modified"; blocked chats (403); token-bucket flood control (429 with ``retry_after``) for
sendMessage, sendDocument, sendPhoto, sendInvoice and editMessage* (overall 30 burst / 30 per s,
per chat 3 burst / 1 per s by default: a flow doing more than 3 sends+edits per second in one
chat gets 429 unless the bot throttles or ``rate_limits=False``); Stars invoices (``XTR``,
one price) and payment-provider invoices (a ``provider_token``, a currency of
``PROVIDER_CURRENCIES``, a total within its limits in minor units); pre-checkout answers
after 10 s are refused as too old. Invalid
requests (400) do not consume flood-control tokens; blocked checks come before flood control.
Errors use Telegram's JSON shape ``{"ok": false, "error_code": ..., "description": ...}``.

Python control API (call it from the event loop that runs the server):

* ``BotApiEmulator(token, *, bot_username=..., bot_first_name=..., rate_limits=True,
  per_chat_capacity=3, per_chat_rate=1.0, overall_capacity=30, overall_rate=30.0,
  history_limit=1000, clock=time.monotonic)``; ``start(host, port)``, ``stop()``,
  ``serve_forever(host, port)``, ``base_url``, ``base_file_url``, ``url``.
* Faults: ``fail_requests(method, count, status=502)`` answers the next calls of a method
  with a 5xx error, as during an outage. ``fail_next(method, *, after=True, status=502,
  description="Bad Gateway", times=1)``: the next call(s) answer an error; with ``after``
  the call takes effect first (the answer is lost, e.g. a refund made but never
  confirmed), without it nothing happens.
* Users and updates: ``add_user``, ``send_message``, ``edit_message``,
  ``last_user_message_id``, ``press_button``, ``send_pre_checkout_query``,
  ``checkout(user_id, message_id)`` (the pre-checkout query of an invoice the bot sent),
  ``complete_checkout(query_id)`` (the charge after an ``ok`` answer, with generated
  Telegram and provider charge ids),
  ``send_successful_payment`` (``history_index`` lists the payment before transactions
  already there: a history that is not strictly append-only; ``deliver=False`` loses its
  update), ``push_update``, ``block_chat``, ``unblock_chat``.
* Observations: ``sent_messages(chat_id=None, *, since=0)``, ``cursor(chat_id)``,
  ``message(chat_id, message_id)``, ``wait_for_messages(chat_id, count=1, *, since=0,
  timeout=5.0)``, ``wait_until(predicate, *, timeout=5.0)``, ``callback_answers``,
  ``pre_checkout_answers``, ``charges``, ``star_transactions``, ``file(file_id)``,
  ``bot_commands(...)``, ``stats``,
  ``reset_stats()``, ``set_rate_limits(...)``, ``add_chat_listener(fn)`` (``fn(chat_id)``
  on every message the bot sends or edits).

HTTP control API (JSON; answers ``{"ok": true, "result": ...}`` or ``{"ok": false,
"description": ...}`` with status 400/404):

* ``GET  /_control/stats`` and ``POST /_control/stats/reset``
* ``POST /_control/rate_limits`` ``{"enabled", "per_chat_capacity", "per_chat_rate",
  "overall_capacity", "overall_rate"}`` (all optional)
* ``POST /_control/users`` ``{"user_id", "first_name", "last_name", "username",
  "language_code"}``
* ``POST /_control/users/{id}/messages`` ``{"text", "reply_to_message_id"}`` -> update id
* ``POST /_control/users/{id}/messages/{message_id}/edit`` ``{"text"}`` -> update id of
  the ``edited_message``
* ``POST /_control/users/{id}/callbacks`` ``{"message_id", "data"}`` -> callback query id
* ``POST /_control/users/{id}/pre_checkout_queries`` ``{"currency", "total_amount",
  "payload"}`` -> query id
* ``POST /_control/users/{id}/payments`` ``{"currency", "total_amount", "payload",
  "charge_id", "provider_payment_charge_id"?}`` -> update id
* ``POST /_control/users/{id}/checkout`` ``{"message_id"}`` (Pay on that invoice) -> query
  id; ``POST /_control/pre_checkout_queries/{id}/complete`` (the charge after an ``ok``
  answer) -> update id of the ``successful_payment``
* ``POST /_control/updates`` ``{"type", "payload"}`` -> update id
* ``POST /_control/chats/{id}/block`` and ``.../unblock``
* ``GET  /_control/chats/{id}/messages?since=N&count=M&wait=SECONDS`` -> ``{"messages",
  "next"}``; waits up to ``wait`` seconds for at least ``count`` messages with seq >= since
* ``GET  /_control/messages`` (all chats), ``/_control/callback_answers``,
  ``/_control/pre_checkout_answers``, ``/_control/charges``

Not emulated: groups/channels, inline mode, webhooks, media groups and other media kinds,
MarkdownV2 parsing (text is accepted verbatim without entities), business and reactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import mimetypes
import re
import secrets
import string
import struct
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

__all__ = [
    "ApiError",
    "BotApiEmulator",
    "CallbackAnswer",
    "Charge",
    "EmulatorStats",
    "EntityParseError",
    "InvoiceInfo",
    "MessageVersion",
    "PreCheckoutAnswer",
    "SentMessage",
    "StoredFile",
    "parse_html",
]

_LOGGER = logging.getLogger(__name__)

JSONDict = dict[str, Any]

MAX_TEXT_LENGTH: Final = 4096
MAX_CAPTION_LENGTH: Final = 1024
MAX_CALLBACK_DATA_BYTES: Final = 64
MAX_CALLBACK_ANSWER_LENGTH: Final = 200
MAX_UPLOAD_BYTES: Final = 50 * 1024 * 1024
MAX_PHOTO_BYTES: Final = 10 * 1024 * 1024
MAX_DOWNLOAD_BYTES: Final = 20 * 1024 * 1024
UPDATE_RETENTION_SECONDS: Final = 24 * 60 * 60
MAX_PENDING_UPDATES: Final = 100_000
MAX_PENDING_QUERIES: Final = 10_000
_CLIENT_MAX_SIZE: Final = MAX_UPLOAD_BYTES + 1024 * 1024

_CONFLICT_DESCRIPTION: Final = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
_NOT_MODIFIED: Final = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
_QUERY_INVALID: Final = "query is too old and response timeout expired or query ID is invalid"
# Payment-provider currencies from Telegram's currencies.json (a few): ``exp`` digits after
# the decimal point (amounts are integers in these minor units), and min_amount /
# max_amount of one payment in minor units.
PROVIDER_CURRENCIES: Final[dict[str, tuple[int, int, int]]] = {
    "USD": (2, 100, 1_000_000),
    "EUR": (2, 100, 1_000_000),
    "GBP": (2, 100, 1_000_000),
    "JPY": (0, 100, 1_000_000),
}
# Telegram expects the answer to a pre-checkout query within 10 seconds.
PRE_CHECKOUT_TIMEOUT: Final = 10.0
_BLOCKED: Final = "Forbidden: bot was blocked by the user"
# Update types Telegram leaves out when allowed_updates is empty / never set.
_NOT_DEFAULT_UPDATES: Final = frozenset(
    {"chat_member", "message_reaction", "message_reaction_count"}
)
_BUTTON_ACTIONS: Final = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
_COMMAND_RE: Final = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?!\w)")
_BOT_COMMAND_NAME_RE: Final = re.compile(r"[a-z0-9_]{1,32}")


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ApiError(Exception):
    """A Bot API error answer: HTTP status + Telegram's ``description`` (+ ``retry_after``)."""

    def __init__(self, status: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def payload(self) -> JSONDict:
        body: JSONDict = {"ok": False, "error_code": self.status, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad_request(message: str) -> ApiError:
    return ApiError(400, f"Bad Request: {message}")


def _required(name: str) -> ApiError:
    return _bad_request(f'parameter "{name}" is required')


class _ConflictError(ApiError):
    def __init__(self, concurrency: int) -> None:
        super().__init__(409, _CONFLICT_DESCRIPTION)
        self.concurrency = concurrency


class EntityParseError(ValueError):
    """``parse_mode=HTML`` text Telegram would refuse ("can't parse entities: ...")."""


# --------------------------------------------------------------------------------------------
# HTML entity parsing (modelled on tdlib's parser)
# --------------------------------------------------------------------------------------------

_NAMED_ENTITIES: Final = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAG_NAME_CHARS: Final = frozenset(string.ascii_letters + string.digits + "-")
_NAME_TOKEN_CHARS: Final = frozenset(string.ascii_letters + string.digits + ".-")
_TAG_TYPES: Final = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}


@dataclass
class _OpenTag:
    name: str
    begin: int
    offset: int
    first_char: int
    attrs: dict[str, str]
    expandable: bool = False
    language: str | None = None


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _byte_offset(source: str, index: int) -> int:
    return len(source[:index].encode("utf-8", "surrogatepass"))


def _decode_entity(source: str, index: int) -> tuple[str, int] | None:
    """Decode the HTML entity starting at ``source[index] == "&"``: (character, next index)."""
    end = source.find(";", index + 1, index + 12)
    if end < 0:
        return None
    name = source[index + 1 : end]
    named = _NAMED_ENTITIES.get(name)
    if named is not None:
        return named, end + 1
    if len(name) < 2 or name[0] != "#":
        return None
    digits, alphabet, base = name[1:], string.digits, 10
    if digits[0] in "xX":
        digits, alphabet, base = digits[1:], string.hexdigits, 16
    if not digits or any(c not in alphabet for c in digits):
        return None
    code = int(digits, base)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code), end + 1


def parse_html(source: str) -> tuple[str, list[JSONDict]]:
    """Parse Telegram-flavoured HTML into (plain text, MessageEntity dicts with UTF-16 offsets).

    Raises :class:`EntityParseError` with a Telegram-style message on unsupported, unclosed or
    mismatched tags and on a ``<`` or ``&`` that is not part of a tag or entity.
    """
    out: list[str] = []
    u16 = 0
    stack: list[_OpenTag] = []
    entities: list[tuple[int, JSONDict]] = []  # (source index of the start tag, entity)
    n = len(source)
    i = 0

    def at(index: int) -> int:
        return _byte_offset(source, index)

    while i < n:
        ch = source[i]
        if ch == "&":
            decoded = _decode_entity(source, i)
            if decoded is None:
                raise EntityParseError(
                    f'character "&" at byte offset {at(i)} must be escaped as "&amp;"'
                )
            char, i = decoded
            out.append(char)
            u16 += 2 if ord(char) > 0xFFFF else 1
            continue
        if ch != "<":
            out.append(ch)
            u16 += 2 if ord(ch) > 0xFFFF else 1
            i += 1
            continue
        begin = i
        if i + 1 < n and source[i + 1] == "/":
            if not stack:
                raise EntityParseError(f"Unexpected end tag at byte offset {at(begin)}")
            j = i + 2
            while j < n and source[j] in _TAG_NAME_CHARS:
                j += 1
            end_name = source[i + 2 : j].lower()
            while j < n and source[j].isspace():
                j += 1
            if j >= n or source[j] != ">":
                raise EntityParseError(f"Unclosed end tag at byte offset {at(begin)}")
            top = stack.pop()
            if end_name and end_name != top.name:
                raise EntityParseError(
                    f'Unmatched end tag at byte offset {at(begin)}, expected "</{top.name}>", '
                    f'found "</{end_name}>"'
                )
            i = j + 1
            entity = _entity_for(top, u16 - top.offset, "".join(out[top.first_char :]), stack)
            if entity is not None:
                entities.append((top.begin, entity))
            continue
        # start tag
        j = i + 1
        while j < n and not source[j].isspace() and source[j] != ">":
            j += 1
        if j >= n:
            raise EntityParseError(f"Unclosed start tag at byte offset {at(begin)}")
        name = source[i + 1 : j].lower()
        if name not in _TAG_TYPES:
            raise EntityParseError(f'Unsupported start tag "{name}" at byte offset {at(begin)}')
        tag = _OpenTag(name=name, begin=begin, offset=u16, first_char=len(out), attrs={})
        j = _parse_attributes(source, j, tag, at)
        if name == "span" and tag.attrs.get("class") != "tg-spoiler":
            raise EntityParseError(
                f'Tag "span" must have class "tg-spoiler" at byte offset {at(begin)}'
            )
        if name == "tg-emoji" and not tag.attrs.get("emoji-id", "").isdigit():
            raise EntityParseError(
                f'Tag "tg-emoji" must have a numeric "emoji-id" at byte offset {at(begin)}'
            )
        stack.append(tag)
        i = j + 1
    if stack:
        raise EntityParseError(f"Can't find end tag corresponding to start tag {stack[-1].name}")
    entities.sort(key=lambda item: (item[1]["offset"], -item[1]["length"], item[0]))
    return "".join(out), [entity for _, entity in entities]


def _parse_attributes(source: str, j: int, tag: _OpenTag, at: Callable[[int], int]) -> int:
    """Parse the attributes of a start tag from ``j``; returns the index of its ``>``."""
    n = len(source)
    while True:
        while j < n and source[j].isspace():
            j += 1
        if j >= n:
            raise EntityParseError(f"Unclosed start tag at byte offset {at(tag.begin)}")
        if source[j] == ">":
            return j
        name_begin = j
        while j < n and not source[j].isspace() and source[j] not in "=>":
            j += 1
        attr = source[name_begin:j].lower()
        if not attr:
            raise EntityParseError(
                f'Empty attribute name in the tag "{tag.name}" at byte offset {at(tag.begin)}'
            )
        while j < n and source[j].isspace():
            j += 1
        if j >= n or source[j] != "=":
            if tag.name == "blockquote" and attr == "expandable":
                tag.expandable = True
                continue
            raise EntityParseError(
                f'Expected equal sign in declaration of an attribute of the tag "{tag.name}" '
                f"at byte offset {at(tag.begin)}"
            )
        j += 1
        while j < n and source[j].isspace():
            j += 1
        if j >= n:
            raise EntityParseError(f"Unclosed start tag at byte offset {at(tag.begin)}")
        quote = source[j]
        if quote in "'\"":
            j += 1
            chars: list[str] = []
            while j < n and source[j] != quote:
                decoded = _decode_entity(source, j) if source[j] == "&" else None
                if decoded is not None:
                    chars.append(decoded[0])
                    j = decoded[1]
                else:
                    chars.append(source[j])
                    j += 1
            if j >= n:
                raise EntityParseError(f"Unclosed start tag at byte offset {at(tag.begin)}")
            j += 1
            value = "".join(chars)
        else:
            token_begin = j
            while j < n and source[j] in _NAME_TOKEN_CHARS:
                j += 1
            value = source[token_begin:j].lower()
            if j >= n or (not source[j].isspace() and source[j] != ">"):
                raise EntityParseError(
                    f"Unexpected end of name token at byte offset {at(token_begin)}"
                )
        tag.attrs.setdefault(attr, value)
        if tag.name == "code" and attr == "class" and value.startswith("language-"):
            tag.language = value[len("language-") :]


def _entity_for(tag: _OpenTag, length: int, text: str, parents: list[_OpenTag]) -> JSONDict | None:
    if tag.name == "code" and parents and parents[-1].name == "pre":
        # <pre><code class="language-x">...</code></pre> is one "pre" entity with a language.
        if tag.language:
            parents[-1].language = tag.language
        return None
    if length <= 0:
        return None
    entity: JSONDict = {"type": _TAG_TYPES[tag.name], "offset": tag.offset, "length": length}
    if tag.name == "a":
        entity["url"] = tag.attrs.get("href") or text
    elif tag.name == "pre" and tag.language:
        entity["language"] = tag.language
    elif tag.name == "blockquote" and tag.expandable:
        entity["type"] = "expandable_blockquote"
    elif tag.name == "tg-emoji":
        entity["custom_emoji_id"] = tag.attrs["emoji-id"]
    return entity


def _command_entities(text: str) -> list[JSONDict]:
    return [
        {
            "type": "bot_command",
            "offset": _utf16_len(text[: m.start()]),
            "length": _utf16_len(m.group()),
        }
        for m in _COMMAND_RE.finditer(text)
    ]


# --------------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredFile:
    """A file the bot uploaded (``kind`` is "document" or "photo")."""

    file_id: str
    file_unique_id: str
    kind: str
    data: bytes = field(repr=False)
    file_path: str
    filename: str | None = None
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    def api_document(self) -> JSONDict:
        doc: JSONDict = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.size,
        }
        if self.filename is not None:
            doc["file_name"] = self.filename
        if self.mime_type is not None:
            doc["mime_type"] = self.mime_type
        return doc

    def api_photo(self) -> list[JSONDict]:
        return [
            {
                "file_id": self.file_id,
                "file_unique_id": self.file_unique_id,
                "width": self.width or 0,
                "height": self.height or 0,
                "file_size": self.size,
            }
        ]

    def to_dict(self) -> JSONDict:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "kind": self.kind,
            "file_path": self.file_path,
            "filename": self.filename,
            "mime_type": self.mime_type,
            "size": self.size,
            "width": self.width,
            "height": self.height,
        }


@dataclass(frozen=True)
class InvoiceInfo:
    title: str
    description: str
    payload: str
    currency: str
    prices: tuple[tuple[str, int], ...]
    start_parameter: str = ""

    @property
    def total_amount(self) -> int:
        return sum(amount for _, amount in self.prices)

    def to_dict(self) -> JSONDict:
        return {
            "title": self.title,
            "description": self.description,
            "payload": self.payload,
            "currency": self.currency,
            "prices": [list(p) for p in self.prices],
            "total_amount": self.total_amount,
        }


@dataclass(frozen=True)
class MessageVersion:
    """An earlier state of an edited bot message."""

    text: str | None
    caption: str | None
    source: str | None
    reply_markup: JSONDict | None

    def to_dict(self) -> JSONDict:
        return {
            "text": self.text,
            "caption": self.caption,
            "source": self.source,
            "reply_markup": self.reply_markup,
        }


def _buttons_of(markup: JSONDict | None) -> list[list[tuple[str, str | None]]]:
    if not markup or "inline_keyboard" not in markup:
        return []
    return [
        [(str(b.get("text", "")), b.get("callback_data")) for b in row]
        for row in markup["inline_keyboard"]
    ]


@dataclass
class SentMessage:
    """A message the bot sent; edits update it in place and push the old state on ``history``.

    ``seq`` is the position in the chat's log (use it with ``since``); ``text`` / ``caption``
    are the current plain texts after entity parsing and ``source`` the raw string the bot sent.
    """

    seq: int
    order: int
    method: str
    chat_id: int
    message_id: int
    date: int
    text: str | None = None
    caption: str | None = None
    source: str | None = None
    parse_mode: str | None = None
    entities: list[JSONDict] = field(default_factory=list)
    reply_markup: JSONDict | None = None
    document: StoredFile | None = None
    photo: StoredFile | None = None
    invoice: InvoiceInfo | None = None
    reply_to_message_id: int | None = None
    edit_date: int | None = None
    deleted: bool = False
    history: list[MessageVersion] = field(default_factory=list)

    @property
    def content(self) -> str:
        """Text or caption, whichever the message has ("" when none)."""
        return self.text if self.text is not None else (self.caption or "")

    @property
    def edited(self) -> bool:
        return bool(self.history)

    @property
    def button_rows(self) -> list[list[tuple[str, str | None]]]:
        return _buttons_of(self.reply_markup)

    @property
    def buttons(self) -> list[tuple[str, str | None]]:
        """Inline buttons flattened row by row as (text, callback_data or None)."""
        return [button for row in self.button_rows for button in row]

    def callback_data_for(self, label: str) -> str:
        """callback_data of the first button whose text contains ``label``."""
        for text, data in self.buttons:
            if label in text and data is not None:
                return data
        raise LookupError(f"no callback button containing {label!r} in {self.buttons!r}")

    def to_dict(self) -> JSONDict:
        return {
            "seq": self.seq,
            "method": self.method,
            "chat_id": self.chat_id,
            "message_id": self.message_id,
            "date": self.date,
            "text": self.text,
            "caption": self.caption,
            "source": self.source,
            "parse_mode": self.parse_mode,
            "entities": self.entities,
            "buttons": [[text, data] for text, data in self.buttons],
            "reply_markup": self.reply_markup,
            "document": self.document.to_dict() if self.document else None,
            "photo": self.photo.to_dict() if self.photo else None,
            "invoice": self.invoice.to_dict() if self.invoice else None,
            "reply_to_message_id": self.reply_to_message_id,
            "edited": self.edited,
            "edit_date": self.edit_date,
            "deleted": self.deleted,
            "history": [v.to_dict() for v in self.history],
        }


@dataclass(frozen=True)
class CallbackAnswer:
    query_id: str
    user_id: int
    message_id: int
    data: str
    text: str | None
    show_alert: bool
    url: str | None
    cache_time: int | None

    def to_dict(self) -> JSONDict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PreCheckoutAnswer:
    query_id: str
    user_id: int
    ok: bool
    error_message: str | None
    currency: str
    total_amount: int
    payload: str

    def to_dict(self) -> JSONDict:
        return dict(self.__dict__)


@dataclass
class _Fault:
    after: bool
    status: int
    description: str
    remaining: int


@dataclass
class Charge:
    """A successful payment injected with ``send_successful_payment``."""

    charge_id: str
    user_id: int
    currency: str
    total_amount: int
    payload: str
    refunded: bool = False

    def to_dict(self) -> JSONDict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class EmulatorStats:
    """A snapshot of the counters (``stats`` property / ``GET /_control/stats``)."""

    requests: dict[str, int]
    errors: dict[int, int]
    rate_limited: int
    rate_limited_by_chat: dict[int, int]
    rate_limited_by_overall_bucket: int
    conflicts: int
    max_concurrent_pollers: int
    active_pollers: int
    last_get_updates_at: float | None
    pending_updates: int
    messages_sent: int
    rate_limits_enabled: bool

    def to_dict(self) -> JSONDict:
        data = dict(self.__dict__)
        data["errors"] = {str(k): v for k, v in self.errors.items()}
        data["rate_limited_by_chat"] = {str(k): v for k, v in self.rate_limited_by_chat.items()}
        return data


# --------------------------------------------------------------------------------------------
# Internal state
# --------------------------------------------------------------------------------------------


class _TokenBucket:
    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.tokens = capacity
        self.stamp = now

    def wait_seconds(self, now: float) -> float:
        """Refill, then return how long until one token is available (0 if one is)."""
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass
class _User:
    id: int
    first_name: str
    last_name: str | None
    username: str | None
    language_code: str | None

    def user_json(self) -> JSONDict:
        data: JSONDict = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code:
            data["language_code"] = self.language_code
        return data

    def chat_json(self) -> JSONDict:
        data: JSONDict = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        return data


@dataclass
class _Chat:
    user: _User
    chat_instance: str
    next_message_id: int = 1
    log: deque[SentMessage] = field(default_factory=deque)
    dropped: int = 0
    by_id: dict[int, SentMessage] = field(default_factory=dict)
    user_messages: OrderedDict[int, JSONDict] = field(default_factory=OrderedDict)
    blocked: bool = False

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def total(self) -> int:
        return self.dropped + len(self.log)

    def take_message_id(self) -> int:
        message_id = self.next_message_id
        self.next_message_id += 1
        return message_id


@dataclass
class _PendingUpdate:
    update_id: int
    kind: str
    created: float
    payload: JSONDict


@dataclass
class _PendingCallback:
    user_id: int
    message_id: int
    data: str


@dataclass
class _PendingPreCheckout:
    user_id: int
    currency: str
    total_amount: int
    payload: str
    asked_at: float = 0.0


class _Poll:
    """One getUpdates request in flight."""

    __slots__ = ("concurrency", "terminated", "waker")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.waker: asyncio.Future[None] = loop.create_future()
        self.terminated = False
        self.concurrency = 1

    def wake(self) -> None:
        if not self.waker.done():
            self.waker.set_result(None)


class _Params:
    """Request parameters: form/query strings (non-strings JSON-encoded), JSON body or files."""

    def __init__(self, values: dict[str, Any], files: dict[str, web.FileField]) -> None:
        self.values = values
        self.files = files

    def raw(self, name: str) -> Any:
        return self.values.get(name)

    def str_(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value)

    def int_(self, name: str, *, required: bool = False) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise _required(name)
            return None
        if isinstance(value, bool):
            raise _bad_request(f"invalid {name} specified")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _bad_request(f"invalid {name} specified") from None

    def float_(self, name: str) -> float | None:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _bad_request(f"invalid {name} specified") from None

    def bool_(self, name: str) -> bool | None:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise _bad_request(f"invalid {name} specified")

    def json_(self, name: str, what: str) -> Any:
        value = self.values.get(name)
        if not isinstance(value, str):
            return value
        if value == "":
            return None
        try:
            return json.loads(value)
        except ValueError:
            raise _bad_request(f"can't parse {what} JSON object") from None


_Handler = Callable[[_Params], Awaitable[Any]]


def _inline_only(markup: JSONDict | None) -> JSONDict | None:
    return markup if markup is not None and "inline_keyboard" in markup else None


def _validate_reply_markup(markup: Any) -> JSONDict | None:
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in markup:
        return markup  # reply keyboards / ForceReply / ReplyKeyboardRemove: accepted, not echoed
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad_request(
                    'can\'t parse inline keyboard button: Field "text" must be of type String'
                )
            if not any(key in button for key in _BUTTON_ACTIONS):
                raise _bad_request(
                    "can't parse inline keyboard button: "
                    "Text buttons are unallowed in the inline keyboard"
                )
            if "callback_data" in button:
                data = button["callback_data"]
                if not isinstance(data, str) or not (
                    1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES
                ):
                    raise _bad_request("BUTTON_DATA_INVALID")
            if "url" in button:
                url = button["url"]
                if not isinstance(url, str) or not url.startswith(
                    ("http://", "https://", "tg://")
                ):
                    raise _bad_request(
                        f"inline keyboard button URL {url!r} is invalid: Wrong HTTP URL"
                    )
    return markup


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, GIF or JPEG image, None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 <= len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(width), int(height)
            (length,) = struct.unpack(">H", data[i + 2 : i + 4])
            i += 2 + int(length)
    return None


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(status: int, description: str) -> web.Response:
    return web.json_response(
        {"ok": False, "error_code": status, "description": description}, status=status
    )


# --------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------


class BotApiEmulator:
    """An in-memory Telegram Bot API server for one bot token. See the module docstring."""

    def __init__(
        self,
        token: str,
        *,
        bot_username: str = "shiplabel_sandbox_bot",
        bot_first_name: str = "ShipLabel Sandbox",
        rate_limits: bool = True,
        per_chat_capacity: int = 3,
        per_chat_rate: float = 1.0,
        overall_capacity: int = 30,
        overall_rate: float = 30.0,
        history_limit: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not token:
            raise ValueError("token must not be empty")
        self.token = token
        prefix = token.split(":", 1)[0]
        self._bot_user: JSONDict = {
            "id": int(prefix) if prefix.isdigit() else 1_000_000,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        self._clock = clock
        self._history_limit = max(1, history_limit)
        self._rate_limits = rate_limits
        self._per_chat_capacity = float(per_chat_capacity)
        self._per_chat_rate = per_chat_rate
        self._overall_capacity = float(overall_capacity)
        self._overall_rate = overall_rate
        self._check_rates()
        self._overall_bucket = _TokenBucket(self._overall_capacity, overall_rate, clock())
        self._chat_buckets: dict[int, _TokenBucket] = {}

        self._chats: dict[int, _Chat] = {}
        self._updates: deque[_PendingUpdate] = deque()
        self._next_update_id = 1
        self._allowed_updates: frozenset[str] | None = None
        self._polls: set[_Poll] = set()
        self._changed: asyncio.Event | None = None
        self._chat_listeners: list[Callable[[int], None]] = []
        self._changed_loop: asyncio.AbstractEventLoop | None = None
        self._order = itertools.count()

        self._files: OrderedDict[str, StoredFile] = OrderedDict()
        self._files_by_path: dict[str, StoredFile] = {}
        self._file_counter = itertools.count(1)
        self._commands: dict[tuple[str, str], list[JSONDict]] = {}
        self._outages: dict[str, deque[tuple[int, str]]] = {}
        self._descriptions: dict[tuple[str, str], str] = {}
        self._pending_callbacks: OrderedDict[str, _PendingCallback] = OrderedDict()
        self._pending_pre_checkouts: OrderedDict[str, _PendingPreCheckout] = OrderedDict()
        self._callback_answers: deque[CallbackAnswer] = deque(maxlen=self._history_limit)
        self._pre_checkout_answers: deque[PreCheckoutAnswer] = deque(maxlen=self._history_limit)
        self._charges: dict[str, Charge] = {}
        self._star_transactions: list[JSONDict] = []
        self._faults: dict[str, list[_Fault]] = {}

        self._reset_counters()
        self._runner: web.AppRunner | None = None
        self._base: str | None = None
        self._closing = False

        handlers: list[tuple[str, _Handler]] = [
            ("getMe", self._m_get_me),
            ("getUpdates", self._m_get_updates),
            ("deleteWebhook", self._m_delete_webhook),
            ("getWebhookInfo", self._m_get_webhook_info),
            ("setWebhook", self._m_set_webhook),
            ("setMyCommands", self._m_set_my_commands),
            ("getMyCommands", self._m_get_my_commands),
            ("deleteMyCommands", self._m_delete_my_commands),
            ("setMyDescription", self._m_set_my_description),
            ("setMyShortDescription", self._m_set_my_short_description),
            ("close", self._m_true),
            ("logOut", self._m_true),
            ("sendMessage", self._m_send_message),
            ("sendChatAction", self._m_send_chat_action),
            ("editMessageText", self._m_edit_message_text),
            ("editMessageReplyMarkup", self._m_edit_message_reply_markup),
            ("editMessageCaption", self._m_edit_message_caption),
            ("deleteMessage", self._m_delete_message),
            ("answerCallbackQuery", self._m_answer_callback_query),
            ("sendDocument", self._m_send_document),
            ("sendPhoto", self._m_send_photo),
            ("getFile", self._m_get_file),
            ("sendInvoice", self._m_send_invoice),
            ("answerPreCheckoutQuery", self._m_answer_pre_checkout_query),
            ("refundStarPayment", self._m_refund_star_payment),
            ("getStarTransactions", self._m_get_star_transactions),
        ]
        self._methods: dict[str, tuple[str, _Handler]] = {
            name.lower(): (name, handler) for name, handler in handlers
        }

    def _check_rates(self) -> None:
        if min(self._per_chat_capacity, self._overall_capacity) < 1:
            raise ValueError("bucket capacities must be >= 1")
        if min(self._per_chat_rate, self._overall_rate) <= 0:
            raise ValueError("refill rates must be > 0")

    def _reset_counters(self) -> None:
        self._requests: Counter[str] = Counter()
        self._errors: Counter[int] = Counter()
        self._rate_limited = 0
        self._rate_limited_by_chat: Counter[int] = Counter()
        self._rate_limited_overall = 0
        self._conflicts = 0
        self._max_concurrent_pollers = 0
        self._last_get_updates_at: float | None = None
        self._messages_sent = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (port 0 picks a free port)."""
        if self._runner is not None:
            raise RuntimeError("emulator already started")
        app = web.Application(client_max_size=_CLIENT_MAX_SIZE)
        app.router.add_get("/bot{token}/{method}", self._handle_api)
        app.router.add_post("/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{file_path:.+}", self._handle_file)
        self._add_control_routes(app)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        bound_port = int(runner.addresses[0][1])
        url_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        if ":" in url_host:
            url_host = f"[{url_host}]"
        self._runner = runner
        self._base = f"http://{url_host}:{bound_port}"
        self._closing = False
        _LOGGER.info("Telegram Bot API emulator listening on %s", self._base)

    async def stop(self) -> None:
        """Answer waiting long polls and control waits, then shut the server down."""
        self._closing = True
        for poll in list(self._polls):
            poll.wake()
        self._notify_changed()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._base = None

    async def serve_forever(self, host: str = "127.0.0.1", port: int = 8081) -> None:
        """Start, then run until cancelled (for ``python -m sandbox``)."""
        await self.start(host, port)
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> BotApiEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Server root, e.g. ``http://127.0.0.1:PORT`` (control API under ``/_control``)."""
        if self._base is None:
            raise RuntimeError("emulator not started")
        return self._base

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder().base_url()`` / ``Bot(base_url=)``; PTB appends the token."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot"

    @property
    def bot_user(self) -> JSONDict:
        return dict(self._bot_user)

    # ------------------------------------------------------------------ control: users/updates

    def add_user(
        self,
        user_id: int,
        *,
        first_name: str = "User",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
    ) -> None:
        """Register (or update) a user; their private chat has ``chat_id == user_id``."""
        if user_id <= 0:
            raise ValueError("user ids are positive")
        user = _User(user_id, first_name, last_name, username, language_code)
        chat = self._chats.get(user_id)
        if chat is None:
            self._chats[user_id] = _Chat(user=user, chat_instance=str(secrets.randbits(62)))
        else:
            chat.user = user

    def send_message(
        self, user_id: int, text: str, *, reply_to_message_id: int | None = None
    ) -> int:
        """The user writes ``text`` in the private chat (unknown users are added).

        ``/commands`` get ``bot_command`` entities. Returns the update id.
        """
        chat = self._chat_for_user(user_id)
        message = self._user_message(chat, text=text)
        entities = _command_entities(text)
        if entities:
            message["entities"] = entities
        if reply_to_message_id is not None:
            replied = self._message_json_by_id(chat, reply_to_message_id)
            if replied is None:
                raise LookupError(f"message {reply_to_message_id} not found in chat {user_id}")
            message["reply_to_message"] = replied
        return self.push_update("message", message)

    def send_document(
        self,
        user_id: int,
        data: bytes,
        filename: str,
        *,
        mime_type: str | None = None,
        caption: str | None = None,
    ) -> int:
        """The user sends a file as a document: a ``message`` with ``document`` (``file_id``,
        ``file_unique_id``, ``file_name``, ``mime_type``, ``file_size``) as Telegram sends
        it; the bot downloads it with ``getFile`` and ``/file/bot<token>/<file_path>``,
        which refuse files over 20 MB as the Bot API does. Returns the update id."""
        if not data:
            raise ValueError("Telegram does not send empty files")
        chat = self._chat_for_user(user_id)
        stored = self._store_file(
            data,
            kind="document",
            filename=filename,
            mime=mime_type or mimetypes.guess_type(filename)[0] or "application/octet-stream",
        )
        message = self._user_message(chat)
        message["document"] = stored.api_document()
        if caption:
            message["caption"] = caption
        return self.push_update("message", message)

    def edit_message(self, user_id: int, message_id: int, text: str) -> int:
        """The user edits the text of their message ``message_id``: an ``edited_message``
        update as Telegram sends it (same ``message_id``, ``chat``, ``from`` and ``date``, the
        new text and entities, and ``edit_date``). Returns the update id.

        Only text messages can be edited here; an unchanged text sends no update, as in
        Telegram (``LookupError`` for an unknown message, ``ValueError`` otherwise).
        """
        chat = self._chats.get(user_id)
        original = chat.user_messages.get(message_id) if chat is not None else None
        if chat is None or original is None:
            raise LookupError(f"no user message {message_id} in chat {user_id}")
        if "text" not in original:
            raise ValueError(f"message {message_id} has no text to edit")
        if not 1 <= len(text) <= MAX_TEXT_LENGTH:
            raise ValueError("message text must be 1-4096 characters")
        if text == original["text"]:
            raise ValueError("message text is unchanged")
        edited: JSONDict = {
            key: value for key, value in original.items() if key not in ("text", "entities")
        }
        edited["text"] = text
        entities = _command_entities(text)
        if entities:
            edited["entities"] = entities
        edited["edit_date"] = max(int(time.time()), int(original["date"]))
        chat.user_messages[message_id] = edited
        return self.push_update("edited_message", edited)

    def last_user_message_id(self, user_id: int) -> int:
        """The id of the last message the user wrote (for ``edit_message``)."""
        chat = self._chats.get(user_id)
        if chat is None or not chat.user_messages:
            raise LookupError(f"user {user_id} wrote no message")
        return next(reversed(chat.user_messages))

    def press_button(self, user_id: int, message_id: int, data: str) -> str:
        """The user presses the inline button with ``data`` on a bot message.

        The message must exist (not deleted) and currently show that button. Returns the
        callback query id.
        """
        chat = self._chats.get(user_id)
        msg = chat.by_id.get(message_id) if chat is not None else None
        if chat is None or msg is None or msg.deleted:
            raise LookupError(f"no bot message {message_id} in chat {user_id}")
        if data not in [d for _, d in msg.buttons]:
            raise ValueError(f"message {message_id} has no button {data!r}: {msg.buttons!r}")
        query_id = str(secrets.randbits(63))
        self._remember(
            self._pending_callbacks, query_id, _PendingCallback(user_id, message_id, data)
        )
        self.push_update(
            "callback_query",
            {
                "id": query_id,
                "from": chat.user.user_json(),
                "message": self._message_json(msg),
                "chat_instance": chat.chat_instance,
                "data": data,
            },
        )
        return query_id

    def send_pre_checkout_query(
        self, user_id: int, *, currency: str, total_amount: int, payload: str
    ) -> str:
        """The user confirms payment of an invoice; returns the pre-checkout query id."""
        chat = self._chat_for_user(user_id)
        query_id = str(secrets.randbits(63))
        self._remember(
            self._pending_pre_checkouts,
            query_id,
            _PendingPreCheckout(user_id, currency, total_amount, payload, self._clock()),
        )
        self.push_update(
            "pre_checkout_query",
            {
                "id": query_id,
                "from": chat.user.user_json(),
                "currency": currency,
                "total_amount": total_amount,
                "invoice_payload": payload,
            },
        )
        return query_id

    def checkout(self, user_id: int, message_id: int) -> str:
        """The user presses Pay on the invoice ``message_id`` and confirms: Telegram sends
        the bot a pre-checkout query with that invoice's currency, amount and payload."""
        chat = self._chat_for_user(user_id)
        msg = self.message(chat.id, message_id)
        if msg.invoice is None:
            raise ValueError(f"message {message_id} is not an invoice")
        return self.send_pre_checkout_query(
            user_id,
            currency=msg.invoice.currency,
            total_amount=msg.invoice.total_amount,
            payload=msg.invoice.payload,
        )

    def complete_checkout(self, query_id: str, *, deliver: bool = True) -> int:
        """Telegram charges the card once the bot answered ``ok`` in time, and reports it
        with a ``successful_payment`` (Telegram's and the provider's charge ids); raises
        ``ValueError`` when the query was refused, is unanswered or unknown."""
        answer = next((a for a in self._pre_checkout_answers if a.query_id == query_id), None)
        if answer is None or not answer.ok:
            raise ValueError("the pre-checkout query was not answered ok: nothing is charged")
        charge_id = f"tg_{secrets.token_hex(8)}"
        provider_charge_id = "" if answer.currency == "XTR" else f"pi_{secrets.token_hex(8)}"
        return self.send_successful_payment(
            answer.user_id,
            currency=answer.currency,
            total_amount=answer.total_amount,
            payload=answer.payload,
            charge_id=charge_id,
            provider_payment_charge_id=provider_charge_id,
            deliver=deliver,
        )

    def send_successful_payment(
        self,
        user_id: int,
        *,
        currency: str,
        total_amount: int,
        payload: str,
        charge_id: str,
        provider_payment_charge_id: str = "",
        history_index: int | None = None,
        deliver: bool = True,
    ) -> int:
        """A ``successful_payment`` service message from the user; records a refundable charge
        and, for Stars, an incoming transaction (at ``history_index`` if given). With
        ``deliver=False`` the update never reaches the bot (lost with a worker, say): only
        the history shows the payment; returns 0."""
        if charge_id in self._charges:
            raise ValueError(f"charge {charge_id!r} already exists")
        chat = self._chat_for_user(user_id)
        charge = Charge(charge_id, user_id, currency, total_amount, payload)
        self._charges[charge_id] = charge
        if currency == "XTR":
            entry = self._star_transaction(charge, incoming=True)
            if history_index is None:
                self._star_transactions.append(entry)
            else:
                self._star_transactions.insert(history_index, entry)
        if not deliver:
            return 0
        message = self._user_message(chat)
        message["successful_payment"] = {
            "currency": currency,
            "total_amount": total_amount,
            "invoice_payload": payload,
            "telegram_payment_charge_id": charge_id,
            "provider_payment_charge_id": provider_payment_charge_id,
        }
        return self.push_update("message", message)

    def push_update(self, kind: str, payload: Mapping[str, Any]) -> int:
        """Queue a raw update ``{"update_id": N, kind: payload}``; returns its id."""
        now = self._clock()
        self._expire_updates(now)
        update_id = self._next_update_id
        self._next_update_id += 1
        self._updates.append(
            _PendingUpdate(update_id, kind, now, {"update_id": update_id, kind: dict(payload)})
        )
        while len(self._updates) > MAX_PENDING_UPDATES:
            self._updates.popleft()
        for poll in self._polls:
            poll.wake()
        return update_id

    def fail_next(
        self,
        method: str,
        *,
        after: bool = True,
        status: int = 502,
        description: str = "Bad Gateway",
        times: int = 1,
    ) -> None:
        """The next ``times`` calls of ``method`` answer ``status``; with ``after`` the call
        takes effect first (only its answer is lost)."""
        entry = self._methods.get(method.lower())
        if entry is None:
            raise ValueError(f"unknown method {method!r}")
        self._faults.setdefault(entry[0], []).append(
            _Fault(after=after, status=status, description=description, remaining=max(1, times))
        )

    def _take_fault(self, name: str) -> _Fault | None:
        queue = self._faults.get(name)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.pop(0)
        return fault

    def _star_transaction(self, charge: Charge, *, incoming: bool) -> JSONDict:
        partner = {
            "type": "user",
            "transaction_type": "invoice_payment",
            "user": self._chat_for_user(charge.user_id).user.user_json(),
            "invoice_payload": charge.payload,
        }
        return {
            "id": charge.charge_id,
            "amount": charge.total_amount,
            "date": int(time.time()),
            "source" if incoming else "receiver": partner,
        }

    @property
    def star_transactions(self) -> list[JSONDict]:
        """The bot's Stars history as ``getStarTransactions`` lists it (oldest first)."""
        return [dict(tx) for tx in self._star_transactions]

    @property
    def last_update_id(self) -> int:
        """The id of the most recently queued update (0 before any)."""
        return self._next_update_id - 1

    def block_chat(self, chat_id: int, *, notify: bool = True) -> None:
        """The user blocks the bot: sends answer 403; ``notify`` queues a my_chat_member update."""
        chat = self._require_chat(chat_id)
        if not chat.blocked:
            chat.blocked = True
            if notify:
                self._push_member_update(chat, "member", "kicked")

    def unblock_chat(self, chat_id: int, *, notify: bool = True) -> None:
        chat = self._require_chat(chat_id)
        if chat.blocked:
            chat.blocked = False
            if notify:
                self._push_member_update(chat, "kicked", "member")

    # ------------------------------------------------------------------ control: observations

    def sent_messages(self, chat_id: int | None = None, *, since: int = 0) -> list[SentMessage]:
        """Bot messages in send order (one chat from ``seq >= since``, or all chats)."""
        if chat_id is None:
            every = [m for chat in self._chats.values() for m in chat.log]
            return sorted(every, key=lambda m: m.order)
        chat = self._chats.get(chat_id)
        if chat is None:
            return []
        start = max(since - chat.dropped, 0)
        return list(itertools.islice(chat.log, start, None))

    def cursor(self, chat_id: int) -> int:
        """The ``seq`` the chat's next bot message will get (use as ``since``)."""
        chat = self._chats.get(chat_id)
        return chat.total if chat is not None else 0

    def message(self, chat_id: int, message_id: int) -> SentMessage:
        chat = self._chats.get(chat_id)
        msg = chat.by_id.get(message_id) if chat is not None else None
        if msg is None:
            raise LookupError(f"no bot message {message_id} in chat {chat_id}")
        return msg

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - a deadline is this helper's point
    ) -> None:
        """Wait until ``predicate()`` is true; re-checked whenever the bot changes something."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout}s")
            if self._changed is None or self._changed_loop is not loop:
                self._changed, self._changed_loop = asyncio.Event(), loop
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_for_messages(
        self,
        chat_id: int,
        count: int = 1,
        *,
        since: int = 0,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[SentMessage]:
        """Wait until the chat has ``count`` bot messages with ``seq >= since``; return them all.

        Typical use: ``mark = emu.cursor(uid)``, inject, ``await emu.wait_for_messages(uid, 1,
        since=mark)``. Raises ``TimeoutError`` listing what did arrive.
        """

        def available() -> int:
            chat = self._chats.get(chat_id)
            return 0 if chat is None else chat.total - max(since, chat.dropped)

        try:
            await self.wait_until(lambda: available() >= count, timeout=timeout)
        except TimeoutError:
            got = [m.content for m in self.sent_messages(chat_id, since=since)]
            raise TimeoutError(
                f"chat {chat_id}: expected {count} bot message(s) since #{since} within "
                f"{timeout}s, got {len(got)}: {got!r}"
            ) from None
        return self.sent_messages(chat_id, since=since)

    @property
    def callback_answers(self) -> list[CallbackAnswer]:
        return list(self._callback_answers)

    @property
    def pre_checkout_answers(self) -> list[PreCheckoutAnswer]:
        return list(self._pre_checkout_answers)

    @property
    def charges(self) -> list[Charge]:
        return list(self._charges.values())

    def file(self, file_id: str) -> StoredFile | None:
        return self._files.get(file_id)

    def bot_commands(
        self, *, scope: Mapping[str, Any] | None = None, language_code: str = ""
    ) -> list[tuple[str, str]]:
        commands = self._commands.get(self._scope_key(scope, language_code), [])
        return [(c["command"], c["description"]) for c in commands]

    @property
    def pending_updates(self) -> int:
        return len(self._updates)

    @property
    def stats(self) -> EmulatorStats:
        return EmulatorStats(
            requests=dict(self._requests),
            errors=dict(self._errors),
            rate_limited=self._rate_limited,
            rate_limited_by_chat=dict(self._rate_limited_by_chat),
            rate_limited_by_overall_bucket=self._rate_limited_overall,
            conflicts=self._conflicts,
            max_concurrent_pollers=self._max_concurrent_pollers,
            active_pollers=len(self._polls),
            last_get_updates_at=self._last_get_updates_at,
            pending_updates=len(self._updates),
            messages_sent=self._messages_sent,
            rate_limits_enabled=self._rate_limits,
        )

    def reset_stats(self) -> None:
        self._reset_counters()

    def fail_requests(
        self, method: str, count: int, *, status: int = 502, description: str = "Bad Gateway"
    ) -> None:
        """The next ``count`` calls of ``method`` fail with ``status`` as during an outage
        of Telegram's servers (error JSON ``{"ok": false, "error_code", "description"}``).
        Only 5xx statuses: client errors have their own rules in the handlers."""
        if not 500 <= status <= 599:
            raise ValueError("an outage answers 5xx")
        if count < 0:
            raise ValueError("count must be >= 0")
        queue = self._outages.setdefault(method.lower(), deque())
        queue.extend([(status, description)] * count)

    def set_rate_limits(
        self,
        enabled: bool | None = None,
        *,
        per_chat_capacity: int | None = None,
        per_chat_rate: float | None = None,
        overall_capacity: int | None = None,
        overall_rate: float | None = None,
    ) -> None:
        """Switch flood control on/off and/or change bucket sizes (buckets restart full)."""
        if enabled is not None:
            self._rate_limits = enabled
        if per_chat_capacity is not None:
            self._per_chat_capacity = float(per_chat_capacity)
        if per_chat_rate is not None:
            self._per_chat_rate = per_chat_rate
        if overall_capacity is not None:
            self._overall_capacity = float(overall_capacity)
        if overall_rate is not None:
            self._overall_rate = overall_rate
        changed = (per_chat_capacity, per_chat_rate, overall_capacity, overall_rate)
        if any(v is not None for v in changed):
            self._check_rates()
            self._chat_buckets.clear()
            self._overall_bucket = _TokenBucket(
                self._overall_capacity, self._overall_rate, self._clock()
            )

    # ------------------------------------------------------------------ internals

    def add_chat_listener(self, listener: Callable[[int], None]) -> None:
        """``listener(chat_id)`` runs whenever the bot sends or edits a message in a chat
        (for drivers with many chats, which cannot afford a wake-up of every waiter)."""
        self._chat_listeners.append(listener)

    def _notify_chat(self, chat_id: int) -> None:
        for listener in self._chat_listeners:
            listener(chat_id)

    def _notify_changed(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    @staticmethod
    def _remember(store: OrderedDict[str, Any], key: str, value: Any) -> None:
        store[key] = value
        while len(store) > MAX_PENDING_QUERIES:
            store.popitem(last=False)

    def _chat_for_user(self, user_id: int) -> _Chat:
        if user_id not in self._chats:
            self.add_user(user_id, first_name=f"User{user_id}")
        return self._chats[user_id]

    def _require_chat(self, chat_id: int) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            raise LookupError(f"unknown chat {chat_id}")
        return chat

    def _user_message(self, chat: _Chat, *, text: str | None = None) -> JSONDict:
        message: JSONDict = {
            "message_id": chat.take_message_id(),
            "from": chat.user.user_json(),
            "chat": chat.user.chat_json(),
            "date": int(time.time()),
        }
        if text is not None:
            message["text"] = text
        chat.user_messages[message["message_id"]] = message
        while len(chat.user_messages) > self._history_limit:
            chat.user_messages.popitem(last=False)
        return message

    def _push_member_update(self, chat: _Chat, old: str, new: str) -> None:
        def member(status: str) -> JSONDict:
            data: JSONDict = {"user": dict(self._bot_user), "status": status}
            if status == "kicked":
                data["until_date"] = 0
            return data

        self.push_update(
            "my_chat_member",
            {
                "chat": chat.user.chat_json(),
                "from": chat.user.user_json(),
                "date": int(time.time()),
                "old_chat_member": member(old),
                "new_chat_member": member(new),
            },
        )

    def _expire_updates(self, now: float) -> None:
        while self._updates and now - self._updates[0].created > UPDATE_RETENTION_SECONDS:
            self._updates.popleft()

    def _confirm_updates(self, offset: int | None) -> None:
        if offset is None or offset == 0:
            return
        if offset > 0:
            while self._updates and self._updates[0].update_id < offset:
                self._updates.popleft()
        else:
            while len(self._updates) > -offset:
                self._updates.popleft()

    def _deliverable(self, limit: int) -> list[JSONDict]:
        allowed = self._allowed_updates
        batch: list[JSONDict] = []
        for update in self._updates:
            if allowed is None:
                if update.kind in _NOT_DEFAULT_UPDATES:
                    continue
            elif update.kind not in allowed:
                continue
            batch.append(update.payload)
            if len(batch) >= limit:
                break
        return batch

    def _scope_key(self, scope: Any, language_code: str | None) -> tuple[str, str]:
        if not isinstance(scope, dict) or not scope:
            scope = {"type": "default"}
        return json.dumps(scope, sort_keys=True), language_code or ""

    def _admit(self, chat: _Chat, *, rate_limited: bool = True) -> None:
        """Blocked check (403) then flood control (429) for a request that will go out."""
        if chat.blocked:
            raise ApiError(403, _BLOCKED)
        if not rate_limited or not self._rate_limits:
            return
        now = self._clock()
        bucket = self._chat_buckets.get(chat.id)
        if bucket is None:
            bucket = _TokenBucket(self._per_chat_capacity, self._per_chat_rate, now)
            self._chat_buckets[chat.id] = bucket
        overall_wait = self._overall_bucket.wait_seconds(now)
        chat_wait = bucket.wait_seconds(now)
        wait = max(overall_wait, chat_wait)
        if wait > 0:
            self._rate_limited += 1
            self._rate_limited_by_chat[chat.id] += 1
            if overall_wait >= chat_wait:
                self._rate_limited_overall += 1
            retry_after = max(1, math.ceil(wait))
            raise ApiError(
                429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after
            )
        self._overall_bucket.tokens -= 1.0
        bucket.tokens -= 1.0

    def _target_chat(self, p: _Params) -> _Chat:
        raw = p.raw("chat_id")
        if raw is None or raw == "":
            raise _bad_request("chat_id is empty")
        try:
            chat_id = int(raw)
        except (TypeError, ValueError):
            raise _bad_request("chat not found") from None
        chat = self._chats.get(chat_id)
        if chat is None:
            raise _bad_request("chat not found")
        return chat

    def _formatted(
        self, p: _Params, name: str, entities_name: str, *, caption: bool
    ) -> tuple[str | None, list[JSONDict], str | None]:
        """(plain text, entities, raw source) of the text/caption parameter, validated."""
        source = p.str_(name)
        if source is None or (caption and source == ""):
            if caption:
                return None, [], None
            raise _bad_request("message text is empty")
        explicit = p.json_(entities_name, "entities")
        mode = (p.str_("parse_mode") or "").strip()
        if explicit is not None:
            if not isinstance(explicit, list) or not all(isinstance(e, dict) for e in explicit):
                raise _bad_request("can't parse entities JSON object")
            text, entities = source, list(explicit)
        elif mode.lower() == "html":
            try:
                text, entities = parse_html(source)
            except EntityParseError as exc:
                raise _bad_request(f"can't parse entities: {exc}") from None
        elif mode == "" or mode.lower() in ("markdown", "markdownv2"):
            text, entities = source, []
        else:
            raise _bad_request("unsupported parse_mode")
        if caption:
            if len(text) > MAX_CAPTION_LENGTH:
                raise _bad_request("message caption is too long")
            if not text.strip():
                return None, [], None
            return text, entities, source
        if not text.strip():
            raise _bad_request("message text is empty")
        if len(text) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        return text, entities, source

    def _reply_to(self, chat: _Chat, p: _Params) -> int | None:
        params = p.json_("reply_parameters", "reply parameters")
        message_id: int | None = None
        allow_missing = False
        if isinstance(params, dict):
            raw = params.get("message_id")
            try:
                message_id = int(raw) if isinstance(raw, int | str) else None
            except ValueError:
                raise _bad_request("invalid reply_parameters specified") from None
            allow_missing = bool(params.get("allow_sending_without_reply"))
        else:
            message_id = p.int_("reply_to_message_id")
            allow_missing = bool(p.bool_("allow_sending_without_reply"))
        if message_id is None:
            return None
        if self._message_json_by_id(chat, message_id) is None:
            if allow_missing:
                return None
            raise _bad_request("message to be replied not found")
        return message_id

    def _message_json_by_id(self, chat: _Chat, message_id: int) -> JSONDict | None:
        msg = chat.by_id.get(message_id)
        if msg is not None and not msg.deleted:
            return self._message_json(msg, with_reply=False)
        user_message = chat.user_messages.get(message_id)
        return dict(user_message) if user_message is not None else None

    def _record(self, chat: _Chat, method: str, **fields: Any) -> SentMessage:
        msg = SentMessage(
            seq=chat.total,
            order=next(self._order),
            method=method,
            chat_id=chat.id,
            message_id=chat.take_message_id(),
            date=int(time.time()),
            **fields,
        )
        chat.log.append(msg)
        chat.by_id[msg.message_id] = msg
        while len(chat.log) > self._history_limit:
            old = chat.log.popleft()
            chat.dropped += 1
            chat.by_id.pop(old.message_id, None)
        self._messages_sent += 1
        self._notify_changed()
        self._notify_chat(msg.chat_id)
        return msg

    def _message_json(self, msg: SentMessage, *, with_reply: bool = True) -> JSONDict:
        chat = self._chats[msg.chat_id]
        data: JSONDict = {
            "message_id": msg.message_id,
            "from": dict(self._bot_user),
            "chat": chat.user.chat_json(),
            "date": msg.date,
        }
        if msg.edit_date is not None:
            data["edit_date"] = msg.edit_date
        if msg.text is not None:
            data["text"] = msg.text
            if msg.entities:
                data["entities"] = msg.entities
        if msg.document is not None:
            data["document"] = msg.document.api_document()
        if msg.photo is not None:
            data["photo"] = msg.photo.api_photo()
        if msg.caption is not None:
            data["caption"] = msg.caption
            if msg.entities:
                data["caption_entities"] = msg.entities
        if msg.invoice is not None:
            data["invoice"] = {
                "title": msg.invoice.title,
                "description": msg.invoice.description,
                "start_parameter": msg.invoice.start_parameter,
                "currency": msg.invoice.currency,
                "total_amount": msg.invoice.total_amount,
            }
        inline = _inline_only(msg.reply_markup)
        if inline is not None:
            data["reply_markup"] = inline
        if with_reply and msg.reply_to_message_id is not None:
            replied = self._message_json_by_id(chat, msg.reply_to_message_id)
            if replied is not None:
                data["reply_to_message"] = replied
        return data

    def _editable(self, chat: _Chat, p: _Params, *, action: str = "edit") -> SentMessage:
        if p.raw("inline_message_id") not in (None, ""):
            raise _bad_request("inline messages are not supported by the emulator")
        message_id = p.int_("message_id")
        if message_id is None:
            raise _bad_request(f"message to {action} not found")
        msg = chat.by_id.get(message_id)
        if msg is None or msg.deleted:
            if message_id in chat.user_messages:
                raise _bad_request("message can't be edited")
            raise _bad_request(f"message to {action} not found")
        return msg

    def _apply_edit(self, msg: SentMessage, **changes: Any) -> JSONDict:
        msg.history.append(MessageVersion(msg.text, msg.caption, msg.source, msg.reply_markup))
        for name, value in changes.items():
            setattr(msg, name, value)
        msg.edit_date = int(time.time())
        self._notify_changed()
        self._notify_chat(msg.chat_id)
        return self._message_json(msg)

    def _input_file(self, p: _Params, name: str) -> StoredFile:
        """The uploaded file (multipart part or attach://) or a known file_id for ``name``."""
        upload = p.files.get(name)
        ref = p.str_(name)
        if upload is None and ref is not None and ref.startswith("attach://"):
            upload = p.files.get(ref[len("attach://") :])
            if upload is None:
                raise _bad_request(f"there is no {name} in the request")
        if upload is not None:
            return self._store_upload(upload, name)
        if not ref:
            raise _bad_request(f"there is no {name} in the request")
        if ref.startswith(("http://", "https://")):
            raise _bad_request("failed to get HTTP URL content")
        stored = self._files.get(ref)
        if stored is None:
            raise _bad_request("wrong file identifier/HTTP URL specified")
        if stored.kind != name:
            raise _bad_request(f"can't use file of type {stored.kind.title()} as {name.title()}")
        return stored

    def _store_upload(self, upload: web.FileField, kind: str) -> StoredFile:
        data = upload.file.read()
        if not data:
            raise _bad_request("file must be non-empty")
        if len(data) > MAX_UPLOAD_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        width = height = None
        filename: str | None = upload.filename or None
        mime: str | None = upload.content_type or None
        if kind == "photo":
            size = _image_size(data)
            if size is None:
                raise _bad_request("IMAGE_PROCESS_FAILED")
            width, height = size
            if len(data) > MAX_PHOTO_BYTES:
                raise _bad_request("file is too big")
            if width <= 0 or height <= 0 or width + height > 10000:
                raise _bad_request("PHOTO_INVALID_DIMENSIONS")
            filename, mime = None, None
        else:
            if not mime or mime == "application/octet-stream":
                mime = mimetypes.guess_type(filename or "")[0] or mime
        return self._store_file(
            data, kind=kind, filename=filename, mime=mime, width=width, height=height
        )

    def _store_file(
        self,
        data: bytes,
        *,
        kind: str,
        filename: str | None,
        mime: str | None,
        width: int | None = None,
        height: int | None = None,
    ) -> StoredFile:
        if kind == "photo":
            extension = ".jpg"
        else:
            extension = ""
            if filename and "." in filename:
                extension = "." + filename.rsplit(".", 1)[1][:8]
        number = next(self._file_counter)
        prefix = "BQACAgIAAxkDAA" if kind == "document" else "AgACAgIAAxkDAA"
        stored = StoredFile(
            file_id=f"{prefix}{number}{secrets.token_urlsafe(24)}",
            file_unique_id=f"AgAD{number}{secrets.token_urlsafe(6)}",
            kind=kind,
            data=data,
            file_path=f"{kind}s/file_{number}{extension}",
            filename=filename,
            mime_type=mime,
            width=width,
            height=height,
        )
        self._files[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        while len(self._files) > self._history_limit:
            _, evicted = self._files.popitem(last=False)
            self._files_by_path.pop(evicted.file_path, None)
        return stored

    # ------------------------------------------------------------------ HTTP: Bot API

    async def _read_params(self, request: web.Request) -> _Params:
        values: dict[str, Any] = dict(request.query)
        files: dict[str, web.FileField] = {}
        if request.method == "POST" and request.body_exists:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    raise _bad_request("can't parse JSON object")
                values.update(body)
            else:
                try:
                    form = await request.post()
                except ValueError:
                    raise _bad_request("can't parse request body") from None
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        files[key] = value
                    elif isinstance(value, bytes | bytearray):
                        values[key] = bytes(value).decode("utf-8", "replace")
                    else:
                        values[key] = value
        return _Params(values, files)

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            self._errors[401] += 1
            return _error(401, "Unauthorized")
        entry = self._methods.get(request.match_info["method"].lower())
        if entry is None:
            self._errors[404] += 1
            return _error(404, "Not Found")
        name, handler = entry
        self._requests[name] += 1
        outage = self._outages.get(name.lower())
        if outage:
            status, description = outage.popleft()
            self._errors[status] += 1
            return _error(status, description)
        try:
            params = await self._read_params(request)
            fault = self._take_fault(name)
            if fault is not None:
                if fault.after:
                    await handler(params)
                raise ApiError(fault.status, fault.description)
            result = await handler(params)
        except ApiError as exc:
            if isinstance(exc, _ConflictError):
                if request.transport is None or request.transport.is_closing():
                    # The superseded poller already hung up (e.g. PTB restarting its polling
                    # loop): nobody sees this 409, so it is not a conflict between instances.
                    return web.json_response(exc.payload(), status=exc.status)
                self._conflicts += 1
                self._max_concurrent_pollers = max(self._max_concurrent_pollers, exc.concurrency)
            self._errors[exc.status] += 1
            return web.json_response(exc.payload(), status=exc.status)
        except web.HTTPRequestEntityTooLarge:
            self._errors[413] += 1
            return _error(413, "Request Entity Too Large")
        except Exception as exc:
            _LOGGER.exception("emulator failed to handle %s", name)
            self._errors[500] += 1
            return _error(500, f"Internal Server Error: {exc!r}")
        return _ok(result)

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        stored = None
        if request.match_info["token"] == self.token:
            stored = self._files_by_path.get(request.match_info["file_path"])
        if stored is None:
            return _error(404, "Not Found")
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )

    async def _m_true(self, p: _Params) -> Any:
        return True

    async def _m_get_me(self, p: _Params) -> Any:
        return {
            **self._bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _m_get_updates(self, p: _Params) -> Any:
        offset = p.int_("offset")
        limit = min(max(p.int_("limit") or 100, 1), 100)
        timeout = max(p.float_("timeout") or 0.0, 0.0)
        allowed = p.json_("allowed_updates", "allowed updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(str(a) for a in allowed) if allowed else None
        self._last_get_updates_at = time.time()

        loop = asyncio.get_running_loop()
        poll = _Poll(loop)
        for older in self._polls:
            # Telegram answers the *older* request with 409 Conflict.
            older.terminated = True
            older.concurrency = len(self._polls) + 1
            older.wake()
        self._polls.add(poll)
        self._max_concurrent_pollers = max(self._max_concurrent_pollers, 1)
        self._notify_changed()  # lets wait_until() observe stats.active_pollers
        try:
            self._confirm_updates(offset)
            self._expire_updates(self._clock())
            deadline = loop.time() + timeout
            while True:
                if poll.terminated:
                    raise _ConflictError(poll.concurrency)
                batch = self._deliverable(limit)
                remaining = deadline - loop.time()
                if batch or self._closing or remaining <= 0:
                    return batch
                await asyncio.wait([poll.waker], timeout=remaining)
                if poll.waker.done():
                    poll.waker = loop.create_future()
        finally:
            self._polls.discard(poll)
            self._notify_changed()

    async def _m_delete_webhook(self, p: _Params) -> Any:
        if p.bool_("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _m_get_webhook_info(self, p: _Params) -> Any:
        return {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    async def _m_set_webhook(self, p: _Params) -> Any:
        raise _bad_request("webhooks are not supported by the emulator; use getUpdates")

    async def _m_set_my_commands(self, p: _Params) -> Any:
        commands = p.json_("commands", "commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad_request("can't parse commands JSON object")
        cleaned: list[JSONDict] = []
        for command in commands:
            if not isinstance(command, dict):
                raise _bad_request("can't parse commands JSON object")
            name, description = command.get("command"), command.get("description")
            if not isinstance(name, str) or not _BOT_COMMAND_NAME_RE.fullmatch(name):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name, "description": description})
        key = self._scope_key(p.json_("scope", "scope"), p.str_("language_code"))
        self._commands[key] = cleaned
        return True

    async def _m_get_my_commands(self, p: _Params) -> Any:
        key = self._scope_key(p.json_("scope", "scope"), p.str_("language_code"))
        return list(self._commands.get(key, []))

    async def _m_delete_my_commands(self, p: _Params) -> Any:
        key = self._scope_key(p.json_("scope", "scope"), p.str_("language_code"))
        self._commands.pop(key, None)
        return True

    async def _m_set_my_description(self, p: _Params) -> Any:
        text = p.str_("description") or ""
        if len(text) > 512:
            raise _bad_request("description is too long")
        self._descriptions[("description", p.str_("language_code") or "")] = text
        return True

    async def _m_set_my_short_description(self, p: _Params) -> Any:
        text = p.str_("short_description") or ""
        if len(text) > 120:
            raise _bad_request("short description is too long")
        self._descriptions[("short_description", p.str_("language_code") or "")] = text
        return True

    async def _m_send_message(self, p: _Params) -> Any:
        chat = self._target_chat(p)
        text, entities, source = self._formatted(p, "text", "entities", caption=False)
        markup = _validate_reply_markup(p.json_("reply_markup", "reply keyboard markup"))
        reply_to = self._reply_to(chat, p)
        self._admit(chat)
        msg = self._record(
            chat,
            "sendMessage",
            text=text,
            entities=entities,
            source=source,
            parse_mode=p.str_("parse_mode"),
            reply_markup=markup,
            reply_to_message_id=reply_to,
        )
        return self._message_json(msg)

    async def _m_send_chat_action(self, p: _Params) -> Any:
        chat = self._target_chat(p)
        if not p.str_("action"):
            raise _required("action")
        self._admit(chat, rate_limited=False)
        return True

    async def _m_send_document(self, p: _Params) -> Any:
        return self._send_media(p, "document", "sendDocument")

    async def _m_send_photo(self, p: _Params) -> Any:
        return self._send_media(p, "photo", "sendPhoto")

    def _send_media(self, p: _Params, kind: str, method: str) -> JSONDict:
        chat = self._target_chat(p)
        stored = self._input_file(p, kind)
        caption, entities, source = self._formatted(p, "caption", "caption_entities", caption=True)
        markup = _validate_reply_markup(p.json_("reply_markup", "reply keyboard markup"))
        reply_to = self._reply_to(chat, p)
        self._admit(chat)
        msg = self._record(
            chat,
            method,
            caption=caption,
            entities=entities,
            source=source,
            parse_mode=p.str_("parse_mode"),
            reply_markup=markup,
            reply_to_message_id=reply_to,
            **{kind: stored},
        )
        return self._message_json(msg)

    async def _m_edit_message_text(self, p: _Params) -> Any:
        chat = self._target_chat(p)
        msg = self._editable(chat, p)
        if msg.text is None:
            raise _bad_request("there is no text in the message to edit")
        text, entities, source = self._formatted(p, "text", "entities", caption=False)
        markup = _inline_only(
            _validate_reply_markup(p.json_("reply_markup", "reply keyboard markup"))
        )
        if (text, entities, markup) == (msg.text, msg.entities, _inline_only(msg.reply_markup)):
            raise _bad_request(_NOT_MODIFIED)
        self._admit(chat)
        return self._apply_edit(
            msg,
            text=text,
            entities=entities,
            source=source,
            parse_mode=p.str_("parse_mode"),
            reply_markup=markup,
        )

    async def _m_edit_message_caption(self, p: _Params) -> Any:
        chat = self._target_chat(p)
        msg = self._editable(chat, p)
        if msg.document is None and msg.photo is None:
            raise _bad_request("there is no caption in the message to edit")
        caption, entities, source = self._formatted(p, "caption", "caption_entities", caption=True)
        markup = _inline_only(
            _validate_reply_markup(p.json_("reply_markup", "reply keyboard markup"))
        )
        if (caption, entities, markup) == (
            msg.caption,
            msg.entities,
            _inline_only(msg.reply_markup),
        ):
            raise _bad_request(_NOT_MODIFIED)
        self._admit(chat)
        return self._apply_edit(
            msg,
            caption=caption,
            entities=entities,
            source=source,
            parse_mode=p.str_("parse_mode"),
            reply_markup=markup,
        )

    async def _m_edit_message_reply_markup(self, p: _Params) -> Any:
        chat = self._target_chat(p)
        msg = self._editable(chat, p)
        markup = _inline_only(
            _validate_reply_markup(p.json_("reply_markup", "reply keyboard markup"))
        )
        if markup == _inline_only(msg.reply_markup):
            raise _bad_request(_NOT_MODIFIED)
        self._admit(chat)
        return self._apply_edit(msg, reply_markup=markup)

    async def _m_delete_message(self, p: _Params) -> Any:
        chat = self._target_chat(p)
        message_id = p.int_("message_id", required=True) or 0
        msg = chat.by_id.get(message_id)
        if msg is not None and not msg.deleted:
            msg.deleted = True
            self._notify_changed()
            return True
        if message_id in chat.user_messages:
            del chat.user_messages[message_id]
            return True
        raise _bad_request("message to delete not found")

    async def _m_answer_callback_query(self, p: _Params) -> Any:
        query_id = p.str_("callback_query_id")
        if not query_id:
            raise _required("callback_query_id")
        text = p.str_("text")
        if text is not None and len(text) > MAX_CALLBACK_ANSWER_LENGTH:
            raise _bad_request("MESSAGE_TOO_LONG")
        pending = self._pending_callbacks.pop(query_id, None)
        if pending is None:
            raise _bad_request(_QUERY_INVALID)
        self._callback_answers.append(
            CallbackAnswer(
                query_id=query_id,
                user_id=pending.user_id,
                message_id=pending.message_id,
                data=pending.data,
                text=text,
                show_alert=bool(p.bool_("show_alert")),
                url=p.str_("url"),
                cache_time=p.int_("cache_time"),
            )
        )
        self._notify_changed()
        return True

    async def _m_get_file(self, p: _Params) -> Any:
        file_id = p.str_("file_id")
        if not file_id:
            raise _required("file_id")
        stored = self._files.get(file_id)
        if stored is None:
            raise _bad_request("wrong file_id or the file is temporarily unavailable")
        if stored.size > MAX_DOWNLOAD_BYTES:
            raise _bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
            "file_path": stored.file_path,
        }

    async def _m_send_invoice(self, p: _Params) -> Any:
        chat = self._target_chat(p)
        invoice = self._parse_invoice(p)
        markup = _validate_reply_markup(p.json_("reply_markup", "reply keyboard markup"))
        if markup is not None and "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not rows or not rows[0] or not rows[0][0].get("pay"):
                raise _bad_request("the first button of the invoice must be a Pay button")
        elif markup is None:  # Telegram shows a default Pay button
            if invoice.currency == "XTR":
                price = f"⭐️{invoice.total_amount}"
            else:
                exp = PROVIDER_CURRENCIES[invoice.currency][0]
                price = f"{invoice.total_amount / 10**exp:.{exp}f} {invoice.currency}"
            markup = {"inline_keyboard": [[{"text": f"Pay {price}", "pay": True}]]}
        reply_to = self._reply_to(chat, p)
        self._admit(chat)
        msg = self._record(
            chat,
            "sendInvoice",
            invoice=invoice,
            reply_markup=markup,
            reply_to_message_id=reply_to,
        )
        return self._message_json(msg)

    @staticmethod
    def _parse_invoice(p: _Params) -> InvoiceInfo:
        title = p.str_("title") or ""
        description = p.str_("description") or ""
        payload = p.str_("payload") or ""
        currency = (p.str_("currency") or "").upper()
        for name, value in (
            ("title", title),
            ("description", description),
            ("payload", payload),
            ("currency", currency),
        ):
            if not value:
                raise _required(name)
        if len(title) > 32:
            raise _bad_request("invoice title must be 1-32 characters long")
        if len(description) > 255:
            raise _bad_request("invoice description must be 1-255 characters long")
        if len(payload.encode("utf-8")) > 128:
            raise _bad_request("invoice payload must be 1-128 bytes long")
        raw_prices = p.json_("prices", "prices")
        if raw_prices is None:
            raise _required("prices")
        if not isinstance(raw_prices, list) or not raw_prices:
            raise _bad_request("can't parse prices JSON object")
        prices: list[tuple[str, int]] = []
        for price in raw_prices:
            if not isinstance(price, dict) or not isinstance(price.get("label"), str):
                raise _bad_request("can't parse prices JSON object")
            amount = price.get("amount")
            if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
                raise _bad_request("CURRENCY_TOTAL_AMOUNT_INVALID")
            prices.append((price["label"], amount))
        if currency == "XTR":
            if len(prices) != 1 or (p.int_("max_tip_amount") or 0) > 0:
                raise _bad_request("STARS_INVOICE_INVALID")
        else:
            if not p.str_("provider_token"):
                raise _bad_request("PAYMENT_PROVIDER_INVALID")
            limits = PROVIDER_CURRENCIES.get(currency)
            if limits is None:
                raise _bad_request("CURRENCY_INVALID")
            _, least, most = limits
            total = sum(amount for _, amount in prices)
            if not least <= total <= most:
                raise _bad_request("CURRENCY_TOTAL_AMOUNT_INVALID")
        return InvoiceInfo(
            title=title,
            description=description,
            payload=payload,
            currency=currency,
            prices=tuple(prices),
            start_parameter=p.str_("start_parameter") or "",
        )

    async def _m_answer_pre_checkout_query(self, p: _Params) -> Any:
        query_id = p.str_("pre_checkout_query_id")
        if not query_id:
            raise _required("pre_checkout_query_id")
        ok = p.bool_("ok")
        if ok is None:
            raise _required("ok")
        error_message = p.str_("error_message")
        if not ok and not error_message:
            raise _required("error_message")
        pending = self._pending_pre_checkouts.pop(query_id, None)
        if pending is None or self._clock() - pending.asked_at > PRE_CHECKOUT_TIMEOUT:
            raise _bad_request(_QUERY_INVALID)
        self._pre_checkout_answers.append(
            PreCheckoutAnswer(
                query_id=query_id,
                user_id=pending.user_id,
                ok=ok,
                error_message=error_message if not ok else None,
                currency=pending.currency,
                total_amount=pending.total_amount,
                payload=pending.payload,
            )
        )
        self._notify_changed()
        return True

    async def _m_refund_star_payment(self, p: _Params) -> Any:
        user_id = p.int_("user_id", required=True)
        charge_id = p.str_("telegram_payment_charge_id")
        if not charge_id:
            raise _required("telegram_payment_charge_id")
        charge = self._charges.get(charge_id)
        if charge is None or charge.user_id != user_id or charge.currency != "XTR":
            raise _bad_request("CHARGE_NOT_FOUND")
        if charge.refunded:
            raise _bad_request("CHARGE_ALREADY_REFUNDED")
        charge.refunded = True
        self._star_transactions.append(self._star_transaction(charge, incoming=False))
        chat = self._chat_for_user(charge.user_id)
        message = self._user_message(chat)
        message["refunded_payment"] = {
            "currency": charge.currency,
            "total_amount": charge.total_amount,
            "invoice_payload": charge.payload,
            "telegram_payment_charge_id": charge.charge_id,
        }
        self.push_update("message", message)
        self._notify_changed()
        return True

    async def _m_get_star_transactions(self, p: _Params) -> Any:
        """The bot's Stars transactions, oldest first: ``offset`` skips that many,
        ``limit`` is 1-100 (default 100)."""
        offset = p.int_("offset")
        limit = p.int_("limit")
        offset = 0 if offset is None else offset
        limit = 100 if limit is None else limit
        if offset < 0:
            raise _bad_request("OFFSET_INVALID")
        if not 1 <= limit <= 100:
            raise _bad_request("LIMIT_INVALID")
        chunk = self._star_transactions[offset : offset + limit]
        return {"transactions": [dict(tx) for tx in chunk]}

    # ------------------------------------------------------------------ HTTP: control API

    def _add_control_routes(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Callable[[web.Request], Awaitable[Any]]]] = [
            ("GET", "/_control/stats", self._c_stats),
            ("POST", "/_control/stats/reset", self._c_reset_stats),
            ("POST", "/_control/rate_limits", self._c_rate_limits),
            ("POST", "/_control/users", self._c_add_user),
            ("POST", "/_control/users/{user_id}/messages", self._c_user_message),
            ("POST", "/_control/users/{user_id}/messages/{message_id}/edit", self._c_user_edit),
            ("POST", "/_control/users/{user_id}/callbacks", self._c_user_callback),
            ("POST", "/_control/users/{user_id}/pre_checkout_queries", self._c_pre_checkout),
            ("POST", "/_control/users/{user_id}/checkout", self._c_checkout),
            (
                "POST",
                "/_control/pre_checkout_queries/{query_id}/complete",
                self._c_complete_checkout,
            ),
            ("POST", "/_control/users/{user_id}/payments", self._c_payment),
            ("POST", "/_control/updates", self._c_push_update),
            ("POST", "/_control/chats/{chat_id}/block", self._c_block),
            ("POST", "/_control/chats/{chat_id}/unblock", self._c_unblock),
            ("GET", "/_control/chats/{chat_id}/messages", self._c_chat_messages),
            ("GET", "/_control/messages", self._c_all_messages),
            ("GET", "/_control/callback_answers", self._c_callback_answers),
            ("GET", "/_control/pre_checkout_answers", self._c_pre_checkout_answers),
            ("GET", "/_control/charges", self._c_charges),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, self._control(handler))

    @staticmethod
    def _control(
        handler: Callable[[web.Request], Awaitable[Any]],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return _ok(await handler(request))
            except LookupError as exc:
                return web.json_response({"ok": False, "description": str(exc)}, status=404)
            except (ValueError, TypeError) as exc:
                return web.json_response({"ok": False, "description": str(exc)}, status=400)

        return wrapped

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        if not request.body_exists:
            return {}
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        return body

    @staticmethod
    def _path_int(request: web.Request, name: str) -> int:
        return int(request.match_info[name])

    @staticmethod
    def _field(body: Mapping[str, Any], name: str, kind: type[Any]) -> Any:
        value = body.get(name)
        if kind is int and isinstance(value, bool):
            raise ValueError(f"{name!r} must be an integer")
        if not isinstance(value, kind):
            raise ValueError(f"{name!r} is required and must be {kind.__name__}")
        return value

    async def _c_stats(self, request: web.Request) -> Any:
        return self.stats.to_dict()

    async def _c_reset_stats(self, request: web.Request) -> Any:
        self.reset_stats()
        return True

    async def _c_rate_limits(self, request: web.Request) -> Any:
        body = await self._body(request)
        enabled = body.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            raise ValueError("'enabled' must be a boolean")
        self.set_rate_limits(
            enabled,
            per_chat_capacity=body.get("per_chat_capacity"),
            per_chat_rate=body.get("per_chat_rate"),
            overall_capacity=body.get("overall_capacity"),
            overall_rate=body.get("overall_rate"),
        )
        return {"enabled": self._rate_limits}

    async def _c_add_user(self, request: web.Request) -> Any:
        body = await self._body(request)
        self.add_user(
            self._field(body, "user_id", int),
            first_name=str(body.get("first_name") or "User"),
            last_name=body.get("last_name"),
            username=body.get("username"),
            language_code=body.get("language_code", "en"),
        )
        return True

    async def _c_user_message(self, request: web.Request) -> Any:
        body = await self._body(request)
        reply_to = body.get("reply_to_message_id")
        update_id = self.send_message(
            self._path_int(request, "user_id"),
            self._field(body, "text", str),
            reply_to_message_id=int(reply_to) if reply_to is not None else None,
        )
        return {"update_id": update_id}

    async def _c_user_edit(self, request: web.Request) -> Any:
        body = await self._body(request)
        update_id = self.edit_message(
            self._path_int(request, "user_id"),
            self._path_int(request, "message_id"),
            self._field(body, "text", str),
        )
        return {"update_id": update_id}

    async def _c_user_callback(self, request: web.Request) -> Any:
        body = await self._body(request)
        query_id = self.press_button(
            self._path_int(request, "user_id"),
            self._field(body, "message_id", int),
            self._field(body, "data", str),
        )
        return {"callback_query_id": query_id}

    async def _c_pre_checkout(self, request: web.Request) -> Any:
        body = await self._body(request)
        query_id = self.send_pre_checkout_query(
            self._path_int(request, "user_id"),
            currency=self._field(body, "currency", str),
            total_amount=self._field(body, "total_amount", int),
            payload=self._field(body, "payload", str),
        )
        return {"pre_checkout_query_id": query_id}

    async def _c_payment(self, request: web.Request) -> Any:
        body = await self._body(request)
        update_id = self.send_successful_payment(
            self._path_int(request, "user_id"),
            currency=self._field(body, "currency", str),
            total_amount=self._field(body, "total_amount", int),
            payload=self._field(body, "payload", str),
            charge_id=self._field(body, "charge_id", str),
            provider_payment_charge_id=str(body.get("provider_payment_charge_id") or ""),
        )
        return {"update_id": update_id}

    async def _c_checkout(self, request: web.Request) -> Any:
        body = await self._body(request)
        query_id = self.checkout(
            self._path_int(request, "user_id"), self._field(body, "message_id", int)
        )
        return {"pre_checkout_query_id": query_id}

    async def _c_complete_checkout(self, request: web.Request) -> Any:
        return {"update_id": self.complete_checkout(request.match_info["query_id"])}

    async def _c_push_update(self, request: web.Request) -> Any:
        body = await self._body(request)
        update_id = self.push_update(
            self._field(body, "type", str), self._field(body, "payload", dict)
        )
        return {"update_id": update_id}

    async def _c_block(self, request: web.Request) -> Any:
        self.block_chat(self._path_int(request, "chat_id"))
        return True

    async def _c_unblock(self, request: web.Request) -> Any:
        self.unblock_chat(self._path_int(request, "chat_id"))
        return True

    async def _c_chat_messages(self, request: web.Request) -> Any:
        chat_id = self._path_int(request, "chat_id")
        since = int(request.query.get("since", "0"))
        count = int(request.query.get("count", "1"))
        wait = min(max(float(request.query.get("wait", "0")), 0.0), 600.0)
        if wait > 0:

            def ready() -> bool:
                chat = self._chats.get(chat_id)
                got = 0 if chat is None else chat.total - max(since, chat.dropped)
                return self._closing or got >= count

            with contextlib.suppress(TimeoutError):
                await self.wait_until(ready, timeout=wait)
        messages = self.sent_messages(chat_id, since=since)
        return {"messages": [m.to_dict() for m in messages], "next": self.cursor(chat_id)}

    async def _c_all_messages(self, request: web.Request) -> Any:
        return {"messages": [m.to_dict() for m in self.sent_messages()]}

    async def _c_callback_answers(self, request: web.Request) -> Any:
        return [a.to_dict() for a in self._callback_answers]

    async def _c_pre_checkout_answers(self, request: web.Request) -> Any:
        return [a.to_dict() for a in self._pre_checkout_answers]

    async def _c_charges(self, request: web.Request) -> Any:
        return [c.to_dict() for c in self._charges.values()]
