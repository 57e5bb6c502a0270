"""Tests of `parse_upload`, the validation of an uploaded charge CSV."""

from datetime import date
from decimal import Decimal

import pytest

from chargeworker.charges.upload import (
    COLUMNS,
    UploadContext,
    UploadLine,
    UploadRejected,
    parse_upload,
)

HEADER = ",".join(COLUMNS)
CONTEXT = UploadContext(
    known_service_numbers=frozenset({"5551230001", "5551230002"}),
    product_type_ids=frozenset({10, 20}),
    previous_file_names=frozenset({"January Charges.csv"}),
)
GOOD_ROW = "5551230001,10,Setup fee,12.50,1.25,0.30,20,2026-01-01,2026-01-31"


def csv_bytes(*rows: str, header: str = HEADER) -> bytes:
    return ("\r\n".join([header, *rows]) + "\r\n").encode("utf-8")


def rejection(content: bytes, file_name: str = "march.csv") -> UploadRejected:
    with pytest.raises(UploadRejected) as caught:
        parse_upload(file_name, content, CONTEXT)
    return caught.value


def only_problem(content: bytes, file_name: str = "march.csv") -> str:
    problems = rejection(content, file_name).problems
    assert len(problems) == 1, problems
    return problems[0]


# Accepted files


def test_good_file_parses() -> None:
    content = "\ufeff" + "\r\n".join(
        [
            HEADER,
            '5551230001,10,"Install, setup and ""premium"" support",'
            "12.50,,0.25,20,1/5/2026,1/31/2026",
            "",
            "5551230002,20,Monthly fee,7,2.5,,,2026-01-01,2026-01-31",
            "",
        ]
    )

    lines = parse_upload("march.csv", content.encode("utf-8"), CONTEXT)

    assert lines == [
        UploadLine(
            line_number=2,
            service_number="5551230001",
            product_type_id=10,
            description='Install, setup and "premium" support',
            base_amount=Decimal("12.50"),
            overage_amount=Decimal("0.00"),
            sms_amount=Decimal("0.25"),
            sms_product_type_id=20,
            billing_start=date(2026, 1, 5),
            billing_end=date(2026, 1, 31),
        ),
        UploadLine(
            line_number=4,
            service_number="5551230002",
            product_type_id=20,
            description="Monthly fee",
            base_amount=Decimal("7.00"),
            overage_amount=Decimal("2.50"),
            sms_amount=Decimal("0.00"),
            sms_product_type_id=None,
            billing_start=date(2026, 1, 1),
            billing_end=date(2026, 1, 31),
        ),
    ]


def test_amounts_are_decimal_cents() -> None:
    line = parse_upload("march.csv", csv_bytes(GOOD_ROW), CONTEXT)[0]

    assert line.base_amount == Decimal("12.50")
    assert str(line.base_amount) == "12.50"
    assert str(line.overage_amount) == "1.25"
    assert str(line.sms_amount) == "0.30"


def test_bom_is_dropped() -> None:
    content = b"\xef\xbb\xbf" + csv_bytes(GOOD_ROW)

    assert len(parse_upload("march.csv", content, CONTEXT)) == 1


def test_lf_line_ends_accepted() -> None:
    content = (HEADER + "\n" + GOOD_ROW + "\n").encode()

    assert parse_upload("march.csv", content, CONTEXT)[0].line_number == 2


def test_blank_lines_ignored() -> None:
    content = csv_bytes("", GOOD_ROW, "   ", ",,,,,,,,", "")

    lines = parse_upload("march.csv", content, CONTEXT)

    assert [line.line_number for line in lines] == [3]


def test_quoted_line_break_kept() -> None:
    content = csv_bytes(
        '5551230001,10,"First line\r\nsecond line",1.00,,,,2026-01-01,2026-01-31', GOOD_ROW
    )

    lines = parse_upload("march.csv", content, CONTEXT)

    assert lines[0].description == "First line\r\nsecond line"
    assert [line.line_number for line in lines] == [2, 4]


