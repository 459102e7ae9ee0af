"""Bulk labels from a spreadsheet: one file in, a validated quote, one payment, every label out.

1. **Parse** a ``.csv`` (UTF-8, Python's ``csv``) or ``.xlsx`` (openpyxl, first sheet) of
   at most ``max_rows`` rows; a file we cannot read is refused with one reason
   (``BulkFileError``): not UTF-8, not a spreadsheet, missing columns, too many rows.
2. **Validate** every row with the conversation's own rules (``services.addresses``,
   ``services.parcel``); a cell starting with ``=`` is a formula and refused. The valid rows
   are stored on the ``bulk_jobs`` document; the invalid ones are reported (the caller
   renders their messages in the customer's language).
3. **Quote** (the customer chose the sender): every valid row becomes its own ``orders``
   draft (``bulk_job_id``, ``bulk_row``), quoted with ``OrderService.fetch_rates`` (its own
   ``external_shipment_id`` per quote) at most ``quote_concurrency`` at a time and paced to
   ``carrier_rate_per_second`` (the client itself honours 429 ``Retry-After``); the row's
   service, else the cheapest, is chosen with ``OrderService.choose_rate``.
4. **Pay**: the press confirms the job at the quoted total (conditional on that total);
   nothing is reserved. Each row is then bought with ``PurchaseService.purchase`` (debit
   ``label:<order_id>``, exactly once per row). A short balance mid-job stops the job: the
   rows not bought are abandoned and the customer is told. A quote older than
   ``rates_max_age`` is refreshed first; a row whose price changed is skipped, never charged
   more than the confirmed quote.
5. **Resume**: the job's rows are the orders' statuses. A restart runs the job again: only
   ``draft`` rows are bought (the purchase claims each conditionally), rows left
   ``purchasing`` are resolved by purchase recovery, and the job waits for them.
6. **Deliver**: one merged PDF (pypdf) and a results CSV; then ``done``. Rows bought as ZPL
   (the customer's ``/format``) come as one concatenated ``.zpl`` file (one ``^XA…^XZ``
   block per label, in row order: thermal printers take it as is); rows bought as PNG as
   one ZIP of the PNG files (no image library needed, and the customer gets the format they
   chose). Each part stays under ``PDF_PART_BYTES`` (Telegram takes 50 MB).
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import time
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from bson import ObjectId

from providers.errors import ProviderError
from services import addresses
from services.addresses import FieldError, scrub_text
from services.audit import AuditService
from services.clock import Clock, utc_now
from services.export import guard_cell
from services.orders import (
    CORRECTED,
    OrderService,
    QuoteRefusal,
    RatesUnavailable,
    parse_id,
    validation_of,
)
from services.parcel import parse_dimensions, parse_weight
from services.purchase import PurchaseService, PurchaseStatus, label_file_format
from services.shipping import CarrierUnavailable
from storage.bulk_jobs import BulkJobsRepo
from storage.client import Document
from storage.orders import OrdersRepo

_LOGGER = logging.getLogger(__name__)

ADDRESS_COLUMNS = ("name", "street1", "street2", "city", "state", "postal_code", "phone")
PARCEL_COLUMNS = ("weight", "length", "width", "height")
OPTIONAL_COLUMNS = ("service", "reference")
COLUMNS = (*ADDRESS_COLUMNS, *PARCEL_COLUMNS, *OPTIONAL_COLUMNS)
REQUIRED_COLUMNS = tuple(c for c in COLUMNS if c not in ("street2", "phone", *OPTIONAL_COLUMNS))
_ALIASES = {
    "recipient_name": "name",
    "recipient": "name",
    "address1": "street1",
    "address2": "street2",
    "zip": "postal_code",
    "zip_code": "postal_code",
    "postcode": "postal_code",
    "weight_lb": "weight",
    "length_in": "length",
    "width_in": "width",
    "height_in": "height",
}
REFERENCE_LIMIT = 50
PDF_PART_BYTES = 40 * 1024 * 1024  # of source labels per merged PDF; Telegram takes 50 MB
CELL_CAP = 200
# How long one worker's claim on sending a job's files holds (see ``claim_delivery``).
DELIVERY_CLAIM = timedelta(minutes=10)
RESULT_COLUMNS = ("row", "reference", "name", "tracking_number", "service", "price", "status")

TEMPLATE_CSV = (
    "name,street1,street2,city,state,postal_code,phone,weight,length,width,height,"
    "service,reference\r\n"
    "John Smith,123 Main St,Apt 4,Springfield,IL,62704,(217) 555-0100,2.5,10,8,4,,order-1001\r\n"
    "Mary Major,55 Elm St,,Portland,OR,97205,,12 oz,6,4,2,usps_priority_mail,order-1002\r\n"
)


class BulkFileError(ValueError):
    """The file cannot be read as a bulk sheet; ``code`` names why (a message key)."""

    def __init__(self, code: str, **params: object) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


@dataclass(frozen=True)
class BulkConfig:
    max_bytes: int
    max_rows: int
    quote_concurrency: int
    carrier_rate_per_second: float
    rates_max_age: timedelta
    row_ttl: timedelta
    min_weight_oz: int
    max_weight_oz: int
    max_side_in: Decimal


@dataclass(frozen=True)
class RowError:
    row: int  # the spreadsheet row number (the header is row 1)
    values: dict[str, str]
    errors: tuple[FieldError, ...]


@dataclass
class Validation:
    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


# -- reading the file ---------------------------------------------------------------------

_BINARY_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"%PDF", b"PK\x03\x04", b"RIFF", b"BM")


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        number = Decimal(repr(value))
        return str(number.quantize(Decimal(1))) if number == number.to_integral() else str(number)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def read_table(data: bytes, filename: str, *, max_rows: int) -> list[list[str]]:
    """The sheet's rows as text (header first); ``BulkFileError`` when it is not one."""
    name = filename.lower()
    if name.endswith(".xlsx"):
        return _read_xlsx(data, max_rows=max_rows)
    if name.endswith(".csv") or name.endswith(".txt"):
        return _read_csv(data, max_rows=max_rows)
    raise BulkFileError("unsupported_type")


