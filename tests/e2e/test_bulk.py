"""Bulk labels end to end: a spreadsheet in, a report, a quote, one payment, every label."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr
from pypdf import PdfReader

from bot.harness import BotHarness
from bot.lease import holds_lease
from bot.settings import Secrets
from sandbox.shipstation import FakeShipStation
from sandbox.telegram import SentMessage
from storage.client import Mongo
from tests.conftest import OWNER_ID, FakeClock, make_settings

USER = 7101
HEADER = (
    "name,street1,street2,city,state,postal_code,phone,weight,length,width,height,service,"
    "reference"
)
SENDER = {
    "name": "Jane Doe",
    "street1": "500 W 5th Ave",
    "street2": None,
    "city": "New York",
    "state": "NY",
    "postal_code": "10001",
    "phone": "+12125550123",
}


def good_row(n: int) -> str:
    return f"Customer {n},{100 + n} Main St,,Springfield,IL,62704,,2.5,10,8,4,,order-{n}"


BAD_ROWS = [
    "Bad Zip,1 Main St,,Springfield,IL,ABCDE,,2,10,8,4,,bad-1",
    "No Weight,1 Main St,,Springfield,IL,62704,,,10,8,4,,bad-2",
    "=HYPERLINK(\"http://x\"),1 Main St,,Springfield,IL,62704,,2,10,8,4,,bad-3",
    "Bad State,1 Main St,,Springfield,ZZ,62704,,2,10,8,4,,bad-4",
    "Too Heavy,1 Main St,,Springfield,IL,62704,,500,10,8,4,,bad-5",
    ",1 Main St,,Springfield,IL,62704,,2,10,8,4,,bad-6",
    "No Street,,,Springfield,IL,62704,,2,10,8,4,,bad-7",
    "Huge Box,1 Main St,,Springfield,IL,62704,,2,200,8,4,,bad-8",
    "Bad Size,1 Main St,,Springfield,IL,62704,,2,ten,8,4,,bad-9",
    "Bad Phone,1 Main St,,Springfield,IL,62704,12,2,10,8,4,,bad-10",
]


def sheet(good: int, bad: list[str]) -> bytes:
    lines = [HEADER]
    bad_every = max(1, (good + len(bad)) // max(1, len(bad)))
    queue = list(bad)
    n = 0
    while n < good or queue:
        if queue and (len(lines) % bad_every == 0 or n >= good):
            lines.append(queue.pop(0))
        else:
            n += 1
            lines.append(good_row(n))
    return ("\n".join(lines) + "\n").encode()


@dataclass
class BulkEnv:
    harness: BotHarness
    carrier: FakeShipStation
    mongo: Mongo
    clock: FakeClock

    @property
    def storage(self):  # type: ignore[no-untyped-def]
        return self.harness.application.bot_data.require_storage()

    async def fund(self, cents: int) -> None:
        await self.storage.ledger.apply(
            user_id=USER, amount_cents=cents, kind="topup", key=f"seed:{cents}", now=self.clock()
        )

    async def balance(self) -> int:
        user = await self.mongo.db["users"].find_one({"_id": USER})
        return int(user["balance_cents"]) if user else 0

    async def run_job(self) -> None:
        app = self.harness.application
        assert app.job_queue is not None
        [job] = app.job_queue.get_jobs_by_name("bulk:purchase")
        await job.run(app)


@pytest.fixture
async def env(mongo: Mongo, clock: FakeClock) -> AsyncIterator[BulkEnv]:
    async for result in _env(mongo, clock, validate_addresses=False):
        yield result


@pytest.fixture
async def validating_env(mongo: Mongo, clock: FakeClock) -> AsyncIterator[BulkEnv]:
    async for result in _env(mongo, clock, validate_addresses=True):
        yield result


async def _env(
    mongo: Mongo, clock: FakeClock, *, validate_addresses: bool
) -> AsyncIterator[BulkEnv]:
    carrier = FakeShipStation(instant=True)
    await carrier.start()
    base = make_settings()
    shipping = base.shipping.model_copy(
        update={
            "base_url": carrier.base_url,
            "purchase_timeout_seconds": 10,
            "recovery_after_seconds": 30,
            "validate_addresses": validate_addresses,
        }
    )
    bulk = base.bulk.model_copy(update={"carrier_rate_per_second": 0, "quote_concurrency": 8})
    secrets = Secrets.model_construct(
        telegram_bot_token=None,
        mongo_url=None,
        shipstation_test_api_key=SecretStr("TEST_sandbox_key"),
    )
    harness = BotHarness(
        make_settings(
            shipping=shipping,
            bulk=bulk,
            secrets=secrets,
            # A killed worker never releases its poller lease: keep it short.
            poller=base.poller.model_copy(update={"lease_seconds": 0.9, "renew_seconds": 0.3}),
        ),
        mongo=mongo,
        clock=clock,
        rate_limits=False,
    )
    await harness.start()
    harness.add_user(USER, first_name="Reseller")
    harness.add_user(OWNER_ID)
    await harness.say(USER, "/start")
    result = BulkEnv(harness, carrier, mongo, clock)
    await result.storage.templates.create(USER, "Warehouse", SENDER, now=clock())
    try:
        yield result
    finally:
        await harness.close()
        await carrier.stop()


def _document(messages: list[SentMessage], name_part: str) -> SentMessage:
    [doc] = [m for m in messages if m.document and name_part in (m.document.filename or "")]
    return doc


async def _upload_and_quote(env: BulkEnv, data: bytes) -> tuple[list[SentMessage], SentMessage]:
    h = env.harness
    replies = await h.send_document(USER, data, "parcels.csv")
    report = next(m for m in replies if "Validation report" in m.content)
    mark = h.emulator.cursor(USER)
    pressed = await h.press(USER, report, "Sender: Warehouse")
    assert any("Getting rates" in m.content for m in pressed)
    await env.run_job()  # quotes in the background (or the scheduled run did)
    [quote] = [m for m in h.emulator.sent_messages(USER, since=mark) if "Quote" in m.content]
    return replies, quote


async def test_a_200_row_file_with_10_bad_rows_becomes_190_labels(env: BulkEnv) -> None:
    h = env.harness
    replies, quote = await _upload_and_quote(env, sheet(190, BAD_ROWS))
    report = next(m for m in replies if "Validation report" in m.content)
    assert "190 rows ok" in report.content and "10 rows with errors" in report.content
    errors = _document(replies, "bulk-errors")
    assert errors.document is not None
    table = list(csv.reader(io.StringIO(errors.document.data.decode("utf-8-sig"))))
    assert len(table) == 11 and table[0][-1] == "errors"
    by_reference = {row[-2].lstrip("'"): row[-1] for row in table[1:]}
    assert set(by_reference) == {f"bad-{n}" for n in range(1, 11)}
    assert "formula" in by_reference["bad-3"]
    name_cell = next(row[1] for row in table[1:] if row[-2] == "bad-3")
    assert name_cell.startswith("'=")  # the formula is neutralised in our CSV

    assert "190 labels" in quote.content
    total = int(quote.callback_data_for("Pay").rsplit(":", 1)[1])
    assert "Top up" in " ".join(label for label, _ in quote.buttons)
    await env.fund(total + 500)

    pay = quote.callback_data_for("Pay")
    [progress] = [m for m in await h.press(USER, quote, data=pay) if "Buying labels" in m.content]
    assert h.emulator.message(USER, quote.message_id).buttons == []  # one press, one job
    mark = h.emulator.cursor(USER)
    await env.run_job()
    out = h.emulator.sent_messages(USER, since=mark)
    pdf = _document(out, "labels-")
    assert pdf.document is not None
    assert len(PdfReader(io.BytesIO(pdf.document.data)).pages) == 190
    results = _document(out, "results-")
    assert results.document is not None
    rows = list(csv.DictReader(io.StringIO(results.document.data.decode("utf-8-sig"))))
    assert len(rows) == 190
    assert all(r["status"] == "purchased" and r["tracking_number"] for r in rows)
    assert len({r["tracking_number"] for r in rows}) == 190
    assert any("Done: 190 labels bought" in m.content for m in out)
    assert "190 / 190" in h.emulator.message(USER, progress.message_id).content

    assert await env.balance() == 500
    debits = await env.mongo.db["ledger"].count_documents({"user_id": USER, "kind": "label"})
    assert debits == 190
    assert len(env.carrier.labels) == 190
    _, mismatches = await env.storage.ledger.audit()
    assert mismatches == []
    # Each label is in My labels (bulk rows are orders) and was not sent one by one.
    bought = await env.mongo.db["orders"].count_documents({"user_id": USER, "status": "purchased"})
    assert bought == 190
    labels_pdfs = [m for m in out if m.document and m.document.filename.startswith("label-")]
    assert labels_pdfs == []
    # A second run buys nothing more; the job is done.
    await env.run_job()
    assert len(env.carrier.labels) == 190
    assert await env.balance() == 500


async def _wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.001)


async def _paid_job(env: BulkEnv, good: int, *, fund_extra: int = 0) -> tuple[int, SentMessage]:
    _, quote = await _upload_and_quote(env, sheet(good, []))
    total = int(quote.callback_data_for("Pay").rsplit(":", 1)[1])
    await env.fund(total + fund_extra)
    replies = await env.harness.press(USER, quote, data=quote.callback_data_for("Pay"))
    [progress] = [m for m in replies if "Buying labels" in m.content]
    return total, progress


# A killed worker leaves coroutines that never ran (the kill came first): expected here.
@pytest.mark.filterwarnings(
    "ignore:coroutine '(Application|Job).*' was never awaited:RuntimeWarning"
)
async def test_kills_during_the_purchase_buy_no_row_twice(env: BulkEnv) -> None:
    """The worker is killed three times while it buys (wherever its task stands, often
    between two writes of one row); each new worker resumes. No row is bought or debited
    twice, every row ends bought or failed-and-refunded, and the ledger adds up."""
    h = env.harness
    rows = 60
    total, _ = await _paid_job(env, rows)
    for bought_before_kill in (7, 23, 41):
        app = h.application
        [job] = app.job_queue.get_jobs_by_name("bulk:purchase")  # type: ignore[union-attr]
        app.create_task(job.run(app))
        await _wait_for(lambda n=bought_before_kill: len(env.carrier.labels) >= n)
        await h.crash()
        await h.start()
        await _wait_for(lambda: holds_lease(h.application.bot_data))
    env.clock.advance(seconds=60)  # past shipping.recovery_after_seconds
    app = h.application
    [recover] = app.job_queue.get_jobs_by_name("orders:recover")  # type: ignore[union-attr]
    await recover.run(app)
    await env.run_job()
    await recover.run(app)  # a row the last run left purchasing, if any
    await env.run_job()

    orders = [doc async for doc in env.mongo.db["orders"].find({"bulk_job_id": {"$ne": None}})]
    statuses = [o["status"] for o in orders]
    assert len(orders) == rows and set(statuses) <= {"purchased", "failed"}
    bought = [o for o in orders if o["status"] == "purchased"]
    assert len(env.carrier.labels) == len(bought)  # no label bought twice, none orphaned
    assert {o["label_id"] for o in bought} == set(env.carrier.labels)
    ledger = [e async for e in env.mongo.db["ledger"].find({"user_id": USER})]
    debits = [e for e in ledger if e["kind"] == "label"]
    refunds = [e for e in ledger if e["kind"] == "compensation"]
    assert len(debits) - len(refunds) == len(bought)
    assert await env.balance() == total - sum(int(o["price_cents"]) for o in bought)
    _, mismatches = await env.storage.ledger.audit()
    assert mismatches == []
    out = h.emulator.sent_messages(USER)  # (the scheduled run may have delivered it)
    pdf = _document(out, "labels-")
    assert pdf.document is not None
    assert len(PdfReader(io.BytesIO(pdf.document.data)).pages) == len(bought)


async def test_a_short_balance_stops_the_job_with_a_clear_message(env: BulkEnv) -> None:
    h = env.harness
    total, _ = await _paid_job(env, 6)
    price = total // 6
    # The customer spends most of the balance elsewhere after confirming.
    await env.storage.ledger.apply(
        user_id=USER,
        amount_cents=-(total - 2 * price),
        kind="adjustment",
        key="adjustment:spent",
        now=env.clock(),
    )
    mark = h.emulator.cursor(USER)
    await env.run_job()
    out = h.emulator.sent_messages(USER, since=mark)
    assert any("Done: 2 labels bought" in m.content and "balance ran out" in m.content
               for m in out)
    assert len(env.carrier.labels) == 2
    assert await env.balance() == 0
    statuses = sorted(
        [o["status"] async for o in env.mongo.db["orders"].find({"bulk_job_id": {"$ne": None}})]
    )
    assert statuses == ["abandoned"] * 4 + ["purchased"] * 2
    results = _document(out, "results-")
    assert results.document is not None
    table = list(csv.DictReader(io.StringIO(results.document.data.decode("utf-8-sig"))))
    assert sorted(r["status"] for r in table) == ["insufficient"] * 4 + ["purchased"] * 2


async def test_an_admin_cancels_a_running_job_after_the_current_row(env: BulkEnv) -> None:
    h = env.harness
    total, _ = await _paid_job(env, 5)
    job = await env.mongo.db["bulk_jobs"].find_one({"user_id": USER})
    assert job is not None
    [answer] = await h.say(OWNER_ID, f"/bulk_cancel {job['_id']}")
    assert "will stop after the row being bought" in answer.content
    [again] = await h.say(OWNER_ID, f"/bulk_cancel {job['_id']}")
    assert "not running" in again.content
    mark = h.emulator.cursor(USER)
    await env.run_job()
    out = h.emulator.sent_messages(USER, since=mark)
    assert any("cancelled" in m.content for m in out)
    assert len(env.carrier.labels) == 0
    assert await env.balance() == total  # nothing bought, nothing charged
    [stats] = await h.say(OWNER_ID, "/stats all")
    assert "Bulk jobs: 1" in stats.content
    replies = await h.say(OWNER_ID, f"/user {USER}")
    assert any(str(job["_id"]) in m.content for m in replies)


@pytest.mark.parametrize(
    ("data", "filename", "expected"),
    [
        (b"name,city\nJohn,Springfield\n", "a.csv", "Columns missing"),
        (f"{HEADER}\n{good_row(1)}\n".encode("utf-16"), "a.csv", "not a CSV text file"),
        (f"{HEADER}\nJosé,1 Main St,,Springfield,IL,62704,,2,1,1,1,,x\n".encode("cp1252"),
         "a.csv", "not in UTF-8"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "photo.csv", "not a CSV text file"),
        (b"not a zip at all", "sheet.xlsx", "cannot be opened"),
        (b"hello", "notes.docx", "send a .csv or .xlsx"),
        (f"{HEADER}\n".encode(), "a.csv", "no parcels"),
        ("\n".join([HEADER] + [good_row(n) for n in range(10_000)]).encode(), "big.csv",
         "at most"),
    ],
)
async def test_bad_files_get_a_clear_reply(
    env: BulkEnv, data: bytes, filename: str, expected: str
) -> None:
    replies = await env.harness.send_document(USER, data, filename)
    assert len(replies) == 1 and expected in replies[0].content
    assert await env.mongo.db["bulk_jobs"].count_documents({}) == 0


async def test_a_file_over_the_size_limit_is_refused_before_download(env: BulkEnv) -> None:
    data = b"x" * (env.harness.settings.bulk.max_file_bytes + 1)
    [answer] = await env.harness.send_document(USER, data, "big.csv")
    assert "too large" in answer.content


async def test_a_formula_in_a_cell_is_reported_not_evaluated(env: BulkEnv) -> None:
    line = good_row(1).replace(",2.5,", ",=1+1,")
    replies = await env.harness.send_document(USER, f"{HEADER}\n{line}\n".encode(), "a.csv")
    report = next(m for m in replies if "Validation report" in m.content)
    assert "0 rows ok" in report.content and "formulas are not accepted" in report.content


async def test_an_xlsx_workbook_is_read_like_a_csv(env: BulkEnv) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet_ = book.active
    sheet_.append(HEADER.split(","))
    for n in range(1, 4):
        sheet_.append([f"Customer {n}", f"{n} Main St", None, "Springfield", "IL", 62704, None,
                       2.5, 10, 8, 4, None, f"x-{n}"])
    sheet_.append(["Formula", "1 Main St", None, "Springfield", "IL", "62704", None,
                   "=2*2", 10, 8, 4, None, "x-4"])
    out = io.BytesIO()
    book.save(out)
    replies = await env.harness.send_document(USER, out.getvalue(), "parcels.xlsx")
    report = next(m for m in replies if "Validation report" in m.content)
    assert "3 rows ok" in report.content and "1 rows with errors" in report.content
    assert "formulas are not accepted" in report.content


async def test_bulk_explains_the_format_and_sends_a_template(env: BulkEnv) -> None:
    replies = await env.harness.say(USER, "/bulk")
    assert "Labels from a spreadsheet" in replies[0].content
    template = _document(replies, "bulk-template")
    assert template.document is not None
    # The template itself is a valid file.
    again = await env.harness.send_document(USER, template.document.data, "template.csv")
    assert "2 rows ok" in again[0].content


async def test_an_order_started_meanwhile_leaves_the_bulk_rows_alone(env: BulkEnv) -> None:
    """Bulk rows are drafts too: /order (which abandons the customer's old drafts) must
    neither abandon them nor take one as its own draft; their labels are not re-sent one
    by one by the delivery job."""
    h = env.harness
    _, quote = await _upload_and_quote(env, sheet(3, []))
    [ask] = await h.say(USER, "/order")
    assert "Step 1 of 6" in ask.content
    [again] = await h.say(USER, "Jane Doe")
    assert "Step 1 of 6" in again.content  # the conversation's own, empty draft
    rows = env.mongo.db["orders"].find({"bulk_job_id": {"$ne": None}})
    assert [o["status"] async for o in rows] == ["draft"] * 3
    total = int(quote.callback_data_for("Pay").rsplit(":", 1)[1])
    await env.fund(total)
    await h.press(USER, quote, data=quote.callback_data_for("Pay"))
    await env.run_job()
    assert len(env.carrier.labels) == 3
    env.clock.advance(minutes=5)
    mark = h.emulator.cursor(USER)
    app = h.application
    [deliver] = app.job_queue.get_jobs_by_name("orders:deliver-labels")  # type: ignore[union-attr]
    await deliver.run(app)
    assert h.emulator.sent_messages(USER, since=mark) == []


async def test_quoting_survives_the_carriers_429(env: BulkEnv) -> None:
    """A 429 with Retry-After while quoting: the client waits and retries; every row is
    quoted, each quote with its own shipment reference."""
    env.carrier.inject_failure("get_rates", "rate_limit", times=2, retry_after=0)
    _, quote = await _upload_and_quote(env, sheet(12, []))
    assert "12 labels" in quote.content
    rows = [o async for o in env.mongo.db["orders"].find({"bulk_job_id": {"$ne": None}})]
    assert all(o.get("offer_id") for o in rows)


async def test_pay_with_a_short_balance_starts_nothing(env: BulkEnv) -> None:
    h = env.harness
    _, quote = await _upload_and_quote(env, sheet(2, []))
    pay = quote.callback_data_for("Pay")
    replies = await h.press(USER, quote, data=pay)
    assert any("does not cover" in m.content for m in replies)
    job = await env.mongo.db["bulk_jobs"].find_one({"user_id": USER})
    assert job is not None and job["status"] == "quoted"
    await env.run_job()
    assert env.carrier.labels == {}
    total = int(pay.rsplit(":", 1)[1])
    await env.fund(total)
    replies = await h.press(USER, quote, data=pay)  # the same button, after a top-up
    assert any("Buying labels" in m.content for m in replies)
    await env.run_job()
    assert len(env.carrier.labels) == 2 and await env.balance() == 0


async def test_an_old_quote_is_refreshed_before_each_row_is_bought(env: BulkEnv) -> None:
    """Paid after ``rates_max_age``: each row gets a fresh quote (its own shipment
    reference) and is bought at the confirmed price, which did not change."""
    h = env.harness
    _, quote = await _upload_and_quote(env, sheet(3, []))
    pay = quote.callback_data_for("Pay")
    await env.fund(int(pay.rsplit(":", 1)[1]))
    env.clock.advance(minutes=20)
    await h.press(USER, quote, data=pay)
    await env.run_job()
    rows = [o async for o in env.mongo.db["orders"].find({"bulk_job_id": {"$ne": None}})]
    assert [o["status"] for o in rows] == ["purchased"] * 3
    assert all(o["quote_seq"] == 2 for o in rows)  # quoted twice
    assert await env.balance() == 0


async def test_an_unpaid_quote_expires_and_its_rows_are_abandoned(env: BulkEnv) -> None:
    h = env.harness
    _, quote = await _upload_and_quote(env, sheet(2, []))
    pay = quote.callback_data_for("Pay")
    await env.fund(int(pay.rsplit(":", 1)[1]))
    env.clock.advance(days=8)  # past bulk.row_ttl_days
    await env.run_job()
    rows = env.mongo.db["orders"].find({"bulk_job_id": {"$ne": None}})
    assert [o["status"] async for o in rows] == ["abandoned"] * 2
    assert await h.press(USER, quote, data=pay) == []
    assert "no longer valid" in (h.emulator.callback_answers[-1].text or "")
    await env.run_job()
    assert env.carrier.labels == {}


@pytest.mark.filterwarnings(
    "ignore:coroutine '(Application|Job).*' was never awaited:RuntimeWarning"
)
async def test_a_kill_while_quoting_resumes_the_quote_once(env: BulkEnv) -> None:
    h = env.harness
    replies = await h.send_document(USER, sheet(40, []), "parcels.csv")
    report = next(m for m in replies if "Validation report" in m.content)
    await h.press(USER, report, "Sender: Warehouse")
    app = h.application
    [job] = app.job_queue.get_jobs_by_name("bulk:purchase")  # type: ignore[union-attr]
    app.create_task(job.run(app))
    await _wait_for(lambda: 0 < len(env.carrier._shipments) < 40)
    await h.crash()
    await h.start()
    await _wait_for(lambda: holds_lease(h.application.bot_data))
    await env.run_job()
    await env.run_job()
    rows = [o async for o in env.mongo.db["orders"].find({"bulk_job_id": {"$ne": None}})]
    assert len(rows) == 40 and all(o.get("offer_id") for o in rows)
    assert sorted(o["bulk_row"] for o in rows) == list(range(2, 42))
    quotes = [m for m in h.emulator.sent_messages(USER) if "Quote" in m.content]
    assert len(quotes) == 1 and "40 labels" in quotes[0].content


async def test_recipients_are_checked_with_the_carrier_as_in_the_conversation(
    validating_env: BulkEnv,
) -> None:
    """Address validation is on: every recipient is checked once; the carrier's corrected
    form (the fake adds the ZIP+4) is used and counted; a row whose address the carrier
    cannot confirm is not quoted (so never bought) and is listed."""
    env = validating_env
    lines = [good_row(1), good_row(2).replace("102 Main St", "7 Unknown Rd"), good_row(3)]
    data = (HEADER + "\n" + "\n".join(lines) + "\n").encode()
    _, quote = await _upload_and_quote(env, data)
    assert "2 labels" in quote.content
    assert "1 rows could not be quoted" in quote.content
    assert "3 (the carrier cannot confirm this address)" in quote.content
    assert "2 addresses were completed or corrected by the carrier" in quote.content
    checks = [c for c in env.carrier.calls if c.operation == "validate_addresses"]
    assert len(checks) == 3
    cursor = env.mongo.db["orders"].find({"bulk_job_id": {"$ne": None}, "offer_id": {"$ne": None}})
    zips = [o["to_address"]["postal_code"] async for o in cursor]
    assert len(zips) == 2 and all(len(z) == 10 for z in zips)  # 62704-xxxx
    await env.fund(int(quote.callback_data_for("Pay").rsplit(":", 1)[1]))
    mark = env.harness.emulator.cursor(USER)
    await env.harness.press(USER, quote, data=quote.callback_data_for("Pay"))
    await env.run_job()
    assert len(env.carrier.labels) == 2
    out = env.harness.emulator.sent_messages(USER, since=mark)
    results = _document(out, "results-")
    assert results.document is not None
    table = list(csv.DictReader(io.StringIO(results.document.data.decode("utf-8-sig"))))
    assert [(r["row"], r["status"]) for r in table] == [
        ("2", "purchased"), ("3", "not_quoted"), ("4", "purchased")
    ]


async def test_a_bulk_customer_can_delete_their_data_once_the_job_is_done(
    env: BulkEnv,
) -> None:
    """Bulk labels count as delivered once the merged PDF reached the chat (else "Delete
    my data" would wait for them for ever); a running job blocks the deletion like a
    purchase in flight; the job's copy of the addresses goes with the deletion."""
    h = env.harness
    total, _ = await _paid_job(env, 3)
    [refused] = await h.say(USER, "/delete_my_data")
    assert "cannot be deleted right now" in refused.content and not refused.buttons
    await env.run_job()
    rows = env.mongo.db["orders"].find({"bulk_job_id": {"$ne": None}})
    assert all([o.get("label_delivered_at") is not None async for o in rows])
    [confirm] = await h.say(USER, "/delete_my_data")
    assert "orders (3)" in confirm.content
    await h.press(USER, confirm, "Yes, delete my data")
    job = await env.mongo.db["bulk_jobs"].find_one({"user_id": USER})
    assert job is not None and "rows" not in job and "sender" not in job
    assert job["status"] == "done" and job["bought_count"] == 3


@pytest.mark.parametrize("fmt", ["zpl", "png"])
async def test_zpl_and_png_customers_get_one_file_of_their_format(env: BulkEnv, fmt: str) -> None:
    """ZPL: one concatenated .zpl with one ^XA…^XZ block per label, in row order; PNG: one
    ZIP of the PNG labels. The results CSV is the same as for PDFs."""
    import zipfile

    h = env.harness
    [screen] = await h.say(USER, "/format")
    await h.press(USER, screen, "ZPL" if fmt == "zpl" else "PNG")
    _, quote = await _upload_and_quote(env, sheet(12, BAD_ROWS[:2]))
    total = int(quote.callback_data_for("Pay").rsplit(":", 1)[1])
    await env.fund(total)
    await h.press(USER, quote, data=quote.callback_data_for("Pay"))
    mark = h.emulator.cursor(USER)
    await env.run_job()
    out = h.emulator.sent_messages(USER, since=mark)
    labels = [m for m in out if m.document and m.document.filename.startswith("labels-")]
    assert len(labels) == 1
    doc = labels[0].document
    assert doc is not None
    rows = await env.mongo.db["orders"].find(
        {"user_id": USER, "status": "purchased"}
    ).sort("bulk_row", 1).to_list(None)
    assert len(rows) == 12 and {row["label_file_format"] for row in rows} == {fmt}
    assert all(env.carrier.labels[row["label_id"]].label_format == fmt for row in rows)
    if fmt == "zpl":
        assert doc.filename.endswith(".zpl") and doc.mime_type == "application/zpl"
        text = doc.data.decode("ascii")
        blocks = [b for b in text.split("^XZ") if b.strip()]
        assert len(blocks) == 12 and all(b.strip().startswith("^XA") for b in blocks)
        assert text.count("^XA") == text.count("^XZ") == 12
        # in row order: each block carries its row's tracking number
        for block, row in zip(blocks, rows, strict=True):
            assert str(row["tracking_number"]) in block
        assert "12 labels in one ZPL file" in (labels[0].caption or "")
    else:
        assert doc.filename.endswith(".zip") and doc.mime_type == "application/zip"
        with zipfile.ZipFile(io.BytesIO(doc.data)) as archive:
            names = archive.namelist()
            assert len(names) == 12
            assert all(archive.read(name).startswith(b"\x89PNG\r\n\x1a\n") for name in names)
        assert names == [f"{r['bulk_row']:04d}-{r['tracking_number']}.png" for r in rows]
    results = _document(out, "results-")
    assert results.document is not None
    table = list(csv.DictReader(io.StringIO(results.document.data.decode("utf-8-sig"))))
    assert len(table) == 12 and all(r["status"] == "purchased" for r in table)
    _, mismatches = await env.storage.ledger.audit()
    assert mismatches == []

async def test_the_default_sender_comes_first_and_is_the_jobs_sender(env: BulkEnv) -> None:
    """Issue #16 item 1: the sender is the default sender (offered first, marked), or a
    chosen template; pressing it quotes every row from that address."""
    h = env.harness
    office = {**SENDER, "name": "Fox Mulder", "city": "Washington", "state": "DC",
              "postal_code": "20001"}
    doc = await env.storage.templates.create(USER, "Office", office, now=env.clock())
    await env.storage.templates.set_default(USER, doc["_id"])
    replies = await h.send_document(USER, sheet(2, []), "parcels.csv")
    report = next(m for m in replies if "Validation report" in m.content)
    texts = [text for text, data in report.buttons if (data or "").startswith("bulk:quote:")]
    assert texts == ["⭐ Default sender: Office", "📦 Sender: Warehouse"]
    await h.press(USER, report, "Default sender: Office")
    await env.run_job()
    job = await env.mongo.db["bulk_jobs"].find_one({"user_id": USER})
    assert job is not None and job["sender"] == office
    rows = env.mongo.db["orders"].find({"bulk_job_id": job["_id"]})
    assert [o["from_address"] async for o in rows] == [office, office]


async def test_two_workers_delivering_one_job_send_its_files_once(env: BulkEnv) -> None:
    """A leader that lost its lease while delivering and the worker that took over both
    see the job ``delivering``: only the one that claims the delivery sends the files (the
    database suspends inside every call, so both run up to their first write); a claim
    left by a worker that died is taken again after ``DELIVERY_CLAIM``."""
    from jobs.bulk import _deliver
    from services.bulk import DELIVERY_CLAIM

    h = env.harness
    await _paid_job(env, 3)
    app = h.application
    services = app.bot_data.require_services()
    [job] = await env.mongo.db["bulk_jobs"].find({"user_id": USER}).to_list(None)

    async def no_progress(*_: object) -> None:
        return None

    ready = await services.bulk.run(job, no_progress)
    assert ready is not None and ready["status"] == "delivering"
    context = _context(app)
    mark = h.emulator.cursor(USER)
    await asyncio.gather(_deliver(context, ready), _deliver(context, ready))
    sent = h.emulator.sent_messages(USER, since=mark)
    assert len([m for m in sent if m.document and m.document.filename.startswith("labels-")]) == 1
    assert len([m for m in sent if m.document and m.document.filename.startswith("results-")]) == 1
    done = await env.mongo.db["bulk_jobs"].find_one({"_id": job["_id"]})
    assert done is not None and done["status"] == "done"
    # A worker died after claiming: the job waits, then the next one delivers it.
    await env.mongo.db["bulk_jobs"].update_one(
        {"_id": job["_id"]},
        {"$set": {"status": "delivering", "delivery_claimed_at": env.clock()}},
    )
    mark = h.emulator.cursor(USER)
    await _deliver(context, ready)
    assert h.emulator.sent_messages(USER, since=mark) == []
    env.clock.advance(seconds=DELIVERY_CLAIM.total_seconds() + 1)
    await _deliver(context, ready)
    again = h.emulator.sent_messages(USER, since=mark)
    assert len([m for m in again if m.document and m.document.filename.startswith("labels-")]) == 1


def _context(app):  # type: ignore[no-untyped-def]
    """A job context for calling a job's step directly (as the JobQueue would)."""
    return app.context_types.context.from_job(
        app.job_queue.get_jobs_by_name("bulk:purchase")[0], app
    )
