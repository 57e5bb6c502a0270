"""Exact outputs of a hand-written M2M push: Rev.io charges, charge list, email and row columns.

Every expected value below is written by hand from the specification, never computed
with chargeworker's own functions. One run of the daemon takes seconds, so the push
runs once per database backend for the whole module. Each test then checks one
behaviour of that run.
"""

import email.utils
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from chargeworker.db import platform as p
from chargeworker.devstack.local_aws import LocalAws
from chargeworker.devstack.revio_simulator import RevioSimulator
from tests.conftest import _harness
from tests.harness import Harness

# --- a hand-written platform dataset ---------------------------------------------------

SESSION_GUID = uuid.UUID("5e551011-0000-4000-8000-000000000001")
CREATED = datetime(2026, 12, 1, 6, 0)

INTEGRATION_REVIO = 1
INTEGRATION_POND = 2
INTEGRATION_TELEGENCE = 3
INTEGRATION_JASPER = 4
PROVIDER_POND = 10
PROVIDER_TELEGENCE = 11
PROVIDER_JASPER = 12
PROVIDER_WITHOUT_INTEGRATION = 13  # points at an Integration row that does not exist

EMAIL_TO = "a@x.com; ; b@x.com "
EMAIL_SUBJECT = "Rev.io charges pushed"
ACTIVATED = date(2025, 6, 1)


class Platform:
    """Rows for the platform's tables, inserted table by table with SQLAlchemy Core."""

    def __init__(self) -> None:
        self.rows: dict[Table, list[dict[str, Any]]] = {}

    def add(self, table: Table, **values: Any) -> None:
        self.rows.setdefault(table, []).append(values)

    async def insert(self, engine: AsyncEngine) -> None:
        async with engine.begin() as connection:
            for table, rows in self.rows.items():
                await connection.execute(table.insert(), rows)


def add_reference_rows(platform: Platform, *, email_from: str) -> None:
    """Add the session, carriers, service providers and email settings every push shares."""
    platform.add(
        p.optimization_session, Id=1, SessionId=SESSION_GUID, TenantId=1, CreatedDate=CREATED
    )
    for integration_id, name in (
        (INTEGRATION_REVIO, "Rev.io"),
        (INTEGRATION_POND, "Pond"),
        (INTEGRATION_TELEGENCE, "Telegence"),
        (INTEGRATION_JASPER, "Jasper"),
    ):
        platform.add(p.integration, Id=integration_id, Name=name)
    for provider_id, name, integration_id in (
        (PROVIDER_POND, "Pond IoT", INTEGRATION_POND),
        (PROVIDER_TELEGENCE, "AT&T Telegence", INTEGRATION_TELEGENCE),
        (PROVIDER_JASPER, "AT&T Jasper", INTEGRATION_JASPER),
        (PROVIDER_WITHOUT_INTEGRATION, "Retired carrier", 999),
    ):
        platform.add(p.service_provider, Id=provider_id, Name=name, IntegrationId=integration_id)
    platform.add(
        p.general_provider_settings,
        Id=1,
        CustomerChargeFromEmailAddress=email_from,
        CustomerChargeToEmailAddresses=EMAIL_TO,
        CustomerChargeResultsEmailSubject=EMAIL_SUBJECT,
    )


def add_tenant(
    platform: Platform,
    simulator: RevioSimulator,
    tenant_id: int,
    *,
    itemized: bool,
    time_zone: str | None,
) -> int:
    """Add a tenant's settings and its Rev.io account, whose id is the tenant's id."""
    platform.add(
        p.optimization_settings,
        TenantId=tenant_id,
        BillingTimeZone=time_zone,
        UsingNewProcessInCustomerCharge=itemized,
    )
    platform.add(
        p.integration_authentication,
        Id=tenant_id,
        TenantId=tenant_id,
        IntegrationId=INTEGRATION_REVIO,
        BaseUrl=simulator.base_url,
        Username=simulator.username,
        Password=simulator.password,
        ClientCode=simulator.client_code,
        SubscriptionKey=None,
        IsActive=True,
    )
    return tenant_id


