"""Phase 3: when a queue has no work left, write its charge list to S3 and email the summary."""

from datetime import date, datetime

import structlog
from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chargeworker import metrics
from chargeworker.charges.charge_list import ChargeListRow, render_charge_list
from chargeworker.charges.dates import billing_dates, format_local_time, resolve_time_zone
from chargeworker.charges.emails import Attachment, build_summary_email, parse_recipients
from chargeworker.charges.lines import ChargeRow
from chargeworker.context import Context
from chargeworker.db import emails as email_records
from chargeworker.db import ledger
from chargeworker.db.ledger import LedgerLine
from chargeworker.db.progress import set_values
from chargeworker.db.reads import (
    Instance,
    load_customer_name,
    load_email_settings,
    load_instance,
    load_integration_names,
    load_tenant_settings,
)
from chargeworker.db.rows import load_all_rows
from chargeworker.db.tables import charge_line, page
from chargeworker.errors import PermanentError, TransientError
from chargeworker.messages import CheckMessage, Target, check_message
from chargeworker.phases.common import load_or_adopt_progress

log = structlog.get_logger()

CHARGE_LIST_TYPE = "text/tab-separated-values"
DEFAULT_SUBJECT = "Customer charges uploaded to Rev.io"
NOT_PROCESSED = "not processed"


async def handle_check(ctx: Context, message: CheckMessage) -> None:
    """Wait while the queue has work, then write its charge list and send its summary once."""
    target = message.target
    if target is None or target.kind == "file":
        # TODO: push checks and uploaded files are reported once multi-instance pushes
        # and `upload` exist.
        what = "push checks" if target is None else "uploaded charge files"
        raise PermanentError(f"{what} are not handled by this version", kind="unsupported")

    async with ctx.engine.begin() as connection:
        record = await load_or_adopt_progress(ctx, connection, target, message.push)
        instance = await load_instance(connection, record.instance_id)
    if instance is None:
        raise PermanentError(f"instance {record.instance_id} not found", kind="unknown_instance")
    structlog.contextvars.bind_contextvars(instance_id=instance.id)

    async with ctx.engine.connect() as connection:
        if await email_records.is_sent(connection, target.kind, str(target.id), "summary"):
            log.info("check.already_reported")
            return
        rows = await load_all_rows(connection, target)
        lines = await ledger.load_target_lines(connection, target)
        last_activity = await _last_activity(connection, target, record, rows)
    unfinished = [row for row in rows if not row.is_processed]
    if unfinished and message.retry_number < ctx.settings.max_checks:
        await _check_again(ctx, message, unfinished, lines, last_activity)
        return
    if unfinished:
        log.warning("check.reporting_unfinished", rows=len(unfinished))

    key = f"{target.id}.txt"
    charge_list = await _render(ctx, instance, rows, lines)
    await ctx.aws.put_object(key, charge_list, CHARGE_LIST_TYPE)
    async with ctx.engine.begin() as connection:
        await set_values(
            connection, target, charge_list_key=key, charge_list_written_at=ctx.clock.now()
        )
    log.info("check.charge_list_written", key=key, bucket=ctx.settings.bucket, rows=len(rows))

    # TODO: a multi-instance push sends one consolidated email instead of one per queue.
    await _send_summary(ctx, target, instance, rows, key, charge_list)


async def _check_again(
    ctx: Context,
    message: CheckMessage,
    unfinished: list[ChargeRow],
    lines: list[LedgerLine],
    last_activity: datetime,
) -> None:
    """Re-send the check later; only checks of a stalled queue count against the maximum."""
    open_lines = [line for line in lines if line.state in (ledger.PENDING, ledger.SENDING)]
    idle_s = (ctx.clock.now() - last_activity).total_seconds()
    has_pending_work = bool(open_lines) or idle_s < ctx.settings.check_stall_s
    retry_number = message.retry_number if has_pending_work else message.retry_number + 1
    again = CheckMessage(message.target, message.push, message.portal_type_id, retry_number)
    await ctx.aws.send(check_message(again, delay_s=ctx.settings.check_retry_delay_s))
    log.info(
        "check.waiting",
        unfinished_rows=len(unfinished),
        open_lines=len(open_lines),
        idle_s=round(idle_s, 1),
        retry_number=retry_number,
    )


