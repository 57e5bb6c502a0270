"""Tests of a multi-instance push's summary: the workbooks, their zip, the email and proxy JSON."""

import io
import json
import zipfile
from datetime import date, datetime
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import openpyxl
import pytest

from chargeworker.charges.consolidated import (
    ProxyQueue,
    PushQueueSummary,
    build_consolidated_email,
    proxy_payload,
)
from chargeworker.charges.emails import Attachment
from chargeworker.charges.workbooks import (
    HEADER,
    SUMMARY_ZIP_MIME_TYPE,
    SUMMARY_ZIP_NAME,
    WorkbookRow,
    build_queue_workbook,
    build_summary_zip,
)

CREATED_AT = datetime(2026, 2, 1, 12, 0, 0)
ROWS = [
    WorkbookRow(
        customer="Acme",
        msisdn="15551230001",
        is_successful=True,
        charge_id=9001,
        charge_amount=Decimal("12.50"),
        billing_period_start=date(2026, 1, 2),
        billing_period_end=date(2026, 1, 31),
        date_charged="2026-02-01 06:00:00",
        error_message="",
    ),
    WorkbookRow(
        customer="Acme",
        msisdn='=HYPERLINK("http://example.com")',
        is_successful=False,
        charge_id=0,
        charge_amount=Decimal("7.25"),
        billing_period_start=None,
        billing_period_end=None,
        date_charged="",
        error_message="-no active Rev.io service for number 15551230002",
    ),
    WorkbookRow(
        customer="@Acme",
        msisdn="15551230003",
        is_successful=True,
        charge_id=None,
        charge_amount=Decimal("0.01"),
        billing_period_start=date(2026, 1, 2),
        billing_period_end=date(2026, 1, 31),
        date_charged="2026-02-01 06:00:01",
        error_message="+1",
    ),
]


def read_sheet(content: bytes) -> list[list[Any]]:
    workbook = openpyxl.load_workbook(io.BytesIO(content))
    return [[cell.value for cell in row] for row in workbook.active.iter_rows()]


def read_cells(content: bytes) -> list[list[Any]]:
    workbook = openpyxl.load_workbook(io.BytesIO(content))
    return [list(row) for row in workbook.active.iter_rows()]