def add_instance(
    platform: Platform,
    instance_id: int,
    *,
    tenant_id: int,
    portal_type_id: int,
    rev_customer_id: int,
    customer_name: str,
    period: tuple[datetime, datetime],
) -> None:
    """Add an instance with its own Rev.io customer, billed through the tenant's account."""
    guid = uuid.UUID(int=instance_id)
    platform.add(
        p.rev_customer,
        Id=guid,
        IntegrationAuthenticationId=tenant_id,
        RevCustomerId=rev_customer_id,
        CustomerName=customer_name,
        RevAccountNumber=f"ACC-{rev_customer_id}",
    )
    platform.add(
        p.optimization_instance,
        Id=instance_id,
        SessionId=SESSION_GUID,
        TenantId=tenant_id,
        PortalTypeId=portal_type_id,
        RevCustomerId=guid,
        AMOPCustomerId=None,
        IntegrationAuthenticationId=tenant_id,
        BillingPeriodStartDate=period[0],
        BillingPeriodEndDate=period[1],
    )


def add_queue(
    platform: Platform,
    queue_id: int,
    *,
    instance_id: int,
    group_id: int,
    total_cost: str | None,
    finished: bool = True,
) -> None:
    platform.add(
        p.optimization_queue,
        Id=queue_id,
        InstanceId=instance_id,
        CommPlanGroupId=group_id,
        TotalCost=None if total_cost is None else Decimal(total_cost),
        RunStartTime=CREATED,
        RunEndTime=CREATED if finished else None,
    )


Product = tuple[int | None, int | None]  # (RevProductId, RevProductTypeId)


def add_plan(
    platform: Platform,
    plan_id: int,
    name: str,
    *,
    code: str | None,
    base_rate: str,
    advance: bool = False,
    product: Product = (None, None),
    overage: Product = (None, None),
    sms: Product = (None, None),
) -> None:
    platform.add(
        p.rate_plan,
        Id=plan_id,
        RatePlanCode=code,
        RatePlanName=name,
        BaseRate=Decimal(base_rate),
        IsBillInAdvance=advance,
        RevProductId=product[0],
        RevProductTypeId=product[1],
        OverageRevProductId=overage[0],
        OverageRevProductTypeId=overage[1],
        SmsRevProductId=sms[0],
        SmsRevProductTypeId=sms[1],
    )


def add_device(
    platform: Platform,
    device_id: int,
    *,
    tenant_id: int,
    msisdn: str,
    provider_id: int,
    service_number: str | None,
    mobility: bool = False,
) -> None:
    platform.add(
        p.mobility_device if mobility else p.device,
        Id=device_id,
        TenantId=tenant_id,
        ICCID=f"890141000000000{device_id:05d}",
        MSISDN=msisdn,
        ServiceProviderId=provider_id,
        RevServiceNumber=service_number,
        RevServiceId=None,
    )


def add_result(
    platform: Platform,
    result_id: int,
    *,
    queue_id: int,
    device_id: int,
    plan_id: int,
    usage_mb: str = "0",
    sms_usage: int = 0,
    base: str = "0",
    rate: str = "0",
    overage: str = "0",
    sms: str = "0",
    mobility: bool = False,
) -> None:
    """Add a device result; amounts are strings so that no float touches them."""
    table = p.mobility_device_result if mobility else p.device_result
    device_column = "MobilityDeviceId" if mobility else "AmopDeviceId"
    platform.add(
        table,
        Id=result_id,
        QueueId=queue_id,
        AssignedRatePlanId=plan_id,
        UsageMB=Decimal(usage_mb),
        SmsUsage=sms_usage,
        BaseRateAmt=Decimal(base),
        RateChargeAmt=Decimal(rate),
        OverageChargeAmt=Decimal(overage),
        SmsChargeAmt=Decimal(sms),
        **{device_column: device_id},
    )


# --- running a push and collecting what it produced -----------------------------------


