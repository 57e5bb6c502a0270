"""Phase 1: turn an instance's winning queues into charge-queue rows and create messages."""

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import Table, and_, exists, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chargeworker import metrics
from chargeworker.charges.money import round_money
from chargeworker.context import Context
from chargeworker.db import platform as p
from chargeworker.db.progress import ensure_progress, load_progress, set_values
from chargeworker.db.pushes import record_enqueued_instance
from chargeworker.db.reads import (
    PORTAL_CROSS_PROVIDER,
    PORTAL_MOBILITY,
    PORTAL_TYPES,
    Instance,
    find_winning_queue,
    load_comm_group_ids,
    load_instance,
    load_rev_customer,
)
from chargeworker.errors import PermanentError
from chargeworker.messages import (
    CheckMessage,
    CreateMessage,
    EnqueueMessage,
    Push,
    Target,
    check_message,
    create_message,
)

log = structlog.get_logger()


async def handle_enqueue(ctx: Context, message: EnqueueMessage) -> None:
    """Fill the charge queue of every winning queue of the instance and send page 1 of each."""
    instance = await _load_instance(ctx, message.instance_id)
    winning_queue_ids = await _find_winning_queues(ctx, instance)
    account_id = pinned_account(instance, message.push)

    ends_push = message.push.is_multiple_instance and message.push.is_last_instance
    last_message_sent = False
    for position, queue_id in enumerate(winning_queue_ids):
        target = Target("queue", queue_id)
        # Of a push's last instance, only the last create message carries
        # IsLastInstanceId=1, and it waits so the other instances' pages go first.
        is_last = ends_push and position == len(winning_queue_ids) - 1
        push = replace(message.push, is_last_instance=is_last)
        delay_s = ctx.settings.last_instance_delay_s if is_last else 0
        with structlog.contextvars.bound_contextvars(queue_id=queue_id):
            rows_added = await _fill_charge_queue(ctx, instance, target, account_id)
            sent = await _send_first_page(ctx, instance, target, push, delay_s)
            last_message_sent = last_message_sent or (sent and is_last)
            log.info("enqueue.queue_filled", rows_added=rows_added)

    if message.push.is_multiple_instance:
        # The push's summary waits on a message that carries IsLastInstanceId=1; when
        # no create message carried it, a push check must.
        needs_push_check = ends_push and not last_message_sent
        await _record_in_push(ctx, message, winning_queue_ids, needs_push_check)
    log.info("enqueue.done", winning_queues=len(winning_queue_ids))


async def _record_in_push(
    ctx: Context, message: EnqueueMessage, winning_queue_ids: list[int], send_push_check: bool
) -> None:
    """Record the instance as enqueued, and send the push check when asked to."""
    async with ctx.engine.begin() as connection:
        await record_enqueued_instance(
            connection,
            message.push.instance_ids,
            message.instance_id,
            winning_queue_ids,
            ctx.clock.now(),
        )
    if send_push_check:
        push_check = CheckMessage(target=None, push=message.push)
        await ctx.aws.send(check_message(push_check, delay_s=ctx.settings.last_instance_delay_s))
        log.info("enqueue.push_check_sent")


def pinned_account(instance: Instance, push: Push) -> int | None:
    """Choose the Rev.io account of the instance's queues as the old functions did."""
    from_message = push.integration_authentication_id or None
    if instance.portal_type_id == PORTAL_CROSS_PROVIDER:
        return from_message or instance.integration_authentication_id
    return instance.integration_authentication_id or from_message


async def _load_instance(ctx: Context, instance_id: int) -> Instance:
    async with ctx.engine.connect() as connection:
        instance = await load_instance(connection, instance_id)
    if instance is None:
        raise PermanentError(f"instance {instance_id} not found", kind="unknown_instance")
    if instance.portal_type_id not in PORTAL_TYPES:
        raise PermanentError(
            f"instance {instance_id} has PortalTypeId {instance.portal_type_id}: "
            "expected 0, 2 or 3",
            kind="invalid_instance",
        )
    return instance


async def _find_winning_queues(ctx: Context, instance: Instance) -> list[int]:
    winners = []
    async with ctx.engine.connect() as connection:
        for group_id in await load_comm_group_ids(connection, instance.id):
            queue_id = await find_winning_queue(connection, group_id, instance.portal_type_id)
            if queue_id is None:
                metrics.COMM_GROUPS_WITHOUT_WINNER.inc()
                log.warning("enqueue.no_winning_queue", comm_group_id=group_id)
                continue
            winners.append(queue_id)
    return winners


async def _fill_charge_queue(
    ctx: Context, instance: Instance, target: Target, account_id: int | None
) -> int:
    """Insert the rows the queue lacks, in one transaction; return how many were added."""
    now = ctx.clock.now()
    async with ctx.engine.begin() as connection:
        # Lock the queue's platform row so two copies of one message cannot both insert.
        queue = p.optimization_queue
        await connection.execute(
            select(queue.c.Id)
            .where(queue.c.Id == target.id)
            .with_for_update()
            # SQL Server ignores FOR UPDATE; the hint takes the same lock there.
            .with_hint(queue, "WITH (UPDLOCK, ROWLOCK)", "mssql")
        )
        rev_customer = await load_rev_customer(connection, instance.rev_customer_guid)
        account_number = rev_customer.account_number if rev_customer else None
        added = 0
        for kind in _device_kinds(instance.portal_type_id):
            rows = await _missing_rows(connection, kind, target.id, account_number, now)
            for row in rows:
                row["IntegrationAuthenticationId"] = account_id
            if rows:
                await connection.execute(kind.charge_queue.insert(), rows)
            added += len(rows)
        await ensure_progress(
            connection,
            target,
            instance_id=instance.id,
            portal_type_id=instance.portal_type_id,
            integration_authentication_id=account_id,
            now=now,
        )
        await set_values(connection, target, filled_at=now)
    return added


