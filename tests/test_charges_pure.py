"""Tests of the pure charge helpers: money, dates, descriptions, the charge list and emails."""

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from chargeworker.charges.charge_list import ChargeListRow, render_charge_list
from chargeworker.charges.dates import (
    IntegrationNames,
    billing_dates,
    format_local_time,
    format_rev_date,
    resolve_time_zone,
)
from chargeworker.charges.descriptions import (
    overage_description,
    rate_description,
    sms_description,
    usage_description,
)
from chargeworker.charges.emails import (
    Attachment,
    ErrorItem,
    build_error_notification,
    build_summary_email,
    parse_recipients,
)
from chargeworker.charges.money import format_money, round_money

CHARGE_LIST_CHECKER = Path("/work/shared/tools/check_charge_list.py")
NAMES = IntegrationNames()
JAN_START = date(2026, 1, 1)
JAN_END = date(2026, 1, 31)
CHICAGO = ZoneInfo("America/Chicago")


def dates_for(
    integration: str | None,
    start: date = JAN_START,
    end: date = JAN_END,
    *,
    in_advance: bool = False,
    names: IntegrationNames = NAMES,
) -> tuple[date, date]:
    return billing_dates(start, end, integration, bill_in_advance=in_advance, names=names)


# Billing-period dates


def test_pond_keeps_period() -> None:
    assert dates_for("Pond") == (JAN_START, JAN_END)


def test_telegence_ends_day_earlier() -> None:
    assert dates_for("Telegence") == (JAN_START, date(2026, 1, 30))


def test_other_carrier_starts_day_later() -> None:
    assert dates_for("ThingSpace") == (date(2026, 1, 2), JAN_END)


def test_carrier_match_ignores_case_and_spaces() -> None:
    assert dates_for("  pOND ") == (JAN_START, JAN_END)
    assert dates_for("TELEGENCE") == (JAN_START, date(2026, 1, 30))


def test_carrier_names_are_settable() -> None:
    names = IntegrationNames(pond="Pond IoT", telegence="AT&T Telegence")

    assert dates_for("pond iot", names=names) == (JAN_START, JAN_END)
    assert dates_for("AT&T Telegence", names=names) == (JAN_START, date(2026, 1, 30))
    assert dates_for("Pond", names=names) == (date(2026, 1, 2), JAN_END)


def test_unknown_carrier_uses_default_rule() -> None:
    start, end = dates_for(None)

    assert (start, end) == (date(2026, 1, 2), JAN_END)
    assert start.year == 2026
    assert end.year == 2026


def test_blank_carrier_uses_default_rule() -> None:
    assert dates_for("   ") == (date(2026, 1, 2), JAN_END)


def test_unknown_carrier_logs_warning() -> None:
    with capture_logs() as logs:
        dates_for(None)

    assert [entry["event"] for entry in logs] == ["billing_dates.unknown_integration"]
    assert logs[0]["log_level"] == "warning"


def test_known_carrier_logs_nothing() -> None:
    with capture_logs() as logs:
        dates_for("ThingSpace")

    assert logs == []


def test_advance_moves_one_month() -> None:
    assert dates_for("Pond", date(2026, 3, 1), date(2026, 3, 15), in_advance=True) == (
        date(2026, 4, 1),
        date(2026, 4, 15),
    )


def test_advance_clamps_to_february_28() -> None:
    assert dates_for("Pond", in_advance=True) == (date(2026, 2, 1), date(2026, 2, 28))


def test_advance_clamps_to_leap_day() -> None:
    start, end = dates_for("Pond", date(2028, 1, 1), date(2028, 1, 31), in_advance=True)

    assert start == date(2028, 2, 1)
    assert end == date(2028, 2, 29)


def test_advance_december_to_january() -> None:
    start, end = dates_for(None, date(2026, 12, 1), date(2026, 12, 31), in_advance=True)

    assert start == date(2027, 1, 2)
    assert end == date(2027, 1, 31)


def test_advance_after_telegence_rule() -> None:
    start, end = dates_for("Telegence", date(2026, 3, 1), date(2026, 3, 31), in_advance=True)

    assert start == date(2026, 4, 1)
    assert end == date(2026, 4, 30)


