"""chargeworker's own tables, all prefixed `cw_` (Alembic branch `chargeworker`).

All datetimes here are naive UTC, like the platform's columns.
"""

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from chargeworker.db.platform import BigId
from chargeworker.db.types import Money

metadata = MetaData()

# Progress of one winning queue or uploaded file through the three phases.
progress = Table(
    "cw_progress",
    metadata,
    Column("target_kind", String(10), nullable=False),
    Column("target_id", BigInteger, nullable=False),
    Column("instance_id", BigInteger),
    Column("portal_type_id", Integer, nullable=False, default=0),
    Column("integration_authentication_id", Integer),
    Column("filled_at", DateTime),
    Column("create_sent_at", DateTime),
    Column("fanned_out_at", DateTime),
    Column("page_count", Integer),
    Column("check_sent_at", DateTime),
    Column("redriven_at", DateTime),
    Column("charge_list_key", String(1024)),
    Column("charge_list_written_at", DateTime),
    Column("created_at", DateTime, nullable=False),
    PrimaryKeyConstraint("target_kind", "target_id", name="pk_cw_progress"),
)

# Retry and deferral state of one page; `retry_at` is when its re-sent message is due.
page = Table(
    "cw_page",
    metadata,
    Column("target_kind", String(10), nullable=False),
    Column("target_id", BigInteger, nullable=False),
    Column("page_number", Integer, nullable=False),
    Column("retry_count", Integer, nullable=False, default=0),
    Column("deferred_since", DateTime),
    Column("retry_at", DateTime),
    Column("updated_at", DateTime, nullable=False),
    PrimaryKeyConstraint("target_kind", "target_id", "page_number", name="pk_cw_page"),
)

# The charge-line ledger: one row per Rev.io charge a charge-queue row needs.
charge_line = Table(
    "cw_charge_line",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("row_table", String(10), nullable=False),
    Column("row_id", BigInteger, nullable=False),
    Column("kind", String(10), nullable=False),
    Column("target_kind", String(10), nullable=False),
    Column("target_id", BigInteger, nullable=False),
    Column("integration_authentication_id", Integer),
    Column("rev_customer_id", Integer),
    Column("service_id", Integer),
    Column("product_id", Integer),
    Column("product_type_id", Integer),
    Column("description", String(1500), nullable=False),
    Column("amount", Money, nullable=False),
    Column("start_date", Date),
    Column("end_date", Date),
    Column("state", String(12), nullable=False),
    Column("owner", String(100)),
    Column("lease_expires_at", DateTime),
    Column("first_sent_at", DateTime),
    Column("send_count", Integer, nullable=False, default=0),
    Column("charge_id", Integer),
    Column("error", Text),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("row_table", "row_id", "kind", name="uq_cw_charge_line_row_kind"),
    Index("ix_cw_charge_line_target", "target_kind", "target_id", "state"),
    # A Rev.io charge id belongs to one ledger line per account. SQL Server counts
    # NULLs as equal in unique indexes, hence the filter.
    Index(
        "uq_cw_charge_line_charge_id",
        "integration_authentication_id",
        "charge_id",
        unique=True,
        mssql_where=Column("charge_id").isnot(None),
        postgresql_where=Column("charge_id").isnot(None),
        sqlite_where=Column("charge_id").isnot(None),
    ),
)

# A multi-instance push, keyed by a hash of its session and sorted instance ids.
push = Table(
    "cw_push",
    metadata,
    Column("push_key", String(64), primary_key=True),
    Column("instance_ids", Text, nullable=False),
    Column("wait_started_at", DateTime),
    Column("reported_queue_ids", Text),
    Column("created_at", DateTime, nullable=False),
)

# An instance of a push that phase 1 has enqueued, with its winning queues.
push_instance = Table(
    "cw_push_instance",
    metadata,
    Column("push_key", String(64), nullable=False),
    Column("instance_id", BigInteger, nullable=False),
    Column("winning_queue_ids", Text, nullable=False),
    Column("enqueued_at", DateTime, nullable=False),
    PrimaryKeyConstraint("push_key", "instance_id", name="pk_cw_push_instance"),
)

# Names of uploaded files, compared without case and spaces. The key makes a second
# upload of one name fail, even when both run at the same time.
upload_name = Table(
    "cw_upload_name",
    metadata,
    Column("name_key", String(255), primary_key=True),
    Column("file_id", Integer),
    Column("created_at", DateTime, nullable=False),
)

# Emails of a queue, file or push: `sending` before SES is called, `sent` after.
email = Table(
    "cw_email",
    metadata,
    Column("subject_kind", String(10), nullable=False),
    Column("subject_id", String(200), nullable=False),
    Column("email_kind", String(20), nullable=False),
    Column("state", String(10), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_expires_at", DateTime),
    Column("ses_message_id", String(200)),
    Column("updated_at", DateTime, nullable=False),
    PrimaryKeyConstraint("subject_kind", "subject_id", "email_kind", name="pk_cw_email"),
)
