"""Counts of a run on the embedded stack, read from the database, SES and the simulator."""

import email
from collections import Counter
from email import policy
from typing import Any

from sqlalchemy import case, func, select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from chargeworker.db.rows import ROW_TABLES
from chargeworker.db.tables import charge_line, progress
from chargeworker.db.tables import email as email_table
from chargeworker.devstack.revio_simulator import RevioSimulator


async def summaries_sent(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        query = select(func.count()).where(
            email_table.c.email_kind == "summary", email_table.c.state == "sent"
        )
        return int(await connection.scalar(query) or 0)


async def database_report(engine: AsyncEngine) -> dict[str, Any]:
    """Count queues, rows and ledger lines by outcome."""
    async with engine.connect() as connection:
        targets = list(
            await connection.execute(
                select(
                    progress.c.target_kind,
                    progress.c.target_id,
                    progress.c.instance_id,
                    progress.c.charge_list_key,
                ).order_by(progress.c.target_kind.desc(), progress.c.target_id)
            )
        )
        queues = [target for target in targets if target.target_kind == "queue"]
        rows = processed = with_errors = 0
        for table in ROW_TABLES.values():
            counts = (
                await connection.execute(
                    select(
                        func.count(),
                        func.sum(case((table.c.IsProcessed == true(), 1), else_=0)),
                        func.sum(case((table.c.HasErrors == true(), 1), else_=0)),
                    )
                )
            ).one()
            rows += int(counts[0] or 0)
            processed += int(counts[1] or 0)
            with_errors += int(counts[2] or 0)
        state_counts = await connection.execute(
            select(charge_line.c.state, func.count()).group_by(charge_line.c.state)
        )
        states = Counter({state: count for state, count in state_counts})
        held_ids = Counter(
            charge_id
            for (charge_id,) in await connection.execute(
                select(charge_line.c.charge_id).where(charge_line.c.charge_id.isnot(None))
            )
        )
    return {
        "instances": len({queue.instance_id for queue in queues}),
        "queues": len(queues),
        "charge_list_keys": [
            target.charge_list_key for target in targets if target.charge_list_key
        ],
        "rows": rows,
        "rows_processed": processed,
        "rows_with_errors": with_errors,
        "lines": {
            "created": states.get("created", 0),
            "failed": states.get("failed", 0),
            "unresolved": states.get("unresolved", 0),
            "open": states.get("pending", 0) + states.get("sending", 0),
        },
        "held_charge_ids": held_ids,
    }


def revio_report(simulator: RevioSimulator, held_charge_ids: Counter[int]) -> dict[str, int]:
    """Count the simulator's charges, and those not held by exactly one ledger line."""
    charge_ids = [charge["charge_id"] for charge in simulator.charges]
    duplicates = sum(1 for charge_id in charge_ids if held_charge_ids.get(charge_id, 0) != 1)
    return {
        "charges": len(charge_ids),
        "duplicates": duplicates,
        "requests": simulator.request_count,
        "throttled": simulator.throttled_count,
    }


def describe_email(raw: bytes) -> dict[str, Any]:
    message = email.message_from_bytes(raw, policy=policy.default)
    return {
        "subject": str(message["Subject"]),
        "to": [address.strip() for address in str(message["To"]).split(",")],
        "attachments": [part.get_filename() for part in message.iter_attachments()],
    }
