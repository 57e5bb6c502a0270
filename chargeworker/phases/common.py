"""Steps that the create and check phases share."""

import structlog
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from chargeworker.context import Context
from chargeworker.db.progress import ensure_progress, load_progress
from chargeworker.db.reads import load_instance, load_queue_instance_id
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
