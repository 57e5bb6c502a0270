"""Open the long-lived clients of one process and hand them to the phases as a Context."""

import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from chargeworker.aws import open_aws
from chargeworker.clock import Clock
from chargeworker.config import Settings
from chargeworker.context import Context
from chargeworker.db.engine import create_engine
from chargeworker.revio.client import RevioClient


def new_worker_id() -> str:
    """Name this process in leases: host, pid and a random suffix for restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@asynccontextmanager
async def open_context(settings: Settings, *, clock: Clock | None = None) -> AsyncIterator[Context]:
    """Create the engine, AWS clients and the Rev.io session; close them all on exit."""
    engine = create_engine(settings.database_url)
    try:
        async with open_aws(settings) as aws, aiohttp.ClientSession() as session:
            revio = RevioClient(
                session,
                rate_per_minute=settings.revio_rate_per_minute,
                timeout_s=settings.revio_timeout_s,
                retry_attempts=settings.revio_retry_attempts,
                retry_base_delay_s=settings.revio_retry_base_delay_s,
                throttle_retries=settings.revio_throttle_retries,
                max_retry_after_s=settings.revio_max_retry_after_s,
            )
            yield Context(settings, engine, aws, revio, clock or Clock(), new_worker_id(), session)
    finally:
        await engine.dispose()
