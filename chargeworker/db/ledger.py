"""The charge-line ledger: the record of every Rev.io charge, before and after it is sent.

States: `pending` → `sending` (committed before the POST, with owner and lease)
→ `created` (with Rev.io's charge id) or `failed` (with the reason), or
`unresolved` when a charge may exist in Rev.io and listing its charges could
not settle it. A `sending` line whose lease has expired is in doubt.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from chargeworker.charges.lines import RowPlan
from chargeworker.db.tables import charge_line
from chargeworker.messages import Target

PENDING = "pending"
SENDING = "sending"
CREATED = "created"
FAILED = "failed"
UNRESOLVED = "unresolved"
FINAL_STATES = (CREATED, FAILED, UNRESOLVED)
UNRESOLVED_REASON = "unresolved: may exist in Rev.io"


@dataclass
class LedgerLine:
    id: int
    row_table: str
    row_id: int
    kind: str
    integration_authentication_id: int | None
    rev_customer_id: int | None
    service_id: int | None
    product_id: int | None
    product_type_id: int | None
    description: str
    amount: Decimal
    start_date: date | None
    end_date: date | None
    state: str
    owner: str | None
    lease_expires_at: datetime | None
    first_sent_at: datetime | None
    charge_id: int | None
    error: str | None

    @property
    def row_key(self) -> tuple[str, int]:
        return (self.row_table, self.row_id)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def is_in_doubt(self, now: datetime) -> bool:
        return self.state == SENDING and (
            self.lease_expires_at is None or self.lease_expires_at <= now
        )

    def is_leased(self, now: datetime) -> bool:
        return self.state == SENDING and not self.is_in_doubt(now)


def _from_row(row: object) -> LedgerLine:
    fields = LedgerLine.__dataclass_fields__
    return LedgerLine(**{name: getattr(row, name) for name in fields})


def _rows_match(keys: Sequence[tuple[str, int]]) -> ColumnElement[bool]:
    """Match ledger lines of these rows; SQL Server has no (a, b) IN ((..)) row values."""
    ids_by_table: dict[str, list[int]] = {}
    for row_table, row_id in keys:
        ids_by_table.setdefault(row_table, []).append(row_id)
    return or_(
        *(
            and_(charge_line.c.row_table == row_table, charge_line.c.row_id.in_(row_ids))
            for row_table, row_ids in sorted(ids_by_table.items())
        )
    )


async def record_planned_lines(
    connection: AsyncConnection,
    target: Target,
    plans: Sequence[RowPlan],
    *,
    integration_authentication_id: int | None,
    rev_customer_id: int | None,
    now: datetime,
) -> None:
    """Insert the ledger lines that do not exist yet; existing lines are left as they are."""
    keys = [(plan.row.table, plan.row.id) for plan in plans]
    existing = set()
    if keys:
        query = select(charge_line.c.row_table, charge_line.c.row_id, charge_line.c.kind).where(
            _rows_match(keys)
        )
        existing = {tuple(row) for row in await connection.execute(query)}
    new_lines = []
    for plan in plans:
        for line in plan.lines:
            if (plan.row.table, plan.row.id, line.kind) in existing:
                continue
            new_lines.append(
                {
                    "row_table": plan.row.table,
                    "row_id": plan.row.id,
                    "kind": line.kind,
                    "target_kind": target.kind,
                    "target_id": target.id,
                    "integration_authentication_id": integration_authentication_id,
                    "rev_customer_id": rev_customer_id,
                    "product_id": line.product_id,
                    "product_type_id": line.product_type_id,
                    "description": line.description,
                    "amount": line.amount,
                    "start_date": line.start_date,
                    "end_date": line.end_date,
                    "state": FAILED if line.error else PENDING,
                    "error": line.error,
                    "send_count": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    if new_lines:
        await connection.execute(charge_line.insert(), new_lines)


async def load_lines(
    connection: AsyncConnection, row_keys: Iterable[tuple[str, int]]
) -> list[LedgerLine]:
    keys = list(row_keys)
    if not keys:
        return []
    query = select(charge_line).where(_rows_match(keys)).order_by(charge_line.c.id)
    return [_from_row(row) for row in await connection.execute(query)]


async def load_target_lines(connection: AsyncConnection, target: Target) -> list[LedgerLine]:
    query = (
        select(charge_line)
        .where(charge_line.c.target_kind == target.kind, charge_line.c.target_id == target.id)
        .order_by(charge_line.c.id)
    )
    return [_from_row(row) for row in await connection.execute(query)]


async def claim_for_sending(
    connection: AsyncConnection,
    line: LedgerLine,
    *,
    owner: str,
    lease_s: float,
    service_id: int,
    rev_customer_id: int,
    now: datetime,
) -> bool:
    """Move a pending line to `sending`; True when this caller owns it now."""
    result = await connection.execute(
        update(charge_line)
        .where(charge_line.c.id == line.id, charge_line.c.state == PENDING)
        .values(
            state=SENDING,
            owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_s),
            first_sent_at=line.first_sent_at or now,
            send_count=charge_line.c.send_count + 1,
            service_id=service_id,
            rev_customer_id=rev_customer_id,
            updated_at=now,
        )
    )
    return result.rowcount == 1


async def settle_line(
    connection: AsyncConnection,
    line_id: int,
    *,
    state: str,
    now: datetime,
    from_states: Sequence[str] = (SENDING,),
    charge_id: int | None = None,
    error: str | None = None,
    lease_expires_at: datetime | None = None,
) -> bool:
    """Move a line from one of `from_states` to `state`; True when it moved."""
    result = await connection.execute(
        update(charge_line)
        .where(charge_line.c.id == line_id, charge_line.c.state.in_(from_states))
        .values(
            state=state,
            charge_id=charge_id,
            error=error,
            owner=None if state != SENDING else charge_line.c.owner,
            lease_expires_at=lease_expires_at,
            updated_at=now,
        )
    )
    return result.rowcount == 1


async def charge_ids_in_use(
    connection: AsyncConnection, integration_authentication_id: int | None, charge_ids: set[int]
) -> set[int]:
    """Return which of these Rev.io charge ids a ledger line of the account already holds."""
    if not charge_ids:
        return set()
    account_matches = (
        charge_line.c.integration_authentication_id.is_(None)
        if integration_authentication_id is None
        else charge_line.c.integration_authentication_id == integration_authentication_id
    )
    query = select(charge_line.c.charge_id).where(
        and_(account_matches, charge_line.c.charge_id.in_(sorted(charge_ids)))
    )
    return set((await connection.scalars(query)).all())


async def give_up(
    connection: AsyncConnection, lines: Sequence[LedgerLine], *, reason: str, now: datetime
) -> list[LedgerLine]:
    """Close open lines for good and return those moved, with their new state.

    A pending line fails with `reason`. A line that went out in doubt ends
    unresolved, because its charge may exist in Rev.io and must not be
    pushed again blindly. The stored states decide, not the caller's copies.
    """
    stored = await load_lines(connection, [line.row_key for line in lines])
    stored_states = {line.id: line.state for line in stored}
    moved = []
    for line in lines:
        current = stored_states.get(line.id, line.state)
        if current == SENDING:
            state, error = UNRESOLVED, UNRESOLVED_REASON
        elif current == PENDING:
            state, error = FAILED, reason
        else:
            continue
        if await settle_line(
            connection, line.id, state=state, error=error, now=now, from_states=(PENDING, SENDING)
        ):
            line.state, line.error = state, error
            moved.append(line)
    return moved
