"""Uploaded charge files end to end on the embedded stack: upload, then the three phases.

Each test loads a small sample (for its tenant, Rev.io account, product types and
carriers) and adds its own devices, `RevService` rows and simulator services, so the
numbers, carriers and Rev.io customers of the file are known exactly.
"""

import asyncio
import html
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chargeworker.charges.upload import COLUMNS, UploadRejected
from chargeworker.context import Context
from chargeworker.db import platform as p
from chargeworker.devstack.local_aws import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, LocalAws
from chargeworker.devstack.sample import Sample
from chargeworker.errors import TransientError
from chargeworker.messages import CheckMessage, CreateMessage, Push, Target
from chargeworker.messages import check_message as build_check_message
from chargeworker.messages import create_message as build_create_message
from chargeworker.uploads import UploadResult, upload_file
from tests.conftest import _harness as stack_harness
from tests.harness import Harness

# A Rev.io customer of no instance. File charges go to the service's customer, even this one.
FOREIGN_CUSTOMER_ID = 990_001
ACTIVATED = date(2020, 1, 1)
UNKNOWN_FILE_ID = 999_999
UNKNOWN_AUTH_ID = 999_999
OTHER_AUTH_ID = 888_888  # another Rev.io account, with one RevService row
OTHER_TENANT_PRODUCT_TYPE = 888
COMMAND_TIMEOUT_S = 30
RUN_TIMEOUT_S = 30

TELEGENCE_NUMBER = "9995550101"  # M2M device, carrier with the Telegence integration
POND_NUMBER = "9995550102"  # Mobility device, Pond carrier, no RevServiceNumber (MSISDN used)
OTHER_NUMBER = "9995550103"  # M2M device, carrier with the default date rule
UNOWNED_NUMBER = "9995550104"  # a RevService of the account that no device owns
OTHER_ACCOUNT_NUMBER = "9995550105"  # owned by a device, but a RevService of another account
INACTIVE_NUMBER = "9995550106"  # M2M device whose only Rev.io service ended in 2025
UNKNOWN_NUMBER = "9995559999"

HEADER = ",".join(COLUMNS)
VALID_ROWS = (
    f'{TELEGENCE_NUMBER},301,"Router rental, November",12.50,1.25,0.75,303,11/1/2026,11/30/2026',
    f"{TELEGENCE_NUMBER},302,Late fee,5,,,,2026-11-01,2026-11-30",
    f'{POND_NUMBER},311,"Install, setup",20.00,0.50,,,2026-10-01,10/31/2026',
    f"{OTHER_NUMBER},301,Equipment,3.10,0,,,2026-11-01,2026-11-30",
)


def csv_bytes(*rows: str, header: str = HEADER) -> bytes:
    """Return a charge file as Excel writes it: a byte-order mark and CRLF line ends."""
    return ("\ufeff" + "\r\n".join([header, *rows]) + "\r\n").encode("utf-8")


VALID_FILE = csv_bytes(*VALID_ROWS)


@dataclass(frozen=True)
class ExpectedRow:
    """A line of VALID_FILE as its charge-queue row and its Rev.io charges should show it."""

    table: str
    number: str  # also the device's MSISDN
    description: str
    base: Decimal
    overage: Decimal
    sms: Decimal
    product_type_id: int
    sms_product_type_id: int | None
    start: date
    end: date
    sent_start: date  # after the date rule of the device's carrier
    sent_end: date

    @property
    def device_charge(self) -> Decimal:
        return self.base + self.overage


# In the order of the charge list: M2M rows first, then Mobility, each in file order.
EXPECTED_ROWS = (
    ExpectedRow(
        table="m2m",
        number=TELEGENCE_NUMBER,
        description="Router rental, November",
        base=Decimal("12.50"),
        overage=Decimal("1.25"),
        sms=Decimal("0.75"),
        product_type_id=301,
        sms_product_type_id=303,
        start=date(2026, 11, 1),
        end=date(2026, 11, 30),
        sent_start=date(2026, 11, 1),
        sent_end=date(2026, 11, 29),  # Telegence: the period ends one day earlier
    ),
    ExpectedRow(
        table="m2m",
        number=TELEGENCE_NUMBER,
        description="Late fee",
        base=Decimal("5.00"),
        overage=Decimal("0.00"),
        sms=Decimal("0.00"),
        product_type_id=302,
        sms_product_type_id=None,
        start=date(2026, 11, 1),
        end=date(2026, 11, 30),
        sent_start=date(2026, 11, 1),
        sent_end=date(2026, 11, 29),
    ),
    ExpectedRow(
        table="m2m",
        number=OTHER_NUMBER,
        description="Equipment",
        base=Decimal("3.10"),
        overage=Decimal("0.00"),
        sms=Decimal("0.00"),
        product_type_id=301,
        sms_product_type_id=None,
        start=date(2026, 11, 1),
        end=date(2026, 11, 30),
        sent_start=date(2026, 11, 2),  # any other carrier: the period starts one day later
        sent_end=date(2026, 11, 30),
    ),
    ExpectedRow(
        table="mobility",
        number=POND_NUMBER,
        description="Install, setup",
        base=Decimal("20.00"),
        overage=Decimal("0.50"),
        sms=Decimal("0.00"),
        product_type_id=311,
        sms_product_type_id=None,
        start=date(2026, 10, 1),
        end=date(2026, 10, 31),
        sent_start=date(2026, 10, 1),  # Pond: the period as it is
        sent_end=date(2026, 10, 31),
    ),
)


