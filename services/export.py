"""``/export``: CSV of orders, payments or users, written row by row to a temporary file.

Memory stays bounded whatever the row count: documents come from a cursor in batches and
each row goes straight to the file (the caller uploads the file and deletes it). Phone
numbers are masked unless the caller may see them; text a customer typed is guarded
against spreadsheet formula injection. Every export is audited as soon as its file is
written (who, which rows, phones masked or not), whoever calls it.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any

from services.audit import AuditService
from services.clock import Clock, utc_now
from services.masking import mask_phone
from storage.client import Document
from storage.exports import COLLECTIONS, ExportRepo

KINDS = COLLECTIONS
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ExportError(ValueError):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class ExportResult:
    path: Path
    filename: str
    rows: int
    since: date | None
    until: date | None


def day_text(value: date | None) -> str:
    """A bound of an export's period as shown and audited ("…": open)."""
    return value.isoformat() if value else "…"


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ExportError("bad_date") from None


def _text(value: Any) -> str:
    """Customer-typed text: a leading formula character is neutralised with a quote."""
    if value is None:
        return ""
    text = str(value)
    return f"'{text}" if text.startswith(_FORMULA_START) else text


guard_cell = _text  # the same guard for every CSV we hand to a customer (bulk reports)


def _cents(value: Any) -> str:
    if value is None:
        return ""
    cents = int(value)
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def _when(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else ""


def _flag(value: Any) -> str:
    return "1" if value else "0"


Row = list[str]
Columns = tuple[str, ...]

ORDER_COLUMNS: Columns = (
    "order_id", "created_at", "status", "user_id", "price_usd", "carrier_cost_usd",
    "carrier_code", "service_code", "tracking_number", "api_mode",
    "from_name", "from_city", "from_state", "from_postal_code", "from_phone",
    "to_name", "to_street1", "to_city", "to_state", "to_postal_code", "to_phone",
    "purchased_at", "refunded_at",
)
PAYMENT_COLUMNS: Columns = (
    "payment_id", "created_at", "user_id", "provider", "status", "amount_usd",
    "credited_usd", "currency", "provider_ref", "paid_at",
)
USER_COLUMNS: Columns = (
    "user_id", "username", "first_name", "language", "created_at", "last_seen_at",
    "balance_usd", "discount_percent", "blocked", "notify_opt_out", "bot_blocked_at",
)


def _order_row(doc: Document, phone: Callable[[Any], str]) -> Row:
    src = doc.get("from_address") or {}
    dst = doc.get("to_address") or {}
    return [
        str(doc["_id"]), _when(doc.get("created_at")), str(doc.get("status", "")),
        str(doc.get("user_id", "")), _cents(doc.get("price_cents")),
        _cents(doc.get("carrier_cost_cents")), _text(doc.get("carrier_code")),
        _text(doc.get("service_code")), _text(doc.get("tracking_number")),
        str(doc.get("api_mode") or ""),
        _text(src.get("name")), _text(src.get("city")), _text(src.get("state")),
        _text(src.get("postal_code")), phone(src.get("phone")),
        _text(dst.get("name")), _text(dst.get("street1")), _text(dst.get("city")),
        _text(dst.get("state")), _text(dst.get("postal_code")), phone(dst.get("phone")),
        _when(doc.get("purchased_at")), _when(doc.get("refunded_at")),
    ]


def _payment_row(doc: Document, phone: Callable[[Any], str]) -> Row:
    return [
        str(doc["_id"]), _when(doc.get("created_at")), str(doc.get("user_id", "")),
        str(doc.get("provider", "")), str(doc.get("status", "")),
        _cents(doc.get("amount_cents")), _cents(doc.get("credited_cents")),
        str(doc.get("currency") or ""), _text(doc.get("provider_ref")),
        _when(doc.get("paid_at")),
    ]


def _user_row(doc: Document, phone: Callable[[Any], str]) -> Row:
    return [
        str(doc["_id"]), _text(doc.get("username")), _text(doc.get("first_name")),
        str(doc.get("language") or ""), _when(doc.get("created_at")),
        _when(doc.get("last_seen_at")), _cents(doc.get("balance_cents", 0)),
        str(doc.get("discount_percent") or 0), _flag(doc.get("blocked")),
        _flag(doc.get("notify_opt_out")), _when(doc.get("bot_blocked_at")),
    ]


_LAYOUTS: dict[str, tuple[Columns, Callable[[Document, Callable[[Any], str]], Row]]] = {
    "orders": (ORDER_COLUMNS, _order_row),
    "payments": (PAYMENT_COLUMNS, _payment_row),
    "users": (USER_COLUMNS, _user_row),
}


def _open_temp(directory: Path | None) -> IO[str]:
    return tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by ``write_csv``
        "w", encoding="utf-8", newline="", suffix=".csv", delete=False, dir=directory
    )


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


class ExportService:
    def __init__(
        self,
        repo: ExportRepo,
        *,
        audit: AuditService,
        batch_size: int,
        clock: Clock = utc_now,
        directory: Path | None = None,
    ) -> None:
        self._repo = repo
        self._audit = audit
        self._batch_size = batch_size
        self._clock = clock
        self._directory = directory

    async def write_csv(
        self,
        kind: str,
        *,
        actor: int,
        since: date | None,
        until: date | None,
        show_phones: bool,
    ) -> ExportResult:
        """Writes the CSV (``until`` is inclusive: the whole day) and audits the export."""
        if kind not in _LAYOUTS:
            raise ExportError("bad_kind")
        if since is not None and until is not None and until < since:
            raise ExportError("bad_range")
        columns, to_row = _LAYOUTS[kind]
        start = datetime.combine(since, time.min, tzinfo=UTC) if since else None
        end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC) if until else None

        def phone(value: Any) -> str:
            text = str(value or "")
            return text if show_phones else mask_phone(text)

        handle = _open_temp(self._directory)
        path = Path(handle.name)
        rows = 0
        try:
            writer = csv.writer(handle)
            writer.writerow(columns)
            async for doc in self._repo.iterate(
                kind, since=start, until=end, batch_size=self._batch_size
            ):
                writer.writerow(to_row(doc, phone))
                rows += 1
        except BaseException:
            handle.close()
            _remove(path)
            raise
        handle.close()
        try:
            await self._audit.record(
                actor,
                f"export.{kind}",
                f"export:{kind}",
                after={
                    "rows": rows,
                    "from": day_text(since),
                    "to": day_text(until),
                    "phones_masked": not show_phones,
                },
            )
        except BaseException:
            _remove(path)  # an export that could not be audited is not handed out
            raise
        stamp = self._clock().strftime("%Y%m%d-%H%M%S")
        return ExportResult(path, f"{kind}-{stamp}.csv", rows, since, until)
