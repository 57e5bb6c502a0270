"""Phase 2: turn one page of a winning queue's charge-queue rows into Rev.io charges."""

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from chargeworker import metrics
from chargeworker.charges.lines import ChargeRow, RowPlan, plan_file_row, plan_row
from chargeworker.context import Context
from chargeworker.db import ledger
from chargeworker.db import platform as p
from chargeworker.db.ledger import LedgerLine
from chargeworker.db.progress import ensure_progress, mark_once, set_values
from chargeworker.db.reads import (
    Instance,
    RevCustomer,
    TenantSettings,
    load_account,
    load_instance,
    load_integration_names,
    load_rev_customer,
    load_tenant_settings,
)
from chargeworker.db.rows import (
    NO_LINE_NEEDED,
    count_rows,
    count_unprocessed,
    load_page,
    write_outcome,
    write_row_columns,
)
from chargeworker.db.tables import page as page_table
from chargeworker.errors import PermanentError, TransientError
from chargeworker.messages import CheckMessage, CreateMessage, Target, check_message, create_message
from chargeworker.phases.common import charge_dates, load_or_adopt_progress
from chargeworker.phases.sending import Customer, Holdback, PageOutcome, PageSender
from chargeworker.revio.models import RevioAccount

log = structlog.get_logger()

NO_CREDENTIALS = "no Rev.io credentials"
MISSING_BILLING_DATES = "billing dates missing"


@dataclass(frozen=True)
class QueueJob:
    """Everything a page needs, read once per message; files have no instance."""

    target: Target
    instance: Instance | None
    account: RevioAccount | None
    rev_customer: RevCustomer | None
    tenant: TenantSettings


async def handle_create(ctx: Context, message: CreateMessage) -> None:
    """Process one page: fan out on page 1, charge its rows, send the check when done."""
    if message.target.kind == "file":
        job = await _load_file_job(ctx, message)
    else:
        job = await _load_job(ctx, message)
    if message.page_number == 1:
        await _fan_out(ctx, job, message)

    async with ctx.engine.connect() as connection:
        page_rows = await load_page(
            connection, job.target, message.page_number, ctx.settings.page_size
        )
    open_rows = [row for row in page_rows if not row.is_processed]
    if open_rows:
        await _process_rows(ctx, job, message, open_rows)

    await _send_check_when_done(ctx, job, message)


async def _process_rows(
    ctx: Context, job: QueueJob, message: CreateMessage, rows: list[ChargeRow]
) -> None:
    if job.instance is not None and not job.instance.is_rev_customer:
        log.info("create.non_rev_customer", rows=len(rows))
        await _finish_without_charges(ctx, rows)
    elif not ctx.settings.send_to_rev:
        log.info("create.dry_run_nothing_sent", rows=len(rows))
        await _finish_without_charges(ctx, rows)
    elif job.account is None:
        log.error("create.no_credentials", rows=len(rows))
        await _fail_rows(ctx, rows, NO_CREDENTIALS)
    elif job.instance is not None and job.rev_customer is None:
        reason = f"Rev.io customer {job.instance.rev_customer_guid} not found"
        log.error("create.rev_customer_not_found", rows=len(rows), reason=reason)
        await _fail_rows(ctx, rows, reason)
    else:
        await _charge_rows(ctx, job, message, rows)


async def _load_job(ctx: Context, message: CreateMessage) -> QueueJob:
    target = message.target
    async with ctx.engine.begin() as connection:
        record = await load_or_adopt_progress(ctx, connection, target, message.push)
        instance = await load_instance(connection, record.instance_id)
        if instance is None:
            raise PermanentError(
                f"instance {record.instance_id} of queue {target.id} not found",
                kind="unknown_instance",
            )
        account = await load_account(connection, record.integration_authentication_id)
        rev_customer = await load_rev_customer(connection, instance.rev_customer_guid)
        tenant = await load_tenant_settings(connection, instance.tenant_id)
    structlog.contextvars.bind_contextvars(instance_id=instance.id)
    return QueueJob(target, instance, account, rev_customer, tenant)


async def _load_file_job(ctx: Context, message: CreateMessage) -> QueueJob:
    """Read an uploaded file's record and pin its Rev.io account, as for a queue."""
    target = message.target
    uploaded = p.uploaded_file
    async with ctx.engine.begin() as connection:
        query = select(uploaded.c.Id, uploaded.c.IntegrationAuthenticationId)
        uploaded_row = (await connection.execute(query.where(uploaded.c.Id == target.id))).first()
        if uploaded_row is None:
            raise PermanentError(f"uploaded file {target.id} not found", kind="unknown_file")
        file_account_id = uploaded_row.IntegrationAuthenticationId
        record = await ensure_progress(
            connection,
            target,
            instance_id=None,
            portal_type_id=0,
            integration_authentication_id=file_account_id
            or message.push.integration_authentication_id
            or None,
            now=ctx.clock.now(),
        )
        account = await load_account(connection, record.integration_authentication_id)
    return QueueJob(target, None, account, None, TenantSettings(None, itemized=False))


