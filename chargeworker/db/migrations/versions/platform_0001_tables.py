"""Create the platform's tables (embedded stack and tests only).

Production databases already have these tables; `chargeworker db upgrade`
without `--with-platform` never applies this branch.

Revision ID: platform_0001
"""

from alembic import op

from chargeworker.db.platform import platform_metadata

revision = "platform_0001"
down_revision = None
branch_labels = ("platform",)
depends_on = None


def upgrade() -> None:
    # The platform's schema is declared once, in chargeworker.db.platform; this
    # branch only mirrors it for the embedded stack, so it creates it as declared.
    platform_metadata.create_all(op.get_bind())


def downgrade() -> None:
    platform_metadata.drop_all(op.get_bind())
