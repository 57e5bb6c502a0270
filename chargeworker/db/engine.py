"""Database engine creation and schema migration."""

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_engine(database_url: str) -> AsyncEngine:
    """Create the async engine; SQLite gets WAL, a busy timeout and immediate transactions."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)

    engine = create_async_engine(url)
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    # pysqlite's own transaction handling starts transactions lazily, so two
    # writers could both read and then fail to upgrade to a write lock. Taking
    # the write lock at BEGIN makes them queue on the busy timeout instead.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade_schema(engine: AsyncEngine, *, with_platform: bool = False) -> None:
    """Apply chargeworker's Alembic branch, and the platform's too when asked."""
    target = "heads" if with_platform else "chargeworker@head"

    def _upgrade(connection: Connection) -> None:
        command.upgrade(_alembic_config(connection), target)

    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)