def test_values_are_trimmed() -> None:
    row = " 5551230001 , 10 , Setup , 12.50 , , , , 2026-01-01 , 1/31/2026 "

    line = parse_upload("march.csv", csv_bytes(row), CONTEXT)[0]

    assert line.service_number == "5551230001"
    assert line.description == "Setup"
    assert line.billing_end == date(2026, 1, 31)


def test_same_service_on_several_lines() -> None:
    lines = parse_upload("march.csv", csv_bytes(GOOD_ROW, GOOD_ROW), CONTEXT)

    assert [line.service_number for line in lines] == ["5551230001", "5551230001"]


def test_sms_type_without_sms_amount_kept() -> None:
    row = "5551230001,10,Fee,1.00,,0,99,2026-01-01,2026-01-31"

    line = parse_upload("march.csv", csv_bytes(row), CONTEXT)[0]

    assert line.sms_product_type_id == 99


def test_end_equal_to_start_accepted() -> None:
    row = "5551230001,10,Fee,1.00,,,,2026-01-15,1/15/2026"

    line = parse_upload("march.csv", csv_bytes(row), CONTEXT)[0]

    assert line.billing_start == line.billing_end == date(2026, 1, 15)


def test_description_of_1500_accepted() -> None:
    row = f"5551230001,10,{'d' * 1500},1.00,,,,2026-01-01,2026-01-31"

    line = parse_upload("march.csv", csv_bytes(row), CONTEXT)[0]

    assert len(line.description) == 1500


def test_zero_amounts_accepted() -> None:
    row = "5551230001,10,Fee,0,0.0,.00,,2026-01-01,2026-01-31"

    line = parse_upload("march.csv", csv_bytes(row), CONTEXT)[0]

    assert line.base_amount == Decimal("0.00")
    assert line.overage_amount == Decimal("0.00")
    assert line.sms_amount == Decimal("0.00")


def test_trailing_zero_decimals_accepted() -> None:
    row = "5551230001,10,Fee,12.500,,,,2026-01-01,2026-01-31"

    assert parse_upload("march.csv", csv_bytes(row), CONTEXT)[0].base_amount == Decimal("12.50")


# Header matching


@pytest.mark.parametrize(
    "header",
    [
        HEADER,
        HEADER.lower(),
        HEADER.upper(),
        "Rev Io Service Number,Rev_Io_Product_Type_Id,description,Base Charge Amount,"
        "overage_charge_amount,SMS Charge Amount,sms_revio_product_type_id,"
        " Billing Start Date ,BILLING_END_DATE",
    ],
)
def test_header_variants_accepted(header: str) -> None:
    lines = parse_upload("march.csv", csv_bytes(GOOD_ROW, header=header), CONTEXT)

    assert lines[0].base_amount == Decimal("12.50")


def test_header_columns_in_any_order() -> None:
    header = ",".join(reversed(COLUMNS))
    row = ",".join(reversed(GOOD_ROW.split(",")))

    line = parse_upload("march.csv", csv_bytes(row, header=header), CONTEXT)[0]

    assert line.service_number == "5551230001"
    assert line.sms_product_type_id == 20


def test_extra_header_column_ignored() -> None:
    header = HEADER + ",Notes"

    lines = parse_upload("march.csv", csv_bytes(GOOD_ROW + ",anything", header=header), CONTEXT)

    assert len(lines) == 1


def test_missing_columns_listed() -> None:
    header = ",".join(
        column for column in COLUMNS if column not in ("Description", "BillingEndDate")
    )

    problem = only_problem(csv_bytes("1,2,3,4,5,6,7", header=header))

    assert problem.startswith(
        "line 1: the header is missing the column(s) Description, BillingEndDate."
    )


def test_repeated_column_rejected() -> None:
    header = HEADER + ",Rev_Io_Service_Number"

    problem = only_problem(csv_bytes(GOOD_ROW + ",x", header=header))

    assert problem == "line 1: the header has the column RevIoServiceNumber twice"


def test_header_after_blank_lines() -> None:
    content = b"\r\n\r\n" + csv_bytes(GOOD_ROW)

    assert parse_upload("march.csv", content, CONTEXT)[0].line_number == 4


