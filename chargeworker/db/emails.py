"""Email records: `sending` before SES is called and `sent` after, so each goes out once.

A `sending` record carries a lease. While it is live another worker leaves the
email alone; once it has expired (its sender crashed), the email is sent again.
So a second copy is possible only when a process dies between SES accepting the
email and this record, and a missing email never.
"""

import enum
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from chargeworker.db.tables import email

SENDING = "sending"
SENT = "sent"


class Claim(enum.Enum):
    SEND = "send"
    ALREADY_SENT = "already_sent"
    BUSY = "busy"


def _key(subject_kind: str, subject_id: str, email_kind: str) -> tuple:
    return (
        email.c.subject_kind == subject_kind,
        email.c.subject_id == subject_id,
        email.c.email_kind == email_kind,
    )


async def is_sent(
    connection: AsyncConnection, subject_kind: str, subject_id: str, email_kind: str
) -> bool:
    state = await connection.scalar(
        select(email.c.state).where(*_key(subject_kind, subject_id, email_kind))
    )
    return state == SENT


async def claim_sending(
    connection: AsyncConnection,
    subject_kind: str,
    subject_id: str,
    email_kind: str,
    *,
    now: datetime,
    lease_s: float,
) -> Claim:
    """Record an attempt to send; only a SEND result may hand the email to SES."""
    key = _key(subject_kind, subject_id, email_kind)
    lease_expires_at = now + timedelta(seconds=lease_s)
    record = (await connection.execute(select(email).where(*key))).first()
    if record is None:
        try:
            async with connection.begin_nested():
                await connection.execute(
                    email.insert().values(
                        subject_kind=subject_kind,
                        subject_id=subject_id,
                        email_kind=email_kind,
                        state=SENDING,
                        attempts=1,
                        lease_expires_at=lease_expires_at,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            return Claim.BUSY  # another worker inserted it first
        return Claim.SEND
    if record.state == SENT:
        return Claim.ALREADY_SENT
    if record.lease_expires_at is not None and record.lease_expires_at > now:
        return Claim.BUSY

    # The earlier sender's lease expired: take the record over, unless someone else just did.
    previous_lease = (
        email.c.lease_expires_at.is_(None)
        if record.lease_expires_at is None
        else email.c.lease_expires_at == record.lease_expires_at
    )
    result = await connection.execute(
        update(email)
        .where(*key, email.c.state == SENDING, previous_lease)
        .values(attempts=email.c.attempts + 1, lease_expires_at=lease_expires_at, updated_at=now)
    )
    return Claim.SEND if result.rowcount == 1 else Claim.BUSY


async def release(
    connection: AsyncConnection,
    subject_kind: str,
    subject_id: str,
    email_kind: str,
    now: datetime,
) -> None:
    """Give up a claim after SES refused the email, so the next attempt need not wait."""
    await connection.execute(
        update(email)
        .where(*_key(subject_kind, subject_id, email_kind), email.c.state == SENDING)
        .values(lease_expires_at=None, updated_at=now)
    )


async def mark_sent(
    connection: AsyncConnection,
    subject_kind: str,
    subject_id: str,
    email_kind: str,
    ses_message_id: str,
    now: datetime,
) -> None:
    await connection.execute(
        update(email)
        .where(*_key(subject_kind, subject_id, email_kind))
        .values(state=SENT, ses_message_id=ses_message_id, lease_expires_at=None, updated_at=now)
    )
