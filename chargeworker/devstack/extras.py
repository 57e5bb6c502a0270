"""Demo additions on top of a loaded sample: a non-Rev customer and an uploaded charge file."""

import csv
import io
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from chargeworker.db import platform as p

NON_REV_CUSTOMER_NAME = "Northwind Field Services"
UPLOAD_COLUMNS = (
    "RevIoServiceNumber",
    "RevIoProductTypeId",
    "Description",
    "BaseChargeAmount",
    "OverageChargeAmount",
    "SmsChargeAmount",
    "SmsRevIoProductTypeId",
    "BillingStartDate",
    "BillingEndDate",
)


async def make_non_rev(engine: AsyncEngine, instance_id: int) -> str:
    """Turn an instance into a non-Rev customer's: a platform customer, no Rev.io link."""
    instance, customer = p.optimization_instance, p.customer
    async with engine.begin() as connection:
        tenant_id = await connection.scalar(
            select(instance.c.TenantId).where(instance.c.Id == instance_id)
        )
        customer_id = int(await connection.scalar(select(func.max(customer.c.Id))) or 0) + 1
        await connection.execute(
            customer.insert().values(
                Id=customer_id, TenantId=tenant_id, CustomerName=NON_REV_CUSTOMER_NAME
            )
        )
        await connection.execute(
            update(instance)
            .where(instance.c.Id == instance_id)
            .values(
                RevCustomerId=None, IntegrationAuthenticationId=None, AMOPCustomerId=customer_id
            )
        )
    return NON_REV_CUSTOMER_NAME


async def sample_charge_file(
    engine: AsyncEngine, integration_authentication_id: int, *, lines: int = 6
) -> bytes:
    """Write a charge CSV, as an operator would, for the account's numbers that devices own."""
    service, product_type, auth = p.rev_service, p.rev_product_type, p.integration_authentication
    async with engine.connect() as connection:
        known = set(
            (
                await connection.scalars(
                    select(service.c.Number).where(
                        service.c.IntegrationAuthenticationId == integration_authentication_id
                    )
                )
            ).all()
        )
        owned = set()
        for device in (p.device, p.mobility_device):
            for number, msisdn in await connection.execute(
                select(device.c.RevServiceNumber, device.c.MSISDN)
            ):
                owned.add((number or "").strip() or (msisdn or "").strip())
        tenant_id = await connection.scalar(
            select(auth.c.TenantId).where(auth.c.Id == integration_authentication_id)
        )
        product_types = sorted(
            (
                await connection.scalars(
                    select(product_type.c.ProductTypeId).where(product_type.c.TenantId == tenant_id)
                )
            ).all()
        )
    numbers = sorted(known & owned)[:lines]

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(UPLOAD_COLUMNS)
    for position, number in enumerate(numbers):
        base = Decimal("12.50") + position
        sms = Decimal("0.75") if position % 2 == 0 else Decimal("0")
        writer.writerow(
            [
                number,
                product_types[position % len(product_types)],
                f"Equipment fee, router rental #{position + 1}",
                base,
                Decimal("1.25") if position % 3 == 0 else "",
                sms,
                product_types[0] if sms else "",
                "2026-11-01",
                "11/30/2026",
            ]
        )
    return text.getvalue().encode("utf-8")
