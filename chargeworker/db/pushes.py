"""Bookkeeping of multi-instance pushes: which instances phase 1 has enqueued, and their queues."""

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from chargeworker.db import platform as p
from chargeworker.db.tables import push, push_instance


@dataclass(frozen=True)
class PushState:
    push_key: str
    instance_ids: tuple[int, ...]
    enqueued: dict[int, list[int]]  # instance id → its winning queue ids
    wait_started_at: datetime | None
    reported_queue_ids: frozenset[int]  # queues named in the push's summary, once sent

    @property
    def missing_instance_ids(self) -> list[int]:
        return [
            instance_id for instance_id in self.instance_ids if instance_id not in self.enqueued
        ]

    @property
    def queue_ids(self) -> list[int]:
        return sorted({queue_id for queues in self.enqueued.values() for queue_id in queues})


async def push_key(connection: AsyncConnection, instance_ids: tuple[int, ...]) -> str:
    """Identify a push by its session and sorted instance ids, as a fixed-length hash."""
    ordered = sorted(set(instance_ids))
    instance = p.optimization_instance
    session_id = await connection.scalar(
        select(instance.c.SessionId).where(instance.c.Id.in_(ordered)).order_by(instance.c.Id)
    )
    text = f"{session_id}:{','.join(str(instance_id) for instance_id in ordered)}"
    return hashlib.sha256(text.encode()).hexdigest()


async def _ensure_push(
    connection: AsyncConnection, key: str, instance_ids: tuple[int, ...], now: datetime
) -> None:
    if await connection.scalar(select(push.c.push_key).where(push.c.push_key == key)):
        return
    try:
        async with connection.begin_nested():
            await connection.execute(
                push.insert().values(
                    push_key=key,
                    instance_ids=",".join(str(i) for i in sorted(set(instance_ids))),
                    created_at=now,
                )
            )
    except IntegrityError:
        pass  # recorded by another worker at the same time


async def record_enqueued_instance(
    connection: AsyncConnection,
    instance_ids: tuple[int, ...],
    instance_id: int,
    winning_queue_ids: list[int],
    now: datetime,
) -> None:
    """Record that phase 1 enqueued one instance of a push; a repeat changes nothing."""
    key = await push_key(connection, instance_ids)
    await _ensure_push(connection, key, instance_ids, now)
    exists = await connection.scalar(
        select(push_instance.c.instance_id).where(
            push_instance.c.push_key == key, push_instance.c.instance_id == instance_id
        )
    )
    if exists is not None:
        return
    try:
        async with connection.begin_nested():
            await connection.execute(
                push_instance.insert().values(
                    push_key=key,
                    instance_id=instance_id,
                    winning_queue_ids=",".join(str(q) for q in winning_queue_ids),
                    enqueued_at=now,
                )
            )
    except IntegrityError:
        pass


async def load_push(connection: AsyncConnection, instance_ids: tuple[int, ...]) -> PushState:
    key = await push_key(connection, instance_ids)
    record = (
        await connection.execute(
            select(push.c.wait_started_at, push.c.reported_queue_ids).where(push.c.push_key == key)
        )
    ).first()
    wait_started_at = record.wait_started_at if record else None
    reported = _parse_ids(record.reported_queue_ids if record else None)
    enqueued: dict[int, list[int]] = {}
    rows = await connection.execute(
        select(push_instance.c.instance_id, push_instance.c.winning_queue_ids).where(
            push_instance.c.push_key == key
        )
    )
    for instance_id, queue_text in rows:
        enqueued[instance_id] = sorted(_parse_ids(queue_text))
    ordered = tuple(sorted(set(instance_ids)))
    return PushState(key, ordered, enqueued, wait_started_at, reported)


def _parse_ids(text: str | None) -> frozenset[int]:
    return frozenset(int(part) for part in (text or "").split(",") if part)


async def record_reported_queues(
    connection: AsyncConnection, key: str, queue_ids: list[int]
) -> None:
    """Record which queues the push's summary covers; a later queue reports on its own."""
    await connection.execute(
        update(push)
        .where(push.c.push_key == key)
        .values(reported_queue_ids=",".join(str(queue_id) for queue_id in queue_ids))
    )


async def start_waiting(
    connection: AsyncConnection, instance_ids: tuple[int, ...], now: datetime
) -> tuple[datetime, bool]:
    """Return when the push began waiting for missing work, and whether this call started it."""
    key = await push_key(connection, instance_ids)
    await _ensure_push(connection, key, instance_ids, now)
    result = await connection.execute(
        update(push)
        .where(push.c.push_key == key, push.c.wait_started_at.is_(None))
        .values(wait_started_at=now)
    )
    started = await connection.scalar(select(push.c.wait_started_at).where(push.c.push_key == key))
    return started or now, result.rowcount == 1
