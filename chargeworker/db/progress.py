"""chargeworker's progress records: one per winning queue or uploaded file."""

from datetime import datetime

from sqlalchemy import Row, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from chargeworker.db.tables import progress
from chargeworker.messages import Target


def _key(target: Target) -> tuple:
    return (progress.c.target_kind == target.kind, progress.c.target_id == target.id)


async def load_progress(connection: AsyncConnection, target: Target) -> Row | None:
    return (await connection.execute(select(progress).where(*_key(target)))).first()


async def ensure_progress(
    connection: AsyncConnection,
    target: Target,
    *,
    instance_id: int | None,
    portal_type_id: int,
    integration_authentication_id: int | None,
    now: datetime,
) -> Row:
    """Return the target's progress record, creating it with the pinned account if new.

    A record that exists keeps its pinned account: every page of a queue uses the
    credentials chosen when it was first seen.
    """
    existing = await load_progress(connection, target)
    if existing is not None:
        return existing
    try:
        async with connection.begin_nested():
            await connection.execute(
                progress.insert().values(
                    target_kind=target.kind,
                    target_id=target.id,
                    instance_id=instance_id,
                    portal_type_id=portal_type_id,
                    integration_authentication_id=integration_authentication_id,
                    created_at=now,
                )
            )
    except IntegrityError:
        pass  # another worker created it first; its pinned account wins
    created = await load_progress(connection, target)
    if created is None:
        raise RuntimeError(f"progress record of {target} vanished after insert")
    return created


async def mark_once(
    connection: AsyncConnection, target: Target, column: str, now: datetime
) -> bool:
    """Set a progress timestamp if it is still empty; True for the one caller that set it."""
    column_object = progress.c[column]
    result = await connection.execute(
        update(progress).where(*_key(target), column_object.is_(None)).values({column: now})
    )
    return result.rowcount == 1


async def set_values(connection: AsyncConnection, target: Target, **values: object) -> None:
    await connection.execute(update(progress).where(*_key(target)).values(**values))