def _read_csv(data: bytes, *, max_rows: int) -> list[list[str]]:
    if data.startswith(_BINARY_MAGIC) or b"\x00" in data[:4096]:
        raise BulkFileError("not_text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BulkFileError("encoding") from None
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
            text[:4096], delimiters=",;\t"
        )
    except csv.Error:
        dialect = csv.excel
    rows: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text, newline=""), dialect):
            if not any(cell.strip() for cell in row):
                continue
            rows.append(row)
            if len(rows) > max_rows + 1:
                raise BulkFileError("too_many_rows", max=max_rows)
    except csv.Error:
        raise BulkFileError("not_text") from None
    return rows


def _read_xlsx(data: bytes, *, max_rows: int) -> list[list[str]]:
    import openpyxl  # a few hundred ms to import: only when a workbook arrives

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError):
        raise BulkFileError("not_xlsx") from None
    except Exception:  # openpyxl raises its own errors for a damaged workbook
        raise BulkFileError("not_xlsx") from None
    try:
        sheet = book.worksheets[0] if book.worksheets else None
        if sheet is None:
            raise BulkFileError("empty")
        rows: list[list[str]] = []
        for values in sheet.iter_rows(values_only=True):
            row = [_cell_text(v) for v in values]
            if not any(cell.strip() for cell in row):
                continue
            rows.append(row)
            if len(rows) > max_rows + 1:
                raise BulkFileError("too_many_rows", max=max_rows)
        return rows
    finally:
        book.close()


def _column_key(header: str) -> str:
    key = "_".join(header.strip().lower().replace("-", " ").split())
    return _ALIASES.get(key, key)


def map_columns(header: list[str]) -> dict[str, int]:
    """Column name → index; ``BulkFileError("missing_columns")`` when a required one is
    missing."""
    positions: dict[str, int] = {}
    for index, title in enumerate(header):
        key = _column_key(title)
        if key in COLUMNS and key not in positions:
            positions[key] = index
    missing = [c for c in REQUIRED_COLUMNS if c not in positions]
    if missing:
        raise BulkFileError("missing_columns", columns=", ".join(missing))
    return positions