# --- fan-out and the check message -------------------------------------------------


async def _fan_out(ctx: Context, job: QueueJob, message: CreateMessage) -> None:
    """Send pages 2..N and a delayed check, once per queue however often page 1 runs."""
    async with ctx.engine.begin() as connection:
        counts = await count_rows(connection, job.target)
        page_count = max(1, math.ceil(max(counts.values()) / ctx.settings.page_size))
        claimed = await mark_once(connection, job.target, "fanned_out_at", ctx.clock.now())
        if claimed:
            await set_values(connection, job.target, page_count=page_count)
    if not claimed:
        return

    try:
        for page_number in range(2, page_count + 1):
            page = replace(message, page_number=page_number, retry_count=0)
            await ctx.aws.send(create_message(page))
        check = CheckMessage(job.target, message.push, message.portal_type_id)
        await ctx.aws.send(check_message(check, delay_s=ctx.settings.initial_check_delay_s))
    except TransientError:
        async with ctx.engine.begin() as connection:
            await set_values(connection, job.target, fanned_out_at=None)
        raise
    log.info("create.fanned_out", pages=page_count)


async def _send_check_when_done(ctx: Context, job: QueueJob, message: CreateMessage) -> None:
    async with ctx.engine.begin() as connection:
        if await count_unprocessed(connection, job.target) > 0:
            return
        claimed = await mark_once(connection, job.target, "check_sent_at", ctx.clock.now())
    if not claimed:
        return
    check = CheckMessage(job.target, message.push, message.portal_type_id)
    try:
        await ctx.aws.send(check_message(check))
    except TransientError:
        async with ctx.engine.begin() as connection:
            await set_values(connection, job.target, check_sent_at=None)
        raise
    log.info("create.check_sent")


# --- rows that send nothing ------------------------------------------------------------


async def _finish_without_charges(ctx: Context, rows: list[ChargeRow]) -> None:
    # NOTE: such rows store -1 in both id columns, like a row that needed no line,
    # because nothing was charged and nothing failed.
    async with ctx.engine.begin() as connection:
        for row in rows:
            await write_row_columns(
                connection,
                row,
                charge_id=NO_LINE_NEEDED,
                sms_charge_id=NO_LINE_NEEDED,
                error_message="",
                now=ctx.clock.now(),
            )


async def _fail_rows(ctx: Context, rows: list[ChargeRow], reason: str) -> None:
    async with ctx.engine.begin() as connection:
        for row in rows:
            await write_outcome(connection, row, [], row_error=reason, now=ctx.clock.now())


# --- charging ---------------------------------------------------------------------------


async def _charge_rows(
    ctx: Context, job: QueueJob, message: CreateMessage, rows: list[ChargeRow]
) -> None:
    if job.account is None:
        raise RuntimeError("_charge_rows needs the target's Rev.io account")
    plans = await _plan_rows(ctx, job, rows)
    try:
        async with ctx.engine.begin() as connection:
            await ledger.record_planned_lines(
                connection,
                job.target,
                plans,
                integration_authentication_id=job.account.integration_authentication_id,
                rev_customer_id=job.rev_customer.rev_customer_id if job.rev_customer else None,
                now=ctx.clock.now(),
            )
    except IntegrityError as exc:
        raise TransientError("another worker recorded this page's lines at the same time") from exc

    async with ctx.engine.connect() as connection:
        lines = await ledger.load_lines(connection, [row.key for row in rows])
    customer = None
    if job.instance is not None and job.rev_customer is not None:
        customer = Customer(
            job.rev_customer.rev_customer_id,
            job.instance.billing_period_start,
            job.instance.billing_period_end,
        )
    numbers = {row.key: row.service_number for row in rows}
    outcome = await PageSender(ctx, job.account, customer).run(lines, numbers)

    if outcome.holdbacks:
        await _schedule_or_give_up(ctx, job, message, lines, outcome)
    await _write_finished_rows(ctx, plans)


async def _plan_rows(ctx: Context, job: QueueJob, rows: list[ChargeRow]) -> list[RowPlan]:
    provider_ids = {row.service_provider_id for row in rows if row.service_provider_id}
    async with ctx.engine.connect() as connection:
        integration_names = await load_integration_names(connection, provider_ids)
    plans = []
    for row in rows:
        dates = charge_dates(ctx, job.instance, row, integration_names)
        if dates is None:
            plans.append(RowPlan(row, [], row_error=MISSING_BILLING_DATES))
            continue
        start_date, end_date = dates
        if job.instance is None:
            plans.append(plan_file_row(row, start_date=start_date, end_date=end_date))
        else:
            plans.append(
                plan_row(
                    row, itemized=job.tenant.itemized, start_date=start_date, end_date=end_date
                )
            )
    return plans


