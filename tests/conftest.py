"""Test fixtures for the embedded stack.

One moto server serves the whole session. Each test gets its own queues, bucket,
Rev.io simulator and database: SQLite always, and PostgreSQL too for `harness`.
"""

import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from chargeworker.db.engine import create_engine, upgrade_schema
from chargeworker.devstack.local_aws import LocalAws
from chargeworker.devstack.revio_simulator import RevioSimulator
from tests.harness import Harness, unique_name

POSTGRES_ADMIN_DSN = os.environ.get(
    "CW_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
async def local_aws() -> AsyncIterator[LocalAws]:
    aws = LocalAws()
    await aws.start()
    yield aws
    await aws.stop()


@pytest.fixture(scope="session")
async def postgres_unavailable() -> str | None:
    """Return why PostgreSQL cannot be used, or None when it can."""
    try:
        connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"no PostgreSQL server at {POSTGRES_ADMIN_DSN}: {exc}"
    await connection.close()
    return None


async def _database_url(backend: str, tmp_path: Path, reason: str | None) -> tuple[str, str]:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'chargeworker.sqlite3'}", ""
    if reason is not None:
        pytest.skip(reason)
    name = unique_name()
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    host_part = POSTGRES_ADMIN_DSN.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+asyncpg://{host_part}/{name}", name


async def _drop_postgres_database(name: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def _harness(
    backend: str, tmp_path: Path, local_aws: LocalAws, reason: str | None
) -> AsyncIterator[Harness]:
    database_url, postgres_name = await _database_url(backend, tmp_path, reason)
    engine = create_engine(database_url)
    simulator = RevioSimulator()
    try:
        await upgrade_schema(engine, with_platform=True)
        resources = await local_aws.create_resources(prefix=unique_name())
        await simulator.start()
        yield Harness(
            aws=local_aws,
            resources=resources,
            simulator=simulator,
            engine=engine,
            database_url=database_url,
            backend=backend,
            emails_before=len(local_aws.sent_emails()),
        )
    finally:
        await simulator.stop()
        await engine.dispose()
        if postgres_name:
            await _drop_postgres_database(postgres_name)


@pytest.fixture(params=["sqlite", "postgresql"])
async def harness(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    local_aws: LocalAws,
    postgres_unavailable: str | None,
) -> AsyncIterator[Harness]:
    """The embedded stack on SQLite and on PostgreSQL."""
    async for item in _harness(request.param, tmp_path, local_aws, postgres_unavailable):
        yield item


@pytest.fixture
async def sqlite_harness(tmp_path: Path, local_aws: LocalAws) -> AsyncIterator[Harness]:
    """The embedded stack on SQLite only, for tests whose subject is not the database."""
    async for item in _harness("sqlite", tmp_path, local_aws, None):
        yield item