# -- validating rows ----------------------------------------------------------------------


def validate_row(
    values: dict[str, str], config: BulkConfig
) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """One row with the conversation's rules: (row, []) or (None, errors)."""
    errors: list[FieldError] = []
    for column, raw in values.items():
        if raw.strip().startswith("="):
            errors.append(FieldError(column, "formula"))
    if errors:
        return None, errors
    address: dict[str, Any] = {}
    for column in ADDRESS_COLUMNS:
        raw = values.get(column, "")
        try:
            value = addresses.validate_field(column, raw if raw.strip() else None)
        except FieldError as error:
            errors.append(error)
            continue
        if value is None and column not in addresses.SKIPPABLE_FIELDS:
            errors.append(FieldError(column, f"{column}_required"))
        address[column] = value
    parcel: dict[str, Any] = {}
    try:
        parcel["weight_oz"] = parse_weight(
            values.get("weight", ""), min_oz=config.min_weight_oz, max_oz=config.max_weight_oz
        )
    except FieldError as error:
        errors.append(error)
    sides = [values.get(c, "").strip() for c in ("length", "width", "height")]
    try:
        length, width, height = parse_dimensions(
            " x ".join(sides) if all(sides) else "", max_side=config.max_side_in
        )
        parcel.update(length_in=str(length), width_in=str(width), height_in=str(height))
    except FieldError as error:
        errors.append(error)
    reference = ""
    try:
        reference = scrub_text(values.get("reference", ""), "reference", REFERENCE_LIMIT)
        if len(reference) > REFERENCE_LIMIT:
            raise FieldError("reference", "too_long", limit=REFERENCE_LIMIT)
    except FieldError as error:
        errors.append(error)
    if errors:
        return None, errors
    service = values.get("service", "").strip().lower()
    row = {"to_address": address, "parcel": parcel, "service": service, "reference": reference}
    return row, []


def validate_table(rows: list[list[str]], config: BulkConfig) -> Validation:
    if not rows:
        raise BulkFileError("empty")
    positions = map_columns(rows[0])
    body = rows[1:]
    if not body:
        raise BulkFileError("no_rows")
    if len(body) > config.max_rows:
        raise BulkFileError("too_many_rows", max=config.max_rows)
    result = Validation(columns=[c for c in COLUMNS if c in positions])
    for number, row in enumerate(body, start=2):
        values = {
            column: (row[index] if index < len(row) else "")[:CELL_CAP + 1]
            for column, index in positions.items()
        }
        parsed, errors = validate_row(values, config)
        if parsed is None:
            result.errors.append(RowError(number, values, tuple(errors)))
        else:
            parsed["row"] = number
            result.rows.append(parsed)
    return result