def zip_entries(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


# Queue workbooks


def test_workbook_header() -> None:
    sheet = read_sheet(build_queue_workbook(ROWS))

    assert sheet[0] == [
        "Customer",
        "MSISDN",
        "IsSuccessful",
        "ChargeId",
        "ChargeAmount",
        "BillingPeriodStart",
        "BillingPeriodEnd",
        "DateCharged",
        "ErrorMessage",
    ]
    assert tuple(sheet[0]) == HEADER


def test_workbook_rows() -> None:
    sheet = read_sheet(build_queue_workbook(ROWS))

    assert sheet[1] == [
        "Acme",
        "15551230001",
        "True",
        9001,
        12.5,
        datetime(2026, 1, 2),
        datetime(2026, 1, 31),
        "2026-02-01 06:00:00",
        None,
    ]
    assert sheet[2][:5] == ["Acme", '=HYPERLINK("http://example.com")', "False", None, 7.25]
    assert sheet[2][5:7] == [None, None]
    assert sheet[3][3] is None


def test_workbook_total_row() -> None:
    sheet = read_sheet(build_queue_workbook(ROWS))

    assert len(sheet) == 5
    assert sheet[4][0] == "Total"
    assert sheet[4][4] == pytest.approx(19.76)
    assert sheet[4][1:4] == [None, None, None]
    assert sheet[4][5:] == [None, None, None, None]


def test_workbook_total_is_exact_cents() -> None:
    rows = [
        WorkbookRow("A", "1", True, 1, Decimal("0.10"), None, None, "", ""),
        WorkbookRow("A", "2", True, 2, Decimal("0.20"), None, None, "", ""),
    ]

    sheet = read_sheet(build_queue_workbook(rows))

    # 0.1 + 0.2 in floats is 0.30000000000000004, but the total is summed as Decimal.
    assert sheet[3][4] == 0.3


def test_workbook_amount_cells_are_numbers() -> None:
    cells = read_cells(build_queue_workbook(ROWS))

    for row in cells[1:]:
        assert row[4].data_type == "n"
        assert row[4].number_format == "0.00"


def test_workbook_text_stays_text() -> None:
    cells = read_cells(build_queue_workbook(ROWS))

    assert cells[2][1].data_type == "s"
    assert cells[2][1].value.startswith("=")
    assert cells[2][8].value == "-no active Rev.io service for number 15551230002"
    assert cells[3][0].value == "@Acme"
    assert cells[3][8].value == "+1"
    assert cells[3][8].data_type == "s"


def test_workbook_has_no_formulas() -> None:
    content = build_queue_workbook(ROWS)

    sheet_xml = zip_entries(content)["xl/worksheets/sheet1.xml"]

    assert b"<f>" not in sheet_xml


def test_workbook_dates_formatted() -> None:
    cells = read_cells(build_queue_workbook(ROWS))

    assert cells[1][5].number_format == "yyyy-mm-dd"
    assert cells[1][6].is_date


def test_workbook_empty_has_zero_total() -> None:
    sheet = read_sheet(build_queue_workbook([]))

    assert sheet[1][0] == "Total"
    assert sheet[1][4] == 0


def test_workbook_same_rows_same_bytes() -> None:
    first = build_queue_workbook(ROWS, created_at=CREATED_AT)
    second = build_queue_workbook(ROWS, created_at=CREATED_AT)

    assert first == second


def test_workbook_is_xlsx_zip() -> None:
    content = build_queue_workbook(ROWS)

    assert content.startswith(b"PK")
    assert "[Content_Types].xml" in zip_entries(content)


# Summary zip


def test_zip_holds_every_workbook() -> None:
    acme = build_queue_workbook(ROWS[:2], created_at=CREATED_AT)
    beta = build_queue_workbook(ROWS[2:], created_at=CREATED_AT)

    entries = zip_entries(build_summary_zip([("Acme_42.xlsx", acme), ("Beta_43.xlsx", beta)]))

    assert entries == {"Acme_42.xlsx": acme, "Beta_43.xlsx": beta}
    assert read_sheet(entries["Acme_42.xlsx"])[3][0] == "Total"
    assert read_sheet(entries["Acme_42.xlsx"])[3][4] == pytest.approx(19.75)
    assert read_sheet(entries["Beta_43.xlsx"])[1][0] == "@Acme"
    assert read_sheet(entries["Beta_43.xlsx"])[2][4] == pytest.approx(0.01)


def test_zip_order_is_sorted() -> None:
    content = build_summary_zip([("b.xlsx", b"2"), ("a.xlsx", b"1"), ("c.xlsx", b"3")])

    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.namelist() == ["a.xlsx", "b.xlsx", "c.xlsx"]


def test_zip_same_input_same_bytes() -> None:
    workbooks = [("b.xlsx", b"2"), ("a.xlsx", b"1")]

    assert build_summary_zip(workbooks) == build_summary_zip(list(reversed(workbooks)))


def test_zip_entries_are_compressed() -> None:
    content = build_summary_zip([("a.xlsx", b"x" * 10_000)])

    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.getinfo("a.xlsx").compress_type == zipfile.ZIP_DEFLATED


def test_zip_empty_is_valid() -> None:
    assert zip_entries(build_summary_zip([])) == {}


@pytest.mark.parametrize(
    "name", ["", " ", "../a.xlsx", "dir/a.xlsx", "dir\\a.xlsx", "..", "a\0.xlsx"]
)
def test_zip_bad_name_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="is invalid"):
        build_summary_zip([(name, b"x")])


def test_zip_repeated_name_rejected() -> None:
    with pytest.raises(ValueError, match="must be unique"):
        build_summary_zip([("a.xlsx", b"1"), ("a.xlsx", b"2")])


# Consolidated email


ZIP_ATTACHMENT = Attachment(
    filename=SUMMARY_ZIP_NAME,
    content=build_summary_zip([("Acme_42.xlsx", b"workbook")]),
    mime_type=SUMMARY_ZIP_MIME_TYPE,
)
ACME = PushQueueSummary("Acme", date(2026, 1, 31), error_count=0, queue_id=42)
BETA = PushQueueSummary("Beta Corp", date(2026, 2, 28), error_count=0, queue_id=43)


def consolidated(**changes: object) -> EmailMessage:
    arguments: dict[str, object] = {
        "sender": "billing@example.com",
        "recipients": ["ops@example.com", "finance@example.com"],
        "subject": "Customer charges",
        "queues": [ACME, BETA],
        "missing_instance_ids": [],
        "attachment": ZIP_ATTACHMENT,
    }
    arguments.update(changes)
    raw = build_consolidated_email(**arguments)  # type: ignore[arg-type]
    return message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def text_part(message: EmailMessage) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    return text.replace("\r\n", "\n")


def html_part(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]


def test_email_has_text_and_html() -> None:
    message = consolidated()

    assert message.get_content_type() == "multipart/mixed"
    assert message.get_body(preferencelist=("plain",)) is not None
    assert message.get_body(preferencelist=("html",)) is not None


