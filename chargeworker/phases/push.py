"""The end of a multi-instance push: one consolidated summary once every queue is written."""

from dataclasses import replace

import aiohttp
import structlog
from sqlalchemy import select

from chargeworker.charges.consolidated import (
    ProxyQueue,
    PushQueueSummary,
    build_consolidated_email,
    proxy_payload,
)
from chargeworker.charges.emails import Attachment
from chargeworker.charges.workbooks import (
    SUMMARY_ZIP_MIME_TYPE,
    SUMMARY_ZIP_NAME,
    build_queue_workbook,
    build_summary_zip,
)
from chargeworker.context import Context
from chargeworker.db.pushes import (
    PushState,
    load_push,
    record_reported_queues,
    start_waiting,
)
from chargeworker.db.tables import progress
from chargeworker.errors import TransientError
from chargeworker.messages import CheckMessage, Target, check_message
from chargeworker.phases.reports import (
    Report,
    deliver_once,
    is_email_sent,
    load_addressing,
    load_report,
    send_error_notification,
    send_once,
)

log = structlog.get_logger()


async def complete_push(ctx: Context, message: CheckMessage, *, waiting: bool) -> bool:
    """Send the push's summary when it is complete; a waiting check re-checks until then.

    The push is complete when every instance is recorded as enqueued and every
    one of their winning queues has its charge list written. A waiting check
    gives up after `push_wait_limit_s` and reports what exists. Return False when
    the push was reported before without the message's queue, which must then
    report on its own so that its charges reach an email.
    """
    async with ctx.engine.connect() as connection:
        state = await load_push(connection, message.push.instance_ids)
    structlog.contextvars.bind_contextvars(push_key=state.push_key[:12])
    if await is_email_sent(ctx, "push", state.push_key):
        target = message.target
        if target is not None and target.id not in state.reported_queue_ids:
            log.warning("push.queue_after_summary", queue_id=target.id)
            return False
        log.info("push.already_reported")
        return True

    written = await _written_queue_ids(ctx, state.queue_ids)
    missing = _missing_instances(state, written)
    if missing:
        if not waiting:
            await _make_sure_someone_waits(ctx, message, missing)
            return True
        if not await _waited_long_enough(ctx, message, missing):
            return True
        log.warning("push.wait_limit_reached", missing_instances=missing)

    reports = [
        await load_report(ctx, Target("queue", queue_id), message.push) for queue_id in written
    ]
    async with ctx.engine.begin() as connection:
        await record_reported_queues(connection, state.push_key, written)
    await _send_push_summary(ctx, state, reports, missing)
    return True


async def _make_sure_someone_waits(ctx: Context, message: CheckMessage, missing: list[int]) -> None:
    """Start the push's wait and send a waiting push check, once per push.

    The last instance's check normally waits; if that instance's message was
    lost or dead-lettered, this check still ends the push after the wait limit.
    """
    async with ctx.engine.begin() as connection:
        _started, is_new = await start_waiting(
            connection, message.push.instance_ids, ctx.clock.now()
        )
    if is_new:
        push_check = CheckMessage(target=None, push=replace(message.push, is_last_instance=True))
        await ctx.aws.send(check_message(push_check, delay_s=ctx.settings.check_retry_delay_s))
    log.info("push.incomplete", missing_instances=missing, waiting_check_sent=is_new)


async def _written_queue_ids(ctx: Context, queue_ids: list[int]) -> list[int]:
    if not queue_ids:
        return []
    async with ctx.engine.connect() as connection:
        query = select(progress.c.target_id).where(
            progress.c.target_kind == "queue",
            progress.c.target_id.in_(queue_ids),
            progress.c.charge_list_written_at.isnot(None),
        )
        return sorted((await connection.scalars(query)).all())


def _missing_instances(state: PushState, written: list[int]) -> list[int]:
    """Instances not yet enqueued, or with a winning queue whose charge list is not written."""
    done = set(written)
    return [
        instance_id
        for instance_id in state.instance_ids
        if instance_id not in state.enqueued
        or any(queue_id not in done for queue_id in state.enqueued[instance_id])
    ]