async def _write_finished_rows(ctx: Context, plans: list[RowPlan]) -> None:
    """Write the outcome of every row whose lines are all final."""
    async with ctx.engine.connect() as connection:
        lines = await ledger.load_lines(connection, [plan.row.key for plan in plans])
    lines_by_row: dict[tuple[str, int], list[LedgerLine]] = {}
    for line in lines:
        lines_by_row.setdefault(line.row_key, []).append(line)

    async with ctx.engine.begin() as connection:
        for plan in plans:
            row_lines = lines_by_row.get(plan.row.key, [])
            if all(line.is_final for line in row_lines):
                await write_outcome(
                    connection,
                    plan.row,
                    row_lines,
                    row_error=plan.row_error,
                    now=ctx.clock.now(),
                )


# --- retries and deferrals ----------------------------------------------------------


async def _schedule_or_give_up(
    ctx: Context,
    job: QueueJob,
    message: CreateMessage,
    lines: list[LedgerLine],
    outcome: PageOutcome,
) -> None:
    """Send the page again for its held lines, or fail them when their time is up."""
    settings = ctx.settings
    held_lines = {
        reason: [line for line in lines if outcome.holdbacks.get(line.id) == reason]
        for reason in Holdback
    }
    retry_count = message.retry_count
    delay_s = 0.0

    if held_lines[Holdback.RETRY]:
        if message.retry_count >= settings.max_page_retries:
            await _give_up(ctx, held_lines[Holdback.RETRY], attempts=message.retry_count + 1)
        else:
            retry_count += 1
            delay_s = min(
                settings.retry_base_delay_s * 2**message.retry_count, settings.retry_max_delay_s
            )

    deferred_since = None
    if held_lines[Holdback.DEFER]:
        deferred_since = await _deferral_start(ctx, job.target, message.page_number)
        waited_s = (ctx.clock.now() - deferred_since).total_seconds()
        if waited_s >= settings.deferral_limit_s:
            reason = (
                f"Rev.io refused the requests for {waited_s / 3600:.1f} h "
                "(rate limit or credentials)"
            )
            await _give_up(ctx, held_lines[Holdback.DEFER], reason=reason)
            deferred_since = None
        else:
            delay_s = max(delay_s, outcome.retry_after_s or 0.0, settings.deferral_delay_s)

    if held_lines[Holdback.BUSY]:
        delay_s = max(delay_s, outcome.busy_for_s)

    still_open = any(line.state in (ledger.PENDING, ledger.SENDING) for line in lines)
    if not still_open:
        return
    delay = min(math.ceil(delay_s), 900)
    again = replace(message, retry_count=retry_count)
    await ctx.aws.send(create_message(again, delay_s=delay))
    await _record_page_retry(
        ctx, job.target, message.page_number, retry_count, delay, deferred_since
    )
    log.info(
        "create.page_retry_scheduled",
        retry_count=retry_count,
        delay_s=delay,
        held={reason.value: len(items) for reason, items in held_lines.items() if items},
    )


async def _give_up(
    ctx: Context, lines: list[LedgerLine], *, attempts: int | None = None, reason: str = ""
) -> None:
    """Fail held lines for good; a line that may exist in Rev.io ends unresolved."""
    plural = "" if attempts == 1 else "s"
    not_created = f"not created after {attempts} attempt{plural}" if attempts else reason
    async with ctx.engine.begin() as connection:
        moved = await ledger.give_up(connection, lines, reason=not_created, now=ctx.clock.now())
    log_given_up(moved)


def log_given_up(lines: list[LedgerLine]) -> None:
    for line in lines:
        metrics.CHARGE_LINES.labels(line.kind, line.state).inc()
        log.warning(
            "charge.given_up",
            line_id=line.id,
            row_id=line.row_id,
            kind=line.kind,
            state=line.state,
            reason=line.error,
        )


async def _deferral_start(ctx: Context, target: Target, page_number: int) -> datetime:
    async with ctx.engine.connect() as connection:
        record = (
            await connection.execute(
                page_table.select().where(
                    page_table.c.target_kind == target.kind,
                    page_table.c.target_id == target.id,
                    page_table.c.page_number == page_number,
                )
            )
        ).first()
    if record is not None and record.deferred_since is not None:
        return record.deferred_since
    return ctx.clock.now()


async def _record_page_retry(
    ctx: Context,
    target: Target,
    page_number: int,
    retry_count: int,
    delay_s: int,
    deferred_since: datetime | None,
) -> None:
    now = ctx.clock.now()
    values = {
        "retry_count": retry_count,
        "deferred_since": deferred_since,
        "retry_at": now + timedelta(seconds=delay_s),
        "updated_at": now,
    }
    key = (
        page_table.c.target_kind == target.kind,
        page_table.c.target_id == target.id,
        page_table.c.page_number == page_number,
    )
    async with ctx.engine.begin() as connection:
        result = await connection.execute(update(page_table).where(*key).values(**values))
        if result.rowcount == 0:
            await connection.execute(
                page_table.insert().values(
                    target_kind=target.kind,
                    target_id=target.id,
                    page_number=page_number,
                    **values,
                )
            )