@dataclass
class PushRun:
    """Everything one run of the daemon produced, read after it went idle."""

    charges: list[dict[str, Any]]
    posts: list[dict[str, Any]]
    m2m_rows: list[dict[str, Any]]
    mobility_rows: list[dict[str, Any]]
    ledger: list[dict[str, Any]]
    objects: dict[str, bytes]
    emails: list[EmailMessage]

    def charges_of(self, customer_id: int) -> list[tuple[Any, ...]]:
        """Return the customer's charges as tuples, sorted by service id and description."""
        charges = [
            (
                charge["customer_id"],
                charge["service_id"],
                charge["product_id"],
                charge["product_type_id"],
                charge["amount"],
                charge["description"],
                charge["start_date"],
                charge["end_date"],
            )
            for charge in self.charges
            if charge["customer_id"] == customer_id
        ]
        return sorted(charges, key=by_service_and_description)

    def charge_id(self, service_id: int, description: str) -> int:
        matches = [
            charge["charge_id"]
            for charge in self.charges
            if charge["service_id"] == service_id and charge["description"] == description
        ]
        assert len(matches) == 1, (service_id, description, self.charges)
        return int(matches[0])

    def rows_of(self, queue_id: int, table: str = "m2m") -> list[dict[str, Any]]:
        rows = self.m2m_rows if table == "m2m" else self.mobility_rows
        return [row for row in rows if row["QueueId"] == queue_id]

    def email_with_attachment(self, filename: str) -> EmailMessage:
        found = [
            message
            for message in self.emails
            if any(part.get_filename() == filename for part in message.iter_attachments())
        ]
        assert len(found) == 1, [message["Subject"] for message in self.emails]
        return found[0]


def by_service_and_description(charge: tuple[Any, ...]) -> tuple[int, str]:
    return (charge[1], charge[5])


def record_posts(simulator: RevioSimulator) -> list[dict[str, Any]]:
    """Record the JSON body of every POST /Charges that the simulator validates.

    The simulator parses bodies with `parse_float=Decimal`, so each amount keeps the
    digits that were on the wire.
    """
    posts: list[dict[str, Any]] = []
    validate = simulator._charge_problems

    def recording_validate(body: Any) -> list[str]:
        posts.append(dict(body))
        return validate(body)

    simulator._charge_problems = recording_validate  # type: ignore[method-assign]
    return posts


async def run_push(
    harness: Harness, platform: Platform, instance_ids: list[int], **overrides: Any
) -> PushRun:
    """Insert the dataset, push each instance on its own and collect every output."""
    await platform.insert(harness.engine)
    posts = record_posts(harness.simulator)
    async with harness.context(**overrides) as ctx:
        await harness.enqueue(ctx, *instance_ids)
        await harness.run_until_idle(ctx)
        listing = await ctx.aws.s3.list_objects_v2(Bucket=harness.resources.bucket)
        objects = {}
        for item in listing.get("Contents", []):
            objects[item["Key"]] = (await harness.read_object(ctx, item["Key"])).encode("utf-8")
    return PushRun(
        charges=list(harness.simulator.charges),
        posts=posts,
        m2m_rows=await harness.charge_queue_rows("m2m"),
        mobility_rows=await harness.charge_queue_rows("mobility"),
        ledger=await harness.ledger(),
        objects=objects,
        emails=harness.emails(),
    )