def test_email_headers() -> None:
    message = consolidated()

    assert message["From"] == "billing@example.com"
    assert message["To"] == "ops@example.com, finance@example.com"
    assert message["Subject"] == "Customer charges"


def test_email_line_per_customer() -> None:
    message = consolidated()

    assert "- Acme: billing period ending 2026-01-31, queue 42\n" in text_part(message)
    assert "- Beta Corp: billing period ending 2026-02-28, queue 43\n" in text_part(message)
    assert "<li>Acme: billing period ending 2026-01-31, queue 42</li>" in html_part(message)
    assert "<li>Beta Corp: billing period ending 2026-02-28, queue 43</li>" in html_part(message)


def test_email_groups_queues_of_customer() -> None:
    second_acme = PushQueueSummary("Acme", date(2026, 1, 31), error_count=3, queue_id=44)

    text = text_part(consolidated(queues=[ACME, BETA, second_acme]))

    assert "Charges of 2 customer(s) in this push:" in text
    assert "- Acme: billing period ending 2026-01-31, queues 42, 44, 3 error(s)\n" in text
    assert text.count("Acme:") == 1


def test_email_names_uploaded_file() -> None:
    upload = PushQueueSummary("Acme", date(2026, 1, 31), 0, None, file_name="march <1>.csv")

    message = consolidated(queues=[upload])

    assert "- Acme: billing period ending 2026-01-31, uploaded file march <1>.csv\n" in (
        text_part(message)
    )
    assert "uploaded file march &lt;1&gt;.csv</li>" in html_part(message)


def test_email_banner_with_errors() -> None:
    failing = PushQueueSummary("Beta Corp", date(2026, 2, 28), error_count=2, queue_id=43)
    sentence = "2 error(s) occurred when uploading charges to Rev.io"

    message = consolidated(queues=[ACME, failing])

    assert text_part(message).startswith(sentence)
    assert '<div style="background-color:#b00020;color:#ffffff;' in html_part(message)
    assert f">{sentence}.</div>" in html_part(message)


def test_email_banner_sums_queue_errors() -> None:
    queues = [
        PushQueueSummary("Acme", date(2026, 1, 31), error_count=1, queue_id=42),
        PushQueueSummary("Beta", date(2026, 1, 31), error_count=4, queue_id=43),
    ]

    assert "5 error(s) occurred when uploading charges to Rev.io" in text_part(
        consolidated(queues=queues)
    )


def test_email_no_banner_without_errors() -> None:
    message = consolidated()

    assert "error(s) occurred" not in text_part(message)
    assert "error(s) occurred" not in html_part(message)
    assert "<div" not in html_part(message)


def test_email_escapes_customer_in_html() -> None:
    hostile = PushQueueSummary(
        '<script>alert("x")</script> & Co', date(2026, 1, 31), error_count=1, queue_id=7
    )

    message = consolidated(queues=[hostile])

    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in html_part(message)
    assert "<script>" not in html_part(message)
    assert '<script>alert("x")</script> & Co' in text_part(message)


def test_email_customer_line_break_removed() -> None:
    broken = PushQueueSummary("Acme\r\nBcc: attacker@example.com", date(2026, 1, 31), 0, 42)

    message = consolidated(queues=[broken])

    assert message["Bcc"] is None
    assert "- Acme Bcc: attacker@example.com: billing period ending" in text_part(message)


def test_email_subject_line_break_adds_no_header() -> None:
    raw = build_consolidated_email(
        sender="billing@example.com",
        recipients=["ops@example.com"],
        subject="Charges\r\nBcc: attacker@example.com",
        queues=[ACME],
        missing_instance_ids=[],
        attachment=ZIP_ATTACHMENT,
    )
    message = message_from_bytes(raw, policy=policy.default)

    assert message["Bcc"] is None
    assert message["Subject"] == "Charges Bcc: attacker@example.com"
    assert b"\r\nBcc:" not in raw


def test_email_recipient_line_break_rejected() -> None:
    with pytest.raises(ValueError, match="line break"):
        consolidated(recipients=["ops@example.com\nBcc: attacker@example.com"])


def test_email_sender_line_break_rejected() -> None:
    with pytest.raises(ValueError, match="line break"):
        consolidated(sender="billing@example.com\r\nBcc: attacker@example.com")


def test_email_no_recipients_rejected() -> None:
    with pytest.raises(ValueError, match="no recipients"):
        consolidated(recipients=[])


def test_email_names_missing_instances() -> None:
    message = consolidated(missing_instance_ids=[1201, 1202])
    sentence = "Instances still missing from this summary: 1201, 1202."

    assert sentence in text_part(message)
    assert sentence in html_part(message)