# File name


@pytest.mark.parametrize("file_name", ["march.txt", "march.csv.xlsx", "march", ""])
def test_name_without_csv_rejected(file_name: str) -> None:
    problem = only_problem(csv_bytes(GOOD_ROW), file_name)

    assert problem == f"file name {file_name!r} does not end in .csv"


def test_name_extension_ignores_case() -> None:
    assert len(parse_upload("MARCH.CSV", csv_bytes(GOOD_ROW), CONTEXT)) == 1


def test_name_of_255_accepted() -> None:
    file_name = "a" * 251 + ".csv"

    assert len(parse_upload(file_name, csv_bytes(GOOD_ROW), CONTEXT)) == 1


def test_name_over_255_rejected() -> None:
    file_name = "a" * 252 + ".csv"

    problem = only_problem(csv_bytes(GOOD_ROW), file_name)

    assert problem == "file name has 256 characters, more than the maximum of 255"


@pytest.mark.parametrize(
    "file_name",
    ["January Charges.csv", "january charges.CSV", "JanuaryCharges.csv", " January  Charges .csv"],
)
def test_name_uploaded_before_rejected(file_name: str) -> None:
    problem = only_problem(csv_bytes(GOOD_ROW), file_name)

    assert problem.startswith(f"a file named {file_name!r} was uploaded before")


# Encoding and CSV structure


def test_invalid_utf8_rejected() -> None:
    content = csv_bytes(GOOD_ROW, "5551230001,10,Caf\xe9,1.00,,,,2026-01-01,2026-01-31").replace(
        b"Caf\xc3\xa9", b"Caf\xe9"
    )

    problem = only_problem(content)

    assert problem.startswith("line 3: the file is not valid UTF-8 (byte 0xe9 is invalid)")


def test_utf16_file_rejected() -> None:
    content = csv_bytes(GOOD_ROW).decode("utf-8").encode("utf-16")

    problem = only_problem(content)

    assert "not valid UTF-8" in problem


def test_empty_file_rejected() -> None:
    assert only_problem(b"") == "the file is empty: it has no header row and no data rows"


def test_blank_file_rejected() -> None:
    assert only_problem(b"\xef\xbb\xbf\r\n \r\n") == (
        "the file is empty: it has no header row and no data rows"
    )


def test_header_only_rejected() -> None:
    assert only_problem(csv_bytes()) == "the file has a header row but no data rows"


def test_header_and_blank_rows_rejected() -> None:
    assert only_problem(csv_bytes("", ",,,,,,,,")) == "the file has a header row but no data rows"


def test_unquoted_comma_rejected() -> None:
    row = "5551230001,10,Install, setup,12.50,,,,2026-01-01,2026-01-31"

    problem = only_problem(csv_bytes(row))

    assert problem == (
        "line 2: the row has 10 values, but the header has 9 columns. "
        "Quote a value that contains a comma."
    )


def test_short_row_rejected() -> None:
    problem = only_problem(csv_bytes("5551230001,10,Fee"))

    assert problem.startswith("line 2: the row has 3 values, but the header has 9 columns.")


def test_unterminated_quote_rejected() -> None:
    content = csv_bytes(GOOD_ROW, '5551230001,10,"Fee,1.00,,,,2026-01-01,2026-01-31')

    problem = only_problem(content)

    assert problem == "line 3: the CSV text is malformed (unexpected end of data)"


def test_text_after_closing_quote_rejected() -> None:
    content = csv_bytes('5551230001,10,"Fee"x,1.00,,,,2026-01-01,2026-01-31', GOOD_ROW)

    problem = only_problem(content)

    assert problem.startswith("line 2: the CSV text is malformed")


# Values


def row_problem(row: str) -> str:
    return only_problem(csv_bytes(row))


def test_unknown_service_rejected() -> None:
    problem = row_problem("5559999999,10,Fee,1.00,,,,2026-01-01,2026-01-31")

    assert problem == (
        "line 2: RevIoServiceNumber '5559999999' is not a known Rev.io service of this "
        "integration authentication, or no device owns it"
    )


