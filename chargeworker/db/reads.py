"""Reads of the platform's tables that the phases share."""

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import exists, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from chargeworker.db import platform as p
from chargeworker.revio.models import RevioAccount

PORTAL_M2M = 0
PORTAL_MOBILITY = 2
PORTAL_CROSS_PROVIDER = 3
PORTAL_TYPES = (PORTAL_M2M, PORTAL_MOBILITY, PORTAL_CROSS_PROVIDER)


@dataclass(frozen=True)
class Instance:
    id: int
    tenant_id: int
    portal_type_id: int
    rev_customer_guid: uuid.UUID | None
    amop_customer_id: int | None
    integration_authentication_id: int | None
    billing_period_start: date
    billing_period_end: date

    @property
    def is_rev_customer(self) -> bool:
        """False for a customer billed outside Rev.io: its charges are recorded, never sent."""
        return not (
            self.rev_customer_guid is None
            and self.integration_authentication_id is None
            and self.amop_customer_id is not None
        )


@dataclass(frozen=True)
class RevCustomer:
    rev_customer_id: int
    name: str
    account_number: str


@dataclass(frozen=True)
class TenantSettings:
    billing_time_zone: str | None
    itemized: bool


@dataclass(frozen=True)
class EmailSettings:
    sender: str | None
    recipients: str | None
    subject: str | None


def _as_date(value: datetime | date) -> date:
    return value.date() if isinstance(value, datetime) else value


async def load_instance(connection: AsyncConnection, instance_id: int) -> Instance | None:
    table = p.optimization_instance
    row = (await connection.execute(select(table).where(table.c.Id == instance_id))).first()
    if row is None:
        return None
    return Instance(
        id=row.Id,
        tenant_id=row.TenantId,
        portal_type_id=row.PortalTypeId,
        rev_customer_guid=row.RevCustomerId,
        amop_customer_id=row.AMOPCustomerId,
        integration_authentication_id=row.IntegrationAuthenticationId,
        billing_period_start=_as_date(row.BillingPeriodStartDate),
        billing_period_end=_as_date(row.BillingPeriodEndDate),
    )


async def load_comm_group_ids(connection: AsyncConnection, instance_id: int) -> list[int]:
    table = p.optimization_comm_group
    query = select(table.c.Id).where(table.c.InstanceId == instance_id).order_by(table.c.Id)
    return list((await connection.scalars(query)).all())


async def find_winning_queue(
    connection: AsyncConnection, comm_group_id: int, portal_type_id: int
) -> int | None:
    """Return the cheapest finished queue of the group with results of the instance's kind."""
    queue = p.optimization_queue
    has_m2m = exists().where(p.device_result.c.QueueId == queue.c.Id)
    has_mobility = exists().where(p.mobility_device_result.c.QueueId == queue.c.Id)
    has_results = {
        PORTAL_M2M: has_m2m,
        PORTAL_MOBILITY: has_mobility,
        PORTAL_CROSS_PROVIDER: or_(has_m2m, has_mobility),
    }[portal_type_id]
    query = (
        select(queue.c.Id)
        .where(
            queue.c.CommPlanGroupId == comm_group_id,
            queue.c.TotalCost.isnot(None),
            queue.c.RunEndTime.isnot(None),
            has_results,
        )
        .order_by(queue.c.TotalCost, queue.c.Id)
        .limit(1)
    )
    return await connection.scalar(query)


async def load_queue_instance_id(connection: AsyncConnection, queue_id: int) -> int | None:
    queue = p.optimization_queue
    return await connection.scalar(select(queue.c.InstanceId).where(queue.c.Id == queue_id))


async def load_rev_customer(
    connection: AsyncConnection, guid: uuid.UUID | None
) -> RevCustomer | None:
    if guid is None:
        return None
    table = p.rev_customer
    row = (await connection.execute(select(table).where(table.c.Id == guid))).first()
    if row is None:
        return None
    return RevCustomer(
        rev_customer_id=row.RevCustomerId,
        name=row.CustomerName or "",
        account_number=row.RevAccountNumber or "",
    )


async def load_customer_name(connection: AsyncConnection, instance: Instance) -> str:
    """Return the customer's name from RevCustomer, else the platform's Customer table."""
    rev_customer = await load_rev_customer(connection, instance.rev_customer_guid)
    if rev_customer is not None:
        return rev_customer.name
    if instance.amop_customer_id is None:
        return ""
    table = p.customer
    query = select(table.c.CustomerName).where(table.c.Id == instance.amop_customer_id)
    return (await connection.scalar(query)) or ""


async def load_account(
    connection: AsyncConnection, integration_authentication_id: int | None
) -> RevioAccount | None:
    """Return the active Rev.io account, or None when it does not exist or is inactive."""
    if not integration_authentication_id:
        return None
    table = p.integration_authentication
    query = select(table).where(
        table.c.Id == integration_authentication_id, table.c.IsActive == true()
    )
    row = (await connection.execute(query)).first()
    if row is None or not row.BaseUrl or not row.Username or not row.Password:
        return None
    return RevioAccount(
        integration_authentication_id=row.Id,
        base_url=row.BaseUrl.rstrip("/"),
        username=row.Username,
        password=row.Password,
        client_code=row.ClientCode or "",
        subscription_key=row.SubscriptionKey or None,
    )


async def load_tenant_settings(connection: AsyncConnection, tenant_id: int) -> TenantSettings:
    table = p.optimization_settings
    row = (await connection.execute(select(table).where(table.c.TenantId == tenant_id))).first()
    if row is None:
        return TenantSettings(billing_time_zone=None, itemized=False)
    return TenantSettings(
        billing_time_zone=row.BillingTimeZone,
        itemized=bool(row.UsingNewProcessInCustomerCharge),
    )


async def load_email_settings(connection: AsyncConnection) -> EmailSettings:
    table = p.general_provider_settings
    row = (await connection.execute(select(table).order_by(table.c.Id).limit(1))).first()
    if row is None:
        return EmailSettings(None, None, None)
    return EmailSettings(
        sender=row.CustomerChargeFromEmailAddress,
        recipients=row.CustomerChargeToEmailAddresses,
        subject=row.CustomerChargeResultsEmailSubject,
    )


async def load_integration_names(
    connection: AsyncConnection, service_provider_ids: set[int]
) -> dict[int, str]:
    """Map each service provider id to its carrier integration's name, where one exists."""
    if not service_provider_ids:
        return {}
    provider, integration = p.service_provider, p.integration
    query = (
        select(provider.c.Id, integration.c.Name)
        .join(integration, integration.c.Id == provider.c.IntegrationId)
        .where(provider.c.Id.in_(sorted(service_provider_ids)))
    )
    return {row.Id: row.Name for row in await connection.execute(query) if row.Name}