@dataclass(frozen=True)
class Account:
    """The sample's Rev.io account with this file's devices and services added."""

    sample: Sample
    customer_id: int  # Rev.io customer of the sample's first instance
    service_ids: dict[str, int]  # simulator service id of each number
    device_ids: dict[str, int]  # id of the device that owns each number

    @property
    def auth_id(self) -> int:
        return self.sample.integration_authentication_id


async def next_id(connection: AsyncConnection, table: Table) -> int:
    return int(await connection.scalar(select(func.max(table.c.Id))) or 0) + 1


async def add_device(
    connection: AsyncConnection,
    table: Table,
    *,
    tenant_id: int,
    msisdn: str,
    provider_id: int,
    rev_service_number: str | None,
) -> int:
    device_id = await next_id(connection, table)
    await connection.execute(
        table.insert().values(
            Id=device_id,
            TenantId=tenant_id,
            ICCID=f"8901{msisdn}00001",
            MSISDN=msisdn,
            ServiceProviderId=provider_id,
            RevServiceNumber=rev_service_number,
        )
    )
    return device_id


async def add_rev_service(
    connection: AsyncConnection, auth_id: int, service_id: int, customer_id: int, number: str
) -> None:
    await connection.execute(
        p.rev_service.insert().values(
            Id=await next_id(connection, p.rev_service),
            IntegrationAuthenticationId=auth_id,
            ServiceId=service_id,
            CustomerId=customer_id,
            Number=number,
        )
    )


async def set_up_account(harness: Harness) -> Account:
    """Load a sample and add the devices, `RevService` rows and services the files use."""
    sample = await harness.load_sample(devices=1, seed=5)
    customer_id = sample.instances[0].rev_customer_id
    auth_id = sample.integration_authentication_id
    simulator = harness.simulator
    service_ids: dict[str, int] = {}
    device_ids: dict[str, int] = {}
    async with harness.engine.begin() as connection:
        providers = {
            name: provider_id
            for name, provider_id in await connection.execute(
                select(p.service_provider.c.Name, p.service_provider.c.Id)
            )
        }
        devices = (
            (p.device, TELEGENCE_NUMBER, "AT&T Mobility", TELEGENCE_NUMBER),
            (p.mobility_device, POND_NUMBER, "Pond IoT", None),
            (p.device, OTHER_NUMBER, "Verizon Wireless", OTHER_NUMBER),
            (p.device, OTHER_ACCOUNT_NUMBER, "Verizon Wireless", OTHER_ACCOUNT_NUMBER),
            (p.device, INACTIVE_NUMBER, "Verizon Wireless", INACTIVE_NUMBER),
        )
        for table, msisdn, provider, rev_service_number in devices:
            device_ids[msisdn] = await add_device(
                connection,
                table,
                tenant_id=sample.tenant_id,
                msisdn=msisdn,
                provider_id=providers[provider],
                rev_service_number=rev_service_number,
            )

        owners = (
            (TELEGENCE_NUMBER, customer_id, None),
            (POND_NUMBER, customer_id, None),
            (OTHER_NUMBER, FOREIGN_CUSTOMER_ID, None),
            (UNOWNED_NUMBER, customer_id, None),
            (INACTIVE_NUMBER, customer_id, date(2025, 12, 31)),
        )
        for number, owner, disconnected in owners:
            service_id = simulator.add_service(
                customer_id=owner,
                number=number,
                activated_date=ACTIVATED,
                disconnected_date=disconnected,
            )
            service_ids[number] = service_id
            await add_rev_service(connection, auth_id, service_id, owner, number)
        await add_rev_service(connection, OTHER_AUTH_ID, 77_001, customer_id, OTHER_ACCOUNT_NUMBER)

        await connection.execute(
            p.rev_product_type.insert().values(
                Id=await next_id(connection, p.rev_product_type),
                TenantId=sample.tenant_id + 1,
                ProductTypeId=OTHER_TENANT_PRODUCT_TYPE,
                Description="Another tenant's product type",
                IsActive=True,
                IsDeleted=False,
            )
        )
    return Account(sample, customer_id, service_ids, device_ids)


async def add_inactive_auth(harness: Harness, account: Account) -> int:
    """Copy the account and its `RevService` rows as an inactive account, and return its id."""
    auth, service = p.integration_authentication, p.rev_service
    async with harness.engine.begin() as connection:
        auth_id = await next_id(connection, auth)
        source = (await connection.execute(select(auth).where(auth.c.Id == account.auth_id))).one()
        await connection.execute(
            auth.insert().values(**{**source._asdict(), "Id": auth_id, "IsActive": False})
        )
        services = await connection.execute(
            select(service).where(service.c.IntegrationAuthenticationId == account.auth_id)
        )
        for row in services.all():
            values = {
                **row._asdict(),
                "Id": await next_id(connection, service),
                "IntegrationAuthenticationId": auth_id,
            }
            await connection.execute(service.insert().values(**values))
    return auth_id


