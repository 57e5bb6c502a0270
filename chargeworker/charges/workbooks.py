"""Build the workbooks of a multi-instance push: one `.xlsx` per queue, zipped together.

The consolidated email attaches the zip as `CustomerChargeSummary.zip`. Everything
is built in memory, and nothing is read from or written to disk.
"""

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from chargeworker.charges.money import ZERO, round_money

SUMMARY_ZIP_NAME = "CustomerChargeSummary.zip"
SUMMARY_ZIP_MIME_TYPE = "application/zip"
WORKSHEET_NAME = "Charges"
HEADER = (
    "Customer",
    "MSISDN",
    "IsSuccessful",
    "ChargeId",
    "ChargeAmount",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "DateCharged",
    "ErrorMessage",
)
COLUMN_WIDTHS = (30, 16, 12, 12, 14, 18, 18, 20, 60)
CHARGE_AMOUNT_COLUMN = HEADER.index("ChargeAmount")
TOTAL_LABEL = "Total"

# Entries get this fixed time, as XlsxWriter does inside each workbook, so equal
# input gives equal bytes.
ZIP_ENTRY_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class WorkbookRow:
    """One charge-queue row as its queue's workbook shows it."""

    customer: str
    msisdn: str
    is_successful: bool
    charge_id: int | None
    charge_amount: Decimal
    billing_period_start: date | None
    billing_period_end: date | None
    date_charged: str
    error_message: str


@dataclass(frozen=True)
class _Formats:
    header: Format
    money: Format
    charge_id: Format
    date: Format


def build_queue_workbook(
    rows: Sequence[WorkbookRow], *, created_at: datetime | None = None
) -> bytes:
    """Build the `.xlsx` of one queue: a header, one row per charge-queue row and a total row.

    Text is written as string cells, so a value such as `=1+1` stays text and is never
    run as a formula. `created_at` sets the document's creation time. XlsxWriter uses
    the current time when it is None, so pass it to get the same bytes for the same rows.
    """
    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(buffer, {"in_memory": True})
    if created_at is not None:
        workbook.set_properties({"created": created_at})
    formats = _Formats(
        header=workbook.add_format({"bold": True}),
        money=workbook.add_format({"num_format": "0.00"}),
        charge_id=workbook.add_format({"num_format": "0"}),
        date=workbook.add_format({"num_format": "yyyy-mm-dd"}),
    )
    worksheet = workbook.add_worksheet(WORKSHEET_NAME)

    for column, (title, width) in enumerate(zip(HEADER, COLUMN_WIDTHS, strict=True)):
        worksheet.write_string(0, column, title, formats.header)
        worksheet.set_column(column, column, width)
    worksheet.freeze_panes(1, 0)

    total = ZERO
    for row_index, row in enumerate(rows, start=1):
        _write_row(worksheet, row_index, row, formats)
        total += round_money(row.charge_amount)

    total_row = len(rows) + 1
    worksheet.write_string(total_row, 0, TOTAL_LABEL, formats.header)
    _write_money(worksheet, total_row, CHARGE_AMOUNT_COLUMN, total, formats.money)

    workbook.close()
    return buffer.getvalue()


def build_summary_zip(workbooks: Sequence[tuple[str, bytes]]) -> bytes:
    """Zip (file name, `.xlsx` bytes) pairs into the content of `CustomerChargeSummary.zip`.

    Entries are sorted by file name, so the same workbooks give the same bytes in
    any order. Raises `ValueError` for a name that is empty, repeated, or not a
    plain file name (one with a folder, such as `../a.xlsx`).
    """
    names = [name for name, _ in workbooks]
    for name in names:
        _check_entry_name(name)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"workbook file names must be unique, but {repeated} appear twice")

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in sorted(workbooks, key=lambda workbook: workbook[0]):
            entry = zipfile.ZipInfo(name, date_time=ZIP_ENTRY_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, content)
    return buffer.getvalue()


def _write_row(worksheet: Worksheet, row_index: int, row: WorkbookRow, formats: _Formats) -> None:
    _write_text(worksheet, row_index, 0, row.customer)
    _write_text(worksheet, row_index, 1, row.msisdn)
    _write_text(worksheet, row_index, 2, "True" if row.is_successful else "False")
    # Rev.io charge ids are positive, and the platform writes 0 and -1 for "no charge".
    if row.charge_id is not None and row.charge_id > 0:
        worksheet.write_number(row_index, 3, row.charge_id, formats.charge_id)
    _write_money(worksheet, row_index, CHARGE_AMOUNT_COLUMN, row.charge_amount, formats.money)
    _write_date(worksheet, row_index, 5, row.billing_period_start, formats.date)
    _write_date(worksheet, row_index, 6, row.billing_period_end, formats.date)
    _write_text(worksheet, row_index, 7, row.date_charged)
    _write_text(worksheet, row_index, 8, row.error_message)


def _write_text(worksheet: Worksheet, row_index: int, column: int, text: str) -> None:
    # write_string() stores the text as a string even when it starts with "=", so a
    # spreadsheet never runs it. An empty text leaves the cell blank.
    if text:
        worksheet.write_string(row_index, column, text)


def _write_money(
    worksheet: Worksheet, row_index: int, column: int, amount: Decimal, cell_format: Format
) -> None:
    # An .xlsx number cell stores an IEEE double, so the amount becomes a float only
    # here. A two-decimal amount below 10**13 reads back as the same decimal.
    worksheet.write_number(row_index, column, float(round_money(amount)), cell_format)


def _write_date(
    worksheet: Worksheet, row_index: int, column: int, value: date | None, cell_format: Format
) -> None:
    if value is None:
        return
    # A datetime counts as its date part, as in the charge list.
    day = value.date() if isinstance(value, datetime) else value
    worksheet.write_datetime(row_index, column, day, cell_format)


def _check_entry_name(name: str) -> None:
    is_plain = (
        bool(name.strip())
        and name not in (".", "..")
        and not any(character in name for character in "/\\\0")
    )
    if not is_plain:
        raise ValueError(
            f"workbook file name {name!r} is invalid. Use a plain file name such as 42.xlsx."
        )