def test_datetime_uses_date_part_unshifted() -> None:
    late_evening = datetime(2026, 1, 31, 23, 30, tzinfo=timezone(timedelta(hours=-6)))
    early_morning = datetime(2026, 1, 1, 0, 15, tzinfo=UTC)

    start, end = dates_for("Pond", early_morning, late_evening)

    assert type(start) is date
    assert type(end) is date
    assert (start, end) == (JAN_START, JAN_END)


def test_rev_date_has_no_padding() -> None:
    assert format_rev_date(date(2026, 1, 5)) == "2026-1-5"
    assert format_rev_date(date(2026, 11, 30)) == "2026-11-30"


# Time zones


def test_iana_zone_resolves() -> None:
    assert resolve_time_zone("America/Chicago") == CHICAGO
    assert resolve_time_zone(" Europe/Paris ") == ZoneInfo("Europe/Paris")


@pytest.mark.parametrize("name", [None, "", "   "])
def test_missing_zone_is_utc(name: str | None) -> None:
    with capture_logs() as logs:
        zone = resolve_time_zone(name)

    assert zone == ZoneInfo("UTC")
    assert logs == []


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "America", "../etc/passwd", "/etc/passwd"])
def test_unknown_zone_is_utc_with_warning(name: str) -> None:
    with capture_logs() as logs:
        zone = resolve_time_zone(name)

    assert zone == ZoneInfo("UTC")
    assert [entry["event"] for entry in logs] == ["time_zone.unknown"]
    assert logs[0]["time_zone"] == name


def test_local_time_in_winter_and_summer() -> None:
    winter = datetime(2026, 1, 15, 18, 0, 5, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 18, 0, 5, tzinfo=UTC)

    assert format_local_time(winter, CHICAGO) == "2026-01-15 12:00:05"
    assert format_local_time(summer, CHICAGO) == "2026-07-15 13:00:05"


def test_local_time_across_dst_start() -> None:
    # Chicago moves from CST (UTC-6) to CDT (UTC-5) at 2026-03-08 08:00 UTC.
    before = datetime(2026, 3, 8, 7, 59, 59, tzinfo=UTC)
    after = datetime(2026, 3, 8, 8, 0, 0, tzinfo=UTC)

    assert format_local_time(before, CHICAGO) == "2026-03-08 01:59:59"
    assert format_local_time(after, CHICAGO) == "2026-03-08 03:00:00"


def test_local_time_across_dst_end() -> None:
    # Chicago moves back to CST at 2026-11-01 07:00 UTC, so 01:xx local happens twice.
    first = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    second = datetime(2026, 11, 1, 7, 30, tzinfo=UTC)

    assert format_local_time(first, CHICAGO) == "2026-11-01 01:30:00"
    assert format_local_time(second, CHICAGO) == "2026-11-01 01:30:00"


def test_naive_time_counts_as_utc() -> None:
    naive = datetime(2026, 1, 15, 18, 0, 0, 999_999)

    assert format_local_time(naive, CHICAGO) == "2026-01-15 12:00:00"


# Money


def test_round_half_up() -> None:
    assert round_money(Decimal("0.005")) == Decimal("0.01")
    assert round_money(Decimal("2.675")) == Decimal("2.68")
    assert round_money(Decimal("2.665")) == Decimal("2.67")


def test_round_negative_half_away_from_zero() -> None:
    assert round_money(Decimal("-0.005")) == Decimal("-0.01")


def test_round_accepts_int_str_and_none() -> None:
    assert round_money(7) == Decimal("7.00")
    assert round_money("1.234") == Decimal("1.23")
    assert round_money(None) == Decimal("0.00")


def test_round_tiny_negative_loses_sign() -> None:
    assert format_money(round_money(Decimal("-0.001"))) == "0.00"


def test_round_rejects_float() -> None:
    with pytest.raises(TypeError):
        round_money(2.675)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["abc", "NaN", "Infinity"])
def test_round_rejects_non_number(value: str) -> None:
    with pytest.raises(ValueError, match=value):
        round_money(value)


def test_round_rejects_huge_amount() -> None:
    with pytest.raises(ValueError, match="too many digits"):
        round_money(Decimal("1E+30"))