def test_empty_service_rejected() -> None:
    problem = row_problem(",10,Fee,1.00,,,,2026-01-01,2026-01-31")

    assert problem == "line 2: RevIoServiceNumber is empty"


def test_unknown_product_type_rejected() -> None:
    problem = row_problem("5551230001,11,Fee,1.00,,,,2026-01-01,2026-01-31")

    assert (
        problem
        == "line 2: RevIoProductTypeId 11 is not an active Rev.io product type of the tenant"
    )


@pytest.mark.parametrize("value", ["abc", "10.0", "-10", "1e2"])
def test_product_type_not_integer_rejected(value: str) -> None:
    problem = row_problem(f"5551230001,{value},Fee,1.00,,,,2026-01-01,2026-01-31")

    assert problem == f"line 2: RevIoProductTypeId {value!r} is not a whole number"


def test_empty_product_type_rejected() -> None:
    problem = row_problem("5551230001,,Fee,1.00,,,,2026-01-01,2026-01-31")

    assert problem == "line 2: RevIoProductTypeId is empty"


def test_sms_without_product_type_rejected() -> None:
    problem = row_problem("5551230001,10,Fee,1.00,,0.40,,2026-01-01,2026-01-31")

    assert problem == (
        "line 2: SmsRevIoProductTypeId is empty, but SmsChargeAmount is 0.40. "
        "An SMS charge needs a product type."
    )


def test_sms_unknown_product_type_rejected() -> None:
    problem = row_problem("5551230001,10,Fee,1.00,,0.40,99,2026-01-01,2026-01-31")

    assert problem == (
        "line 2: SmsRevIoProductTypeId 99 is not an active Rev.io product type of the tenant"
    )


def test_sms_type_not_integer_rejected() -> None:
    problem = row_problem("5551230001,10,Fee,1.00,,,x,2026-01-01,2026-01-31")

    assert problem == "line 2: SmsRevIoProductTypeId 'x' is not a whole number"


def test_empty_base_amount_rejected() -> None:
    problem = row_problem("5551230001,10,Fee,,,,,2026-01-01,2026-01-31")

    assert problem == "line 2: BaseChargeAmount is empty. Enter an amount such as 12.50."


@pytest.mark.parametrize("value", ["12,50", "$12.50", "1e3", "12.5.0", "abc", "+1", "1 000"])
def test_amount_not_plain_decimal_rejected(value: str) -> None:
    problem = row_problem(f'5551230001,10,Fee,"{value}",,,,2026-01-01,2026-01-31')

    assert (
        problem == f"line 2: BaseChargeAmount {value!r} is not a plain decimal amount such as 12.50"
    )


@pytest.mark.parametrize("column_index", [3, 4, 5])
def test_negative_amount_rejected(column_index: int) -> None:
    values = "5551230001,10,Fee,1.00,,,20,2026-01-01,2026-01-31".split(",")
    values[column_index] = "-0.01"

    problems = rejection(csv_bytes(",".join(values))).problems

    assert f"line 2: {COLUMNS[column_index]} '-0.01' is negative" in problems


def test_amount_over_two_places_rejected() -> None:
    problem = row_problem("5551230001,10,Fee,12.505,,,,2026-01-01,2026-01-31")

    assert problem == "line 2: BaseChargeAmount '12.505' has more than two decimal places"


def test_huge_amount_rejected() -> None:
    problem = row_problem("5551230001,10,Fee,1000000000000000,,,,2026-01-01,2026-01-31")

    assert problem.startswith("line 2: BaseChargeAmount '1000000000000000' is too large.")


@pytest.mark.parametrize(
    "value", ["2026/01/31", "31.01.2026", "Jan 31 2026", "20260131", "1-31-2026"]
)
def test_date_bad_form_rejected(value: str) -> None:
    problem = row_problem(f"5551230001,10,Fee,1.00,,,,2026-01-01,{value}")

    assert problem == (
        f"line 2: BillingEndDate {value!r} is not a date in the form YYYY-MM-DD or M/D/YYYY"
    )