def csv_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    """A CSV a spreadsheet opens safely: every cell guarded against formula injection."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([guard_cell(cell) for cell in row])
    return out.getvalue().encode("utf-8-sig")


# -- pacing -------------------------------------------------------------------------------


class Pacer:
    """At most ``rate`` calls a second across every caller (a GCRA: a late wake-up does
    not push later slots back). ``rate <= 0`` means no pacing."""

    def __init__(
        self,
        rate: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._monotonic = monotonic
        self._sleep = sleep
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if self._interval <= 0:
            return
        async with self._lock:
            now = self._monotonic()
            slot = max(self._next, now)
            self._next = slot + self._interval
            delay = slot - now
        if delay > 0:
            await self._sleep(delay)


# -- the service --------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    job: Document
    quoted: int
    failed: list[tuple[int, str]]  # (row, reason)


class ConfirmationStatus(StrEnum):
    """Paying a bulk quote (``BulkService.confirm``)."""

    CONFIRMED = "confirmed"
    INSUFFICIENT = "insufficient"
    CHANGED = "changed"
    NOT_FOUND = "not_found"
    ALREADY = "already"


@dataclass(frozen=True)
class Confirmation:
    status: ConfirmationStatus
    job: Document | None = None
    balance_cents: int = 0


ProgressCallback = Callable[[Document, int, int], Awaitable[None]]


@dataclass(frozen=True)
class BulkFile:
    """One delivery file: ``file_format`` pdf (merged), zpl (concatenated) or png (a ZIP);
    ``count`` labels (PDF pages for a PDF)."""

    data: bytes
    file_format: str
    count: int

    @property
    def extension(self) -> str:
        return "zip" if self.file_format == "png" else self.file_format


class BulkService:
    def __init__(
        self,
        jobs: BulkJobsRepo,
        orders: OrdersRepo,
        order_service: OrderService,
        purchase: PurchaseService,
        balance_of: Callable[[int], Awaitable[int]],
        config: BulkConfig,
        *,
        audit: AuditService,
        clock: Clock = utc_now,
        pacer: Pacer | None = None,
    ) -> None:
        self._jobs = jobs
        self._audit = audit
        self._orders = orders
        self._order_service = order_service
        self._purchase = purchase
        self._balance_of = balance_of
        self._config = config
        self._clock = clock
        self.pacer = pacer or Pacer(config.carrier_rate_per_second)

    @property
    def config(self) -> BulkConfig:
        return self._config

    async def get(self, user_id: int | None, job_id: str | ObjectId) -> Document | None:
        oid = job_id if isinstance(job_id, ObjectId) else parse_id(job_id)
        job = await self._jobs.get(oid) if oid else None
        if job is None or (user_id is not None and job["user_id"] != user_id):
            return None
        return job

    # -- 1-2. upload and validation ------------------------------------------------------

    async def create_job(
        self, user_id: int, chat_id: int, filename: str, data: bytes
    ) -> tuple[Document, Validation]:
        """Parses and validates the file; ``BulkFileError`` when it cannot be read."""
        if len(data) > self._config.max_bytes:
            raise BulkFileError("too_large", max_kb=self._config.max_bytes // 1024)
        table = read_table(data, filename, max_rows=self._config.max_rows)
        validation = validate_table(table, self._config)
        now = self._clock()
        job: Document = {
            "_id": ObjectId(),
            "user_id": user_id,
            "chat_id": chat_id,
            "status": "validated",
            "filename": filename[:100],
            "rows": validation.rows,
            "row_count": len(validation.rows) + len(validation.errors),
            "valid_count": len(validation.rows),
            "error_count": len(validation.errors),
            "created_at": now,
            "updated_at": now,
        }
        await self._jobs.insert(job)
        return job, validation

    # -- 3. quote -------------------------------------------------------------------------

    async def start_quote(
        self, user_id: int, job_id: str, sender: dict[str, Any]
    ) -> Document | None:
        """The sender button: ``validated`` → ``quoting`` (once); the job quotes the rows."""
        job = await self.get(user_id, job_id)
        if job is None or not job.get("valid_count"):
            return None
        return await self._jobs.transition(
            job["_id"],
            from_status="validated",
            to_status="quoting",
            now=self._clock(),
            fields={"sender": sender},
        )

    async def quote(self, job: Document) -> Quote | None:
        """Quotes every row of a ``quoting`` job not quoted yet; resumable: a restart
        quotes only what is left. The rows' orders are created once (a crash while they
        were being inserted leaves drafts nobody has seen: they are replaced)."""
        job_id = job["_id"]
        if not job.get("rows_created_at"):
            now = self._clock()
            await self._orders.delete_bulk_drafts(job_id)
            await self._create_rows(job, dict(job["sender"]), now)
            await self._jobs.set_fields(job_id, {"rows_created_at": now})
        rows = [
            row
            for row in await self._orders.bulk_rows(job_id, status="draft")
            if not row.get("offer_id")
        ]
        pending = iter(rows)

        async def worker() -> None:
            # ``quote_concurrency`` workers share the rows: that many requests in flight.
            for row in pending:
                if not self._order_service.config.validate_addresses:
                    await self.pacer.wait()  # (else ``_quote_row`` paces each of its calls)
                reason = await self._quote_row(row)
                if reason:
                    await self._orders.set_fields(row["_id"], {"bulk_quote_error": reason})

        workers = max(1, min(self._config.quote_concurrency, len(rows)))
        await asyncio.gather(*(worker() for _ in range(workers)))
        return await self._summarise(job_id)

    async def _create_rows(self, job: Document, sender: dict[str, Any], now: datetime) -> None:
        docs = [
            {
                "_id": ObjectId(),
                "user_id": job["user_id"],
                "status": "draft",
                "bulk_job_id": job["_id"],
                "bulk_row": int(row["row"]),
                "bulk_service": row.get("service") or "",
                "bulk_reference": row.get("reference") or "",
                "from_address": sender,
                "to_address": row["to_address"],
                "parcel": row["parcel"],
                "created_at": now,
                "updated_at": now,
                "expires_at": now + self._config.row_ttl,
            }
            for row in job.get("rows") or []
        ]
        await self._orders.insert_bulk_rows(docs)

    async def _quote_row(self, row: Document) -> str:
        """Checks the recipient with the carrier (where address validation is enabled, as
        the conversation does), quotes the row and chooses its rate; the reason when it
        could not be. The carrier's corrected form of an address (a ZIP+4, an abbreviated
        suffix, a fixed street) is taken, as "Use this" would, and counted in the quote; an
        address the carrier cannot confirm is not quoted, so never bought (the customer
        fixes the row). A check that is unavailable lets the row go on, as in the
        conversation."""
        services = self._order_service
        if services.config.validate_addresses:
            try:
                if validation_of(row, "to") is None:
                    await self.pacer.wait()  # the check is a carrier call of its own
                row, check = await services.check_address(row, "to")
            except LookupError:
                return "gone"
            if check is not None and check.status == CORRECTED:
                await self._orders.set_fields(row["_id"], {"bulk_address_corrected": True})
                used = await services.decide_address(row, "to", check.token, "use")
                if used is None:
                    return "gone"
                row = used
            elif check is not None and check.needs_choice:
                return "address_unverified"
            await self.pacer.wait()
        try:
            quoted = await services.fetch_rates(row)
        except RatesUnavailable as exc:
            invalid = exc.reason is QuoteRefusal.INVALID_ADDRESS
            return "invalid_address" if invalid else "no_rates"
        except (ProviderError, CarrierUnavailable):
            return "carrier_unavailable"
        except LookupError:
            return "gone"
        rates = quoted.get("rates") or []
        wanted = str(row.get("bulk_service") or "")
        index = 0  # cheapest: fetch_rates sorts by price
        if wanted:
            matches = [
                i
                for i, rate in enumerate(rates)
                if wanted in (str(rate.get("service_code", "")).lower(),
                              str(rate.get("service", "")).lower())
            ]
            if not matches:
                return "service_unavailable"
            index = matches[0]
        await self._order_service.choose_rate(quoted, index)
        return ""

    async def _summarise(self, job_id: ObjectId) -> Quote | None:
        rows = await self._orders.bulk_rows(job_id, status="draft")
        quoted = [row for row in rows if row.get("offer_id")]
        failed = [
            (int(row["bulk_row"]), str(row.get("bulk_quote_error") or "no_rates"))
            for row in rows
            if not row.get("offer_id")
        ]
        total = sum(int(row["price_cents"]) for row in quoted)
        breakdown: dict[str, dict[str, int]] = {}
        for row in quoted:
            rate = row.get("rate") or {}
            name = str(rate.get("service") or rate.get("service_code") or "?")
            entry = breakdown.setdefault(name, {"count": 0, "cents": 0})
            entry["count"] += 1
            entry["cents"] += int(row["price_cents"])
        job = await self._jobs.transition(
            job_id,
            from_status="quoting",
            to_status="quoted",
            now=self._clock(),
            fields={
                "total_cents": total,
                "quoted_count": len(quoted),
                "breakdown": [
                    {"service": name, **values} for name, values in sorted(breakdown.items())
                ],
                "quote_failures": [{"row": r, "reason": reason} for r, reason in sorted(failed)],
                "quote_notice_pending": True,
                "corrected_count": sum(1 for r in quoted if r.get("bulk_address_corrected")),
            },
        )
        if job is None:
            return None  # summarised by another run
        return Quote(job, len(quoted), sorted(failed))

    # -- 4. pay and buy -------------------------------------------------------------------

    async def confirm(self, user_id: int, job_id: str, total_cents: int) -> Confirmation:
        """The Pay press: ``quoted`` → ``running`` at exactly the total the button showed."""
        job = await self.get(user_id, job_id)
        if job is None:
            return Confirmation(ConfirmationStatus.NOT_FOUND)
        if job["status"] != "quoted":
            return Confirmation(ConfirmationStatus.ALREADY, job)
        if int(job.get("total_cents", -1)) != total_cents or not job.get("quoted_count"):
            return Confirmation(ConfirmationStatus.CHANGED, job)
        balance = await self._balance_of(user_id)
        if balance < total_cents:
            return Confirmation(ConfirmationStatus.INSUFFICIENT, job, balance_cents=balance)
        running = await self._jobs.transition(
            job["_id"],
            from_status="quoted",
            to_status="running",
            now=self._clock(),
            fields={"confirmed_at": self._clock(), "confirmed_cents": total_cents},
            extra_filter={"total_cents": total_cents},
        )
        if running is None:
            return Confirmation(ConfirmationStatus.ALREADY, await self._jobs.get(job["_id"]))
        return Confirmation(ConfirmationStatus.CONFIRMED, running, balance_cents=balance)

    async def quote_of(self, job: Document) -> Quote:
        failures = [(int(f["row"]), str(f["reason"])) for f in job.get("quote_failures") or []]
        return Quote(job, int(job.get("quoted_count") or 0), failures)

    async def quote_notified(self, job_id: ObjectId) -> None:
        await self._jobs.set_fields(job_id, {"quote_notice_pending": False})

    async def expire_unpaid(self, *, limit: int = 20) -> int:
        """Jobs validated or quoted but not paid within ``row_ttl``: ``expired``, their rows
        abandoned (a later Pay press is refused as stale)."""
        now = self._clock()
        expired = 0
        for job in await self._jobs.stale(
            statuses=("validated", "quoted"), before=now - self._config.row_ttl, limit=limit
        ):
            done = await self._jobs.transition(
                job["_id"], from_status=("validated", "quoted"), to_status="expired", now=now
            )
            if done is not None:
                await self._orders.abandon_bulk_rows(job["_id"], now=now, reason="expired")
                expired += 1
        return expired

    async def set_progress_message(self, job_id: ObjectId, message_id: int) -> None:
        await self._jobs.set_fields(job_id, {"progress_message_id": message_id})

    async def active(self) -> list[Document]:
        return await self._jobs.active()

    async def run(
        self,
        job: Document,
        on_progress: ProgressCallback,
        *,
        stopping: Callable[[], bool] = lambda: False,
    ) -> Document | None:
        """Buys the job's draft rows one by one; ``running`` → ``delivering`` when no row
        is left to buy or to resolve. Returns the job when it is ready to deliver.
        ``stopping`` (the application stops, the lease is lost) pauses after the current
        row; the next run resumes."""
        job_id = job["_id"]
        if job["status"] == "running":
            stop = await self._buy_rows(job, on_progress, stopping)
            if stop == "paused":
                return None
            now = self._clock()
            if stop:
                await self._jobs.set_fields(job_id, {"stop_reason": stop})
            # Rows never quoted (listed with the quote), or left by a stop, are not bought.
            await self._orders.abandon_bulk_rows(job_id, now=now, reason=stop or "not_quoted")
            rows = await self._orders.bulk_rows(job_id)
            if any(row["status"] in ("draft", "purchasing") for row in rows):
                return None  # purchase recovery resolves a row left purchasing; wait for it
            counts = _count(rows)
            await self._jobs.transition(
                job_id,
                from_status="running",
                to_status="delivering",
                now=now,
                fields={"bought_count": counts.get("purchased", 0)},
            )
        current = await self._jobs.get(job_id)
        return current if current is not None and current["status"] == "delivering" else None

    async def _buy_rows(
        self, job: Document, on_progress: ProgressCallback, stopping: Callable[[], bool]
    ) -> str:
        rows = await self._orders.bulk_rows(job["_id"])
        total = int(job.get("quoted_count") or 0)
        bought = sum(1 for row in rows if row["status"] in ("purchased", "refunded"))
        for row in rows:
            if row["status"] != "draft":
                continue
            if not row.get("offer_id"):
                continue  # not quoted (listed in the quote); abandoned when the job ends
            if stopping():
                return "paused"
            current = await self._jobs.get(job["_id"])
            if current is None or current.get("cancel_requested_by") is not None:
                return "cancelled"
            row, changed = await self._fresh(row)
            if changed:
                await self._orders.set_fields(row["_id"], {"bulk_error": "price_changed"})
                await self._orders.transition(
                    row["_id"], from_status="draft", to_status="abandoned", now=self._clock()
                )
                continue
            await self.pacer.wait()
            result = await self._purchase.purchase(
                int(row["user_id"]),
                row["_id"],
                offer_id=str(row["offer_id"]),
                price_cents=int(row["price_cents"]),
            )
            if result.status == PurchaseStatus.INSUFFICIENT:
                return "insufficient"
            if result.status == PurchaseStatus.PENDING:
                continue  # recovery resolves it; the job waits
            bought += int(result.status == PurchaseStatus.PURCHASED)
            await on_progress(job, bought, total)
        return ""

    async def _fresh(self, row: Document) -> tuple[Document, bool]:
        """A quote older than ``rates_max_age`` is refreshed; True when its price changed
        (the row is then skipped: never charged more, or differently, than confirmed)."""
        if not self._order_service.rates_stale(row):
            return row, False
        before = int(row["price_cents"])
        try:
            fresh, changed = await self._order_service.refresh_chosen_rate(row)
        except (ProviderError, CarrierUnavailable, RatesUnavailable, LookupError):
            return row, True
        return fresh, changed or int(fresh.get("price_cents") or -1) != before

    async def request_cancel(self, job_id: str, *, by: int) -> Document | None:
        """An admin stops a running job after the row being bought; audited once per job
        (``bulk-cancel:<job>``). None when the job is not running or already cancelling."""
        oid = parse_id(job_id)
        if oid is None:
            return None
        job = await self._jobs.request_cancel(oid, by=by, now=self._clock())
        if job is not None:
            await self._audit.record(
                by,
                "bulk.cancel",
                str(job["_id"]),
                before={"status": "running"},
                after={"cancel_requested_by": by},
                key=f"bulk-cancel:{job['_id']}",
            )
        return job

    # -- 5. delivery ----------------------------------------------------------------------

    async def rows(self, job_id: ObjectId) -> list[Document]:
        return await self._orders.bulk_rows(job_id)

    async def label_files(
        self, rows: list[Document], *, part_bytes: int = PDF_PART_BYTES
    ) -> list[BulkFile]:
        """Every bought label of the job, one file per file format it was bought in (a
        customer who changed ``/format`` during the job gets one of each): PDF merged, ZPL
        concatenated, PNG zipped; each split in parts of at most about ``part_bytes``."""
        bought = [row for row in rows if row["status"] == "purchased"]
        files: list[BulkFile] = []
        for fmt in ("pdf", "zpl", "png"):
            mine = [row for row in bought if label_file_format(row) == fmt]
            if not mine:
                continue
            if fmt == "pdf":
                files += [
                    BulkFile(data, "pdf", count)
                    for data, count in await self.merged_pdfs(mine, part_bytes=part_bytes)
                ]
            elif fmt == "zpl":
                files += await self._zpl_files(mine, part_bytes)
            else:
                files += await self._png_zips(mine, part_bytes)
        return files

    async def _zpl_files(self, rows: list[Document], part_bytes: int) -> list[BulkFile]:
        """The rows' ZPL labels one after the other (each ``^XA…^XZ``, newline-separated)."""
        files: list[BulkFile] = []
        chunks: list[bytes] = []
        size = 0
        for row in rows:
            data = (await self._purchase.label_file(row)).data.strip() + b"\n"
            if chunks and size + len(data) > part_bytes:
                files.append(BulkFile(b"".join(chunks), "zpl", len(chunks)))
                chunks, size = [], 0
            chunks.append(data)
            size += len(data)
        if chunks:
            files.append(BulkFile(b"".join(chunks), "zpl", len(chunks)))
        return files

    async def _png_zips(self, rows: list[Document], part_bytes: int) -> list[BulkFile]:
        """The rows' PNG labels in a ZIP, named ``<row>-<tracking>.png`` in row order."""
        files: list[BulkFile] = []
        out = io.BytesIO()
        archive = zipfile.ZipFile(out, "w", zipfile.ZIP_STORED)
        count = size = 0

        def close() -> None:
            archive.close()
            files.append(BulkFile(out.getvalue(), "png", count))

        for row in rows:
            data = (await self._purchase.label_file(row)).data
            if count and size + len(data) > part_bytes:
                close()
                out = io.BytesIO()
                archive = zipfile.ZipFile(out, "w", zipfile.ZIP_STORED)
                count = size = 0
            name = f"{int(row.get('bulk_row') or 0):04d}-{row.get('tracking_number') or 'label'}"
            archive.writestr(f"{name}.png", data)  # PNG is compressed already
            count += 1
            size += len(data)
        if count:
            close()
        return files

    async def merged_pdfs(
        self, rows: list[Document], *, part_bytes: int = PDF_PART_BYTES
    ) -> list[tuple[bytes, int]]:
        """Every bought PDF label of the job merged in row order: one PDF, or several when
        the labels add up to more than ``part_bytes`` (Telegram uploads at most 50 MB); a
        list of (pdf, pages)."""
        from pypdf import PdfReader, PdfWriter

        parts: list[tuple[bytes, int]] = []
        writer, size = PdfWriter(), 0

        def close() -> None:
            out = io.BytesIO()
            writer.write(out)
            parts.append((out.getvalue(), len(writer.pages)))

        for row in rows:
            if row["status"] != "purchased" or label_file_format(row) != "pdf":
                continue
            data = await self._purchase.label_pdf(row)
            if size and size + len(data) > part_bytes:
                close()
                writer, size = PdfWriter(), 0
            for page in PdfReader(io.BytesIO(data)).pages:
                writer.add_page(page)
            size += len(data)
        if len(writer.pages):
            close()
        return parts

    async def claim_delivery(self, job_id: ObjectId) -> Document | None:
        """Claims the sending of a ``delivering`` job's files, once: two workers (a leader
        that lost its lease mid-delivery and the one that took over) never both send
        them. A claim older than ``DELIVERY_CLAIM`` (its worker died before ``finish``) may
        be taken again, so a crash delays the files but never loses them."""
        now = self._clock()
        return await self._jobs.transition(
            job_id,
            from_status="delivering",
            to_status="delivering",
            now=now,
            fields={"delivery_claimed_at": now},
            extra_filter={
                "$or": [
                    {"delivery_claimed_at": {"$exists": False}},
                    {"delivery_claimed_at": {"$lt": now - DELIVERY_CLAIM}},
                ]
            },
        )

    async def finish(self, job_id: ObjectId, *, pages: int) -> Document | None:
        now = self._clock()
        await self._orders.mark_bulk_delivered(job_id, now=now)
        return await self._jobs.transition(
            job_id, from_status="delivering", to_status="done", now=now,
            fields={"done_at": now, "pdf_pages": pages},
        )

    def now(self) -> datetime:
        return self._clock()

    async def for_user(self, user_id: int, *, limit: int = 5) -> list[Document]:
        return await self._jobs.for_user(user_id, limit=limit)

    async def counts(self, *, since: datetime | None = None) -> dict[str, int]:
        return await self._jobs.count_by_status(since=since)


def _count(rows: list[Document]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def results_rows(rows: list[Document], money: Callable[[int], str]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for row in rows:
        rate = row.get("rate") or {}
        status = str(row["status"])
        if status == "abandoned":
            status = str(row.get("bulk_error") or "not_bought")
        elif status == "failed":
            status = f"failed:{row.get('failure_reason') or 'error'}"
        out.append(
            [
                row.get("bulk_row"),
                row.get("bulk_reference") or "",
                (row.get("to_address") or {}).get("name", ""),
                row.get("tracking_number") or "",
                rate.get("service") or "",
                money(int(row["price_cents"])) if row.get("status") == "purchased" else "",
                status,
            ]
        )
    return out