async def file_records(harness: Harness) -> list[dict[str, Any]]:
    async with harness.engine.connect() as connection:
        result = await connection.execute(select(p.uploaded_file).order_by(p.uploaded_file.c.Id))
        return [dict(row) for row in result.mappings()]


async def file_rows(harness: Harness) -> list[dict[str, Any]]:
    """Return the charge-queue rows of uploaded files, M2M first, with their table's name."""
    rows = []
    for table in ("m2m", "mobility"):
        for row in await harness.charge_queue_rows(table):
            if row["UploadedFileId"] is not None:
                rows.append({**row, "table": table})
    return rows


async def receive_all(ctx: Context, queue_url: str) -> list[dict[str, Any]]:
    answer = await ctx.aws.sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        WaitTimeSeconds=0,
    )
    return list(answer.get("Messages", []))


async def upload_and_run(
    harness: Harness, account: Account, file_name: str = "a&b.csv", **overrides: Any
) -> UploadResult:
    async with harness.context(receive_wait_s=1, **overrides) as ctx:
        result = await upload_file(ctx, file_name, VALID_FILE, account.auth_id)
        await harness.run_until_idle(ctx, timeout_s=RUN_TIMEOUT_S)
    return result


def summary_emails(harness: Harness) -> list[Any]:
    return [email for email in harness.emails() if not email["Subject"].startswith("Errors:")]


def html_part(message: Any) -> str:
    return str(message.get_body(("html",)).get_content())


def text_part(message: Any) -> str:
    return str(message.get_body(("plain",)).get_content())


def charge_ids_by_line(harness: Harness) -> dict[tuple[int, int | None, str], int]:
    """Map (service id, product type id, description) to the simulator's charge id."""
    return {
        (charge["service_id"], charge["product_type_id"], charge["description"]): charge[
            "charge_id"
        ]
        for charge in harness.simulator.charges
    }


def rev_date(value: date) -> str:
    return f"{value.year}-{value.month}-{value.day}"


# --- a valid file --------------------------------------------------------------------


async def test_upload_stores_file_record(harness: Harness) -> None:
    account = await set_up_account(harness)
    async with harness.context(receive_wait_s=1) as ctx:
        result = await upload_file(ctx, "a&b.csv", VALID_FILE, account.auth_id)

    records = await file_records(harness)
    assert len(records) == 1
    assert records[0]["Id"] == result.file_id
    assert records[0]["FileName"] == "a&b.csv"
    assert records[0]["IntegrationAuthenticationId"] == account.auth_id
    assert records[0]["IsDeleted"] is False
    assert result.rows == len(EXPECTED_ROWS)


async def test_upload_stores_one_row_per_line(harness: Harness) -> None:
    account = await set_up_account(harness)
    async with harness.context(receive_wait_s=1) as ctx:
        result = await upload_file(ctx, "a&b.csv", VALID_FILE, account.auth_id)

    rows = await file_rows(harness)
    assert len(rows) == len(EXPECTED_ROWS)
    for row, expected in zip(rows, EXPECTED_ROWS, strict=True):
        label = f"{expected.table} {expected.description}"
        device_column = "AmopDeviceId" if expected.table == "m2m" else "MobilityDeviceId"
        assert row["table"] == expected.table, label
        assert row[device_column] == account.device_ids[expected.number], label
        assert row["UploadedFileId"] == result.file_id, label
        assert row["QueueId"] is None, label
        assert row["RevServiceNumber"] == expected.number, label
        assert row["MSISDN"] == expected.number, label
        assert row["Description"] == expected.description, label
        assert row["RateChargeAmount"] == expected.base, label
        assert row["OverageChargeAmount"] == expected.overage, label
        assert row["DeviceCharge"] == expected.device_charge, label
        assert row["BaseRate"] == 0, label
        assert row["SmsChargeAmount"] == expected.sms, label
        assert row["RevProductTypeId"] == expected.product_type_id, label
        assert row["SmsRevProductTypeId"] == expected.sms_product_type_id, label
        assert row["BillingStartDate"].date() == expected.start, label
        assert row["BillingEndDate"].date() == expected.end, label
        assert row["IsProcessed"] is False, label


async def test_upload_sends_file_message(sqlite_harness: Harness) -> None:
    account = await set_up_account(sqlite_harness)
    async with sqlite_harness.context(receive_wait_s=1) as ctx:
        result = await upload_file(ctx, "a&b.csv", VALID_FILE, account.auth_id)
        messages = await receive_all(ctx, ctx.settings.create_queue_url or "")

    assert len(messages) == 1
    attributes = {
        name: value["StringValue"] for name, value in messages[0]["MessageAttributes"].items()
    }
    assert messages[0]["MessageId"] == result.message_id
    assert attributes == {
        "FileId": str(result.file_id),
        "CurrentIntegrationAuthenticationId": str(account.auth_id),
        "PageNumber": "1",
        "RetryCount": "0",
    }
    assert messages[0]["Body"] == f"File to work is {result.file_id}"


