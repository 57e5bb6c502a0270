"""Build the consolidated summary of a multi-instance push: its email, or its portal-proxy JSON.

A multi-instance push sends one summary for all its queues in place of one email
per queue. When a `proxy_url` is set, the portal receives `proxy_payload()` as
JSON and sends the email itself.
"""

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from chargeworker.charges.emails import (
    Attachment,
    _attach,
    _html_document,
    _new_message,
    _single_line,
)

BANNER_STYLE = (
    "background-color:#b00020;color:#ffffff;font-weight:bold;padding:8px 12px;margin:0 0 12px 0"
)


@dataclass(frozen=True)
class PushQueueSummary:
    """One winning queue (or uploaded file) of a push, as the consolidated email lists it."""

    customer_name: str
    billing_period_end: date
    error_count: int
    queue_id: int | None
    file_name: str | None = None


@dataclass(frozen=True)
class ProxyQueue:
    """One winning queue of a push, as the portal proxy receives it.

    `customer_id` is the instance's Rev customer GUID, or the platform's customer id
    of a non-Rev customer. `charge_list_key` is the S3 key of the queue's charge list.
    """

    queue_id: int
    instance_id: int
    customer_id: str
    customer_name: str
    billing_period_start: date
    billing_period_end: date
    error_count: int
    charge_list_key: str


def build_consolidated_email(
    *,
    sender: str,
    recipients: list[str],
    subject: str,
    queues: Sequence[PushQueueSummary],
    missing_instance_ids: Sequence[int],
    attachment: Attachment,
    dry_run: bool = False,
) -> bytes:
    """Build the one summary email of a multi-instance push, with the workbooks' zip attached.

    It lists each customer with its billing-period end, starts with a red banner when
    any queue had errors, and names the instances that were still missing when it was
    built. Raises `ValueError` when there is no recipient or an address contains a line
    break.
    """
    error_count = sum(max(queue.error_count, 0) for queue in queues)
    banner = (
        f"{error_count} error(s) occurred when uploading charges to Rev.io."
        if error_count
        else None
    )
    customer_lines = _customer_lines(queues)
    introduction = (
        f"Charges of {len(customer_lines)} customer(s) in this push:"
        if customer_lines
        else "No charge list of this push was finished."
    )
    notes = _notes(missing_instance_ids, attachment, dry_run=dry_run)

    text = _plain_text(banner, introduction, customer_lines, notes)
    html_body = _html_body(banner, introduction, customer_lines, notes)

    message = _new_message(sender, recipients, subject)
    message.set_content(text)
    message.add_alternative(_html_document(html_body), subtype="html")
    _attach(message, attachment)
    return message.as_bytes()


def proxy_payload(
    *,
    tenant_id: int,
    is_non_rev: bool,
    bucket: str,
    instance_ids: Sequence[int],
    queues: Sequence[ProxyQueue],
) -> dict[str, object]:
    """Build the JSON object that the portal proxy receives in place of the consolidated email.

    Dates are ISO `YYYY-MM-DD` strings, so the result can go to `json.dumps` as it is.
    """
    return {
        "tenant_id": tenant_id,
        "is_non_rev": is_non_rev,
        "bucket": bucket,
        "instance_ids": list(instance_ids),
        "queues": [
            {
                "queue_id": queue.queue_id,
                "instance_id": queue.instance_id,
                "customer_id": queue.customer_id,
                "customer_name": queue.customer_name,
                "billing_period_start": queue.billing_period_start.isoformat(),
                "billing_period_end": queue.billing_period_end.isoformat(),
                "error_count": queue.error_count,
                "charge_list_key": queue.charge_list_key,
            }
            for queue in queues
        ],
    }


def _customer_lines(queues: Sequence[PushQueueSummary]) -> list[str]:
    """Return one line per customer and billing period, in the order they first appear.

    An instance has one winning queue per comm group, so one customer can have
    several queues. Their queue ids are listed and their errors added up.
    """
    grouped: dict[tuple[str, date, str], list[PushQueueSummary]] = {}
    for queue in queues:
        key = (
            _single_line(queue.customer_name),
            queue.billing_period_end,
            _single_line(queue.file_name or ""),
        )
        grouped.setdefault(key, []).append(queue)
    return [_customer_line(*key, group) for key, group in grouped.items()]


def _customer_line(
    customer_name: str, billing_period_end: date, file_name: str, group: list[PushQueueSummary]
) -> str:
    line = f"{customer_name}: billing period ending {billing_period_end.isoformat()}"
    if file_name:
        line += f", uploaded file {file_name}"
    queue_ids = [str(queue.queue_id) for queue in group if queue.queue_id is not None]
    if queue_ids:
        label = "queue" if len(queue_ids) == 1 else "queues"
        line += f", {label} {', '.join(queue_ids)}"
    error_count = sum(max(queue.error_count, 0) for queue in group)
    if error_count:
        line += f", {error_count} error(s)"
    return line


def _notes(
    missing_instance_ids: Sequence[int], attachment: Attachment, *, dry_run: bool
) -> list[str]:
    notes = []
    if missing_instance_ids:
        listed = ", ".join(str(instance_id) for instance_id in missing_instance_ids)
        notes.append(
            f"Instances still missing from this summary: {listed}. Their charges were "
            "not finished when the wait for them ended, so they are not included."
        )
    if dry_run:
        notes.append("This was a dry run: nothing was sent to Rev.io.")
    notes.append(
        f"The workbooks, one per charge list, are attached as {_single_line(attachment.filename)}."
    )
    return notes


def _plain_text(
    banner: str | None, introduction: str, customer_lines: list[str], notes: list[str]
) -> str:
    blocks = [banner] if banner else []
    blocks.append("\n".join([introduction, *(f"- {line}" for line in customer_lines)]))
    blocks += notes
    return "\n\n".join(blocks) + "\n"


def _html_body(
    banner: str | None, introduction: str, customer_lines: list[str], notes: list[str]
) -> str:
    parts = []
    if banner:
        parts.append(f'<div style="{BANNER_STYLE}">{html.escape(banner)}</div>\n')
    parts.append(f"<p>{html.escape(introduction)}</p>\n")
    if customer_lines:
        items = "".join(f"<li>{html.escape(line)}</li>\n" for line in customer_lines)
        parts.append(f"<ul>\n{items}</ul>\n")
    parts += [f"<p>{html.escape(note)}</p>\n" for note in notes]
    return "".join(parts)
