"""Steps that the create and check phases share."""

from datetime import date

import structlog
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from chargeworker.charges.dates import billing_dates
from chargeworker.charges.lines import ChargeRow
from chargeworker.context import Context
from chargeworker.db.progress import ensure_progress, load_progress
from chargeworker.db.reads import Instance, load_instance, load_queue_instance_id
from chargeworker.errors import PermanentError
from chargeworker.messages import Push, Target

log = structlog.get_logger()


async def load_or_adopt_progress(
    ctx: Context, connection: AsyncConnection, target: Target, push: Push
) -> Row:
    """Return the queue's progress record, adopting a queue that the old functions filled.

    An adopted queue pins the message's Rev.io account, else the instance's. A
    queue is unknown only when the platform has no such row.
    """
    record = await load_progress(connection, target)
    if record is not None:
        return record

    instance_id = await load_queue_instance_id(connection, target.id)
    if instance_id is None:
        raise PermanentError(f"queue {target.id} not found", kind="unknown_queue")
    instance = await load_instance(connection, instance_id)
    if instance is None:
        raise PermanentError(
            f"instance {instance_id} of queue {target.id} not found", kind="unknown_instance"
        )
    account_id = push.integration_authentication_id or instance.integration_authentication_id
    log.info("queue.adopted", integration_authentication_id=account_id)
    return await ensure_progress(
        connection,
        target,
        instance_id=instance.id,
        portal_type_id=instance.portal_type_id,
        integration_authentication_id=account_id,
        now=ctx.clock.now(),
    )


def charge_dates(
    ctx: Context, instance: Instance | None, row: ChargeRow, integration_names: dict[int, str]
) -> tuple[date, date] | None:
    """Return the dates a row's charges carry, after the carrier's rule.

    A queue's rows use the instance's billing period, an uploaded file's rows their
    own dates. None when a file row has no dates.
    """
    if instance is not None:
        period = (instance.billing_period_start, instance.billing_period_end)
    elif row.billing_start_date and row.billing_end_date:
        period = (row.billing_start_date, row.billing_end_date)
    else:
        return None
    return billing_dates(
        *period,
        integration_names.get(row.service_provider_id or 0),
        bill_in_advance=row.is_bill_in_advance,
        names=ctx.integration_names,
    )