class DeviceKind:
    """The tables of one kind of device: M2M devices or Mobility lines."""

    def __init__(
        self, name: str, result: Table, device: Table, charge_queue: Table, device_column: str
    ) -> None:
        self.name = name
        self.result = result
        self.device = device
        self.charge_queue = charge_queue
        self.device_column = device_column


M2M = DeviceKind("m2m", p.device_result, p.device, p.m2m_charge_queue, "AmopDeviceId")
MOBILITY = DeviceKind(
    "mobility",
    p.mobility_device_result,
    p.mobility_device,
    p.mobility_charge_queue,
    "MobilityDeviceId",
)
DEVICE_KINDS = {M2M.name: M2M, MOBILITY.name: MOBILITY}


def _device_kinds(portal_type_id: int) -> list[DeviceKind]:
    if portal_type_id == PORTAL_CROSS_PROVIDER:
        return [M2M, MOBILITY]
    return [MOBILITY] if portal_type_id == PORTAL_MOBILITY else [M2M]


async def _missing_rows(
    connection: AsyncConnection,
    kind: DeviceKind,
    queue_id: int,
    account_number: str | None,
    now: datetime,
) -> list[dict[str, Any]]:
    result, device, plan, queue_rows = kind.result, kind.device, p.rate_plan, kind.charge_queue
    device_id = result.c[kind.device_column]
    already_queued = exists().where(
        and_(queue_rows.c.QueueId == queue_id, queue_rows.c[kind.device_column] == device_id)
    )
    query = (
        select(
            result,
            device.c.ICCID,
            device.c.MSISDN,
            device.c.RevServiceNumber,
            device.c.ServiceProviderId,
            plan.c.RatePlanCode,
            plan.c.RatePlanName,
            plan.c.BaseRate.label("PlanBaseRate"),
            plan.c.IsBillInAdvance,
            plan.c.RevProductId,
            plan.c.RevProductTypeId,
            plan.c.OverageRevProductId,
            plan.c.OverageRevProductTypeId,
            plan.c.SmsRevProductId,
            plan.c.SmsRevProductTypeId,
        )
        .outerjoin(device, device.c.Id == device_id)
        .outerjoin(plan, plan.c.Id == result.c.AssignedRatePlanId)
        .where(result.c.QueueId == queue_id, ~already_queued)
        .order_by(result.c.Id)
    )
    rows = []
    for source in (await connection.execute(query)).mappings():
        rows.append(_charge_queue_row(kind, queue_id, source, account_number, now))
    return rows


def _charge_queue_row(
    kind: DeviceKind, queue_id: int, source: Any, account_number: str | None, now: datetime
) -> dict[str, Any]:
    # Amounts are rounded once, here, so DeviceCharge = rate + overage is exact.
    rate = round_money(source["RateChargeAmt"])
    overage = round_money(source["OverageChargeAmt"])
    base_rate = source["BaseRateAmt"]
    if base_rate is None:
        base_rate = source["PlanBaseRate"]
    return {
        "QueueId": queue_id,
        kind.device_column: source[kind.device_column],
        "ICCID": source["ICCID"],
        "MSISDN": source["MSISDN"],
        "RevServiceNumber": source["RevServiceNumber"],
        "ServiceProviderId": source["ServiceProviderId"],
        "RatePlanCode": source["RatePlanCode"],
        "RatePlanName": source["RatePlanName"],
        "UsageMB": Decimal(source["UsageMB"] or 0),
        "SmsUsage": source["SmsUsage"] or 0,
        "BaseRate": round_money(base_rate),
        "RateChargeAmount": rate,
        "OverageChargeAmount": overage,
        "SmsChargeAmount": round_money(source["SmsChargeAmt"]),
        "DeviceCharge": rate + overage,
        "RevProductId": source["RevProductId"],
        "RevProductTypeId": source["RevProductTypeId"],
        "OverageRevProductId": source["OverageRevProductId"],
        "OverageRevProductTypeId": source["OverageRevProductTypeId"],
        "SmsRevProductId": source["SmsRevProductId"],
        "SmsRevProductTypeId": source["SmsRevProductTypeId"],
        "IsBillInAdvance": bool(source["IsBillInAdvance"]),
        "RevAccountNumber": account_number,
        "IsProcessed": False,
        "HasErrors": False,
        "CreatedBy": "System",
        "CreatedDate": now,
    }


async def _send_first_page(
    ctx: Context, instance: Instance, target: Target, push: Push, delay_s: int
) -> bool:
    """Send page 1 unless an earlier message already did; True when this call sent it.

    The page is sent before it is recorded: a crash in between sends it twice,
    which the ledger makes harmless, where the other order could lose it.
    """
    async with ctx.engine.connect() as connection:
        record = await load_progress(connection, target)
    if record is not None and record.create_sent_at is not None:
        log.info("enqueue.create_already_sent")
        return False

    page_one = CreateMessage(target=target, push=push, portal_type_id=instance.portal_type_id)
    await ctx.aws.send(create_message(page_one, delay_s=delay_s))
    async with ctx.engine.begin() as connection:
        await set_values(connection, target, create_sent_at=ctx.clock.now())
    return True