async def test_file_charged_in_revio(harness: Harness) -> None:
    account = await set_up_account(harness)
    await upload_and_run(harness, account)

    expected_charges = []
    for row in EXPECTED_ROWS:
        customer_id = FOREIGN_CUSTOMER_ID if row.number == OTHER_NUMBER else account.customer_id
        expected_charges.append((row, row.product_type_id, row.device_charge, customer_id))
        if row.sms > 0:
            expected_charges.append((row, row.sms_product_type_id, row.sms, customer_id))
    charges = {
        (charge["service_id"], charge["description"], charge["product_type_id"]): charge
        for charge in harness.simulator.charges
    }
    assert len(harness.simulator.charges) == len(expected_charges)
    for row, product_type_id, amount, customer_id in expected_charges:
        key = (account.service_ids[row.number], row.description, product_type_id)
        charge = charges.get(key)
        assert charge is not None, key
        assert charge["amount"] == amount, key
        assert charge["product_id"] is None, key
        assert charge["customer_id"] == customer_id, key
        assert charge["start_date"] == row.sent_start, key
        assert charge["end_date"] == row.sent_end, key


async def test_file_rows_record_outcome(sqlite_harness: Harness) -> None:
    account = await set_up_account(sqlite_harness)
    await upload_and_run(sqlite_harness, account)

    charge_ids = charge_ids_by_line(sqlite_harness)
    rows = await file_rows(sqlite_harness)
    assert len(rows) == len(EXPECTED_ROWS)
    for row, expected in zip(rows, EXPECTED_ROWS, strict=True):
        service_id = account.service_ids[expected.number]
        usage_id = charge_ids[(service_id, expected.product_type_id, expected.description)]
        sms_id = charge_ids.get((service_id, expected.sms_product_type_id, expected.description))
        label = expected.description
        assert row["IsProcessed"] is True, label
        assert row["HasErrors"] is False, label
        assert row["ChargeId"] == usage_id, label
        assert row["SmsChargeId"] == (sms_id if expected.sms > 0 else -1), label
        assert row["ChargeAmount"] == expected.device_charge, label
        assert row["BaseChargeAmount"] == 0, label
        assert row["TotalChargeAmount"] == expected.device_charge, label
        assert row["ModifiedBy"] == "System", label


async def test_file_charge_list_written(harness: Harness) -> None:
    account = await set_up_account(harness)
    result = await upload_and_run(harness, account)
    async with harness.context(receive_wait_s=1) as ctx:
        text = await harness.read_object(ctx, f"{result.file_id}.txt")

    charge_ids = charge_ids_by_line(harness)
    lines = text.split("\n")
    assert lines[0].split("\t") == [
        "MSISDN", "IsSuccessful", "ChargeId", "ChargeAmount", "SMSChargeId",
        "SMSChargeAmount", "BillingPeriodStart", "BillingPeriodEnd", "DateCharged",
        "ErrorMessage",
    ]  # fmt: skip
    assert lines[-1] == ""
    assert len(lines) == len(EXPECTED_ROWS) + 3
    for line, expected in zip(lines[1:-2], EXPECTED_ROWS, strict=True):
        fields = line.split("\t")
        service_id = account.service_ids[expected.number]
        sms_id = charge_ids.get((service_id, expected.sms_product_type_id, expected.description))
        label = expected.description
        assert fields[0] == expected.number, label
        assert fields[1] == "True", label
        assert fields[2] == str(
            charge_ids[(service_id, expected.product_type_id, expected.description)]
        ), label
        assert fields[3] == f"{expected.device_charge:.2f}", label
        assert fields[4] == (str(sms_id) if sms_id else ""), label
        assert fields[5] == f"{expected.sms:.2f}", label
        assert fields[6] == rev_date(expected.sent_start), label
        assert fields[7] == rev_date(expected.sent_end), label
        assert fields[8] != "", label
        assert fields[9] == "", label
    total = sum(row.device_charge for row in EXPECTED_ROWS)
    assert lines[-2].split("\t") == ["", "", "", f"{total:.2f}", "", "", "", "", "", ""]


async def test_file_summary_names_file(sqlite_harness: Harness) -> None:
    account = await set_up_account(sqlite_harness)
    result = await upload_and_run(sqlite_harness, account, file_name="a&b <Nov>.csv")

    emails = sqlite_harness.emails()
    assert len(emails) == 1
    assert not emails[0]["Subject"].startswith("Errors:")
    attachments = [part.get_filename() for part in emails[0].iter_attachments()]
    assert attachments == [f"{result.file_id}.txt"]
    assert "a&b <Nov>.csv" in text_part(emails[0])
    assert html.escape("a&b <Nov>.csv") in html_part(emails[0])
    assert "a&b <Nov>" not in html_part(emails[0])
    assert "error(s)" not in text_part(emails[0])


