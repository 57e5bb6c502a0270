"""Phase 3: when a queue or file has no work left, write its charge list and report it."""

from datetime import datetime

import structlog
from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chargeworker.charges.emails import Attachment, build_summary_email
from chargeworker.context import Context
from chargeworker.db import ledger
from chargeworker.db.progress import load_progress, mark_once, set_values
from chargeworker.db.tables import charge_line, page
from chargeworker.messages import CheckMessage, CreateMessage, Target, check_message, create_message
from chargeworker.phases.create import log_given_up
from chargeworker.phases.push import complete_push
from chargeworker.phases.reports import (
    CHARGE_LIST_TYPE,
    NOT_PROCESSED,
    Report,
    is_email_sent,
    load_addressing,
    load_report,
    send_error_notification,
    send_once,
)

log = structlog.get_logger()


async def handle_check(ctx: Context, message: CheckMessage) -> None:
    """Wait while the target has work, then write its charge list and send its summary once."""
    target = message.target
    if target is None:
        await complete_push(ctx, message, waiting=True)
        return
    is_push_queue = target.kind == "queue" and message.push.is_multiple_instance
    if not is_push_queue and await is_email_sent(ctx, target.kind, str(target.id)):
        log.info("check.already_reported")
        return

    report = await load_report(ctx, target, message.push)
    if report.unfinished:
        if message.retry_number < ctx.settings.max_checks:
            await _check_again(ctx, message, report)
            return
        await _give_up_unfinished(ctx, report)
        report = await load_report(ctx, target, message.push)
        log.warning("check.reporting_unfinished", rows=len(report.unfinished))

    await _write_charge_list(ctx, report)
    if is_push_queue:
        # A push's queues send no email of their own: the push sends one for all,
        # unless it went out before this queue was ready.
        covered = await complete_push(ctx, message, waiting=message.push.is_last_instance)
        if covered:
            return
    await _send_summary(ctx, report)


async def _write_charge_list(ctx: Context, report: Report) -> None:
    await ctx.aws.put_object(report.key, report.render(), CHARGE_LIST_TYPE)
    async with ctx.engine.begin() as connection:
        await set_values(
            connection,
            report.target,
            charge_list_key=report.key,
            charge_list_written_at=ctx.clock.now(),
        )
    log.info("check.charge_list_written", key=report.key, rows=len(report.rows))


async def _send_summary(ctx: Context, report: Report) -> None:
    addressing = await load_addressing(ctx)
    raw = build_summary_email(
        sender=addressing.sender,
        recipients=addressing.recipients,
        subject=addressing.subject,
        customer_name=report.customer_name,
        billing_period_end=report.billing_period_end or ctx.clock.now().date(),
        row_count=len(report.rows),
        error_count=report.error_count,
        attachment=Attachment(report.key, report.render(), CHARGE_LIST_TYPE),
        file_name=report.file_name,
        dry_run=not ctx.settings.send_to_rev,
    )
    subject_id = str(report.target.id)
    await send_error_notification(
        ctx,
        report.target.kind,
        subject_id,
        addressing,
        report.error_items(),
        about=report.description,
    )
    await send_once(ctx, report.target.kind, subject_id, "summary", raw)


# --- waiting, re-driving and giving up -------------------------------------------------


async def _check_again(ctx: Context, message: CheckMessage, report: Report) -> None:
    """Re-send the check later; a stalled target's lost pages are sent again, once."""
    target = report.target
    now = ctx.clock.now()
    open_lines = [line for line in report.lines if line.state in (ledger.PENDING, ledger.SENDING)]
    leased = [line for line in open_lines if line.is_leased(now)]
    async with ctx.engine.connect() as connection:
        record = await load_progress(connection, target)
        last_activity = await _last_activity(connection, target, record, report)
    idle_s = (now - last_activity).total_seconds()
    # Pending lines alone are no sign of work: their page message may be lost. A live
    # lease or recent progress (a scheduled retry counts as future progress) is.
    stalled = not leased and idle_s >= ctx.settings.check_stall_s

    retry_number = message.retry_number
    if stalled:
        retry_number += 1
        await _redrive_once(ctx, message, report)
    again = CheckMessage(target, message.push, message.portal_type_id, retry_number)
    await ctx.aws.send(check_message(again, delay_s=ctx.settings.check_retry_delay_s))
    log.info(
        "check.waiting",
        unfinished_rows=len(report.unfinished),
        open_lines=len(open_lines),
        idle_s=round(idle_s, 1),
        retry_number=retry_number,
    )


async def _redrive_once(ctx: Context, message: CheckMessage, report: Report) -> None:
    """Send again the pages of rows whose page message was lost; only the first time."""
    async with ctx.engine.begin() as connection:
        claimed = await mark_once(connection, report.target, "redriven_at", ctx.clock.now())
    if not claimed:
        return
    pages = _pages_of(report, ctx.settings.page_size)
    for page_number in pages:
        page_message = CreateMessage(
            report.target, message.push, message.portal_type_id, page_number=page_number
        )
        await ctx.aws.send(create_message(page_message))
    log.warning("check.redriven", pages=pages)


def _pages_of(report: Report, page_size: int) -> list[int]:
    """Return the page numbers of the unfinished rows, counted per table in Id order."""
    pages = set()
    position: dict[str, int] = {}
    for row in report.rows:
        index = position.get(row.table, 0)
        position[row.table] = index + 1
        if not row.is_processed:
            pages.add(index // page_size + 1)
    return sorted(pages)


async def _give_up_unfinished(ctx: Context, report: Report) -> None:
    """Fail the open lines of unfinished rows, so the report shows them."""
    async with ctx.engine.begin() as connection:
        moved = await ledger.give_up(
            connection, report.lines, reason=NOT_PROCESSED, now=ctx.clock.now()
        )
    log_given_up(moved)
    log.warning("check.gave_up_unfinished", rows=len(report.unfinished))


async def _last_activity(
    connection: AsyncConnection, target: Target, record: Row | None, report: Report
) -> datetime:
    """Return when the target last made progress: rows, ledger lines, page retries, fan-out."""
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
    moments = [line_updated, page_retry, *(row.modified_date for row in report.rows)]
    if record is not None:
        moments += [record.created_at, record.filled_at, record.fanned_out_at, record.redriven_at]
    known = [moment for moment in moments if moment is not None]
    return max(known) if known else datetime.min