@pytest.mark.parametrize("value", ["2026-02-30", "2/29/2026", "13/1/2026", "0000-01-01"])
def test_impossible_date_rejected(value: str) -> None:
    problem = row_problem(f"5551230001,10,Fee,1.00,,,,{value},2026-12-31")

    assert problem == f"line 2: BillingStartDate {value!r} is not a valid date"


def test_empty_date_rejected() -> None:
    problem = row_problem("5551230001,10,Fee,1.00,,,,,2026-01-31")

    assert problem == "line 2: BillingStartDate is empty. Enter a date as YYYY-MM-DD or M/D/YYYY."


def test_end_before_start_rejected() -> None:
    problem = row_problem("5551230001,10,Fee,1.00,,,,2/1/2026,2026-01-31")

    assert problem == "line 2: BillingEndDate 2026-01-31 is before BillingStartDate 2026-02-01"


def test_description_over_1500_rejected() -> None:
    problem = row_problem(f"5551230001,10,{'d' * 1501},1.00,,,,2026-01-01,2026-01-31")

    assert problem == "line 2: Description has 1501 characters, more than the maximum of 1500"


# Several problems at once


def test_all_problems_listed() -> None:
    content = csv_bytes(
        GOOD_ROW,
        "5559999999,11,Fee,,-1,0.50,,2026-02-30,1/1/2026",
        "",
        "5551230002,10,Fee,12,5,1e3,,2026-01-31,2026-01-01",
        "5551230001,10,Fee,12,1,2",
    )

    rejected = rejection(content, "January charges.txt")

    assert rejected.problems == [
        "file name 'January charges.txt' does not end in .csv",
        "line 3: RevIoServiceNumber '5559999999' is not a known Rev.io service of this "
        "integration authentication, or no device owns it",
        "line 3: RevIoProductTypeId 11 is not an active Rev.io product type of the tenant",
        "line 3: BaseChargeAmount is empty. Enter an amount such as 12.50.",
        "line 3: OverageChargeAmount '-1' is negative",
        "line 3: SmsRevIoProductTypeId is empty, but SmsChargeAmount is 0.50. "
        "An SMS charge needs a product type.",
        "line 3: BillingStartDate '2026-02-30' is not a valid date",
        "line 5: SmsChargeAmount '1e3' is not a plain decimal amount such as 12.50",
        "line 5: BillingEndDate 2026-01-01 is before BillingStartDate 2026-01-31",
        "line 6: the row has 6 values, but the header has 9 columns. "
        "Quote a value that contains a comma.",
    ]


def test_message_lists_every_problem() -> None:
    content = csv_bytes(
        "5559999999,10,Fee,1.00,,,,2026-01-01,2026-01-31",
        "5551230001,10,Fee,-2,,,,2026-01-01,2026-01-31",
    )

    rejected = rejection(content)

    assert str(rejected).splitlines() == [
        "charge file 'march.csv' was rejected with 2 problem(s):",
        f"- {rejected.problems[0]}",
        f"- {rejected.problems[1]}",
    ]
    assert rejected.problems[0].startswith("line 2: ")
    assert rejected.problems[1] == "line 3: BaseChargeAmount '-2' is negative"
    assert rejected.file_name == "march.csv"


def test_read_error_listed_after_rows() -> None:
    content = csv_bytes(
        "5559999999,10,Fee,1.00,,,,2026-01-01,2026-01-31",
        '5551230001,10,"Fee,1.00,,,,2026-01-01,2026-01-31',
    )

    problems = rejection(content).problems

    assert [problem.split(":")[0] for problem in problems] == ["line 2", "line 3"]
    assert problems[1] == "line 3: the CSV text is malformed (unexpected end of data)"


def test_name_and_content_problems_together() -> None:
    problems = rejection(csv_bytes(), "January Charges.csv").problems

    assert len(problems) == 2
    assert problems[0].startswith("a file named 'January Charges.csv' was uploaded before")
    assert problems[1] == "the file has a header row but no data rows"
