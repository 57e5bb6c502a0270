"""Validate an uploaded charge file: an operator's CSV of ad-hoc charges.

The file is UTF-8 (a byte-order mark is allowed), comma-separated, with RFC 4180
quoting and a header row. `parse_upload` checks the whole file and raises
`UploadRejected` with every problem it finds, so the operator can fix them all at
once. Line numbers count physical lines from 1, the header included, and a problem
in a quoted value that spans lines names the line where its row starts.

Empty `OverageChargeAmount` and `SmsChargeAmount` values count as 0, because many
rows have no overage or SMS charge. An empty `BaseChargeAmount` is a problem.
"""

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from chargeworker.charges.money import CENT, ZERO, round_money
from chargeworker.errors import ChargeworkerError

SERVICE_NUMBER = "RevIoServiceNumber"
PRODUCT_TYPE_ID = "RevIoProductTypeId"
DESCRIPTION = "Description"
BASE_AMOUNT = "BaseChargeAmount"
OVERAGE_AMOUNT = "OverageChargeAmount"
SMS_AMOUNT = "SmsChargeAmount"
SMS_PRODUCT_TYPE_ID = "SmsRevIoProductTypeId"
BILLING_START = "BillingStartDate"
BILLING_END = "BillingEndDate"
COLUMNS = (
    SERVICE_NUMBER,
    PRODUCT_TYPE_ID,
    DESCRIPTION,
    BASE_AMOUNT,
    OVERAGE_AMOUNT,
    SMS_AMOUNT,
    SMS_PRODUCT_TYPE_ID,
    BILLING_START,
    BILLING_END,
)

MAX_FILE_NAME_LENGTH = 255
# Rev.io accepts a charge description of at most 1500 characters.
MAX_DESCRIPTION_LENGTH = 1500
# Base and overage add up to one charge, and SQLite keeps amounts as 64-bit integers of
# ten-thousandths (at most about 9.2e14), so each amount stays well below both limits.
AMOUNT_LIMIT = Decimal(10) ** 12

AMOUNT_PATTERN = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
ID_PATTERN = re.compile(r"[0-9]+")
ISO_DATE_PATTERN = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})")
US_DATE_PATTERN = re.compile(r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})")


@dataclass(frozen=True)
class UploadLine:
    """One valid data row of an uploaded charge file, with its line number in the file."""

    line_number: int
    service_number: str
    product_type_id: int
    description: str
    base_amount: Decimal
    overage_amount: Decimal
    sms_amount: Decimal
    sms_product_type_id: int | None
    billing_start: date
    billing_end: date


@dataclass(frozen=True)
class UploadContext:
    """Platform data that an uploaded file is checked against.

    `known_service_numbers` contains the `RevService` numbers of the file's integration
    authentication that a device owns. `product_type_ids` contains the tenant's active,
    not deleted `RevProductType` ids. `previous_file_names` contains the names of the
    files uploaded before.
    """

    known_service_numbers: frozenset[str]
    product_type_ids: frozenset[int]
    previous_file_names: frozenset[str]
    references_known: bool = True  # False when the integration authentication is unknown


class UploadRejected(ChargeworkerError):
    """Rejection of an uploaded charge file that has problems, so nothing of it may be stored.

    `problems` lists every problem, each starting with its line number when it has one.
    """

    def __init__(self, file_name: str, problems: Sequence[str]) -> None:
        self.file_name = file_name
        self.problems = list(problems)
        listed = "\n".join(f"- {problem}" for problem in self.problems)
        super().__init__(
            f"charge file {file_name!r} was rejected with {len(self.problems)} problem(s):\n"
            f"{listed}"
        )


@dataclass(frozen=True)
class _Record:
    line_number: int
    fields: list[str]


def parse_upload(file_name: str, content: bytes, context: UploadContext) -> list[UploadLine]:
    """Parse and check an uploaded charge file, returning its data rows in file order.

    `file_name` is the name without its folder. Raises `UploadRejected` listing every
    problem: of the name, the encoding, the header and each data row.
    """
    problems = _file_name_problems(file_name, context.previous_file_names)

    lines: list[UploadLine] = []
    text = _decode(content, problems)
    if text is not None:
        lines = _parse_text(text, context, problems)

    if problems:
        raise UploadRejected(file_name, problems)
    return lines


def _file_name_problems(file_name: str, previous_file_names: frozenset[str]) -> list[str]:
    problems = []
    if not file_name.casefold().endswith(".csv"):
        problems.append(f"file name {file_name!r} does not end in .csv")
    if len(file_name) > MAX_FILE_NAME_LENGTH:
        problems.append(
            f"file name has {len(file_name)} characters, more than the maximum of "
            f"{MAX_FILE_NAME_LENGTH}"
        )
    previous_keys = {_file_name_key(name) for name in previous_file_names}
    if _file_name_key(file_name) in previous_keys:
        problems.append(
            f"a file named {file_name!r} was uploaded before (names are compared "
            "ignoring case and spaces). Upload each file of charges only once."
        )
    return problems