async def _waited_long_enough(ctx: Context, message: CheckMessage, missing: list[int]) -> bool:
    """Re-send the waiting check unless the wait has reached its limit."""
    now = ctx.clock.now()
    async with ctx.engine.begin() as connection:
        started, _is_new = await start_waiting(connection, message.push.instance_ids, now)
    if (now - started).total_seconds() >= ctx.settings.push_wait_limit_s:
        return True
    await ctx.aws.send(check_message(message, delay_s=ctx.settings.check_retry_delay_s))
    log.info("push.waiting", missing_instances=missing)
    return False


async def _send_push_summary(
    ctx: Context, state: PushState, reports: list[Report], missing: list[int]
) -> None:
    addressing = await load_addressing(ctx)
    error_items = [item for report in reports for item in report.error_items()]
    instances = ", ".join(str(instance_id) for instance_id in state.instance_ids)
    await send_error_notification(
        ctx,
        "push",
        state.push_key,
        addressing,
        error_items,
        about=f"push of instances {instances}",
    )

    if ctx.settings.proxy_url:
        payload = _proxy_payload(ctx, state, reports)
        await deliver_once(
            ctx, "push", state.push_key, "summary", lambda: _post_to_proxy(ctx, payload)
        )
        return

    created_at = ctx.clock.now()
    workbooks = [
        (
            f"{report.target.id}.xlsx",
            build_queue_workbook(report.workbook_rows(), created_at=created_at),
        )
        for report in reports
    ]
    raw = build_consolidated_email(
        sender=addressing.sender,
        recipients=addressing.recipients,
        subject=addressing.subject,
        queues=[
            PushQueueSummary(
                customer_name=report.customer_name,
                billing_period_end=report.billing_period_end or created_at.date(),
                error_count=report.error_count,
                queue_id=report.target.id,
            )
            for report in reports
        ],
        missing_instance_ids=missing,
        attachment=Attachment(
            SUMMARY_ZIP_NAME, build_summary_zip(workbooks), SUMMARY_ZIP_MIME_TYPE
        ),
        dry_run=not ctx.settings.send_to_rev,
    )
    await send_once(ctx, "push", state.push_key, "summary", raw)


def _proxy_payload(ctx: Context, state: PushState, reports: list[Report]) -> dict[str, object]:
    instances = [report.instance for report in reports if report.instance is not None]
    queues = [
        ProxyQueue(
            queue_id=report.target.id,
            instance_id=report.instance.id,
            customer_id=str(report.instance.rev_customer_guid or report.instance.amop_customer_id),
            customer_name=report.customer_name,
            billing_period_start=report.instance.billing_period_start,
            billing_period_end=report.instance.billing_period_end,
            error_count=report.error_count,
            charge_list_key=report.key,
        )
        for report in reports
        if report.instance is not None
    ]
    return proxy_payload(
        tenant_id=instances[0].tenant_id if instances else 0,
        is_non_rev=bool(instances) and not any(i.is_rev_customer for i in instances),
        bucket=ctx.settings.bucket,
        instance_ids=list(state.instance_ids),
        queues=queues,
    )


async def _post_to_proxy(ctx: Context, payload: dict[str, object]) -> str:
    """POST the consolidated summary to the portal; anything but 2xx is retried later."""
    url = ctx.settings.proxy_url or ""
    timeout = aiohttp.ClientTimeout(total=ctx.settings.proxy_timeout_s)
    try:
        async with ctx.http.post(url, json=payload, timeout=timeout) as response:
            body = (await response.text())[:500]
            if not 200 <= response.status < 300:
                raise TransientError(f"the portal proxy returned HTTP {response.status}: {body}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientError(f"posting the summary to the portal proxy failed: {exc}") from exc
    log.info("push.proxy_posted", status=response.status)
    return f"proxy-{ctx.clock.now().isoformat()}"
