"""The platform's tables that chargeworker reads, and the charge-queue tables it updates.

In production these tables already exist in the platform's SQL Server and
chargeworker never changes their columns or indexes. They are declared here,
in one module, so the embedded stack and the tests can create them (Alembic
branch `platform`) and so this module is the only place to align with the
real schema.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
)

from chargeworker.db.types import ExactDecimal, Money

platform_metadata = MetaData()

# SQLite only numbers rows by itself for an INTEGER primary key.
BigId = BigInteger().with_variant(Integer(), "sqlite")

optimization_session = Table(
    "OptimizationSession",
    platform_metadata,
    Column("Id", Integer, primary_key=True),
    Column("SessionId", Uuid, nullable=False),
    Column("TenantId", Integer, nullable=False),
    Column("CreatedDate", DateTime, nullable=False),
)

optimization_instance = Table(
    "OptimizationInstance",
    platform_metadata,
    Column("Id", BigId, primary_key=True),
    Column("SessionId", Uuid, nullable=False),
    Column("TenantId", Integer, nullable=False),
    Column("PortalTypeId", Integer, nullable=False),
    Column("RevCustomerId", Uuid),
    Column("AMOPCustomerId", Integer),
    Column("IntegrationAuthenticationId", Integer),
    Column("BillingPeriodStartDate", DateTime, nullable=False),
    Column("BillingPeriodEndDate", DateTime, nullable=False),
)

optimization_comm_group = Table(
    "OptimizationCommGroup",
    platform_metadata,
    Column("Id", BigId, primary_key=True),
    Column("InstanceId", BigInteger, nullable=False),
)

optimization_queue = Table(
    "OptimizationQueue",
    platform_metadata,
    Column("Id", BigId, primary_key=True),
    Column("InstanceId", BigInteger, nullable=False),
    Column("CommPlanGroupId", BigInteger, nullable=False),
    Column("TotalCost", Money),
    Column("RunStartTime", DateTime),
    Column("RunEndTime", DateTime),
)


def _device_result_table(name: str, device_column: str) -> Table:
    return Table(
        name,
        platform_metadata,
        Column("Id", BigId, primary_key=True),
        Column("QueueId", BigInteger, nullable=False, index=True),
        Column(device_column, Integer, nullable=False),
        Column("AssignedRatePlanId", Integer),
        Column("UsageMB", ExactDecimal(18)),
        Column("SmsUsage", BigInteger),
        Column("BaseRateAmt", Money),
        Column("RateChargeAmt", Money),
        Column("OverageChargeAmt", Money),
        Column("SmsChargeAmt", Money),
    )


device_result = _device_result_table("OptimizationDeviceResult", "AmopDeviceId")
mobility_device_result = _device_result_table(
    "OptimizationMobilityDeviceResult", "MobilityDeviceId"
)


def _device_table(name: str) -> Table:
    return Table(
        name,
        platform_metadata,
        Column("Id", Integer, primary_key=True),
        Column("TenantId", Integer, nullable=False),
        Column("ICCID", String(50)),
        Column("MSISDN", String(50)),
        Column("ServiceProviderId", Integer),
        Column("RevServiceNumber", String(255)),
        Column("RevServiceId", Integer),
    )


device = _device_table("Device")
mobility_device = _device_table("MobilityDevice")

rate_plan = Table(
    "RatePlan",
    platform_metadata,
    Column("Id", Integer, primary_key=True),
    Column("RatePlanCode", String(100)),
    Column("RatePlanName", String(255)),
    Column("BaseRate", Money),
    Column("IsBillInAdvance", Boolean, nullable=False, default=False),
    Column("RevProductId", Integer),
    Column("RevProductTypeId", Integer),
    Column("OverageRevProductId", Integer),
    Column("OverageRevProductTypeId", Integer),
    Column("SmsRevProductId", Integer),
    Column("SmsRevProductTypeId", Integer),
)

service_provider = Table(
    "ServiceProvider",
    platform_metadata,
    Column("Id", Integer, primary_key=True),
    Column("Name", String(100)),
    Column("IntegrationId", Integer),
)

integration = Table(
    "Integration",
    platform_metadata,
    Column("Id", Integer, primary_key=True),
    Column("Name", String(100)),
)

integration_authentication = Table(
    "Integration_Authentication",
    platform_metadata,
    Column("Id", Integer, primary_key=True),
    Column("TenantId", Integer, nullable=False),
    Column("IntegrationId", Integer, nullable=False),
    Column("BaseUrl", String(255)),
    Column("Username", String(255)),
    Column("Password", String(255)),
    Column("ClientCode", String(100)),
    Column("SubscriptionKey", String(255)),
    Column("IsActive", Boolean, nullable=False, default=True),
)

rev_customer = Table(
    "RevCustomer",
    platform_metadata,
    Column("Id", Uuid, primary_key=True),
    Column("IntegrationAuthenticationId", Integer),
    Column("RevCustomerId", Integer),
    Column("CustomerName", String(255)),
    Column("RevAccountNumber", String(100)),
)

customer = Table(
    "Customer",
    platform_metadata,
    Column("Id", Integer, primary_key=True),
    Column("TenantId", Integer),
    Column("CustomerName", String(255)),
)

rev_service = Table(
    "RevService",
    platform_metadata,
    Column("Id", Integer, primary_key=True),
    Column("IntegrationAuthenticationId", Integer),
    Column("ServiceId", Integer),
    Column("CustomerId", Integer),
    Column("Number", String(255)),
)

rev_product_type = Table(
    "RevProductType",
    platform_metadata,
    Column("Id", Integer, primary_key=True),
    Column("TenantId", Integer),
    Column("ProductTypeId", Integer),
    Column("Description", String(255)),
    Column("IsActive", Boolean, nullable=False, default=True),
    Column("IsDeleted", Boolean, nullable=False, default=False),
)

optimization_settings = Table(
    "OptimizationSettings",
    platform_metadata,
    Column("TenantId", Integer, primary_key=True, autoincrement=False),
    Column("BillingTimeZone", String(100)),
    Column("UsingNewProcessInCustomerCharge", Boolean, nullable=False, default=False),
)

general_provider_settings = Table(
    "GeneralProviderSettings",
    platform_metadata,
    Column("Id", Integer, primary_key=True),
    Column("CustomerChargeFromEmailAddress", String(1000)),
    Column("CustomerChargeToEmailAddresses", String(1000)),
    Column("CustomerChargeResultsEmailSubject", String(1000)),
)

uploaded_file = Table(
    "CustomerCharge_UploadedFile",
    platform_metadata,
    Column("Id", Integer, primary_key=True),
    Column("FileName", String(255), nullable=False),
    Column("Status", String(50)),
    Column("Description", String(1000)),
    Column("IntegrationAuthenticationId", Integer),
    Column("ProcessedBy", String(100)),
    Column("ProcessedDate", DateTime),
    Column("CreatedBy", String(100), nullable=False),
    Column("CreatedDate", DateTime, nullable=False),
    Column("ModifiedBy", String(100)),
    Column("ModifiedDate", DateTime),
    Column("DeletedBy", String(100)),
    Column("DeletedDate", DateTime),
    Column("IsDeleted", Boolean, nullable=False, default=False),
    Column("IsActive", Boolean, nullable=False, default=True),
)


def _charge_queue_table(name: str, device_column: str) -> Table:
    return Table(
        name,
        platform_metadata,
        Column("Id", BigId, primary_key=True),
        Column("QueueId", BigInteger, index=True),
        Column("UploadedFileId", Integer, index=True),
        Column(device_column, Integer),
        Column("ICCID", String(50)),
        Column("MSISDN", String(50)),
        Column("RevServiceNumber", String(255)),
        Column("ServiceProviderId", Integer),
        Column("RatePlanCode", String(100)),
        Column("RatePlanName", String(255)),
        Column("UsageMB", ExactDecimal(18)),
        Column("SmsUsage", BigInteger),
        Column("BaseRate", Money),
        Column("RateChargeAmount", Money),
        Column("OverageChargeAmount", Money),
        Column("SmsChargeAmount", Money),
        Column("DeviceCharge", Money),
        Column("RevProductId", Integer),
        Column("RevProductTypeId", Integer),
        Column("OverageRevProductId", Integer),
        Column("OverageRevProductTypeId", Integer),
        Column("SmsRevProductId", Integer),
        Column("SmsRevProductTypeId", Integer),
        Column("IsBillInAdvance", Boolean, nullable=False, default=False),
        Column("RevAccountNumber", String(100)),
        Column("Description", String(1500)),
        Column("BillingStartDate", DateTime),
        Column("BillingEndDate", DateTime),
        Column("IntegrationAuthenticationId", Integer),
        Column("IsProcessed", Boolean, nullable=False, default=False),
        Column("ChargeId", Integer),
        Column("ChargeAmount", Money),
        Column("BaseChargeAmount", Money),
        Column("TotalChargeAmount", Money),
        Column("SmsChargeId", Integer),
        Column("HasErrors", Boolean, nullable=False, default=False),
        Column("ErrorMessage", Text),
        Column("CreatedBy", String(100), nullable=False),
        Column("CreatedDate", DateTime, nullable=False),
        Column("ModifiedBy", String(100)),
        Column("ModifiedDate", DateTime),
    )


m2m_charge_queue = _charge_queue_table(
    "OptimizationDeviceResult_CustomerChargeQueue", "AmopDeviceId"
)
mobility_charge_queue = _charge_queue_table(
    "OptimizationMobilityDeviceResult_CustomerChargeQueue", "MobilityDeviceId"
)
