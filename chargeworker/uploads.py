"""`chargeworker upload`: validate an operator's charge file, store its rows, send its FileId."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Table, false, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from chargeworker.charges.upload import UploadContext, UploadLine, UploadRejected, parse_upload
from chargeworker.context import Context
from chargeworker.db import platform as p
from chargeworker.messages import CreateMessage, Push, Target, create_message

log = structlog.get_logger()

UPLOADED_BY = "chargeworker"


@dataclass(frozen=True)
class UploadResult:
    file_id: int
    rows: int
    message_id: str


@dataclass(frozen=True)
class _Owner:
    """The device that owns a service number, and the charge-queue table its rows go to."""

    charge_queue: Table
    device_column: str
    device_id: int
    iccid: str | None
    msisdn: str | None
    service_provider_id: int | None


async def upload_file(
    ctx: Context, file_name: str, content: bytes, integration_authentication_id: int
) -> UploadResult:
    """Store a valid charge file and its charge-queue rows, then send its create message.

    Raises UploadRejected listing every problem; then nothing is stored.
    """
    now = ctx.clock.now()
    async with ctx.engine.begin() as connection:
        tenant_id = await _tenant_of(connection, file_name, integration_authentication_id)
        owners = await _service_owners(connection, integration_authentication_id)
        context = UploadContext(
            known_service_numbers=frozenset(owners),
            product_type_ids=await _product_type_ids(connection, tenant_id),
            previous_file_names=await _previous_file_names(connection),
        )
        lines = parse_upload(file_name, content, context)
        file_id = await _insert_file(connection, file_name, integration_authentication_id, now)
        for line in lines:
            owner = owners[line.service_number]
            await connection.execute(
                owner.charge_queue.insert().values(
                    **_row_values(line, owner, file_id, integration_authentication_id, now)
                )
            )

    push = Push(instance_ids=(), integration_authentication_id=integration_authentication_id)
    message = create_message(CreateMessage(Target("file", file_id), push))
    message_id = await ctx.aws.send(message)
    log.info("upload.stored", file_id=file_id, rows=len(lines), file_name=file_name)
    return UploadResult(file_id, len(lines), message_id)


async def _tenant_of(connection: AsyncConnection, file_name: str, auth_id: int) -> int:
    auth = p.integration_authentication
    tenant_id = await connection.scalar(
        select(auth.c.TenantId).where(auth.c.Id == auth_id, auth.c.IsActive == true())
    )
    if tenant_id is None:
        raise UploadRejected(
            file_name, [f"integration authentication {auth_id} not found or not active"]
        )
    return int(tenant_id)


async def _service_owners(connection: AsyncConnection, auth_id: int) -> dict[str, _Owner]:
    """Map each known Rev.io service number of the account to the device that owns it."""
    service = p.rev_service
    numbers = set(
        (
            await connection.scalars(
                select(service.c.Number).where(service.c.IntegrationAuthenticationId == auth_id)
            )
        ).all()
    )
    owners: dict[str, _Owner] = {}
    tables = (
        (p.mobility_device, p.mobility_charge_queue, "MobilityDeviceId"),
        (p.device, p.m2m_charge_queue, "AmopDeviceId"),
    )
    # M2M devices come last, so a number on both kinds of device is charged as M2M.
    for device, charge_queue, device_column in tables:
        for row in await connection.execute(select(device).order_by(device.c.Id)):
            number = (row.RevServiceNumber or "").strip() or (row.MSISDN or "").strip()
            if number in numbers:
                owners[number] = _Owner(
                    charge_queue,
                    device_column,
                    row.Id,
                    row.ICCID,
                    row.MSISDN,
                    row.ServiceProviderId,
                )
    return owners


async def _product_type_ids(connection: AsyncConnection, tenant_id: int) -> frozenset[int]:
    table = p.rev_product_type
    query = select(table.c.ProductTypeId).where(
        table.c.TenantId == tenant_id, table.c.IsActive == true(), table.c.IsDeleted == false()
    )
    return frozenset((await connection.scalars(query)).all())


async def _previous_file_names(connection: AsyncConnection) -> frozenset[str]:
    table = p.uploaded_file
    query = select(table.c.FileName).where(table.c.IsDeleted == false())
    return frozenset((await connection.scalars(query)).all())


async def _insert_file(
    connection: AsyncConnection, file_name: str, auth_id: int, now: datetime
) -> int:
    result = await connection.execute(
        p.uploaded_file.insert().values(
            FileName=file_name,
            Status="Uploaded",
            IntegrationAuthenticationId=auth_id,
            CreatedBy=UPLOADED_BY,
            CreatedDate=now,
            IsDeleted=False,
            IsActive=True,
        )
    )
    return int(result.inserted_primary_key[0])


def _row_values(
    line: UploadLine, owner: _Owner, file_id: int, auth_id: int, now: datetime
) -> dict[str, Any]:
    # BaseRate is 0 and DeviceCharge carries base + overage, so totals count them once.
    return {
        "UploadedFileId": file_id,
        owner.device_column: owner.device_id,
        "ICCID": owner.iccid,
        "MSISDN": owner.msisdn,
        "RevServiceNumber": line.service_number,
        "ServiceProviderId": owner.service_provider_id,
        "UsageMB": 0,
        "SmsUsage": 0,
        "BaseRate": 0,
        "RateChargeAmount": line.base_amount,
        "OverageChargeAmount": line.overage_amount,
        "SmsChargeAmount": line.sms_amount,
        "DeviceCharge": line.base_amount + line.overage_amount,
        "RevProductTypeId": line.product_type_id,
        "SmsRevProductTypeId": line.sms_product_type_id,
        "IsBillInAdvance": False,
        "Description": line.description,
        "BillingStartDate": datetime.combine(line.billing_start, datetime.min.time()),
        "BillingEndDate": datetime.combine(line.billing_end, datetime.min.time()),
        "IntegrationAuthenticationId": auth_id,
        "IsProcessed": False,
        "HasErrors": False,
        "CreatedBy": UPLOADED_BY,
        "CreatedDate": now,
    }
