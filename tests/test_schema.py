"""The Alembic migrations on SQLite and PostgreSQL: what they create and how money is stored."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from chargeworker.db import platform as p
from chargeworker.db.engine import _alembic_config, create_engine, upgrade_schema
from chargeworker.db.platform import platform_metadata
from chargeworker.db.tables import metadata
from chargeworker.db.types import Money
from tests.conftest import _database_url, _drop_postgres_database

VERSION_TABLE = "cw_alembic_version"


@dataclass
class Database:
    engine: AsyncEngine
    backend: str


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_unavailable: str | None
) -> AsyncIterator[Database]:
    """An empty database on SQLite and on PostgreSQL, with no schema applied."""
    url, postgres_name = await _database_url(request.param, tmp_path, postgres_unavailable)
    engine = create_engine(url)
    try:
        yield Database(engine, request.param)
    finally:
        await engine.dispose()
        if postgres_name:
            await _drop_postgres_database(postgres_name)


def schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "version_table": VERSION_TABLE},
    )
    # compare_metadata takes the same list of MetaData as the migrations' env.py. No
    # difference is ignored: Alembic compares Money through its dialect type (BIGINT on
    # SQLite, NUMERIC(19,4) on PostgreSQL). Alembic 1.20 does not compare the WHERE of
    # partial indexes, so test_charge_id_index_partial checks that one directly.
    return list(compare_metadata(context, [metadata, platform_metadata]))  # type: ignore[arg-type]


def table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def chargeworker_head() -> str:
    config = _alembic_config(None)  # type: ignore[arg-type]
    heads = ScriptDirectory.from_config(config).get_revisions("chargeworker@head")
    assert len(heads) == 1, heads
    return heads[0].revision  # type: ignore[union-attr]


async def applied_versions(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        result = await connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
        return sorted(row[0] for row in result)


async def test_schema_matches_metadata(database: Database) -> None:
    await upgrade_schema(database.engine, with_platform=True)
    async with database.engine.connect() as connection:
        differences = await connection.run_sync(schema_differences)
    assert differences == []


async def test_upgrade_without_platform(database: Database) -> None:
    await upgrade_schema(database.engine)
    async with database.engine.connect() as connection:
        names = await connection.run_sync(table_names)
    assert names == set(metadata.tables) | {VERSION_TABLE}
    assert all(name.startswith("cw_") for name in names), names
    assert await applied_versions(database.engine) == [chargeworker_head()]


async def test_upgrade_twice_harmless(database: Database) -> None:
    await upgrade_schema(database.engine, with_platform=True)
    versions = await applied_versions(database.engine)
    async with database.engine.begin() as connection:
        await connection.execute(
            p.optimization_queue.insert().values(
                Id=1, InstanceId=1, CommPlanGroupId=1, TotalCost=Decimal("12.34")
            )
        )

    await upgrade_schema(database.engine, with_platform=True)

    assert await applied_versions(database.engine) == versions
    async with database.engine.connect() as connection:
        cost = await connection.scalar(select(p.optimization_queue.c.TotalCost))
        differences = await connection.run_sync(schema_differences)
    assert cost == Decimal("12.34")
    assert differences == []


async def test_platform_added_later(database: Database) -> None:
    await upgrade_schema(database.engine)
    await upgrade_schema(database.engine, with_platform=True)
    async with database.engine.connect() as connection:
        differences = await connection.run_sync(schema_differences)
    assert differences == []


# --- money ------------------------------------------------------------------------------

# Amounts with four places, a negative one, and the maximum of SQL Server's money type
# (a signed 64-bit count of ten-thousandths).
AMOUNTS = [Decimal("12.3456"), Decimal("-0.0001"), Decimal("922337203685477.5807")]
NUMERIC_19_4_MAX = Decimal("999999999999999.9999")
SQLITE_MONEY_MAX = Decimal("922337203685477.5807")


async def insert_costs(engine: AsyncEngine, amounts: list[Decimal]) -> None:
    rows = [
        {"Id": index, "InstanceId": 1, "CommPlanGroupId": 1, "TotalCost": amount}
        for index, amount in enumerate(amounts, start=1)
    ]
    async with engine.begin() as connection:
        await connection.execute(p.optimization_queue.insert(), rows)


async def test_sqlite_money_raw_integers(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'money.sqlite3'}")
    try:
        await upgrade_schema(engine, with_platform=True)
        await insert_costs(engine, AMOUNTS)
        async with engine.connect() as connection:
            query = text('SELECT "TotalCost", typeof("TotalCost") FROM "OptimizationQueue"')
            raw = (await connection.execute(query.columns())).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in raw] == [
        (123456, "integer"),
        (-1, "integer"),
        (9223372036854775807, "integer"),
    ]


async def test_money_round_trip_exact(database: Database) -> None:
    await upgrade_schema(database.engine, with_platform=True)
    await insert_costs(database.engine, AMOUNTS)
    async with database.engine.connect() as connection:
        query = select(p.optimization_queue.c.TotalCost).order_by(p.optimization_queue.c.Id)
        costs = list((await connection.scalars(query)).all())
    assert costs == AMOUNTS
    assert all(type(cost) is Decimal for cost in costs)
    assert [str(cost) for cost in costs] == ["12.3456", "-0.0001", "922337203685477.5807"]


async def test_money_numeric_maximum(database: Database) -> None:
    # Money columns are NUMERIC(19,4). SQLite keeps 64-bit integer ten-thousandths,
    # so its largest amount is lower, and a larger one is refused with its value.
    await upgrade_schema(database.engine, with_platform=True)
    largest = NUMERIC_19_4_MAX if database.backend != "sqlite" else SQLITE_MONEY_MAX
    await insert_costs(database.engine, [largest])
    async with database.engine.connect() as connection:
        cost = await connection.scalar(select(p.optimization_queue.c.TotalCost))
    assert cost == largest


async def test_money_beyond_sqlite_range_rejected(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'money.sqlite3'}")
    try:
        await upgrade_schema(engine, with_platform=True)
        with pytest.raises(StatementError, match=r"922337203685477\.5807"):
            await insert_costs(engine, [NUMERIC_19_4_MAX])
    finally:
        await engine.dispose()


async def test_money_sorts_numerically(database: Database) -> None:
    await upgrade_schema(database.engine, with_platform=True)
    await insert_costs(database.engine, [Decimal("10.00"), Decimal("9.99"), Decimal("100.00")])
    async with database.engine.connect() as connection:
        query = select(p.optimization_queue.c.TotalCost).order_by(p.optimization_queue.c.TotalCost)
        costs = list((await connection.scalars(query)).all())
    assert costs == [Decimal("9.99"), Decimal("10.00"), Decimal("100.00")]


def money_columns() -> list[tuple[str, str]]:
    return [
        (table.name, column.name)
        for table in [*metadata.tables.values(), *platform_metadata.tables.values()]
        for column in table.columns
        if isinstance(column.type, Money)
    ]


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_postgres_money_numeric_19_4(database: Database) -> None:
    await upgrade_schema(database.engine, with_platform=True)
    query = text(
        "SELECT data_type, numeric_precision, numeric_scale FROM information_schema.columns "
        "WHERE table_name = :table AND column_name = :column"
    )
    columns = money_columns()
    assert len(columns) >= 10
    async with database.engine.connect() as connection:
        for table, column in columns:
            found = (await connection.execute(query, {"table": table, "column": column})).one()
            assert tuple(found) == ("numeric", 19, 4), (table, column)


async def test_charge_id_index_partial(database: Database) -> None:
    # NULL charge ids must not collide: SQL Server counts NULLs as equal in a unique
    # index, so the index is filtered to rows with a charge id on every backend.
    await upgrade_schema(database.engine)
    if database.backend == "sqlite":
        query = text("SELECT sql FROM sqlite_master WHERE name = 'uq_cw_charge_line_charge_id'")
    else:
        query = text(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_cw_charge_line_charge_id'"
        )
    async with database.engine.connect() as connection:
        definition = " ".join(str(await connection.scalar(query)).split())
    assert "UNIQUE" in definition
    assert "charge_id IS NOT NULL" in definition
