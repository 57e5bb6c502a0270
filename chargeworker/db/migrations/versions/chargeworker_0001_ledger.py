"""Create chargeworker's progress, page, ledger and email tables.

Revision ID: chargeworker_0001
"""

import sqlalchemy as sa
from alembic import op

from chargeworker.db.platform import BigId
from chargeworker.db.types import Money

revision = "chargeworker_0001"
down_revision = None
branch_labels = ("chargeworker",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cw_progress",
        sa.Column("target_kind", sa.String(10), nullable=False),
        sa.Column("target_id", sa.BigInteger, nullable=False),
        sa.Column("instance_id", sa.BigInteger),
        sa.Column("portal_type_id", sa.Integer, nullable=False),
        sa.Column("integration_authentication_id", sa.Integer),
        sa.Column("filled_at", sa.DateTime),
        sa.Column("create_sent_at", sa.DateTime),
        sa.Column("fanned_out_at", sa.DateTime),
        sa.Column("page_count", sa.Integer),
        sa.Column("check_sent_at", sa.DateTime),
        sa.Column("redriven_at", sa.DateTime),
        sa.Column("charge_list_key", sa.String(1024)),
        sa.Column("charge_list_written_at", sa.DateTime),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("target_kind", "target_id", name="pk_cw_progress"),
    )
    op.create_table(
        "cw_page",
        sa.Column("target_kind", sa.String(10), nullable=False),
        sa.Column("target_id", sa.BigInteger, nullable=False),
        sa.Column("page_number", sa.Integer, nullable=False),
        sa.Column("retry_count", sa.Integer, nullable=False),
        sa.Column("deferred_since", sa.DateTime),
        sa.Column("retry_at", sa.DateTime),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("target_kind", "target_id", "page_number", name="pk_cw_page"),
    )
    op.create_table(
        "cw_charge_line",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("row_table", sa.String(10), nullable=False),
        sa.Column("row_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("target_kind", sa.String(10), nullable=False),
        sa.Column("target_id", sa.BigInteger, nullable=False),
        sa.Column("integration_authentication_id", sa.Integer),
        sa.Column("rev_customer_id", sa.Integer),
        sa.Column("service_id", sa.Integer),
        sa.Column("product_id", sa.Integer),
        sa.Column("product_type_id", sa.Integer),
        sa.Column("description", sa.String(1500), nullable=False),
        sa.Column("amount", Money, nullable=False),
        sa.Column("start_date", sa.Date),
        sa.Column("end_date", sa.Date),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("owner", sa.String(100)),
        sa.Column("lease_expires_at", sa.DateTime),
        sa.Column("first_sent_at", sa.DateTime),
        sa.Column("send_count", sa.Integer, nullable=False),
        sa.Column("charge_id", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("row_table", "row_id", "kind", name="uq_cw_charge_line_row_kind"),
    )
    op.create_index(
        "ix_cw_charge_line_target", "cw_charge_line", ["target_kind", "target_id", "state"]
    )
    charge_id_present = sa.text("charge_id IS NOT NULL")
    op.create_index(
        "uq_cw_charge_line_charge_id",
        "cw_charge_line",
        ["integration_authentication_id", "charge_id"],
        unique=True,
        mssql_where=charge_id_present,
        postgresql_where=charge_id_present,
        sqlite_where=charge_id_present,
    )
    op.create_table(
        "cw_push",
        sa.Column("push_key", sa.String(64), primary_key=True),
        sa.Column("instance_ids", sa.Text, nullable=False),
        sa.Column("wait_started_at", sa.DateTime),
        sa.Column("reported_queue_ids", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "cw_push_instance",
        sa.Column("push_key", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.BigInteger, nullable=False),
        sa.Column("winning_queue_ids", sa.Text, nullable=False),
        sa.Column("enqueued_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("push_key", "instance_id", name="pk_cw_push_instance"),
    )
    op.create_table(
        "cw_upload_name",
        sa.Column("name_key", sa.String(255), primary_key=True),
        sa.Column("file_id", sa.Integer),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "cw_email",
        sa.Column("subject_kind", sa.String(10), nullable=False),
        sa.Column("subject_id", sa.String(200), nullable=False),
        sa.Column("email_kind", sa.String(20), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease_expires_at", sa.DateTime),
        sa.Column("ses_message_id", sa.String(200)),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("subject_kind", "subject_id", "email_kind", name="pk_cw_email"),
    )


def downgrade() -> None:
    op.drop_table("cw_email")
    op.drop_table("cw_upload_name")
    op.drop_table("cw_push_instance")
    op.drop_table("cw_push")
    op.drop_table("cw_charge_line")
    op.drop_table("cw_page")
    op.drop_table("cw_progress")