def test_format_money_two_places() -> None:
    assert format_money(Decimal("12.5")) == "12.50"
    assert format_money(Decimal("-3")) == "-3.00"
    assert format_money(Decimal("0")) == "0.00"


def test_format_money_never_exponent() -> None:
    assert format_money(Decimal("1E+2")) == "100.00"
    assert format_money(Decimal("1E+10")) == "10000000000.00"
    assert format_money(Decimal("1E-7")) == "0.00"


# Descriptions


def test_rate_description() -> None:
    assert rate_description("IoT 1GB", Decimal("12.5")) == "IoT 1GB - 12.50 MB"


def test_overage_description() -> None:
    assert overage_description(Decimal("1.005")) == "Overage data usage 1.01 MB"


def test_sms_description() -> None:
    assert sms_description(42) == "Billable SMS usage: 42"


def test_usage_description() -> None:
    assert usage_description(Decimal("1E+3")) == "Billable data usage: 1000.00 MB"


def test_description_cut_to_1500() -> None:
    description = rate_description("x" * 2000, Decimal("1"))

    assert len(description) == 1500
    assert description == "x" * 1500


# Charge list


def charge_row(**changes: object) -> ChargeListRow:
    values: dict[str, object] = {
        "msisdn": "15551230001",
        "is_successful": True,
        "charge_id": 101,
        "charge_amount": Decimal("12.50"),
        "sms_charge_id": 201,
        "sms_charge_amount": Decimal("1.00"),
        "billing_period_start": date(2026, 1, 2),
        "billing_period_end": date(2026, 1, 31),
        "date_charged": "2026-02-01 09:30:00",
        "error_message": "",
    }
    values.update(changes)
    return ChargeListRow(**values)  # type: ignore[arg-type]


def fields_of_first_row(row: ChargeListRow) -> list[str]:
    return render_charge_list([row]).decode("utf-8").split("\n")[1].split("\t")


def test_charge_list_exact_bytes() -> None:
    rows = [
        charge_row(),
        charge_row(
            msisdn="15551230002",
            is_successful=False,
            charge_id=None,
            charge_amount=Decimal("1E+2"),
            sms_charge_id=None,
            sms_charge_amount=Decimal("0"),
            billing_period_start=None,
            billing_period_end=None,
            date_charged="",
            error_message="=cmd|' /C calc'!A0\tno service\r\nfor number",
        ),
    ]

    expected = (
        b"MSISDN\tIsSuccessful\tChargeId\tChargeAmount\tSMSChargeId\tSMSChargeAmount"
        b"\tBillingPeriodStart\tBillingPeriodEnd\tDateCharged\tErrorMessage\n"
        b"15551230001\tTrue\t101\t12.50\t201\t1.00\t2026-1-2\t2026-1-31"
        b"\t2026-02-01 09:30:00\t\n"
        b"15551230002\tFalse\t\t100.00\t\t0.00\t\t\t"
        b"\t'=cmd|' /C calc'!A0 no service  for number\n"
        b"\t\t\t112.50\t\t\t\t\t\t\n"
    )
    assert render_charge_list(rows) == expected


def test_charge_list_keeps_row_order() -> None:
    rows = [charge_row(msisdn=str(number)) for number in (3, 1, 2)]

    lines = render_charge_list(rows).decode("utf-8").split("\n")

    assert [line.split("\t")[0] for line in lines[1:4]] == ["3", "1", "2"]


def test_charge_list_footer_sums_charge_amount() -> None:
    rows = [
        charge_row(charge_amount=Decimal("0.10")),
        charge_row(charge_amount=Decimal("0.20")),
        charge_row(charge_amount=Decimal("-0.05")),
    ]

    footer = render_charge_list(rows).decode("utf-8").split("\n")[-2].split("\t")

    assert footer[3] == "0.25"
    assert footer[:3] + footer[4:] == [""] * 9


def test_charge_list_empty_has_zero_footer() -> None:
    text = render_charge_list([]).decode("utf-8")

    assert text.split("\n")[1:] == ["\t\t\t0.00\t\t\t\t\t\t", ""]


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@"])
def test_formula_prefix_neutralized(prefix: str) -> None:
    row = charge_row(msisdn=f"{prefix}1555", error_message=f"{prefix}SUM(A1)")

    fields = fields_of_first_row(row)

    assert fields[0] == f"'{prefix}1555"
    assert fields[9] == f"'{prefix}SUM(A1)"


