"""Every statement the daemon issues during a full run compiles to T-SQL that SQL Server accepts.

The statements are captured from a real run on SQLite, compiled with SQLAlchemy's
mssql dialect (no driver is loaded) and parsed with sqlglot's `tsql` dialect.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlglot
from sqlalchemy import event
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import ClauseElement, Select
from sqlalchemy.sql.expression import (
    ReleaseSavepointClause,
    RollbackToSavepointClause,
    SavepointClause,
)
from sqlglot import exp

from chargeworker.devstack.local_aws import LocalAws
from tests.conftest import _harness

# Transaction control that the dialect emits itself. SQL Server's form is
# `SAVE TRANSACTION name`, which sqlglot 30.x's tsql reader rejects although it is
# valid T-SQL, so these are left out of the parse check.
SAVEPOINT_CLAUSES = (SavepointClause, RollbackToSavepointClause, ReleaseSavepointClause)


def sql_server_dialect() -> mssql.dialect:
    """Return the mssql dialect as it is configured after connecting to SQL Server 2019.

    Without a connection the dialect assumes a server older than 2012 and pages with
    ROW_NUMBER(). `initialize` sets the version attributes from the server, so the
    same step is done here by hand. The bare dialect's paramstyle is `named`
    (`:name`), which sqlglot's tsql reader accepts as placeholders; pyodbc's `?` only
    changes the placeholder text, not the statement.
    """
    dialect = mssql.dialect()
    dialect.server_version_info = (15, 0, 2000)
    dialect._setup_version_attributes()
    return dialect


@dataclass(frozen=True)
class Compiled:
    statement: ClauseElement
    sql: str

    @property
    def flat(self) -> str:
        """The SQL on one line, with single spaces."""
        return " ".join(self.sql.split())


@dataclass
class Capture:
    """The daemon's statements of one run, compiled to T-SQL, one per distinct text."""

    compiled: list[Compiled]

    def matching(self, *fragments: str) -> list[Compiled]:
        return [item for item in self.compiled if all(f in item.flat for f in fragments)]


def compile_tsql(
    statement: ClauseElement, column_keys: list[str] | None, dialect: mssql.dialect
) -> str:
    """Compile as the driver would get it: only the columns the call gave values for.

    render_postcompile expands IN lists into one placeholder per value, as they reach
    the server. literal_binds stays off, so placeholders remain placeholders.
    """
    compiled = statement.compile(
        dialect=dialect, column_keys=column_keys, compile_kwargs={"render_postcompile": True}
    )
    return str(compiled)


def parameter_keys(multiparams: Any, params: Any) -> list[str] | None:
    """Return the parameter names of one execute() call, or None when it passed none."""
    if multiparams:
        first = multiparams[0]
        if isinstance(first, dict):
            return list(first)
    if isinstance(params, dict) and params:
        return list(params)
    return None


def parse_tsql(sql: str) -> list[exp.Expression]:
    return [tree for tree in sqlglot.parse(sql, read="tsql") if tree is not None]


class StatementLog:
    """The ClauseElement statements executed on any engine but the ignored one."""

    def __init__(self, ignored: Engine) -> None:
        self.ignored = ignored
        self.entries: list[tuple[ClauseElement, list[str] | None]] = []

    def record(
        self,
        connection: Connection,
        statement: Any,
        multiparams: Any,
        params: Any,
        _execution_options: Any,
    ) -> None:
        # The harness's own engine loads the sample and reads results; only the
        # daemon's statements count. Driver-level SQL arrives as plain strings.
        if connection.engine is self.ignored or not isinstance(statement, ClauseElement):
            return
        self.entries.append((statement, parameter_keys(multiparams, params)))