async def test_file_of_several_pages_charged_once(sqlite_harness: Harness) -> None:
    account = await set_up_account(sqlite_harness)
    rows = [
        f"{TELEGENCE_NUMBER},301,Rental {index},{index}.00,,,,2026-11-01,2026-11-30"
        for index in range(1, 8)
    ] + [f"{POND_NUMBER},311,Fee {index},{index}.50,,,,2026-11-01,2026-11-30" for index in (1, 2)]
    async with sqlite_harness.context(receive_wait_s=1, page_size=2) as ctx:
        await upload_file(ctx, "pages.csv", csv_bytes(*rows), account.auth_id)
        await sqlite_harness.run_until_idle(ctx, timeout_s=RUN_TIMEOUT_S)

    descriptions = sorted(charge["description"] for charge in sqlite_harness.simulator.charges)
    stored = await file_rows(sqlite_harness)
    assert descriptions == sorted(row.split(",")[2] for row in rows)
    assert all(row["IsProcessed"] for row in stored)
    assert sqlite_harness.ledger_problems(await sqlite_harness.ledger()) == []
    assert len(summary_emails(sqlite_harness)) == 1


async def test_file_lost_answer_not_charged_twice(sqlite_harness: Harness) -> None:
    account = await set_up_account(sqlite_harness)
    sqlite_harness.simulator.lose_next_answers(1)
    await upload_and_run(sqlite_harness, account)

    rows = await file_rows(sqlite_harness)
    assert len(sqlite_harness.simulator.charges) == 5
    assert sqlite_harness.ledger_problems(await sqlite_harness.ledger()) == []
    assert all(row["IsProcessed"] for row in rows)
    assert not any(row["HasErrors"] for row in rows)


async def test_identical_lines_charged_once_each(sqlite_harness: Harness) -> None:
    account = await set_up_account(sqlite_harness)
    line = one_row(description="Monthly rental", base="9.99")
    sqlite_harness.simulator.lose_next_answers(1)
    async with sqlite_harness.context(receive_wait_s=1) as ctx:
        await upload_file(ctx, "twice.csv", csv_bytes(line, line), account.auth_id)
        await sqlite_harness.run_until_idle(ctx, timeout_s=RUN_TIMEOUT_S)

    rows = await file_rows(sqlite_harness)
    assert len(sqlite_harness.simulator.charges) == 2
    assert sqlite_harness.ledger_problems(await sqlite_harness.ledger()) == []
    assert len({row["ChargeId"] for row in rows}) == 2
    assert not any(row["HasErrors"] for row in rows)


async def test_file_row_without_active_service_fails(sqlite_harness: Harness) -> None:
    account = await set_up_account(sqlite_harness)
    content = csv_bytes(
        f"{INACTIVE_NUMBER},301,Old rental,4.00,,,,2026-11-01,2026-11-30",
        f"{TELEGENCE_NUMBER},301,Rental,6.00,,,,2026-11-01,2026-11-30",
    )
    async with sqlite_harness.context(receive_wait_s=1) as ctx:
        await upload_file(ctx, "inactive.csv", content, account.auth_id)
        await sqlite_harness.run_until_idle(ctx, timeout_s=RUN_TIMEOUT_S)

    rows = {row["RevServiceNumber"]: row for row in await file_rows(sqlite_harness)}
    notifications = [
        email for email in sqlite_harness.emails() if email["Subject"].startswith("Errors:")
    ]
    reason = f"no active Rev.io service for number {INACTIVE_NUMBER}"
    assert rows[INACTIVE_NUMBER]["IsProcessed"] is True
    assert rows[INACTIVE_NUMBER]["HasErrors"] is True
    assert rows[INACTIVE_NUMBER]["ErrorMessage"] == reason
    assert rows[INACTIVE_NUMBER]["ChargeId"] == 0
    assert rows[TELEGENCE_NUMBER]["HasErrors"] is False
    assert [charge["description"] for charge in sqlite_harness.simulator.charges] == ["Rental"]
    assert len(notifications) == 1
    assert "Old rental" in text_part(notifications[0])
    assert reason in text_part(notifications[0])


async def test_file_dry_run_sends_nothing(sqlite_harness: Harness) -> None:
    account = await set_up_account(sqlite_harness)
    await upload_and_run(sqlite_harness, account, send_to_rev=False)

    rows = await file_rows(sqlite_harness)
    emails = summary_emails(sqlite_harness)
    assert sqlite_harness.simulator.request_count == 0
    assert sqlite_harness.simulator.charges == []
    assert len(rows) == len(EXPECTED_ROWS)
    assert all(row["IsProcessed"] for row in rows)
    assert not any(row["HasErrors"] for row in rows)
    assert {row["ChargeId"] for row in rows} == {-1}
    assert len(emails) == 1
    assert "dry run: nothing was sent to Rev.io" in text_part(emails[0])


# --- rejected files ------------------------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    """A charge file that the upload must reject, with a text each listed problem contains."""

    case: str
    file_name: str
    content: bytes
    problems: tuple[str, ...]  # each found in exactly one listed problem
    auth_id: int | None = None  # None means the account's

    def __str__(self) -> str:
        return self.case


def one_row(
    *,
    number: str = TELEGENCE_NUMBER,
    product_type: str = "301",
    description: str = "Rental",
    base: str = "12.50",
    overage: str = "",
    sms: str = "",
    sms_product_type: str = "",
    start: str = "2026-11-01",
    end: str = "2026-11-30",
) -> str:
    return ",".join(
        [number, product_type, description, base, overage, sms, sms_product_type, start, end]
    )


