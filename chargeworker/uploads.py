"""`chargeworker upload`: validate an operator's charge file, store its rows, send its FileId."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Table, delete, false, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from chargeworker.charges.upload import UploadContext, UploadLine, UploadRejected, parse_upload
from chargeworker.context import Context
from chargeworker.db import platform as p
from chargeworker.db.tables import upload_name
from chargeworker.errors import TransientError
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
    rev_account_number: str | None


async def upload_file(
    ctx: Context, file_name: str, content: bytes, integration_authentication_id: int
) -> UploadResult:
    """Store a valid charge file and its charge-queue rows, then send its create message.

    Raises UploadRejected listing every problem; then nothing is stored.
    """
    now = ctx.clock.now()
    try:
        async with ctx.engine.begin() as connection:
            file_id, lines = await _store(
                connection, file_name, content, integration_authentication_id, now
            )
    except IntegrityError:
        # The name's record in cw_upload_name was taken by an upload running at the same time.
        raise UploadRejected(
            file_name, [f"a file named {file_name!r} is being uploaded or was uploaded before"]
        ) from None

    push = Push(instance_ids=(), integration_authentication_id=integration_authentication_id)
    message = create_message(CreateMessage(Target("file", file_id), push))
    try:
        message_id = await ctx.aws.send(message)
    except TransientError:
        # Without its message the file would never be processed, so it is removed whole.
        async with ctx.engine.begin() as connection:
            await _remove(connection, file_id)
        log.error("upload.message_failed_file_removed", file_id=file_id, file_name=file_name)
        raise
    log.info("upload.stored", file_id=file_id, rows=len(lines), file_name=file_name)
    return UploadResult(file_id, len(lines), message_id)


async def _store(
    connection: AsyncConnection, file_name: str, content: bytes, auth_id: int, now: datetime
) -> tuple[int, list[UploadLine]]:
    """Validate the file and store it with its rows in the caller's transaction."""
    tenant_id = await _tenant_of(connection, auth_id)
    owners = await _service_owners(connection, auth_id, tenant_id or 0)
    context = UploadContext(
        known_service_numbers=frozenset(owners),
        product_type_ids=await _product_type_ids(connection, tenant_id or 0),
        previous_file_names=await _previous_file_names(connection),
        references_known=tenant_id is not None,
    )
    auth_problems = (
        []
        if tenant_id is not None
        else [f"integration authentication {auth_id} not found or not active"]
    )
    try:
        lines = parse_upload(file_name, content, context)
    except UploadRejected as exc:
        raise UploadRejected(file_name, auth_problems + exc.problems) from None
    if auth_problems:
        raise UploadRejected(file_name, auth_problems)

    # Claiming the name makes a concurrent upload of the same name wait here and then
    # fail, where both would pass the check of earlier names.
    await connection.execute(
        upload_name.insert().values(name_key=name_key(file_name), created_at=now)
    )
    file_id = await _insert_file(connection, file_name, auth_id, now)
    await connection.execute(
        update(upload_name)
        .where(upload_name.c.name_key == name_key(file_name))
        .values(file_id=file_id)
    )
    for line in lines:
        owner = owners[line.service_number]
        await connection.execute(
            owner.charge_queue.insert().values(**_row_values(line, owner, file_id, auth_id, now))
        )
    return file_id, lines


async def _remove(connection: AsyncConnection, file_id: int) -> None:
    for table in (p.m2m_charge_queue, p.mobility_charge_queue):
        await connection.execute(delete(table).where(table.c.UploadedFileId == file_id))
    await connection.execute(delete(p.uploaded_file).where(p.uploaded_file.c.Id == file_id))
    await connection.execute(delete(upload_name).where(upload_name.c.file_id == file_id))


def name_key(file_name: str) -> str:
    """Compare file names as the platform does: ignoring case and spaces."""
    return "".join(file_name.split()).casefold()


async def _tenant_of(connection: AsyncConnection, auth_id: int) -> int | None:
    auth = p.integration_authentication
    tenant_id = await connection.scalar(
        select(auth.c.TenantId).where(auth.c.Id == auth_id, auth.c.IsActive == true())
    )
    return None if tenant_id is None else int(tenant_id)


async def _service_owners(
    connection: AsyncConnection, auth_id: int, tenant_id: int
) -> dict[str, _Owner]:
    """Map each known Rev.io service number of the account to the tenant's device owning it."""
    service, rev_customer = p.rev_service, p.rev_customer
    account_query = (
        select(service.c.Number, rev_customer.c.RevAccountNumber)
        .outerjoin(
            rev_customer,
            (rev_customer.c.RevCustomerId == service.c.CustomerId)
            & (rev_customer.c.IntegrationAuthenticationId == auth_id),
        )
        .where(service.c.IntegrationAuthenticationId == auth_id)
    )
    # The Rev.io account number of the customer that owns each number, for error reports.
    account_numbers: dict[str, str | None] = {}
    for number, account_number in await connection.execute(account_query):
        account_numbers[number] = account_numbers.get(number) or account_number
    owners: dict[str, _Owner] = {}
    tables = (
        (p.mobility_device, p.mobility_charge_queue, "MobilityDeviceId"),
        (p.device, p.m2m_charge_queue, "AmopDeviceId"),
    )
    # M2M devices come last, so a number on both kinds of device is charged as M2M.
    for device, charge_queue, device_column in tables:
        query = select(device).where(device.c.TenantId == tenant_id).order_by(device.c.Id)
        for row in await connection.execute(query):
            number = (row.RevServiceNumber or "").strip() or (row.MSISDN or "").strip()
            if number in account_numbers:
                owners[number] = _Owner(
                    charge_queue,
                    device_column,
                    row.Id,
                    row.ICCID,
                    row.MSISDN,
                    row.ServiceProviderId,
                    account_numbers[number],
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
        "RevAccountNumber": owner.rev_account_number,
        "Description": line.description,
        "BillingStartDate": datetime.combine(line.billing_start, datetime.min.time()),
        "BillingEndDate": datetime.combine(line.billing_end, datetime.min.time()),
        "IntegrationAuthenticationId": auth_id,
        "IsProcessed": False,
        "HasErrors": False,
        "CreatedBy": UPLOADED_BY,
        "CreatedDate": now,
    }