def _file_name_key(file_name: str) -> str:
    return "".join(file_name.split()).casefold()


def _decode(content: bytes, problems: list[str]) -> str | None:
    """Decode the file as UTF-8, dropping a leading byte-order mark.

    An undecodable file gets one problem and no further checks, because its values
    cannot be trusted.
    """
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_number = content.count(b"\n", 0, exc.start) + 1
        problems.append(
            f"line {line_number}: the file is not valid UTF-8 (byte 0x{content[exc.start]:02x} "
            "is invalid). Save it as UTF-8, for example as CSV UTF-8 in Excel."
        )
        return None


def _parse_text(text: str, context: UploadContext, problems: list[str]) -> list[UploadLine]:
    records, read_error = _read_records(text)
    lines = _parse_records(records, context, problems, is_complete=read_error is None)
    # The reading error comes last, after the problems of the rows read before it.
    if read_error is not None:
        problems.append(read_error)
    return lines


def _parse_records(
    records: list[_Record], context: UploadContext, problems: list[str], *, is_complete: bool
) -> list[UploadLine]:
    if not records:
        if is_complete:
            problems.append("the file is empty: it has no header row and no data rows")
        return []

    header = records[0]
    columns = _match_header(header, problems)
    if columns is None:
        return []

    data_records = records[1:]
    if not data_records and is_complete:
        problems.append("the file has a header row but no data rows")

    lines = []
    for record in data_records:
        line = _parse_record(record, columns, len(header.fields), context, problems)
        if line is not None:
            lines.append(line)
    return lines


def _read_records(text: str) -> tuple[list[_Record], str | None]:
    """Read the CSV records that are not blank, and the problem that stopped the reading.

    A record whose values are all empty or spaces counts as blank, as spreadsheets
    write such rows after the data. Malformed CSV, such as a quoted value that never
    ends, stops the reading.
    """
    records = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    lines_read = 0
    try:
        for fields in reader:
            # reader.line_num counts the lines read so far, and a quoted value can
            # span lines, so a record starts on the line after the previous record.
            start_line = lines_read + 1
            lines_read = reader.line_num
            if any(field.strip() for field in fields):
                records.append(_Record(start_line, fields))
    except csv.Error as exc:
        return records, f"line {reader.line_num}: the CSV text is malformed ({exc})"
    return records, None


def _match_header(header: _Record, problems: list[str]) -> dict[str, int] | None:
    """Return the index of each expected column in the header, or None when some are missing.

    Header names match ignoring case, spaces and underscores. Other columns are ignored.
    """
    expected = {_column_key(column): column for column in COLUMNS}
    columns: dict[str, int] = {}
    is_valid = True
    for index, title in enumerate(header.fields):
        column = expected.get(_column_key(title))
        if column is None:
            continue
        if column in columns:
            problems.append(f"line {header.line_number}: the header has the column {column} twice")
            is_valid = False
        columns[column] = index

    missing = [column for column in COLUMNS if column not in columns]
    if missing:
        problems.append(
            f"line {header.line_number}: the header is missing the column(s) "
            f"{', '.join(missing)}. Expected the columns {', '.join(COLUMNS)}, "
            "in any order (case, spaces and underscores are ignored)."
        )
        is_valid = False
    return columns if is_valid else None


def _column_key(title: str) -> str:
    return "".join(title.split()).replace("_", "").casefold()


def _parse_record(
    record: _Record,
    columns: Mapping[str, int],
    column_count: int,
    context: UploadContext,
    problems: list[str],
) -> UploadLine | None:
    if len(record.fields) != column_count:
        problems.append(
            f"line {record.line_number}: the row has {len(record.fields)} values, but the "
            f"header has {column_count} columns. Quote a value that contains a comma."
        )
        return None

    row = _RowParser(record, columns)
    # Without a known account nothing can be checked against its services and products.
    known_numbers = context.known_service_numbers if context.references_known else None
    product_type_ids = context.product_type_ids if context.references_known else None
    service_number = row.service_number(known_numbers)
    product_type_id = row.product_type_id(PRODUCT_TYPE_ID, product_type_ids)
    description = row.description()
    base_amount = row.amount(BASE_AMOUNT, required=True)
    overage_amount = row.amount(OVERAGE_AMOUNT, required=False)
    sms_amount = row.amount(SMS_AMOUNT, required=False)
    sms_product_type_id = row.sms_product_type_id(sms_amount, product_type_ids)
    billing_start = row.date(BILLING_START)
    billing_end = row.date(BILLING_END)
    if billing_start is not None and billing_end is not None and billing_end < billing_start:
        row.problem(
            f"{BILLING_END} {billing_end.isoformat()} is before "
            f"{BILLING_START} {billing_start.isoformat()}"
        )

    problems.extend(row.problems)
    # Each reader returns None only after it records a problem, so the None checks
    # below only narrow the types.
    if (
        row.problems
        or service_number is None
        or product_type_id is None
        or description is None
        or base_amount is None
        or overage_amount is None
        or sms_amount is None
        or billing_start is None
        or billing_end is None
    ):
        return None
    return UploadLine(
        line_number=record.line_number,
        service_number=service_number,
        product_type_id=product_type_id,
        description=description,
        base_amount=base_amount,
        overage_amount=overage_amount,
        sms_amount=sms_amount,
        sms_product_type_id=sms_product_type_id,
        billing_start=billing_start,
        billing_end=billing_end,
    )


