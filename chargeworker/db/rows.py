"""Charge-queue rows: reading pages and writing the outcome columns the old readers expect."""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Column, Table, false, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from chargeworker.charges.lines import ChargeRow, RowTable
from chargeworker.db.ledger import CREATED, LedgerLine
from chargeworker.db.platform import m2m_charge_queue, mobility_charge_queue
from chargeworker.messages import Target

ROW_TABLES: dict[RowTable, Table] = {"m2m": m2m_charge_queue, "mobility": mobility_charge_queue}

NO_LINE_NEEDED = -1
LINE_WITHOUT_CHARGE = 0


def _target_column(table: Table, target: Target) -> Column[int]:
    return table.c.QueueId if target.kind == "queue" else table.c.UploadedFileId


async def load_page(
    connection: AsyncConnection, target: Target, page_number: int, page_size: int
) -> list[ChargeRow]:
    """Return page n of the target: rows at offset (n-1) × size of each table, in Id order."""
    rows: list[ChargeRow] = []
    for name, table in ROW_TABLES.items():
        query = (
            select(table)
            .where(_target_column(table, target) == target.id)
            .order_by(table.c.Id)
            .offset((page_number - 1) * page_size)
            .limit(page_size)
        )
        result = await connection.execute(query)
        rows.extend(ChargeRow.from_mapping(name, row) for row in result.mappings())
    return rows


async def load_all_rows(connection: AsyncConnection, target: Target) -> list[ChargeRow]:
    """Return every row of the target, M2M rows first, each table in Id order."""
    rows: list[ChargeRow] = []
    for name, table in ROW_TABLES.items():
        query = select(table).where(_target_column(table, target) == target.id)
        result = await connection.execute(query.order_by(table.c.Id))
        rows.extend(ChargeRow.from_mapping(name, row) for row in result.mappings())
    return rows


async def count_rows(connection: AsyncConnection, target: Target) -> dict[RowTable, int]:
    counts: dict[RowTable, int] = {}
    for name, table in ROW_TABLES.items():
        query = select(func.count()).where(_target_column(table, target) == target.id)
        counts[name] = int(await connection.scalar(query) or 0)
    return counts


async def count_unprocessed(connection: AsyncConnection, target: Target) -> int:
    total = 0
    for table in ROW_TABLES.values():
        query = select(func.count()).where(
            _target_column(table, target) == target.id, table.c.IsProcessed == false()
        )
        total += int(await connection.scalar(query) or 0)
    return total


def _charge_id_column(lines: Sequence[LedgerLine], kinds: Sequence[str]) -> int:
    """Encode a charge id column: the first created id of these kinds.

    0 when the row needed such a line and has no charge, -1 when it needed none.
    """
    needed = [line for kind in kinds for line in lines if line.kind == kind]
    if not needed:
        return NO_LINE_NEEDED
    created = [line.charge_id for line in needed if line.state == CREATED and line.charge_id]
    return created[0] if created else LINE_WITHOUT_CHARGE


def _join_errors(errors: Sequence[str]) -> str:
    unique = list(dict.fromkeys(error for error in errors if error))
    return "; ".join(unique)


async def write_outcome(
    connection: AsyncConnection,
    row: ChargeRow,
    lines: Sequence[LedgerLine],
    *,
    row_error: str | None,
    now: datetime,
) -> None:
    """Mark a row processed with the outcome of its lines, in its own table only."""
    if row_error is not None:
        charge_id = sms_charge_id = LINE_WITHOUT_CHARGE
        error_message = row_error
    else:
        charge_id = _charge_id_column(lines, ("rate", "usage", "overage"))
        sms_charge_id = _charge_id_column(lines, ("sms",))
        error_message = _join_errors([line.error or "" for line in lines if line.state != CREATED])
    await write_row_columns(
        connection,
        row,
        charge_id=charge_id,
        sms_charge_id=sms_charge_id,
        error_message=error_message,
        now=now,
    )


async def write_row_columns(
    connection: AsyncConnection,
    row: ChargeRow,
    *,
    charge_id: int,
    sms_charge_id: int,
    error_message: str,
    now: datetime,
) -> None:
    table = ROW_TABLES[row.table]
    await connection.execute(
        update(table)
        .where(table.c.Id == row.id, table.c.IsProcessed == false())
        .values(
            IsProcessed=True,
            ChargeId=charge_id,
            SmsChargeId=sms_charge_id,
            ChargeAmount=row.device_charge,
            BaseChargeAmount=row.base_rate,
            TotalChargeAmount=row.device_charge + row.base_rate,
            SmsChargeAmount=row.sms_amount,
            HasErrors=bool(error_message),
            ErrorMessage=error_message or None,
            ModifiedBy="System",
            ModifiedDate=now,
        )
    )