def test_email_no_missing_paragraph_when_complete() -> None:
    assert "still missing" not in text_part(consolidated())


def test_email_all_instances_missing() -> None:
    message = consolidated(queues=[], missing_instance_ids=[1201])

    assert "No charge list of this push was finished." in text_part(message)
    assert "<ul>" not in html_part(message)
    assert "1201" in text_part(message)


def test_email_dry_run_note() -> None:
    assert "nothing was sent to Rev.io" in text_part(consolidated(dry_run=True))
    assert "nothing was sent to Rev.io" in html_part(consolidated(dry_run=True))
    assert "nothing was sent to Rev.io" not in text_part(consolidated())


def test_email_zip_attachment() -> None:
    attachments = list(consolidated().iter_attachments())

    assert len(attachments) == 1
    assert attachments[0].get_filename() == "CustomerChargeSummary.zip"
    assert attachments[0].get_content_type() == "application/zip"
    assert attachments[0].get_payload(decode=True) == ZIP_ATTACHMENT.content


def test_email_attachment_is_readable_zip() -> None:
    workbook = build_queue_workbook(ROWS)
    attachment = Attachment(
        SUMMARY_ZIP_NAME, build_summary_zip([("Acme_42.xlsx", workbook)]), SUMMARY_ZIP_MIME_TYPE
    )

    attached = next(consolidated(attachment=attachment).iter_attachments())
    entries = zip_entries(attached.get_payload(decode=True))  # type: ignore[arg-type]

    assert read_sheet(entries["Acme_42.xlsx"])[1][0] == "Acme"


def test_email_names_attachment() -> None:
    assert "attached as CustomerChargeSummary.zip" in text_part(consolidated())


def test_email_uses_crlf() -> None:
    raw = build_consolidated_email(
        sender="billing@example.com",
        recipients=["ops@example.com"],
        subject="s",
        queues=[ACME],
        missing_instance_ids=[],
        attachment=ZIP_ATTACHMENT,
    )

    assert b"\n" not in raw.replace(b"\r\n", b"")


# Portal proxy


PROXY_QUEUES = [
    ProxyQueue(
        queue_id=42,
        instance_id=1201,
        customer_id="6f1c2a3e-1111-4c7b-9d55-0a1b2c3d4e5f",
        customer_name="Acme",
        billing_period_start=date(2026, 1, 1),
        billing_period_end=date(2026, 1, 31),
        error_count=2,
        charge_list_key="42.txt",
    ),
    ProxyQueue(
        queue_id=43,
        instance_id=1202,
        customer_id="77",
        customer_name="Beta <Corp>",
        billing_period_start=date(2026, 2, 1),
        billing_period_end=date(2026, 2, 28),
        error_count=0,
        charge_list_key="43.txt",
    ),
]


def build_proxy_payload() -> dict[str, object]:
    return proxy_payload(
        tenant_id=5,
        is_non_rev=False,
        bucket="charge-lists",
        instance_ids=[1201, 1202],
        queues=PROXY_QUEUES,
    )


def test_proxy_payload_top_level() -> None:
    payload = build_proxy_payload()

    assert list(payload) == ["tenant_id", "is_non_rev", "bucket", "instance_ids", "queues"]
    assert payload["tenant_id"] == 5
    assert payload["is_non_rev"] is False
    assert payload["bucket"] == "charge-lists"
    assert payload["instance_ids"] == [1201, 1202]


def test_proxy_payload_queues() -> None:
    payload = build_proxy_payload()

    assert payload["queues"] == [
        {
            "queue_id": 42,
            "instance_id": 1201,
            "customer_id": "6f1c2a3e-1111-4c7b-9d55-0a1b2c3d4e5f",
            "customer_name": "Acme",
            "billing_period_start": "2026-01-01",
            "billing_period_end": "2026-01-31",
            "error_count": 2,
            "charge_list_key": "42.txt",
        },
        {
            "queue_id": 43,
            "instance_id": 1202,
            "customer_id": "77",
            "customer_name": "Beta <Corp>",
            "billing_period_start": "2026-02-01",
            "billing_period_end": "2026-02-28",
            "error_count": 0,
            "charge_list_key": "43.txt",
        },
    ]


def test_proxy_payload_is_json() -> None:
    payload = build_proxy_payload()

    assert json.loads(json.dumps(payload)) == payload


def test_proxy_payload_non_rev_without_queues() -> None:
    payload = proxy_payload(
        tenant_id=5, is_non_rev=True, bucket="b", instance_ids=(1201,), queues=()
    )

    assert payload == {
        "tenant_id": 5,
        "is_non_rev": True,
        "bucket": "b",
        "instance_ids": [1201],
        "queues": [],
    }