class _RowParser:
    """Reader of the values of one data row, which collects their problems.

    Each method returns None when its value has a problem.
    """

    def __init__(self, record: _Record, columns: Mapping[str, int]) -> None:
        self.record = record
        self.columns = columns
        self.problems: list[str] = []

    def problem(self, message: str) -> None:
        self.problems.append(f"line {self.record.line_number}: {message}")

    def value(self, column: str) -> str:
        return self.record.fields[self.columns[column]].strip()

    def service_number(self, known_service_numbers: frozenset[str] | None) -> str | None:
        number = self.value(SERVICE_NUMBER)
        if not number:
            self.problem(f"{SERVICE_NUMBER} is empty")
            return None
        if known_service_numbers is not None and number not in known_service_numbers:
            self.problem(
                f"{SERVICE_NUMBER} {number!r} is not a known Rev.io service of this "
                "integration authentication, or no device owns it"
            )
            return None
        return number

    def product_type_id(self, column: str, product_type_ids: frozenset[int] | None) -> int | None:
        text = self.value(column)
        if not text:
            self.problem(f"{column} is empty")
            return None
        if not ID_PATTERN.fullmatch(text):
            self.problem(f"{column} {text!r} is not a whole number")
            return None
        product_type_id = int(text)
        if product_type_ids is not None and product_type_id not in product_type_ids:
            self.problem(
                f"{column} {product_type_id} is not an active Rev.io product type of the tenant"
            )
            return None
        return product_type_id

    def sms_product_type_id(
        self, sms_amount: Decimal | None, product_type_ids: frozenset[int] | None
    ) -> int | None:
        """Read the SMS product type, which must be set up only when there is an SMS charge."""
        text = self.value(SMS_PRODUCT_TYPE_ID)
        if sms_amount is not None and sms_amount > 0:
            if not text:
                self.problem(
                    f"{SMS_PRODUCT_TYPE_ID} is empty, but {SMS_AMOUNT} is {sms_amount}. "
                    "An SMS charge needs a product type."
                )
                return None
            return self.product_type_id(SMS_PRODUCT_TYPE_ID, product_type_ids)

        if not text:
            return None
        if not ID_PATTERN.fullmatch(text):
            self.problem(f"{SMS_PRODUCT_TYPE_ID} {text!r} is not a whole number")
            return None
        return int(text)

    def description(self) -> str | None:
        description = self.value(DESCRIPTION)
        if not description.strip():
            self.problem(f"{DESCRIPTION} is empty. Rev.io needs a description for every charge.")
            return None
        if len(description) > MAX_DESCRIPTION_LENGTH:
            self.problem(
                f"{DESCRIPTION} has {len(description)} characters, more than the maximum "
                f"of {MAX_DESCRIPTION_LENGTH}"
            )
            return None
        return description

    def amount(self, column: str, *, required: bool) -> Decimal | None:
        text = self.value(column)
        if not text:
            if required:
                self.problem(f"{column} is empty. Enter an amount such as 12.50.")
                return None
            return ZERO
        if not AMOUNT_PATTERN.fullmatch(text):
            self.problem(f"{column} {text!r} is not a plain decimal amount such as 12.50")
            return None

        amount = Decimal(text)
        if amount < 0:
            self.problem(f"{column} {text!r} is negative")
            return None
        if amount >= AMOUNT_LIMIT:
            self.problem(f"{column} {text!r} is too large. Amounts must be below {AMOUNT_LIMIT:f}.")
            return None
        if amount != amount.quantize(CENT):
            self.problem(f"{column} {text!r} has more than two decimal places")
            return None
        return round_money(amount)

    def date(self, column: str) -> date | None:
        text = self.value(column)
        if not text:
            self.problem(f"{column} is empty. Enter a date as YYYY-MM-DD or M/D/YYYY.")
            return None

        iso_match = ISO_DATE_PATTERN.fullmatch(text)
        us_match = US_DATE_PATTERN.fullmatch(text)
        if iso_match:
            year, month, day = (int(part) for part in iso_match.groups())
        elif us_match:
            month, day, year = (int(part) for part in us_match.groups())
        else:
            self.problem(f"{column} {text!r} is not a date in the form YYYY-MM-DD or M/D/YYYY")
            return None

        try:
            return date(year, month, day)
        except ValueError:
            self.problem(f"{column} {text!r} is not a valid date")
            return None