def test_formula_after_spaces_neutralized() -> None:
    fields = fields_of_first_row(charge_row(error_message="  =1+1"))

    assert fields[9] == "'  =1+1"


def test_formula_after_tab_neutralized() -> None:
    fields = fields_of_first_row(charge_row(error_message="\t=1+1"))

    assert fields[9] == "' =1+1"


def test_negative_amount_stays_plain() -> None:
    row = charge_row(charge_amount=Decimal("-5"), sms_charge_amount=Decimal("-0.5"))

    fields = fields_of_first_row(row)

    assert fields[3] == "-5.00"
    assert fields[5] == "-0.50"


def test_error_whitespace_becomes_spaces() -> None:
    fields = fields_of_first_row(charge_row(error_message="a\tb\rc\nd\r\ne"))

    assert fields[9] == "a b c d  e"


def test_nonpositive_charge_id_is_empty() -> None:
    fields = fields_of_first_row(charge_row(charge_id=0, sms_charge_id=-1))

    assert fields[2] == ""
    assert fields[4] == ""


def test_charge_list_is_utf8() -> None:
    content = render_charge_list([charge_row(error_message="número não encontrado")])

    assert "número não encontrado".encode() in content


def test_charge_list_passes_checker(tmp_path: Path) -> None:
    if not CHARGE_LIST_CHECKER.exists():
        pytest.skip(f"charge-list checker not found at {CHARGE_LIST_CHECKER}")
    rows = [
        charge_row(),
        charge_row(
            msisdn="+15551230002",
            is_successful=False,
            charge_id=None,
            charge_amount=Decimal("1E+2"),
            error_message="-bad\tvalue\n",
        ),
        charge_row(msisdn="@x", charge_amount=Decimal("-7.5"), error_message="=1+1"),
    ]
    (tmp_path / "17.txt").write_bytes(render_charge_list(rows))
    (tmp_path / "18.txt").write_bytes(render_charge_list([]))

    result = subprocess.run(
        [sys.executable, str(CHARGE_LIST_CHECKER), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 charge lists, 0 problems" in result.stdout


# Emails


ATTACHMENT = Attachment(
    filename="42.txt", content=b"MSISDN\tIsSuccessful\n", mime_type="text/tab-separated-values"
)


def summary(**changes: object) -> EmailMessage:
    arguments: dict[str, object] = {
        "sender": "billing@example.com",
        "recipients": ["ops@example.com", "finance@example.com"],
        "subject": "Customer charges",
        "customer_name": "Acme",
        "billing_period_end": date(2026, 1, 31),
        "row_count": 3,
        "error_count": 0,
        "attachment": ATTACHMENT,
    }
    arguments.update(changes)
    raw = build_summary_email(**arguments)  # type: ignore[arg-type]
    return message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def text_part(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]


def html_part(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]


def test_summary_is_multipart_mixed() -> None:
    message = summary()

    assert message.get_content_type() == "multipart/mixed"
    assert message.get_payload(0).get_content_type() == "multipart/alternative"  # type: ignore[union-attr]


def test_summary_has_text_and_html() -> None:
    message = summary()

    assert message.get_body(preferencelist=("plain",)) is not None
    assert message.get_body(preferencelist=("html",)) is not None


def test_summary_headers() -> None:
    message = summary()

    assert message["From"] == "billing@example.com"
    assert message["To"] == "ops@example.com, finance@example.com"
    assert message["Subject"] == "Customer charges"


def test_summary_attachment() -> None:
    attachments = list(summary().iter_attachments())

    assert len(attachments) == 1
    assert attachments[0].get_filename() == "42.txt"
    assert attachments[0].get_content_type() == "text/tab-separated-values"
    assert attachments[0].get_payload(decode=True) == ATTACHMENT.content


def test_summary_names_customer_and_period_end() -> None:
    text = text_part(summary())

    assert "Acme" in text
    assert "2026-01-31" in text


def test_summary_error_sentence() -> None:
    message = summary(error_count=2)
    sentence = "2 error(s) occurred when uploading charges to Rev.io"

    assert sentence in text_part(message)
    assert sentence in html_part(message)


def test_summary_without_errors_has_no_error_sentence() -> None:
    assert "error(s) occurred" not in text_part(summary())


def test_summary_escapes_customer_in_html() -> None:
    message = summary(customer_name="<b>Acme & Co</b>")

    assert "&lt;b&gt;Acme &amp; Co&lt;/b&gt;" in html_part(message)
    assert "<b>Acme" not in html_part(message)
    assert "<b>Acme & Co</b>" in text_part(message)


def test_summary_names_uploaded_file() -> None:
    message = summary(file_name="march <extra>.csv")

    assert "march <extra>.csv" in text_part(message)
    assert "march &lt;extra&gt;.csv" in html_part(message)


def test_summary_dry_run_says_nothing_sent() -> None:
    assert "nothing was sent to Rev.io" in text_part(summary(dry_run=True))
    assert "nothing was sent to Rev.io" not in text_part(summary())


def test_subject_line_break_adds_no_header() -> None:
    raw = build_summary_email(
        sender="billing@example.com",
        recipients=["ops@example.com"],
        subject="Charges\r\nBcc: attacker@example.com",
        customer_name="Acme",
        billing_period_end=date(2026, 1, 31),
        row_count=1,
        error_count=0,
        attachment=ATTACHMENT,
    )
    message = message_from_bytes(raw, policy=policy.default)

    assert message["Bcc"] is None
    assert message["Subject"] == "Charges Bcc: attacker@example.com"
    assert b"\r\nBcc:" not in raw


def test_attachment_name_line_break_removed() -> None:
    attachment = Attachment("a\r\nb.txt", b"x", "text/tab-separated-values")

    attachments = list(summary(attachment=attachment).iter_attachments())

    assert attachments[0].get_filename() == "a b.txt"


def test_recipient_line_break_rejected() -> None:
    with pytest.raises(ValueError, match="line break"):
        summary(recipients=["ops@example.com\r\nBcc: attacker@example.com"])


def test_no_recipients_rejected() -> None:
    with pytest.raises(ValueError, match="no recipients"):
        summary(recipients=[])


def test_invalid_mime_type_rejected() -> None:
    with pytest.raises(ValueError, match="MIME type"):
        summary(attachment=Attachment("a.txt", b"x", "tab-separated"))


def test_raw_email_uses_crlf() -> None:
    raw = build_error_notification(
        sender="billing@example.com", recipients=["ops@example.com"], subject="s", items=[]
    )

    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")


def test_parse_recipients_semicolons() -> None:
    assert parse_recipients(" a@x.com; ;b@x.com ;") == ["a@x.com", "b@x.com"]


def test_parse_recipients_commas() -> None:
    assert parse_recipients("a@x.com, b@x.com;c@x.com") == ["a@x.com", "b@x.com", "c@x.com"]


def test_parse_recipients_drops_repeats() -> None:
    assert parse_recipients("a@x.com;A@X.com") == ["a@x.com"]


@pytest.mark.parametrize("value", [None, "", " ; , "])
def test_parse_recipients_empty(value: str | None) -> None:
    assert parse_recipients(value) == []


def test_error_notification_lists_items() -> None:
    items = [
        ErrorItem("R-100", "8901", "IoT 1GB - 12.50 MB", Decimal("12.5"), "rate plan not found"),
        ErrorItem("R-200", "8902", "<script>", Decimal("1E+1"), "unresolved: may exist in Rev.io"),
    ]
    raw = build_error_notification(
        sender="billing@example.com", recipients=["ops@example.com"], subject="Errors", items=items
    )
    message = message_from_bytes(raw, policy=policy.default)
    text = text_part(message)  # type: ignore[arg-type]
    html = html_part(message)  # type: ignore[arg-type]

    assert "R-100 | 8901 | IoT 1GB - 12.50 MB | 12.50 | rate plan not found" in text
    assert "<td>10.00</td>" in html
    assert "<td>&lt;script&gt;</td>" in html
    assert "<script>" not in html
    assert "<th>ICCID</th>" in html
