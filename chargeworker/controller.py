"""The controller's side of a push: one enqueue message per instance."""

from sqlalchemy import select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from chargeworker.aws import Aws
from chargeworker.db import platform as p
from chargeworker.db.reads import load_instance
from chargeworker.errors import PermanentError
from chargeworker.messages import Push, enqueue_message

REVIO_INTEGRATION_NAME = "Rev.io"


async def tenant_revio_account(connection: AsyncConnection, tenant_id: int) -> int:
    """Return the tenant's active Rev.io integration authentication id, or 0 when none."""
    auth, integration = p.integration_authentication, p.integration
    query = (
        select(auth.c.Id)
        .join(integration, integration.c.Id == auth.c.IntegrationId)
        .where(
            auth.c.TenantId == tenant_id,
            auth.c.IsActive == true(),
            integration.c.Name == REVIO_INTEGRATION_NAME,
        )
        .order_by(auth.c.Id)
        .limit(1)
    )
    return int(await connection.scalar(query) or 0)


async def enqueue_push(
    aws: Aws,
    connection: AsyncConnection,
    instance_ids: list[int],
    *,
    integration_authentication_id: int | None = None,
    last_instance_delay_s: int = 90,
) -> list[str]:
    """Send the enqueue messages of one push; return their SQS message ids."""
    if not instance_ids:
        raise ValueError("a push needs at least one instance id")
    first = await load_instance(connection, instance_ids[0])
    if first is None:
        raise PermanentError(f"instance {instance_ids[0]} not found", kind="unknown_instance")
    account_id = integration_authentication_id
    if account_id is None:
        account_id = await tenant_revio_account(connection, first.tenant_id)

    is_multiple = len(instance_ids) > 1
    message_ids = []
    for position, instance_id in enumerate(instance_ids):
        is_last = is_multiple and position == len(instance_ids) - 1
        push = Push(
            instance_ids=tuple(instance_ids),
            is_multiple_instance=is_multiple,
            is_last_instance=is_last,
            integration_authentication_id=account_id,
        )
        delay_s = last_instance_delay_s if is_last else 0
        message_ids.append(await aws.send(enqueue_message(instance_id, push, delay_s=delay_s)))
    return message_ids