REJECTIONS = [
    Rejection("name_not_csv", "rentals.txt", VALID_FILE, ("'rentals.txt' does not end in .csv",)),
    Rejection("name_csv_inside", "rentals.csv.xlsx", VALID_FILE, ("does not end in .csv",)),
    Rejection(
        "name_over_255", "n" * 252 + ".csv", VALID_FILE, ("256 characters, more than the maximum",)
    ),
    Rejection("header_only", "header_only.csv", csv_bytes(), ("no data rows",)),
    Rejection("no_bytes", "no_bytes.csv", b"", ("the file is empty",)),
    Rejection(
        "unknown_service",
        "unknown_service.csv",
        csv_bytes(one_row(), one_row(number=UNKNOWN_NUMBER)),
        (f"line 3: RevIoServiceNumber '{UNKNOWN_NUMBER}' is not a known Rev.io service",),
    ),
    Rejection(
        "service_owned_by_no_device",
        "service_owned_by_no_device.csv",
        csv_bytes(one_row(number=UNOWNED_NUMBER)),
        (f"line 2: RevIoServiceNumber '{UNOWNED_NUMBER}'",),
    ),
    Rejection(
        "service_of_other_account",
        "service_of_other_account.csv",
        csv_bytes(one_row(number=OTHER_ACCOUNT_NUMBER)),
        (f"line 2: RevIoServiceNumber '{OTHER_ACCOUNT_NUMBER}'",),
    ),
    Rejection(
        "unknown_product_type",
        "unknown_product_type.csv",
        csv_bytes(one_row(product_type="777")),
        ("line 2: RevIoProductTypeId 777 is not an active Rev.io product type",),
    ),
    Rejection(
        "other_tenant_product_type",
        "other_tenant_product_type.csv",
        csv_bytes(one_row(product_type=str(OTHER_TENANT_PRODUCT_TYPE))),
        (f"line 2: RevIoProductTypeId {OTHER_TENANT_PRODUCT_TYPE} is not an active",),
    ),
    Rejection(
        "unknown_sms_product_type",
        "unknown_sms_product_type.csv",
        csv_bytes(one_row(sms="0.50", sms_product_type="777")),
        ("line 2: SmsRevIoProductTypeId 777 is not an active",),
    ),
    Rejection(
        "amount_with_comma",
        "amount_with_comma.csv",
        csv_bytes(one_row(base='"12,50"')),
        ("line 2: BaseChargeAmount '12,50' is not a plain decimal",),
    ),
    Rejection(
        "amount_with_currency",
        "amount_with_currency.csv",
        csv_bytes(one_row(overage="$1.00")),
        ("line 2: OverageChargeAmount '$1.00' is not a plain decimal",),
    ),
    Rejection(
        "negative_amount",
        "negative_amount.csv",
        csv_bytes(one_row(sms="-0.75", sms_product_type="303")),
        ("line 2: SmsChargeAmount '-0.75' is negative",),
    ),
    Rejection(
        "impossible_date",
        "impossible_date.csv",
        csv_bytes(one_row(end="2026-02-30")),
        ("line 2: BillingEndDate '2026-02-30' is not a valid date",),
    ),
    Rejection(
        "date_in_other_form",
        "date_in_other_form.csv",
        csv_bytes(one_row(start="Nov 1 2026")),
        ("line 2: BillingStartDate 'Nov 1 2026' is not a date",),
    ),
    Rejection(
        "several_problems",
        "several.txt",
        csv_bytes(
            one_row(),
            one_row(base="abc"),
            one_row(number=UNKNOWN_NUMBER),
            one_row(overage="-1", end="13/1/2026"),
            one_row(),
        ),
        (
            "does not end in .csv",
            "line 3: BaseChargeAmount 'abc'",
            f"line 4: RevIoServiceNumber '{UNKNOWN_NUMBER}'",
            "line 5: OverageChargeAmount '-1' is negative",
            "line 5: BillingEndDate '13/1/2026'",
        ),
    ),
    Rejection(
        "unknown_auth",
        "unknown_auth.csv",
        VALID_FILE,
        (f"integration authentication {UNKNOWN_AUTH_ID} not found or not active",),
        auth_id=UNKNOWN_AUTH_ID,
    ),
]


@dataclass(frozen=True)
class RejectionStack:
    """The shared stack of the rejection tests, with an open context."""

    harness: Harness
    account: Account
    ctx: Context


@pytest.fixture(scope="module")
async def rejection_stack(
    tmp_path_factory: pytest.TempPathFactory, local_aws: LocalAws
) -> AsyncIterator[RejectionStack]:
    """One SQLite stack shared by the uploads that must be rejected.

    A rejected upload stores nothing, so the tests can share it. Each test compares what
    is stored before and after its upload, so a leak fails the test that caused it.
    """
    folder = tmp_path_factory.mktemp("rejections")
    async for harness in stack_harness("sqlite", folder, local_aws, None):
        account = await set_up_account(harness)
        async with harness.context(receive_wait_s=1) as ctx:
            yield RejectionStack(harness, account, ctx)


