"""Build the raw MIME emails that SES `SendRawEmail` sends: the summary and the error notification.

Every email has a plain-text and an HTML part, and text from the database is
HTML-escaped in the HTML part. Line breaks in a subject or file name are replaced
with spaces, and an address with a line break raises `ValueError`, so no value can
add a header of its own.
"""

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from email import policy
from email.message import EmailMessage

from chargeworker.charges.money import format_money

RECIPIENT_SEPARATORS = re.compile(r"[;,]")
ERROR_STYLE = "color:#b00020;font-weight:bold"


@dataclass(frozen=True)
class Attachment:
    """A file attached to an email, with its MIME type such as `text/tab-separated-values`."""

    filename: str
    content: bytes
    mime_type: str


@dataclass(frozen=True)
class ErrorItem:
    """A charge that failed for good or is unresolved, as the error notification lists it."""

    rev_account_number: str
    iccid: str
    description: str
    amount: Decimal
    reason: str


@dataclass(frozen=True)
class _Paragraph:
    text: str
    is_error: bool = False


def parse_recipients(value: str | None) -> list[str]:
    """Split a `;`- or `,`-separated address list, skipping spaces, empty entries and repeats."""
    recipients: list[str] = []
    seen: set[str] = set()
    for entry in RECIPIENT_SEPARATORS.split(value or ""):
        address = entry.strip()
        if address and address.casefold() not in seen:
            seen.add(address.casefold())
            recipients.append(address)
    return recipients


def build_summary_email(
    *,
    sender: str,
    recipients: list[str],
    subject: str,
    customer_name: str,
    billing_period_end: date,
    row_count: int,
    error_count: int,
    attachment: Attachment,
    file_name: str | None = None,
    dry_run: bool = False,
) -> bytes:
    """Build the summary email of one queue or uploaded file, with its charge list attached.

    Raises `ValueError` when there is no recipient or an address contains a line break.
    """
    if file_name:
        first = f"Charges of the uploaded charge file {_single_line(file_name)}"
        if customer_name:
            first += f" for {_single_line(customer_name)}"
        paragraphs = [_Paragraph(f"{first}, billing periods ending by {billing_period_end}.")]
        paragraphs.append(_Paragraph(f"Uploaded charge file: {_single_line(file_name)}"))
    else:
        paragraphs = [
            _Paragraph(
                f"Charges of {_single_line(customer_name)} for the billing period ending "
                f"{billing_period_end.isoformat()}."
            )
        ]
    paragraphs.append(_Paragraph(f"Rows in the charge list: {row_count}"))
    if dry_run:
        paragraphs.append(_Paragraph("This was a dry run: nothing was sent to Rev.io."))
    if error_count:
        paragraphs.append(
            _Paragraph(
                f"{error_count} error(s) occurred when uploading charges to Rev.io.",
                is_error=True,
            )
        )
    attachment_name = _single_line(attachment.filename)
    paragraphs.append(_Paragraph(f"The charge list is attached as {attachment_name}."))

    message = _new_message(sender, recipients, subject)
    message.set_content(_plain_text(paragraphs))
    message.add_alternative(_html_document(_html_paragraphs(paragraphs)), subtype="html")
    _attach(message, attachment)
    return message.as_bytes()


def build_error_notification(
    *,
    sender: str,
    recipients: list[str],
    subject: str,
    items: list[ErrorItem],
) -> bytes:
    """Build the email that lists the charges which failed for good or are unresolved.

    Raises `ValueError` when there is no recipient or an address contains a line break.
    """
    columns = ("Rev.io account", "ICCID", "Description", "Amount", "Reason")
    table = [
        (
            item.rev_account_number,
            item.iccid,
            item.description,
            format_money(item.amount),
            item.reason,
        )
        for item in items
    ]
    introduction = (
        f"{len(items)} charge(s) failed or are unresolved. An unresolved charge may "
        "exist in Rev.io, so check it there before you push it again."
    )

    text_lines = [introduction, "", " | ".join(columns)]
    text_lines += [" | ".join(_single_line(cell) for cell in row) for row in table]
    html_body = _html_paragraphs([_Paragraph(introduction)]) + _html_table(columns, table)

    message = _new_message(sender, recipients, subject)
    message.set_content("\n".join(text_lines) + "\n")
    message.add_alternative(_html_document(html_body), subtype="html")
    return message.as_bytes()


# Python's header folder moves a long subject with parentheses whole onto a
# continuation line, which readers then show with a leading space. RFC 5322 allows
# lines of up to 998 characters, so headers are not folded below that.
_POLICY = policy.SMTP.clone(max_line_length=998)


def _new_message(sender: str, recipients: Sequence[str], subject: str) -> EmailMessage:
    if not recipients:
        raise ValueError("the email has no recipients. Set at least one recipient address.")

    # policy.SMTP ends lines with CRLF, as RFC 5322 requires of a raw message.
    # NOTE: no Date or Message-ID header is set, which keeps these builders free of the
    # clock. Whether SES adds a missing Date header has not been checked.
    message = EmailMessage(policy=_POLICY)
    message["From"] = _address(sender, "sender")
    message["To"] = ", ".join(_address(recipient, "recipient") for recipient in recipients)
    message["Subject"] = _single_line(subject)
    return message


def _attach(message: EmailMessage, attachment: Attachment) -> None:
    maintype, separator, subtype = attachment.mime_type.partition("/")
    if not (maintype and separator and subtype):
        raise ValueError(
            f"attachment MIME type {attachment.mime_type!r} is invalid. "
            "Expected type/subtype, such as text/tab-separated-values."
        )
    message.add_attachment(
        attachment.content,
        maintype=maintype,
        subtype=subtype,
        filename=_single_line(attachment.filename),
    )


def _address(value: str, role: str) -> str:
    if _single_line(value) != value.strip():
        raise ValueError(f"{role} address {value!r} contains a line break")
    return value.strip()


def _single_line(value: str) -> str:
    # splitlines() also splits on the rarer breaks (\v, \f, \x1c-\x1e, \x85, \u2028, \u2029).
    return " ".join(value.splitlines()).strip()


def _plain_text(paragraphs: list[_Paragraph]) -> str:
    return "\n\n".join(paragraph.text for paragraph in paragraphs) + "\n"


def _html_paragraphs(paragraphs: list[_Paragraph]) -> str:
    parts = []
    for paragraph in paragraphs:
        style = f' style="{ERROR_STYLE}"' if paragraph.is_error else ""
        parts.append(f"<p{style}>{html.escape(paragraph.text)}</p>\n")
    return "".join(parts)


def _html_table(columns: Sequence[str], rows: list[tuple[str, ...]]) -> str:
    header = "".join(f"<th>{html.escape(column)}</th>" for column in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>\n"
        for row in rows
    )
    return f'<table border="1" cellpadding="4">\n<tr>{header}</tr>\n{body}</table>\n'


def _html_document(body: str) -> str:
    return f"<!DOCTYPE html>\n<html><body>\n{body}</body></html>\n"
