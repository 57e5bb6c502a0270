"""Alembic environment: migrations always run on a connection handed in by chargeworker."""

from alembic import context

from chargeworker.db.platform import platform_metadata
from chargeworker.db.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `chargeworker db upgrade`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=[metadata, platform_metadata],
    version_table="cw_alembic_version",
)
with context.begin_transaction():
    context.run_migrations()