@dataclass(frozen=True)
class Stored:
    """What an upload may have stored: file records, their rows, create-queue messages."""

    files: int
    rows: int
    messages: int


async def count_stored(stack: RejectionStack) -> Stored:
    create_queue_url = stack.ctx.settings.create_queue_url or ""
    return Stored(
        files=len(await file_records(stack.harness)),
        rows=len(await file_rows(stack.harness)),
        messages=await stack.harness.queue_depth(stack.ctx, create_queue_url),
    )


async def upload_rejected(
    stack: RejectionStack, file_name: str, content: bytes, auth_id: int | None = None
) -> tuple[UploadRejected, Stored, Stored]:
    """Upload a file that must be rejected, and return the rejection with the counts around it."""
    before = await count_stored(stack)
    with pytest.raises(UploadRejected) as caught:
        await upload_file(stack.ctx, file_name, content, auth_id or stack.account.auth_id)
    return caught.value, before, await count_stored(stack)


def assert_nothing_stored(before: Stored, after: Stored) -> None:
    assert after.files == before.files
    assert after.rows == before.rows
    assert after.messages == before.messages


def assert_problems_listed(rejected: UploadRejected, expected: tuple[str, ...]) -> None:
    for text in expected:
        matches = [problem for problem in rejected.problems if text in problem]
        assert len(matches) == 1, (text, rejected.problems)
    assert len(rejected.problems) == len(expected), rejected.problems


@pytest.mark.parametrize("rejection", REJECTIONS, ids=str)
async def test_invalid_file_rejected(rejection_stack: RejectionStack, rejection: Rejection) -> None:
    rejected, before, after = await upload_rejected(
        rejection_stack, rejection.file_name, rejection.content, rejection.auth_id
    )

    assert_problems_listed(rejected, rejection.problems)
    assert_nothing_stored(before, after)


async def test_inactive_auth_rejected(rejection_stack: RejectionStack) -> None:
    inactive_id = await add_inactive_auth(rejection_stack.harness, rejection_stack.account)

    rejected, before, after = await upload_rejected(
        rejection_stack, "inactive auth.csv", VALID_FILE, inactive_id
    )

    problem = f"integration authentication {inactive_id} not found or not active"
    assert rejected.problems == [problem]
    assert_nothing_stored(before, after)


async def test_unknown_auth_lists_file_problems(rejection_stack: RejectionStack) -> None:
    content = csv_bytes(one_row(base="abc"))

    rejected, _, _ = await upload_rejected(
        rejection_stack, "unknown auth.txt", content, UNKNOWN_AUTH_ID
    )

    assert_problems_listed(
        rejected,
        (
            f"integration authentication {UNKNOWN_AUTH_ID} not found",
            "'unknown auth.txt' does not end in .csv",
            "line 2: BaseChargeAmount 'abc'",
        ),
    )


async def test_empty_description_rejected(rejection_stack: RejectionStack) -> None:
    content = csv_bytes(one_row(description="  "))

    rejected, before, after = await upload_rejected(
        rejection_stack, "empty description.csv", content
    )

    assert_problems_listed(rejected, ("line 2: Description",))
    assert_nothing_stored(before, after)


async def test_name_uploaded_before_rejected(sqlite_harness: Harness) -> None:
    account = await set_up_account(sqlite_harness)
    async with sqlite_harness.context(receive_wait_s=1) as ctx:
        first = await upload_file(ctx, "Rentals Nov.CSV", VALID_FILE, account.auth_id)
        rejections = []
        for second_name in ("rentals nov.csv", " RENTALS  NOV.Csv", "RentalsNov.csv"):
            with pytest.raises(UploadRejected) as caught:
                await upload_file(ctx, second_name, VALID_FILE, account.auth_id)
            rejections.append(caught.value)
        depth = await sqlite_harness.queue_depth(ctx, ctx.settings.create_queue_url or "")

    for rejected in rejections:
        assert_problems_listed(rejected, ("was uploaded before",))
    assert [record["Id"] for record in await file_records(sqlite_harness)] == [first.file_id]
    assert {row["UploadedFileId"] for row in await file_rows(sqlite_harness)} == {first.file_id}
    assert len(await file_rows(sqlite_harness)) == len(EXPECTED_ROWS)
    assert depth == 1


async def test_unstorable_amount_rejected(harness: Harness) -> None:
    account = await set_up_account(harness)
    # Each amount is below the parser's limit of 10**15, but SQLite's integer
    # ten-thousandths end near 9.2 * 10**14 and NUMERIC(19,4) cannot hold the sum.
    content = csv_bytes(one_row(base="999999999999999.99", overage="1.00"))
    async with harness.context(receive_wait_s=1) as ctx:
        with pytest.raises(UploadRejected) as caught:
            await upload_file(ctx, "huge.csv", content, account.auth_id)
        depth = await harness.queue_depth(ctx, ctx.settings.create_queue_url or "")

    assert_problems_listed(caught.value, ("line 2:",))
    assert await file_records(harness) == []
    assert depth == 0


