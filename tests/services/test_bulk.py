"""services/bulk.py: reading sheets, validating rows with the conversation's rules, the
guarded CSVs and the pacing of carrier calls (pure, no database)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import openpyxl
import pytest

from services.bulk import (
    TEMPLATE_CSV,
    BulkConfig,
    BulkFileError,
    Pacer,
    csv_bytes,
    read_table,
    validate_table,
)

CONFIG = BulkConfig(
    max_bytes=2 * 1024 * 1024,
    max_rows=5,
    quote_concurrency=2,
    carrier_rate_per_second=0,
    rates_max_age=timedelta(minutes=15),
    row_ttl=timedelta(days=7),
    min_weight_oz=2,
    max_weight_oz=2400,
    max_side_in=Decimal(108),
)


def _validate(text: str):  # type: ignore[no-untyped-def]
    return validate_table(read_table(text.encode(), "a.csv", max_rows=CONFIG.max_rows), CONFIG)


def test_the_template_is_valid_and_uses_the_conversations_rules() -> None:
    result = _validate(TEMPLATE_CSV)
    assert [r["row"] for r in result.rows] == [2, 3] and result.errors == []
    first, second = result.rows
    assert first["to_address"]["phone"] == "+12175550100"  # normalised as in the conversation
    assert first["parcel"] == {
        "weight_oz": 40, "length_in": "10", "width_in": "8", "height_in": "4"
    }
    assert second["parcel"]["weight_oz"] == 12 and second["to_address"]["phone"] is None
    assert second["service"] == "usps_priority_mail" and second["reference"] == "order-1002"


def test_headers_are_matched_loosely_and_required_ones_named() -> None:
    text = (
        "Recipient Name;Street1;City;State;ZIP;Weight;Length;Width;Height\n"
        "John Smith;1 Main St;Springfield;IL;62704;2 lb 4 oz;10;8;4\n"
    )
    result = _validate(text)  # semicolons, aliases, optional columns absent
    assert result.rows[0]["parcel"]["weight_oz"] == 36
    with pytest.raises(BulkFileError) as error:
        _validate("name,street1,city\nJohn,1 Main St,Springfield\n")
    assert error.value.code == "missing_columns"
    assert error.value.params["columns"] == "state, postal_code, weight, length, width, height"


@pytest.mark.parametrize(
    ("data", "filename", "code"),
    [
        (b"", "a.csv", "empty"),
        ("name\n".encode("utf-16"), "a.csv", "not_text"),
        ("Jos\xe9\n".encode("cp1252"), "a.csv", "encoding"),
        (b"\xff\xd8\xff\xe0JFIF", "a.csv", "not_text"),
        (b"PK\x03\x04garbage", "a.xlsx", "not_xlsx"),
        (b"a,b", "a.pdf", "unsupported_type"),
    ],
)
def test_unreadable_files_are_refused_with_a_reason(data: bytes, filename: str, code: str) -> None:
    with pytest.raises(BulkFileError) as error:
        validate_table(read_table(data, filename, max_rows=5), CONFIG)
    assert error.value.code == code


def test_too_many_rows_is_refused_without_reading_them_all() -> None:
    text = TEMPLATE_CSV + "".join(TEMPLATE_CSV.splitlines(keepends=True)[1:] * 3)
    with pytest.raises(BulkFileError) as error:
        _validate(text)
    assert error.value.code == "too_many_rows" and error.value.params["max"] == 5


def test_every_bad_cell_of_a_row_is_reported() -> None:
    header = TEMPLATE_CSV.splitlines()[0]
    result = _validate(f"{header}\n,1 Main St,,Springfield,ZZ,1,,=1+1,10,8,4,,\n")
    [row] = result.errors  # a formula anywhere: the row is refused for that alone
    assert {(e.field, e.code) for e in row.errors} == {("weight", "formula")}
    result = _validate(f"{header}\n,1 Main St,,Springfield,ZZ,1,,0,10,8,400,,\n")
    [row] = result.errors
    assert {e.field for e in row.errors} == {"name", "state", "postal_code", "weight",
                                             "dimensions"}


def test_an_xlsx_sheet_gives_the_same_rows_numbers_included() -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    for line in csv.reader(io.StringIO(TEMPLATE_CSV)):
        sheet.append([int(c) if c.isdigit() else (c or None) for c in line])
    sheet["H2"] = 2.5  # a float cell
    out = io.BytesIO()
    book.save(out)
    rows = read_table(out.getvalue(), "a.xlsx", max_rows=5)
    assert rows[1][5] == "62704" and rows[1][7] == "2.5"
    result = validate_table(rows, CONFIG)
    assert [r["row"] for r in result.rows] == [2, 3]
    assert result.rows[0]["parcel"]["weight_oz"] == 40


def test_our_csvs_neutralise_formulas() -> None:
    data = csv_bytes(["a", "b"], [["=cmd()", "+1"], ["@x", "-2"], ["ok", 3]])
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows == [["a", "b"], ["'=cmd()", "'+1"], ["'@x", "'-2"], ["ok", "3"]]


async def test_the_pacer_spaces_calls_and_never_bursts_after_a_stall() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    pacer = Pacer(4, monotonic=lambda: now[0], sleep=sleep)
    for _ in range(3):
        await pacer.wait()
    assert slept == [0.25, 0.5]  # slots at 0, 0.25, 0.5
    now[0] = 10.0  # a long stall: the next call goes now, the one after waits a slot
    slept.clear()
    await pacer.wait()
    await pacer.wait()
    assert slept == [0.25]


async def test_labels_are_merged_in_row_order_and_split_by_size() -> None:
    from pypdf import PdfReader, PdfWriter

    from services.bulk import BulkService

    def label(n: int) -> bytes:
        writer = PdfWriter()
        writer.add_blank_page(width=288 + n, height=432)  # the width tells the row
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    class Purchase:
        async def label_pdf(self, order: dict[str, object]) -> bytes:
            return label(int(order["bulk_row"]))  # type: ignore[call-overload]

    service = BulkService(
        None, None, None, Purchase(), None, CONFIG, audit=None  # type: ignore[arg-type]
    )
    rows = [
        {"bulk_row": n, "status": "purchased" if n != 4 else "failed"} for n in range(2, 9)
    ]
    [(pdf, pages)] = await service.merged_pdfs(rows)
    widths = [int(p.mediabox.width) - 288 for p in PdfReader(io.BytesIO(pdf)).pages]
    assert pages == 6 and widths == [2, 3, 5, 6, 7, 8]
    parts = await service.merged_pdfs(rows, part_bytes=len(label(2)) * 2)
    assert [count for _, count in parts] == [2, 2, 2]
    merged = [
        int(p.mediabox.width) - 288 for pdf, _ in parts for p in PdfReader(io.BytesIO(pdf)).pages
    ]
    assert merged == [2, 3, 5, 6, 7, 8]


async def test_label_files_by_format_zpl_concatenated_png_zipped() -> None:
    import zipfile

    from pypdf import PdfReader, PdfWriter

    from services.bulk import BulkService
    from services.purchase import LabelFile

    def pdf(n: int) -> bytes:
        writer = PdfWriter()
        writer.add_blank_page(width=288 + n, height=432)
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    class Purchase:
        async def label_pdf(self, order: dict[str, object]) -> bytes:
            return (await self.label_file(order)).data

        async def label_file(self, order: dict[str, object]) -> LabelFile:
            n = int(order["bulk_row"])  # type: ignore[call-overload]
            fmt = str(order["label_file_format"])
            if fmt == "zpl":
                return LabelFile(f"^XA\n^FDrow {n}^FS\n^XZ\n\n".encode(), "zpl")
            if fmt == "png":
                return LabelFile(b"\x89PNG\r\n\x1a\n" + bytes([n]), "png")
            return LabelFile(pdf(n), "pdf")

    service = BulkService(None, None, None, Purchase(), None, CONFIG, audit=None)  # type: ignore[arg-type]
    formats = {2: "zpl", 3: "zpl", 4: "pdf", 5: "png", 6: "zpl", 7: "png", 8: "zpl"}
    rows = [
        {
            "bulk_row": n,
            "status": "failed" if n == 8 else "purchased",
            "label_file_format": fmt,
            "tracking_number": f"94{n}",
        }
        for n, fmt in formats.items()
    ]
    files = await service.label_files(rows)
    assert [(f.file_format, f.extension, f.count) for f in files] == [
        ("pdf", "pdf", 1),
        ("zpl", "zpl", 3),
        ("png", "zip", 2),
    ]
    [merged] = PdfReader(io.BytesIO(files[0].data)).pages
    assert int(merged.mediabox.width) == 292
    zpl = files[1].data.decode()
    assert zpl.count("^XA") == 3 and zpl.count("^XZ") == 3
    assert [line for line in zpl.splitlines() if "row" in line] == [
        "^FDrow 2^FS", "^FDrow 3^FS", "^FDrow 6^FS"
    ]
    assert "\n\n" not in zpl and zpl.endswith("^XZ\n")
    with zipfile.ZipFile(io.BytesIO(files[2].data)) as archive:
        assert archive.namelist() == ["0005-945.png", "0007-947.png"]
        assert archive.read("0007-947.png").endswith(bytes([7]))
    # split by size like the PDFs
    parts = await service.label_files(
        [r for r in rows if r["label_file_format"] == "zpl"], part_bytes=40
    )
    assert [p.count for p in parts] == [2, 1]
    assert b"".join(p.data for p in parts) == zpl.encode()
