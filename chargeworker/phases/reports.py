"""Phase 3's report of one queue or file: its rows, charge list and emails."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from chargeworker import metrics
from chargeworker.charges.charge_list import ChargeListRow, render_charge_list
from chargeworker.charges.dates import format_local_time, resolve_time_zone
from chargeworker.charges.emails import ErrorItem, build_error_notification, parse_recipients
from chargeworker.charges.lines import ChargeRow
from chargeworker.charges.workbooks import WorkbookRow
from chargeworker.context import Context
from chargeworker.db import emails as email_records
from chargeworker.db import ledger
from chargeworker.db import platform as p
from chargeworker.db.ledger import LedgerLine
from chargeworker.db.reads import (
    Instance,
    load_customer_name,
    load_email_settings,
    load_instance,
    load_integration_names,
    load_tenant_settings,
)
from chargeworker.db.rows import load_all_rows
from chargeworker.errors import PermanentError, TransientError
from chargeworker.messages import Push, Target
from chargeworker.phases.common import charge_dates, load_or_adopt_progress

log = structlog.get_logger()

CHARGE_LIST_TYPE = "text/tab-separated-values"
DEFAULT_SUBJECT = "Customer charges uploaded to Rev.io"
NOT_PROCESSED = "not processed"


@dataclass(frozen=True)
class Report:
    """A queue's or file's rows and ledger lines, with what its report needs to show them."""

    target: Target
    instance: Instance | None
    customer_name: str
    file_name: str | None
    rows: list[ChargeRow]
    lines: list[LedgerLine]
    zone: ZoneInfo
    periods: dict[tuple[str, int], tuple[date | None, date | None]]

    @property
    def key(self) -> str:
        return f"{self.target.id}.txt"

    @property
    def description(self) -> str:
        """Name the queue or file for a person: kind, id, and customer or file name."""
        name = self.file_name if self.target.kind == "file" else self.customer_name
        return f"{self.target}, {name}" if name else str(self.target)

    @property
    def unfinished(self) -> list[ChargeRow]:
        return [row for row in self.rows if not row.is_processed]

    @property
    def error_count(self) -> int:
        return sum(1 for row in self.rows if row.has_errors or not row.is_processed)

    @property
    def billing_period_end(self) -> date | None:
        """The instance's period end; for a file, the latest billing end of its rows."""
        if self.instance is not None:
            return self.instance.billing_period_end
        ends = [row.billing_end_date for row in self.rows if row.billing_end_date]
        return max(ends) if ends else None

    def charge_list_rows(self) -> list[ChargeListRow]:
        return [
            ChargeListRow(
                msisdn=row.msisdn,
                is_successful=row.is_processed and not row.has_errors,
                charge_id=row.charge_id,
                charge_amount=row.device_charge,
                sms_charge_id=row.sms_charge_id,
                sms_charge_amount=row.sms_amount,
                billing_period_start=self.periods[row.key][0],
                billing_period_end=self.periods[row.key][1],
                date_charged=self._date_charged(row),
                error_message=row.error_message if row.is_processed else NOT_PROCESSED,
            )
            for row in self.rows
        ]

    def render(self) -> bytes:
        return render_charge_list(self.charge_list_rows())

    def workbook_rows(self) -> list[WorkbookRow]:
        return [
            WorkbookRow(
                customer=self.customer_name,
                msisdn=item.msisdn,
                is_successful=item.is_successful,
                charge_id=item.charge_id,
                charge_amount=item.charge_amount,
                billing_period_start=item.billing_period_start,
                billing_period_end=item.billing_period_end,
                date_charged=item.date_charged,
                error_message=item.error_message,
            )
            for item in self.charge_list_rows()
        ]

    def error_items(self) -> list[ErrorItem]:
        """List what failed for good, is unresolved, or was never processed."""
        lines_by_row: dict[tuple[str, int], list[LedgerLine]] = {}
        for line in self.lines:
            lines_by_row.setdefault(line.row_key, []).append(line)
        items = []
        for row in self.rows:
            if row.is_processed and not row.has_errors:
                continue
            bad_lines = [
                line
                for line in lines_by_row.get(row.key, [])
                if line.state in (ledger.FAILED, ledger.UNRESOLVED)
            ]
            for line in bad_lines:
                items.append(self._error_item(row, line.description, line.amount, line.error))
            if not bad_lines:
                reason = row.error_message if row.is_processed else NOT_PROCESSED
                items.append(self._error_item(row, row.rate_plan_name, row.device_charge, reason))
        return items

    def _error_item(
        self, row: ChargeRow, description: str, amount: Decimal, reason: str | None
    ) -> ErrorItem:
        return ErrorItem(
            rev_account_number=row.rev_account_number,
            iccid=row.iccid,
            description=description or row.description,
            amount=amount,
            reason=reason or "",
        )

    def _date_charged(self, row: ChargeRow) -> str:
        if row.modified_date is None:
            return ""
        return format_local_time(row.modified_date, self.zone)