@pytest.fixture(scope="module")
async def capture(
    tmp_path_factory: pytest.TempPathFactory, local_aws: LocalAws
) -> AsyncIterator[Capture]:
    """Run two sample pushes, one itemized and one single-usage, with two failed POSTs."""
    directory = tmp_path_factory.mktemp("tsql")
    async for harness in _harness("sqlite", directory, local_aws, None):
        itemized = await harness.load_sample(devices=12, seed=3)
        single = await harness.load_sample(devices=12, seed=4, single_usage=True)
        harness.simulator.fail_next_posts(2)
        statements = StatementLog(harness.engine.sync_engine)
        # A listener on the Engine class also receives the events of the engine that
        # harness.context() creates inside the daemon's context.
        event.listen(Engine, "before_execute", statements.record)
        try:
            async with harness.context(receive_wait_s=1, check_retry_delay_s=1) as ctx:
                instance_ids = [i.instance_id for i in itemized.instances + single.instances]
                await harness.enqueue(ctx, *instance_ids)
                await harness.run_until_idle(ctx)
        finally:
            event.remove(Engine, "before_execute", statements.record)

        dialect = sql_server_dialect()
        distinct: dict[str, Compiled] = {}
        for statement, keys in statements.entries:
            if isinstance(statement, SAVEPOINT_CLAUSES):
                continue
            sql = compile_tsql(statement, keys, dialect)
            distinct.setdefault(sql, Compiled(statement, sql))
        yield Capture(list(distinct.values()))


async def test_statements_parse_as_tsql(capture: Capture) -> None:
    failures = []
    for item in capture.compiled:
        try:
            sqlglot.parse(item.sql, read="tsql")
        except sqlglot.errors.ParseError as exc:
            failures.append(f"{item.sql}\n  -> {exc}")
    assert failures == []


async def test_enough_statements_captured(capture: Capture) -> None:
    assert len(capture.compiled) >= 15


async def test_charge_queue_inserts(capture: Capture) -> None:
    assert capture.matching("INSERT INTO [OptimizationDeviceResult_CustomerChargeQueue]")
    assert capture.matching("INSERT INTO [OptimizationMobilityDeviceResult_CustomerChargeQueue]")


async def test_conditional_ledger_update(capture: Capture) -> None:
    assert capture.matching("UPDATE cw_charge_line SET", "cw_charge_line.state = ")


async def test_page_selects(capture: Capture) -> None:
    assert capture.matching("SELECT TOP ")
    assert capture.matching(" OFFSET :", " ROWS FETCH FIRST :", " ROWS ONLY")


async def test_queue_lock_takes_updlock(capture: Capture) -> None:
    # Phase 1 locks the queue's row before it inserts the missing charge-queue rows.
    # SQL Server has no SELECT ... FOR UPDATE: the lock needs a WITH (UPDLOCK) hint.
    locks = [
        item
        for item in capture.compiled
        if isinstance(item.statement, Select) and item.statement._for_update_arg is not None
    ]
    assert locks, "no SELECT ... FOR UPDATE was captured"
    for item in locks:
        assert "UPDLOCK" in item.sql, item.sql


async def test_no_row_value_in(capture: Capture) -> None:
    # SQL Server has no row constructors: `(a, b) IN ((...), ...)` is a syntax error
    # there, although sqlglot's tsql reader accepts it.
    offending = []
    for item in capture.compiled:
        for tree in parse_tsql(item.sql):
            for node in tree.find_all(exp.In):
                if isinstance(node.this, exp.Tuple):
                    offending.append(item.sql)
    assert offending == []


async def test_is_only_with_null(capture: Capture) -> None:
    # T-SQL allows IS only before NULL: `IsActive IS 1` is a syntax error on SQL
    # Server, although sqlglot's tsql reader accepts it. Booleans compare with `= 1`.
    offending = []
    for item in capture.compiled:
        for tree in parse_tsql(item.sql):
            for node in tree.find_all(exp.Is):
                if not isinstance(node.expression, exp.Null):
                    offending.append(node.sql(dialect="tsql"))
    assert offending == []


async def test_charge_queue_ids_from_server(capture: Capture) -> None:
    # The charge-queue tables number their rows themselves (IDENTITY on SQL Server),
    # which rejects an explicit Id unless IDENTITY_INSERT is on.
    for table in ("OptimizationDeviceResult", "OptimizationMobilityDeviceResult"):
        inserts = capture.matching(f"INSERT INTO [{table}_CustomerChargeQueue] (")
        assert inserts, table
        for item in inserts:
            assert "([Id]," not in item.flat, item.flat