async def _last_activity(
    connection: AsyncConnection, target: Target, record: Row, rows: list[ChargeRow]
) -> datetime:
    """Return when the queue last made progress: rows, ledger lines, page retries, fan-out."""
    line_updated = await connection.scalar(
        select(func.max(charge_line.c.updated_at)).where(
            charge_line.c.target_kind == target.kind, charge_line.c.target_id == target.id
        )
    )
    page_retry = await connection.scalar(
        select(func.max(page.c.retry_at)).where(
            page.c.target_kind == target.kind, page.c.target_id == target.id
        )
    )
    moments = [
        record.created_at,
        record.filled_at,
        record.fanned_out_at,
        line_updated,
        page_retry,
        *(row.modified_date for row in rows),
    ]
    return max(moment for moment in moments if moment is not None)


async def _render(
    ctx: Context, instance: Instance, rows: list[ChargeRow], lines: list[LedgerLine]
) -> bytes:
    async with ctx.engine.connect() as connection:
        tenant = await load_tenant_settings(connection, instance.tenant_id)
        provider_ids = {row.service_provider_id for row in rows if row.service_provider_id}
        integration_names = await load_integration_names(connection, provider_ids)
    zone = resolve_time_zone(tenant.billing_time_zone)
    first_line: dict[tuple[str, int], LedgerLine] = {}
    for line in lines:
        first_line.setdefault(line.row_key, line)

    list_rows = []
    for row in rows:
        period = _dates_as_sent(ctx, instance, row, first_line.get(row.key), integration_names)
        list_rows.append(
            ChargeListRow(
                msisdn=row.msisdn,
                is_successful=row.is_processed and not row.has_errors,
                charge_id=row.charge_id,
                charge_amount=row.device_charge,
                sms_charge_id=row.sms_charge_id,
                sms_charge_amount=row.sms_amount,
                billing_period_start=period[0],
                billing_period_end=period[1],
                date_charged=format_local_time(row.modified_date, zone)
                if row.modified_date
                else "",
                error_message=row.error_message if row.is_processed else NOT_PROCESSED,
            )
        )
    return render_charge_list(list_rows)


def _dates_as_sent(
    ctx: Context,
    instance: Instance,
    row: ChargeRow,
    line: LedgerLine | None,
    integration_names: dict[int, str],
) -> tuple[date, date]:
    if line is not None and line.start_date and line.end_date:
        return (line.start_date, line.end_date)
    return billing_dates(
        instance.billing_period_start,
        instance.billing_period_end,
        integration_names.get(row.service_provider_id or 0),
        bill_in_advance=row.is_bill_in_advance,
        names=ctx.integration_names,
    )


async def _send_summary(
    ctx: Context,
    target: Target,
    instance: Instance,
    rows: list[ChargeRow],
    key: str,
    charge_list: bytes,
) -> None:
    subject_id = str(target.id)
    async with ctx.engine.connect() as connection:
        settings = await load_email_settings(connection)
        customer_name = await load_customer_name(connection, instance)
    sender = ctx.settings.email_from or settings.sender
    recipients = parse_recipients(ctx.settings.email_to or settings.recipients)
    if not sender or not recipients:
        raise TransientError(
            "no summary email sender or recipients: set CHARGEWORKER_EMAIL_FROM and "
            "CHARGEWORKER_EMAIL_TO or GeneralProviderSettings"
        )

    async with ctx.engine.begin() as connection:
        claim = await email_records.claim_sending(
            connection,
            target.kind,
            subject_id,
            "summary",
            now=ctx.clock.now(),
            lease_s=ctx.settings.lease_s,
        )
    if claim is email_records.Claim.ALREADY_SENT:
        log.info("check.summary_already_sent")
        return
    if claim is email_records.Claim.BUSY:
        raise TransientError(f"the summary of {target} is being sent by another worker")

    error_count = sum(1 for row in rows if row.has_errors or not row.is_processed)
    raw = build_summary_email(
        sender=sender,
        recipients=recipients,
        subject=ctx.settings.email_subject or settings.subject or DEFAULT_SUBJECT,
        customer_name=customer_name,
        billing_period_end=instance.billing_period_end,
        row_count=len(rows),
        error_count=error_count,
        attachment=Attachment(key, charge_list, CHARGE_LIST_TYPE),
        dry_run=not ctx.settings.send_to_rev,
    )
    try:
        ses_message_id = await ctx.aws.send_raw_email(raw)
    except TransientError:
        async with ctx.engine.begin() as connection:
            await email_records.release(
                connection, target.kind, subject_id, "summary", ctx.clock.now()
            )
        raise
    async with ctx.engine.begin() as connection:
        await email_records.mark_sent(
            connection, target.kind, subject_id, "summary", ses_message_id, ctx.clock.now()
        )
    metrics.SUMMARIES_SENT.labels("queue").inc()
    log.info("check.summary_sent", recipients=len(recipients), errors=error_count)