async def load_report(ctx: Context, target: Target, push: Push) -> Report:
    """Read everything the charge list and emails of a queue or file show."""
    async with ctx.engine.begin() as connection:
        instance = None
        file_name = None
        if target.kind == "queue":
            record = await load_or_adopt_progress(ctx, connection, target, push)
            instance = await load_instance(connection, record.instance_id)
            if instance is None:
                raise PermanentError(
                    f"instance {record.instance_id} not found", kind="unknown_instance"
                )
            tenant_id = instance.tenant_id
            customer_name = await load_customer_name(connection, instance)
        else:
            file_name, tenant_id = await _load_file(connection, target.id)
            customer_name = ""
        tenant = await load_tenant_settings(connection, tenant_id)
        rows = await load_all_rows(connection, target)
        lines = await ledger.load_target_lines(connection, target)
        provider_ids = {row.service_provider_id for row in rows if row.service_provider_id}
        integration_names = await load_integration_names(connection, provider_ids)

    first_line: dict[tuple[str, int], LedgerLine] = {}
    for line in lines:
        first_line.setdefault(line.row_key, line)
    periods = {
        row.key: _period_as_sent(ctx, instance, row, first_line.get(row.key), integration_names)
        for row in rows
    }
    zone = resolve_time_zone(tenant.billing_time_zone)
    return Report(target, instance, customer_name, file_name, rows, lines, zone, periods)


async def _load_file(connection: AsyncConnection, file_id: int) -> tuple[str, int]:
    """Return the uploaded file's name and tenant; unknown files are permanent errors."""
    uploaded, auth = p.uploaded_file, p.integration_authentication
    query = (
        select(uploaded.c.FileName, auth.c.TenantId)
        .outerjoin(auth, auth.c.Id == uploaded.c.IntegrationAuthenticationId)
        .where(uploaded.c.Id == file_id)
    )
    row = (await connection.execute(query)).first()
    if row is None:
        raise PermanentError(f"uploaded file {file_id} not found", kind="unknown_file")
    return row.FileName, row.TenantId or 0


def _period_as_sent(
    ctx: Context,
    instance: Instance | None,
    row: ChargeRow,
    line: LedgerLine | None,
    integration_names: dict[int, str],
) -> tuple[date | None, date | None]:
    if line is not None and line.start_date and line.end_date:
        return (line.start_date, line.end_date)
    dates = charge_dates(ctx, instance, row, integration_names)
    return dates if dates is not None else (row.billing_start_date, row.billing_end_date)


# --- emails --------------------------------------------------------------------------


@dataclass(frozen=True)
class Addressing:
    sender: str
    recipients: list[str]
    subject: str


async def load_addressing(ctx: Context) -> Addressing:
    """Return sender, recipients and subject: settings first, then GeneralProviderSettings."""
    async with ctx.engine.connect() as connection:
        stored = await load_email_settings(connection)
    sender = ctx.settings.email_from or stored.sender
    recipients = parse_recipients(ctx.settings.email_to or stored.recipients)
    if not sender or not recipients:
        raise TransientError(
            "no summary email sender or recipients: set CHARGEWORKER_EMAIL_FROM and "
            "CHARGEWORKER_EMAIL_TO or GeneralProviderSettings"
        )
    subject = ctx.settings.email_subject or stored.subject or DEFAULT_SUBJECT
    return Addressing(sender, recipients, subject)


async def is_email_sent(ctx: Context, subject_kind: str, subject_id: str) -> bool:
    async with ctx.engine.connect() as connection:
        return await email_records.is_sent(connection, subject_kind, subject_id, "summary")


async def send_once(
    ctx: Context, subject_kind: str, subject_id: str, email_kind: str, raw: bytes
) -> bool:
    """Send an email through SES unless it was sent before; False when it had been."""
    return await deliver_once(
        ctx, subject_kind, subject_id, email_kind, lambda: ctx.aws.send_raw_email(raw)
    )


async def deliver_once(
    ctx: Context,
    subject_kind: str,
    subject_id: str,
    email_kind: str,
    deliver: Callable[[], Awaitable[str]],
) -> bool:
    """Run `deliver` (an email or a proxy POST) unless it succeeded before.

    The record is `sending` before `deliver` runs and `sent` after, so a summary
    goes out twice only if the process dies in between, and never zero times.
    """
    async with ctx.engine.begin() as connection:
        claim = await email_records.claim_sending(
            connection,
            subject_kind,
            subject_id,
            email_kind,
            now=ctx.clock.now(),
            lease_s=ctx.settings.lease_s,
        )
    if claim is email_records.Claim.ALREADY_SENT:
        log.info("email.already_sent", email_kind=email_kind)
        return False
    if claim is email_records.Claim.BUSY:
        raise TransientError(
            f"the {email_kind} email of {subject_kind} {subject_id} is being sent by another worker"
        )
    try:
        delivery_id = await deliver()
    except TransientError:
        async with ctx.engine.begin() as connection:
            await email_records.release(
                connection, subject_kind, subject_id, email_kind, ctx.clock.now()
            )
        raise
    async with ctx.engine.begin() as connection:
        await email_records.mark_sent(
            connection, subject_kind, subject_id, email_kind, delivery_id, ctx.clock.now()
        )
    metrics.SUMMARIES_SENT.labels(f"{subject_kind}_{email_kind}").inc()
    log.info("email.sent", email_kind=email_kind, subject_kind=subject_kind)
    return True


async def send_error_notification(
    ctx: Context,
    subject_kind: str,
    subject_id: str,
    addressing: Addressing,
    items: list[ErrorItem],
    *,
    about: str,
) -> None:
    """Send the list of rows that failed for good or are unresolved, once; none when empty.

    `about` names the queue, file or push in the subject, so the email can be
    matched with its summary.
    """
    if not items:
        return
    raw = build_error_notification(
        sender=addressing.sender,
        recipients=addressing.recipients,
        subject=f"Errors: {addressing.subject} ({about})",
        items=items,
    )
    await send_once(ctx, subject_kind, subject_id, "errors", raw)
