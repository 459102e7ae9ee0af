"""Bulk labels end to end: a spreadsheet in, a report, a quote, one payment, every label."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr
from pypdf import PdfReader

from bot.harness import BotHarness
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
    carrier = FakeShipStation(instant=True)
    await carrier.start()
    base = make_settings()
    shipping = base.shipping.model_copy(
        update={
            "base_url": carrier.base_url,
            "purchase_timeout_seconds": 10,
            "recovery_after_seconds": 30,
        }
    )
    bulk = base.bulk.model_copy(update={"carrier_rate_per_second": 0, "quote_concurrency": 8})
    secrets = Secrets.model_construct(
        telegram_bot_token=None,
        mongo_url=None,
        shipstation_test_api_key=SecretStr("TEST_sandbox_key"),
    )
    harness = BotHarness(
        make_settings(shipping=shipping, bulk=bulk, secrets=secrets),
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
    quoted = await h.press(USER, report, "Sender: Warehouse", timeout=60)
    quote = next(m for m in quoted if "Quote" in m.content)
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
