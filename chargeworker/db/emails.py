"""Email records: `sending` before SES is called and `sent` after, so each goes out once."""

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from chargeworker.db.tables import email

SENDING = "sending"
SENT = "sent"


def _key(subject_kind: str, subject_id: str, email_kind: str) -> tuple:
    return (
        email.c.subject_kind == subject_kind,
        email.c.subject_id == subject_id,
        email.c.email_kind == email_kind,
    )


async def start_sending(
    connection: AsyncConnection,
    subject_kind: str,
    subject_id: str,
    email_kind: str,
    now: datetime,
) -> bool:
    """Record an attempt to send; False when the email was already sent.

    A record left in `sending` by a crashed attempt is sent again: a second copy
    is possible only when a process died between SES and this record, a missing
    email never.
    """
    key = _key(subject_kind, subject_id, email_kind)
    state = await connection.scalar(select(email.c.state).where(*key))
    if state == SENT:
        return False
    if state is None:
        try:
            async with connection.begin_nested():
                await connection.execute(
                    email.insert().values(
                        subject_kind=subject_kind,
                        subject_id=subject_id,
                        email_kind=email_kind,
                        state=SENDING,
                        attempts=1,
                        updated_at=now,
                    )
                )
            return True
        except IntegrityError:
            return False  # another worker is sending it right now
    await connection.execute(
        update(email).where(*key).values(attempts=email.c.attempts + 1, updated_at=now)
    )
    return True


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
        .values(state=SENT, ses_message_id=ses_message_id, updated_at=now)
    )