def text_part(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    return str(part.get_content())


def attachment(message: EmailMessage) -> EmailMessage:
    parts = list(message.iter_attachments())
    assert len(parts) == 1, [part.get_filename() for part in parts]
    return parts[0]  # type: ignore[return-value]


# --- the November push: one M2M instance of three devices ----------------------------

TENANT = 1
TIME_ZONE = "America/Chicago"
NOVEMBER = (datetime(2026, 11, 1), datetime(2026, 11, 30))
JANUARY = (datetime(2027, 1, 1), datetime(2027, 1, 31))

MAIN_INSTANCE = 101
MAIN_CUSTOMER = 7001
MAIN_CUSTOMER_NAME = "Acme <Labs> & Co"
WINNING_QUEUE = 301
UNFINISHED_QUEUE = 302  # cheaper, but RunEndTime is NULL
MOBILITY_ONLY_QUEUE = 303  # cheaper and finished, but only Mobility results
DEARER_QUEUE = 304

JANUARY_INSTANCE = 102
JANUARY_CUSTOMER = 7002
JANUARY_QUEUE = 305

SERVICE_A = 9001
SERVICE_B = 9002

RATE_A = "M2M 1GB - 1080.40 MB"
OVERAGE_A = "Overage data usage 1080.40 MB"
SMS_A = "Billable SMS usage: 125"
RATE_B = "Advance 500MB - 12.35 MB"
RATE_C = "M2M 1GB - 0.00 MB"
ERROR_C = "no active Rev.io service for number =1+2"


def build_push(harness: Harness) -> Platform:
    platform = Platform()
    add_reference_rows(platform, email_from=harness.resources.email_from)
    add_tenant(platform, harness.simulator, TENANT, itemized=True, time_zone=TIME_ZONE)
    add_plan(
        platform,
        401,
        "M2M 1GB",
        code="M2M-1G",
        base_rate="5.00",
        product=(501, 301),  # the product id wins over the type id
        overage=(None, 302),
        sms=(0, 303),  # a product id of 0 is not set, so the type id is used
    )
    add_plan(
        platform,
        402,
        "Advance 500MB",
        code="ADV-500",
        base_rate="10.00",
        advance=True,
        product=(None, 301),
        sms=(None, 303),
    )
    add_plan(platform, 403, "Flat 10", code="FLAT-10", base_rate="4.00", product=(None, 301))
    add_plan(
        platform,
        404,
        "Flat 10 ahead",
        code="FLAT-10-A",
        base_rate="4.00",
        advance=True,
        product=(None, 301),
    )
    add_plan(platform, 405, "Cheap", code="CHEAP", base_rate="1.00", product=(None, 301))

    add_instance(
        platform,
        MAIN_INSTANCE,
        tenant_id=TENANT,
        portal_type_id=0,
        rev_customer_id=MAIN_CUSTOMER,
        customer_name=MAIN_CUSTOMER_NAME,
        period=NOVEMBER,
    )
    platform.add(p.optimization_comm_group, Id=201, InstanceId=MAIN_INSTANCE)
    add_queue(platform, WINNING_QUEUE, instance_id=MAIN_INSTANCE, group_id=201, total_cost="120")
    add_queue(
        platform,
        UNFINISHED_QUEUE,
        instance_id=MAIN_INSTANCE,
        group_id=201,
        total_cost="80",
        finished=False,
    )
    add_queue(
        platform, MOBILITY_ONLY_QUEUE, instance_id=MAIN_INSTANCE, group_id=201, total_cost="60"
    )
    add_queue(platform, DEARER_QUEUE, instance_id=MAIN_INSTANCE, group_id=201, total_cost="150")

    # Device A on Jasper ("any other") has rate, overage and SMS with half-cent amounts.
    add_device(
        platform,
        1,
        tenant_id=TENANT,
        msisdn="3125550101",
        provider_id=PROVIDER_JASPER,
        service_number="3125550101",
    )
    # Device B on Pond is billed in advance, so its SMS is not charged.
    add_device(
        platform,
        2,
        tenant_id=TENANT,
        msisdn="+15551234",
        provider_id=PROVIDER_POND,
        service_number="5551234",
    )
    # Device C on Telegence has a formula-like MSISDN and no Rev.io service.
    add_device(
        platform,
        3,
        tenant_id=TENANT,
        msisdn="=1+2",
        provider_id=PROVIDER_TELEGENCE,
        service_number=None,
    )
    add_device(
        platform,
        1,
        tenant_id=TENANT,
        msisdn="3125550199",
        provider_id=PROVIDER_POND,
        service_number=None,
        mobility=True,
    )
    add_result(
        platform,
        3011,
        queue_id=WINNING_QUEUE,
        device_id=1,
        plan_id=401,
        usage_mb="1080.4",
        sms_usage=125,
        base="5.00",
        rate="3.14159",
        overage="2.675",
        sms="0.625",
    )
    add_result(
        platform,
        3012,
        queue_id=WINNING_QUEUE,
        device_id=2,
        plan_id=402,
        usage_mb="12.3456",
        sms_usage=300,
        base="10.00",
        rate="10.00",
        sms="1.50",
    )
    add_result(
        platform, 3013, queue_id=WINNING_QUEUE, device_id=3, plan_id=401, base="5.00", rate="7.50"
    )
    add_result(platform, 3021, queue_id=UNFINISHED_QUEUE, device_id=1, plan_id=405, rate="1.00")
    add_result(
        platform,
        3031,
        queue_id=MOBILITY_ONLY_QUEUE,
        device_id=1,
        plan_id=405,
        rate="1.00",
        mobility=True,
    )
    add_result(platform, 3041, queue_id=DEARER_QUEUE, device_id=1, plan_id=405, rate="2.00")
    harness.simulator.add_service(
        customer_id=MAIN_CUSTOMER,
        number="3125550101",
        activated_date=ACTIVATED,
        service_id=SERVICE_A,
    )
    harness.simulator.add_service(
        customer_id=MAIN_CUSTOMER, number="5551234", activated_date=ACTIVATED, service_id=SERVICE_B
    )

    # The January instance: one device per carrier, with and without billing in advance.
    add_instance(
        platform,
        JANUARY_INSTANCE,
        tenant_id=TENANT,
        portal_type_id=0,
        rev_customer_id=JANUARY_CUSTOMER,
        customer_name="Borealis Fleet",
        period=JANUARY,
    )
    platform.add(p.optimization_comm_group, Id=202, InstanceId=JANUARY_INSTANCE)
    add_queue(platform, JANUARY_QUEUE, instance_id=JANUARY_INSTANCE, group_id=202, total_cost="32")
    for device_id, provider_id, plan_id in JANUARY_DEVICES:
        number = f"31255502{device_id:02d}"
        add_device(
            platform,
            device_id,
            tenant_id=TENANT,
            msisdn=number,
            provider_id=provider_id,
            service_number=number,
        )
        add_result(
            platform,
            3050 + device_id,
            queue_id=JANUARY_QUEUE,
            device_id=device_id,
            plan_id=plan_id,
            usage_mb="100",
            base="4.00",
            rate="4.00",
        )
        harness.simulator.add_service(
            customer_id=JANUARY_CUSTOMER,
            number=number,
            activated_date=ACTIVATED,
            service_id=9000 + device_id,
        )
    return platform


# Each entry is (device id, service provider, rate plan). A device's Rev.io service id
# is 9000 + its device id.
JANUARY_DEVICES = (
    (11, PROVIDER_POND, 403),
    (12, PROVIDER_POND, 404),
    (13, PROVIDER_TELEGENCE, 403),
    (14, PROVIDER_TELEGENCE, 404),
    (15, PROVIDER_JASPER, 403),
    (16, PROVIDER_JASPER, 404),
    (17, PROVIDER_WITHOUT_INTEGRATION, 403),
    (18, PROVIDER_WITHOUT_INTEGRATION, 404),
)

# Billing-period dates of a January 1-31 period, by device. Pond sends the period,
# Telegence ends a day early and any other carrier starts a day late. Billing in
# advance moves both dates a month later, clamped to February's last day.
JANUARY_DATES = {
    11: (date(2027, 1, 1), date(2027, 1, 31)),
    12: (date(2027, 2, 1), date(2027, 2, 28)),
    13: (date(2027, 1, 1), date(2027, 1, 30)),
    14: (date(2027, 2, 1), date(2027, 2, 28)),
    15: (date(2027, 1, 2), date(2027, 1, 31)),
    16: (date(2027, 2, 2), date(2027, 2, 28)),
    17: (date(2027, 1, 2), date(2027, 1, 31)),
    18: (date(2027, 2, 2), date(2027, 2, 28)),
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def pushed(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    local_aws: LocalAws,
    postgres_unavailable: str | None,
) -> AsyncIterator[PushRun]:
    """The November and January instances pushed once, on SQLite and on PostgreSQL.

    This is the `harness` fixture's own setup (conftest's `_harness`) at module scope,
    so the module's tests share one run per backend.
    """
    directory = tmp_path_factory.mktemp(f"outputs-{request.param}")
    async for harness in _harness(request.param, directory, local_aws, postgres_unavailable):
        platform = build_push(harness)
        yield await run_push(harness, platform, [MAIN_INSTANCE, JANUARY_INSTANCE])


# --- Rev.io charges -------------------------------------------------------------------


async def test_charges_sent_exactly(pushed: PushRun) -> None:
    expected = [
        # Device A on Jasper: the period starts a day late.
        (
            MAIN_CUSTOMER,
            SERVICE_A,
            501,
            None,
            Decimal("3.14"),
            RATE_A,
            date(2026, 11, 2),
            date(2026, 11, 30),
        ),
        (
            MAIN_CUSTOMER,
            SERVICE_A,
            None,
            302,
            Decimal("2.68"),
            OVERAGE_A,
            date(2026, 11, 2),
            date(2026, 11, 30),
        ),
        (
            MAIN_CUSTOMER,
            SERVICE_A,
            None,
            303,
            Decimal("0.63"),
            SMS_A,
            date(2026, 11, 2),
            date(2026, 11, 30),
        ),
        # Device B on Pond, billed in advance: December, and no SMS line.
        (
            MAIN_CUSTOMER,
            SERVICE_B,
            None,
            301,
            Decimal("10.00"),
            RATE_B,
            date(2026, 12, 1),
            date(2026, 12, 30),
        ),
    ]
    assert pushed.charges_of(MAIN_CUSTOMER) == sorted(expected, key=by_service_and_description)


async def test_post_body_fields(pushed: PushRun) -> None:
    assert len(pushed.posts) == 12
    for body in pushed.posts:
        assert body["quantity"] == 1, body
        assert body["cost"] == 0, body
        assert body["is_tax_included"] is False, body
        assert body["is_commission_exempted"] is False, body
        assert body["is_prorated"] is False, body
        assert body["product_amount"] == body["amount"], body
        assert body["rate"] == body["amount"], body
        assert ("product_id" in body) != ("product_type_id" in body), body
        assert re.fullmatch(r"\d{4}-[1-9]\d?-[1-9]\d?", body["start_date"]), body
        assert re.fullmatch(r"\d{4}-[1-9]\d?-[1-9]\d?", body["end_date"]), body


async def test_post_body_dates(pushed: PushRun) -> None:
    sms_body = next(body for body in pushed.posts if body["description"] == SMS_A)
    advance_body = next(body for body in pushed.posts if body["description"] == RATE_B)
    assert sms_body["start_date"] == "2026-11-2"
    assert sms_body["end_date"] == "2026-11-30"
    assert advance_body["start_date"] == "2026-12-1"
    assert advance_body["end_date"] == "2026-12-30"


async def test_post_amount_two_decimals(pushed: PushRun) -> None:
    # The JSON number of a 10.00 charge must be written 10.00, not 10.0.
    advance_body = next(body for body in pushed.posts if body["description"] == RATE_B)
    for name in ("amount", "product_amount", "rate"):
        assert str(advance_body[name]) == "10.00", (name, advance_body[name])


# --- the charge list --------------------------------------------------------------------

DATE_CHARGED = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
DATE_CHARGED_FIELD = 8


def mask_date_charged(text: str) -> str:
    """Replace each row's DateCharged with <DateCharged> once it has the right format."""
    lines = text.split("\n")
    for index in range(1, len(lines) - 2):
        fields = lines[index].split("\t")
        assert DATE_CHARGED.fullmatch(fields[DATE_CHARGED_FIELD]), lines[index]
        fields[DATE_CHARGED_FIELD] = "<DateCharged>"
        lines[index] = "\t".join(fields)
    return "\n".join(lines)


async def test_charge_list_text(pushed: PushRun) -> None:
    rate_a = pushed.charge_id(SERVICE_A, RATE_A)
    sms_a = pushed.charge_id(SERVICE_A, SMS_A)
    rate_b = pushed.charge_id(SERVICE_B, RATE_B)
    expected = (
        "MSISDN\tIsSuccessful\tChargeId\tChargeAmount\tSMSChargeId\tSMSChargeAmount\t"
        "BillingPeriodStart\tBillingPeriodEnd\tDateCharged\tErrorMessage\n"
        f"3125550101\tTrue\t{rate_a}\t5.82\t{sms_a}\t0.63\t2026-11-2\t2026-11-30\t"
        "<DateCharged>\t\n"
        f"'+15551234\tTrue\t{rate_b}\t10.00\t\t1.50\t2026-12-1\t2026-12-30\t<DateCharged>\t\n"
        f"'=1+2\tFalse\t\t7.50\t\t0.00\t2026-11-1\t2026-11-29\t<DateCharged>\t{ERROR_C}\n"
        "\t\t\t23.32\t\t\t\t\t\t\n"
    )
    text = pushed.objects[f"{WINNING_QUEUE}.txt"].decode("utf-8")
    assert mask_date_charged(text) == expected


async def test_charge_list_local_time(pushed: PushRun) -> None:
    text = pushed.objects[f"{WINNING_QUEUE}.txt"].decode("utf-8")
    date_charged = [line.split("\t")[DATE_CHARGED_FIELD] for line in text.split("\n")[1:4]]
    zone = ZoneInfo(TIME_ZONE)
    expected = [
        row["ModifiedDate"].replace(tzinfo=UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        for row in pushed.rows_of(WINNING_QUEUE)
    ]
    assert date_charged == expected


async def test_charge_list_january_dates(pushed: PushRun) -> None:
    text = pushed.objects[f"{JANUARY_QUEUE}.txt"].decode("utf-8")
    dates_in_file = {}
    for line in text.split("\n")[1:-2]:
        fields = line.split("\t")
        dates_in_file[int(fields[0][-2:])] = (fields[6], fields[7])
    expected = {
        device_id: (f"{start.year}-{start.month}-{start.day}", f"{end.year}-{end.month}-{end.day}")
        for device_id, (start, end) in JANUARY_DATES.items()
    }
    assert dates_in_file == expected


# --- billing-period dates by carrier ----------------------------------------------------


async def test_billing_dates_by_carrier(pushed: PushRun) -> None:
    sent = {
        charge["service_id"] - 9000: (charge["start_date"], charge["end_date"])
        for charge in pushed.charges
        if charge["customer_id"] == JANUARY_CUSTOMER
    }
    assert sent == JANUARY_DATES


async def test_january_ledger_dates(pushed: PushRun) -> None:
    lines = [line for line in pushed.ledger if line["target_id"] == JANUARY_QUEUE]
    recorded = {line["service_id"] - 9000: (line["start_date"], line["end_date"]) for line in lines}
    assert recorded == JANUARY_DATES


# --- the summary email ------------------------------------------------------------------


async def test_summary_email_headers(pushed: PushRun) -> None:
    message = pushed.email_with_attachment(f"{WINNING_QUEUE}.txt")
    recipients = [address for _name, address in email.utils.getaddresses([message["To"]])]
    assert message["From"] == "charges@example.com"
    assert recipients == ["a@x.com", "b@x.com"]
    assert message["Subject"] == EMAIL_SUBJECT


async def test_summary_email_plain_text(pushed: PushRun) -> None:
    message = pushed.email_with_attachment(f"{WINNING_QUEUE}.txt")
    plain = text_part(message, "plain")
    assert MAIN_CUSTOMER_NAME in plain
    assert "2026-11-30" in plain
    assert "1 error(s) occurred when uploading charges to Rev.io" in plain


async def test_summary_email_html_escaped(pushed: PushRun) -> None:
    message = pushed.email_with_attachment(f"{WINNING_QUEUE}.txt")
    html = text_part(message, "html")
    assert "Acme &lt;Labs&gt; &amp; Co" in html
    assert "<Labs>" not in html
    assert "2026-11-30" in html
    assert "1 error(s) occurred when uploading charges to Rev.io" in html


async def test_summary_email_attachment(pushed: PushRun) -> None:
    message = pushed.email_with_attachment(f"{WINNING_QUEUE}.txt")
    part = attachment(message)
    assert part.get_content_type() == "text/tab-separated-values"
    assert part.get_payload(decode=True) == pushed.objects[f"{WINNING_QUEUE}.txt"]


async def test_summary_email_without_errors(pushed: PushRun) -> None:
    message = pushed.email_with_attachment(f"{JANUARY_QUEUE}.txt")
    assert "error(s) occurred" not in text_part(message, "plain")
    assert "Borealis Fleet" in text_part(message, "plain")
    assert "2027-01-31" in text_part(message, "plain")


# --- charge-queue rows and the ledger -------------------------------------------------


async def test_rows_copy_rounded_amounts(pushed: PushRun) -> None:
    row_a, row_b, row_c = pushed.rows_of(WINNING_QUEUE)
    assert row_a["RateChargeAmount"] == Decimal("3.14")
    assert row_a["OverageChargeAmount"] == Decimal("2.68")
    assert row_a["SmsChargeAmount"] == Decimal("0.63")
    assert row_a["DeviceCharge"] == Decimal("5.82")
    assert row_a["BaseRate"] == Decimal("5.00")
    assert row_a["RevAccountNumber"] == f"ACC-{MAIN_CUSTOMER}"
    assert row_a["RatePlanCode"] == "M2M-1G"
    assert row_b["IsBillInAdvance"] is True
    assert row_b["RevServiceNumber"] == "5551234"
    assert row_c["MSISDN"] == "=1+2"
    assert row_c["ServiceProviderId"] == PROVIDER_TELEGENCE


async def test_row_with_three_lines(pushed: PushRun) -> None:
    row = pushed.rows_of(WINNING_QUEUE)[0]
    assert row["IsProcessed"] is True
    assert row["ChargeId"] == pushed.charge_id(SERVICE_A, RATE_A)
    assert row["SmsChargeId"] == pushed.charge_id(SERVICE_A, SMS_A)
    assert row["ChargeAmount"] == Decimal("5.82")
    assert row["BaseChargeAmount"] == Decimal("5.00")
    assert row["TotalChargeAmount"] == Decimal("10.82")
    assert row["SmsChargeAmount"] == Decimal("0.63")
    assert row["HasErrors"] is False
    assert (row["ErrorMessage"] or "") == ""
    assert row["ModifiedBy"] == "System"
    assert row["ModifiedDate"] is not None


async def test_row_billed_in_advance(pushed: PushRun) -> None:
    row = pushed.rows_of(WINNING_QUEUE)[1]
    assert row["IsProcessed"] is True
    assert row["ChargeId"] == pushed.charge_id(SERVICE_B, RATE_B)
    assert row["SmsChargeId"] == -1
    assert row["ChargeAmount"] == Decimal("10.00")
    assert row["BaseChargeAmount"] == Decimal("10.00")
    assert row["TotalChargeAmount"] == Decimal("20.00")
    assert row["HasErrors"] is False
    assert row["ModifiedBy"] == "System"


async def test_row_with_error(pushed: PushRun) -> None:
    row = pushed.rows_of(WINNING_QUEUE)[2]
    assert row["IsProcessed"] is True
    assert row["ChargeId"] == 0
    assert row["SmsChargeId"] == -1
    assert row["ChargeAmount"] == Decimal("7.50")
    assert row["BaseChargeAmount"] == Decimal("5.00")
    assert row["TotalChargeAmount"] == Decimal("12.50")
    assert row["HasErrors"] is True
    assert row["ErrorMessage"] == ERROR_C
    assert row["ModifiedBy"] == "System"


async def test_ledger_lines(pushed: PushRun) -> None:
    row_a, row_b, row_c = pushed.rows_of(WINNING_QUEUE)
    lines = [line for line in pushed.ledger if line["target_id"] == WINNING_QUEUE]
    recorded = sorted(
        (
            line["row_id"],
            line["kind"],
            line["state"],
            line["service_id"],
            line["product_id"],
            line["product_type_id"],
            line["amount"],
            line["description"],
            line["start_date"],
            line["end_date"],
            line["error"],
        )
        for line in lines
    )
    jasper = (date(2026, 11, 2), date(2026, 11, 30))
    pond_ahead = (date(2026, 12, 1), date(2026, 12, 30))
    telegence = (date(2026, 11, 1), date(2026, 11, 29))
    a, b, c = row_a["Id"], row_b["Id"], row_c["Id"]
    expected = [
        (a, "overage", "created", SERVICE_A, None, 302, Decimal("2.68"), OVERAGE_A, *jasper, None),
        (a, "rate", "created", SERVICE_A, 501, None, Decimal("3.14"), RATE_A, *jasper, None),
        (a, "sms", "created", SERVICE_A, None, 303, Decimal("0.63"), SMS_A, *jasper, None),
        (b, "rate", "created", SERVICE_B, None, 301, Decimal("10.00"), RATE_B, *pond_ahead, None),
        (c, "rate", "failed", None, 501, None, Decimal("7.50"), RATE_C, *telegence, ERROR_C),
    ]
    assert recorded == expected


async def test_ledger_holds_charge_ids(pushed: PushRun) -> None:
    created = {
        line["charge_id"]
        for line in pushed.ledger
        if line["target_id"] == WINNING_QUEUE and line["state"] == "created"
    }
    sent = {
        charge["charge_id"] for charge in pushed.charges if charge["customer_id"] == MAIN_CUSTOMER
    }
    assert created == sent


# --- which queue wins -------------------------------------------------------------------


async def test_winning_queue_rows(pushed: PushRun) -> None:
    queues = {row["QueueId"] for row in pushed.m2m_rows + pushed.mobility_rows}
    assert queues == {WINNING_QUEUE, JANUARY_QUEUE}


async def test_winning_queue_files(pushed: PushRun) -> None:
    assert sorted(pushed.objects) == [f"{WINNING_QUEUE}.txt", f"{JANUARY_QUEUE}.txt"]


async def test_winning_queue_emails(pushed: PushRun) -> None:
    names = sorted(
        part.get_filename() or ""
        for message in pushed.emails
        for part in message.iter_attachments()
    )
    assert names == [f"{WINNING_QUEUE}.txt", f"{JANUARY_QUEUE}.txt"]