async def test_same_name_at_once_stored_once(harness: Harness) -> None:
    account = await set_up_account(harness)
    async with harness.context(receive_wait_s=1) as ctx:
        outcomes = await asyncio.gather(
            upload_file(ctx, "Dec.csv", VALID_FILE, account.auth_id),
            upload_file(ctx, "dec.csv", VALID_FILE, account.auth_id),
            upload_file(ctx, "DEC.csv", VALID_FILE, account.auth_id),
            return_exceptions=True,
        )

    stored = [outcome for outcome in outcomes if isinstance(outcome, UploadResult)]
    assert len(await file_records(harness)) == 1, outcomes
    assert len(stored) == 1, outcomes


async def test_upload_retry_after_failed_send(sqlite_harness: Harness) -> None:
    account = await set_up_account(sqlite_harness)
    missing_queue = sqlite_harness.resources.create_queue_url + "-missing"
    async with sqlite_harness.context(receive_wait_s=1, create_queue_url=missing_queue) as ctx:
        with pytest.raises(TransientError):
            await upload_file(ctx, "retry.csv", VALID_FILE, account.auth_id)
    async with sqlite_harness.context(receive_wait_s=1) as ctx:
        result = await upload_file(ctx, "retry.csv", VALID_FILE, account.auth_id)

    assert [record["Id"] for record in await file_records(sqlite_harness)] == [result.file_id]


# --- messages for a file that does not exist ------------------------------------------


@pytest.mark.parametrize("queue", ["create", "check"])
async def test_unknown_file_dead_lettered(sqlite_harness: Harness, queue: str) -> None:
    await set_up_account(sqlite_harness)
    target = Target("file", UNKNOWN_FILE_ID)
    push = Push(instance_ids=())
    message = (
        build_create_message(CreateMessage(target, push))
        if queue == "create"
        else build_check_message(CheckMessage(target, push))
    )
    async with sqlite_harness.context(receive_wait_s=1) as ctx:
        await sqlite_harness.send(ctx, message)
        await sqlite_harness.run_until_idle(ctx, timeout_s=RUN_TIMEOUT_S)
        dead = await sqlite_harness.dead_letters(ctx)

    assert len(dead) == 1
    assert dead[0]["MessageAttributes"]["FileId"]["StringValue"] == str(UNKNOWN_FILE_ID)
    assert sqlite_harness.simulator.request_count == 0
    assert sqlite_harness.emails() == []


# --- the command line ----------------------------------------------------------------


def command_environment(harness: Harness) -> dict[str, str]:
    """Return this environment without CHARGEWORKER_ variables, plus the harness's."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("CHARGEWORKER_")
    }
    environment.update(
        CHARGEWORKER_DATABASE_URL=harness.database_url,
        CHARGEWORKER_CREATE_QUEUE_URL=harness.resources.create_queue_url,
        CHARGEWORKER_AWS_ENDPOINT_URL=harness.aws.endpoint_url,
        CHARGEWORKER_AWS_ACCESS_KEY_ID=ACCESS_KEY_ID,
        CHARGEWORKER_AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
        CHARGEWORKER_AWS_REGION=REGION,
    )
    return environment


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


async def run_upload_command(harness: Harness, cwd: Path, *arguments: str) -> CommandResult:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chargeworker.cli",
        "upload",
        *arguments,
        cwd=cwd,
        env=command_environment(harness),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return CommandResult(process.returncode, stdout.decode(), stderr.decode())


async def test_cli_upload_prints_file_id(sqlite_harness: Harness, tmp_path: Path) -> None:
    account = await set_up_account(sqlite_harness)
    path = tmp_path / "November rentals.csv"
    path.write_bytes(VALID_FILE)

    result = await run_upload_command(
        sqlite_harness, tmp_path, str(path), "--integration-auth", str(account.auth_id)
    )

    records = await file_records(sqlite_harness)
    assert result.returncode == 0, result.stderr
    assert len(records) == 1
    assert records[0]["FileName"] == "November rentals.csv"
    assert f"file {records[0]['Id']}:" in result.stdout
    assert f"{len(EXPECTED_ROWS)} rows stored" in result.stdout
    assert "message " in result.stdout


async def test_cli_upload_lists_problems(rejection_stack: RejectionStack, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(csv_bytes(one_row(base="abc"), one_row(), one_row(number=UNKNOWN_NUMBER)))
    before = await count_stored(rejection_stack)

    result = await run_upload_command(
        rejection_stack.harness,
        tmp_path,
        str(path),
        "--integration-auth",
        str(rejection_stack.account.auth_id),
    )

    assert result.returncode == 1
    assert "line 2: BaseChargeAmount 'abc'" in result.stderr
    assert f"line 4: RevIoServiceNumber '{UNKNOWN_NUMBER}'" in result.stderr
    assert "line 3" not in result.stderr
    assert "Traceback" not in result.stderr
    assert_nothing_stored(before, await count_stored(rejection_stack))


async def test_cli_upload_missing_file(rejection_stack: RejectionStack, tmp_path: Path) -> None:
    path = tmp_path / "nowhere.csv"

    result = await run_upload_command(
        rejection_stack.harness,
        tmp_path,
        str(path),
        "--integration-auth",
        str(rejection_stack.account.auth_id),
    )

    assert result.returncode != 0
    assert str(path) in result.stderr
    assert "No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr
