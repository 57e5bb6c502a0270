"""Mobility, cross-provider, single-usage and non-Rev instances pushed end to end.

Expected values are written by hand from the specification. The push runs once per
database backend for the whole module, and each test checks one behaviour of that run.
"""

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from chargeworker.db import platform as p
from chargeworker.devstack.local_aws import LocalAws
from tests.conftest import _harness
from tests.harness import Harness
from tests.test_outputs import (
    ACTIVATED,
    NOVEMBER,
    PROVIDER_JASPER,
    PROVIDER_POND,
    PROVIDER_TELEGENCE,
    SESSION_GUID,
    Platform,
    PushRun,
    add_device,
    add_instance,
    add_plan,
    add_queue,
    add_reference_rows,
    add_result,
    add_tenant,
    by_service_and_description,
    run_push,
)

ITEMIZED_TENANT = 2
SINGLE_USAGE_TENANT = 3

MOBILITY_INSTANCE = 111
MOBILITY_CUSTOMER = 7101
MOBILITY_QUEUE = 311
M2M_ONLY_QUEUE = 314  # cheaper, but has no Mobility results

CROSS_INSTANCE = 112
CROSS_CUSTOMER = 7102
CROSS_QUEUE = 312

SINGLE_INSTANCE = 113
SINGLE_CUSTOMER = 7103
SINGLE_QUEUE = 313

NON_REV_INSTANCE = 114
NON_REV_QUEUE = 315

# The tenant stored its zone under its Windows name. Tokyo has no daylight saving time.
WINDOWS_ZONE = "Tokyo Standard Time"
TOKYO_OFFSET = timedelta(hours=9)

NOVEMBER_TELEGENCE = (date(2026, 11, 1), date(2026, 11, 29))
NOVEMBER_POND = (date(2026, 11, 1), date(2026, 11, 30))
NOVEMBER_JASPER = (date(2026, 11, 2), date(2026, 11, 30))
DECEMBER_POND = (date(2026, 12, 1), date(2026, 12, 30))

RATE_21 = "Mobile 2GB - 2048.50 MB"
OVERAGE_21 = "Overage data usage 2048.50 MB"
SMS_21 = "Billable SMS usage: 8"
OVERAGE_23 = "Overage data usage 2500.00 MB"
RATE_24 = "Mobile 1GB - 1100.00 MB"
RATE_25 = "Mobile ahead - 10.00 MB"
MISSING_OVERAGE_PRODUCT = "Rev.io product for overage charges is not set up"


def build_push(harness: Harness) -> Platform:
    platform = Platform()
    simulator = harness.simulator
    add_reference_rows(platform, email_from=harness.resources.email_from)
    add_tenant(platform, simulator, ITEMIZED_TENANT, itemized=True, time_zone=WINDOWS_ZONE)
    add_tenant(platform, simulator, SINGLE_USAGE_TENANT, itemized=False, time_zone=None)
    add_plan(
        platform,
        421,
        "Mobile 2GB",
        code="MOB-2G",
        base_rate="20.00",
        product=(None, 311),
        overage=(None, 302),
        sms=(None, 303),
    )
    add_plan(platform, 422, "M2M flat", code="M2M-F", base_rate="6.00", product=(None, 301))
    add_plan(
        platform,
        423,
        "Pool 1.5GB",
        code="POOL-15",
        base_rate="3.00",
        product=(601, 301),
        overage=(None, 302),
        sms=(None, 303),
    )
    add_plan(platform, 424, "Suspended", code="SUSP", base_rate="0", product=(None, 301))

    # Mobility instance: a line with rate, overage and SMS, and one with nothing to charge.
    add_instance(
        platform,
        MOBILITY_INSTANCE,
        tenant_id=ITEMIZED_TENANT,
        portal_type_id=2,
        rev_customer_id=MOBILITY_CUSTOMER,
        customer_name="Mobility Co",
        period=NOVEMBER,
    )
    platform.add(p.optimization_comm_group, Id=211, InstanceId=MOBILITY_INSTANCE)
    add_queue(
        platform, MOBILITY_QUEUE, instance_id=MOBILITY_INSTANCE, group_id=211, total_cost="10"
    )
    add_queue(platform, M2M_ONLY_QUEUE, instance_id=MOBILITY_INSTANCE, group_id=211, total_cost="5")
    add_device(
        platform,
        21,
        tenant_id=ITEMIZED_TENANT,
        msisdn="4155550121",
        provider_id=PROVIDER_TELEGENCE,
        service_number="4155550121",
        mobility=True,
    )
    add_device(
        platform,
        22,
        tenant_id=ITEMIZED_TENANT,
        msisdn="4155550122",
        provider_id=PROVIDER_POND,
        service_number="4155550122",
        mobility=True,
    )
    add_result(
        platform,
        3111,
        queue_id=MOBILITY_QUEUE,
        device_id=21,
        plan_id=421,
        usage_mb="2048.5",
        sms_usage=8,
        base="20.00",
        rate="20.00",
        overage="1.25",
        sms="0.40",
        mobility=True,
    )
    add_result(platform, 3112, queue_id=MOBILITY_QUEUE, device_id=22, plan_id=424, mobility=True)
    add_plan(
        platform,
        425,
        "Mobile 1GB",
        code="MOB-1G",
        base_rate="5.00",
        product=(None, 311),
        sms=(None, 303),
    )
    add_plan(
        platform,
        426,
        "Mobile ahead",
        code="MOB-A",
        base_rate="8.00",
        advance=True,
        product=(None, 311),
    )
    # Device 23: overage only. Device 24: its plan has no overage product. Device 25:
    # billed in advance with an SMS amount but no SMS product, which it never needs.
    # Device 26: its result points at a rate plan that does not exist.
    for device_id in (23, 24, 25, 26):
        add_device(
            platform,
            device_id,
            tenant_id=ITEMIZED_TENANT,
            msisdn=f"41555501{device_id}",
            provider_id=PROVIDER_POND,
            service_number=f"41555501{device_id}",
            mobility=True,
        )
        simulator.add_service(
            customer_id=MOBILITY_CUSTOMER,
            number=f"41555501{device_id}",
            activated_date=ACTIVATED,
            service_id=9100 + device_id,
        )
    add_result(
        platform,
        3113,
        queue_id=MOBILITY_QUEUE,
        device_id=23,
        plan_id=421,
        usage_mb="2500",
        base="20.00",
        overage="2.00",
        mobility=True,
    )
    add_result(
        platform,
        3114,
        queue_id=MOBILITY_QUEUE,
        device_id=24,
        plan_id=425,
        usage_mb="1100",
        base="5.00",
        rate="5.00",
        overage="1.00",
        mobility=True,
    )
    add_result(
        platform,
        3115,
        queue_id=MOBILITY_QUEUE,
        device_id=25,
        plan_id=426,
        usage_mb="10",
        sms_usage=30,
        base="8.00",
        rate="8.00",
        sms="0.75",
        mobility=True,
    )
    add_result(
        platform,
        3116,
        queue_id=MOBILITY_QUEUE,
        device_id=26,
        plan_id=9999,
        base="3.00",
        rate="3.00",
        mobility=True,
    )
    add_device(
        platform,
        44,
        tenant_id=ITEMIZED_TENANT,
        msisdn="4155550144",
        provider_id=PROVIDER_POND,
        service_number=None,
    )
    add_result(platform, 3141, queue_id=M2M_ONLY_QUEUE, device_id=44, plan_id=422, rate="1.00")
    simulator.add_service(
        customer_id=MOBILITY_CUSTOMER,
        number="4155550121",
        activated_date=ACTIVATED,
        service_id=9121,
    )

    # Cross-provider instance: one M2M device and one Mobility line in one queue.
    add_instance(
        platform,
        CROSS_INSTANCE,
        tenant_id=ITEMIZED_TENANT,
        portal_type_id=3,
        rev_customer_id=CROSS_CUSTOMER,
        customer_name="Cross Co",
        period=NOVEMBER,
    )
    platform.add(p.optimization_comm_group, Id=212, InstanceId=CROSS_INSTANCE)
    add_queue(platform, CROSS_QUEUE, instance_id=CROSS_INSTANCE, group_id=212, total_cost="20")
    add_device(
        platform,
        31,
        tenant_id=ITEMIZED_TENANT,
        msisdn="6175550131",
        provider_id=PROVIDER_JASPER,
        service_number="6175550131",
    )
    add_device(
        platform,
        32,
        tenant_id=ITEMIZED_TENANT,
        msisdn="6175550132",
        provider_id=PROVIDER_POND,
        service_number="6175550132",
        mobility=True,
    )
    add_result(
        platform,
        3121,
        queue_id=CROSS_QUEUE,
        device_id=31,
        plan_id=422,
        usage_mb="50",
        base="6.00",
        rate="6.00",
    )
    add_result(
        platform,
        3122,
        queue_id=CROSS_QUEUE,
        device_id=32,
        plan_id=421,
        usage_mb="100",
        sms_usage=20,
        base="20.00",
        rate="20.00",
        sms="0.50",
        mobility=True,
    )
    simulator.add_service(
        customer_id=CROSS_CUSTOMER, number="6175550131", activated_date=ACTIVATED, service_id=9131
    )
    simulator.add_service(
        customer_id=CROSS_CUSTOMER, number="6175550132", activated_date=ACTIVATED, service_id=9132
    )

    # Single-usage instance: one usage line in place of rate and overage.
    add_instance(
        platform,
        SINGLE_INSTANCE,
        tenant_id=SINGLE_USAGE_TENANT,
        portal_type_id=0,
        rev_customer_id=SINGLE_CUSTOMER,
        customer_name="Single Co",
        period=NOVEMBER,
    )
    platform.add(p.optimization_comm_group, Id=213, InstanceId=SINGLE_INSTANCE)
    add_queue(platform, SINGLE_QUEUE, instance_id=SINGLE_INSTANCE, group_id=213, total_cost="30")
    for device_id in (41, 42):
        add_device(
            platform,
            device_id,
            tenant_id=SINGLE_USAGE_TENANT,
            msisdn=f"21455501{device_id}",
            provider_id=PROVIDER_POND,
            service_number=f"21455501{device_id}",
        )
    add_result(
        platform,
        3131,
        queue_id=SINGLE_QUEUE,
        device_id=41,
        plan_id=423,
        usage_mb="1536.25",
        sms_usage=5,
        base="3.00",
        rate="3.00",
        overage="1.50",
        sms="0.25",
    )
    add_result(platform, 3132, queue_id=SINGLE_QUEUE, device_id=42, plan_id=424)
    simulator.add_service(
        customer_id=SINGLE_CUSTOMER,
        number="2145550141",
        activated_date=ACTIVATED,
        service_id=9141,
    )

    # Non-Rev instance: a platform customer with no Rev.io customer and no account.
    platform.add(p.customer, Id=55, TenantId=SINGLE_USAGE_TENANT, CustomerName="Offline Co")
    platform.add(
        p.optimization_instance,
        Id=NON_REV_INSTANCE,
        SessionId=SESSION_GUID,
        TenantId=SINGLE_USAGE_TENANT,
        PortalTypeId=0,
        RevCustomerId=None,
        AMOPCustomerId=55,
        IntegrationAuthenticationId=None,
        BillingPeriodStartDate=NOVEMBER[0],
        BillingPeriodEndDate=NOVEMBER[1],
    )
    platform.add(p.optimization_comm_group, Id=214, InstanceId=NON_REV_INSTANCE)
    add_queue(platform, NON_REV_QUEUE, instance_id=NON_REV_INSTANCE, group_id=214, total_cost="9")
    add_device(
        platform,
        43,
        tenant_id=SINGLE_USAGE_TENANT,
        msisdn="2145550143",
        provider_id=PROVIDER_POND,
        service_number="2145550143",
    )
    add_result(
        platform, 3151, queue_id=NON_REV_QUEUE, device_id=43, plan_id=422, base="6.00", rate="9.99"
    )
    simulator.add_service(
        customer_id=SINGLE_CUSTOMER,
        number="2145550143",
        activated_date=ACTIVATED,
        service_id=9143,
    )
    return platform


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def pushed(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    local_aws: LocalAws,
    postgres_unavailable: str | None,
) -> AsyncIterator[PushRun]:
    """The four instances pushed once, on SQLite and on PostgreSQL."""
    directory = tmp_path_factory.mktemp(f"modes-{request.param}")
    async for harness in _harness(request.param, directory, local_aws, postgres_unavailable):
        instances = [MOBILITY_INSTANCE, CROSS_INSTANCE, SINGLE_INSTANCE, NON_REV_INSTANCE]
        yield await run_push(harness, build_push(harness), instances)


def charge(
    customer_id: int,
    service_id: int,
    product: tuple[int | None, int | None],
    amount: str,
    description: str,
    dates: tuple[date, date],
) -> tuple[object, ...]:
    return (customer_id, service_id, *product, Decimal(amount), description, *dates)


def charge_list_rows(pushed: PushRun, queue_id: int) -> list[list[str]]:
    """Return the fields of each row line of a charge list, without header and footer."""
    text = pushed.objects[f"{queue_id}.txt"].decode("utf-8")
    return [line.split("\t") for line in text.split("\n")[1:-2]]


# --- Mobility --------------------------------------------------------------------------


async def test_mobility_rows_table(pushed: PushRun) -> None:
    rows = pushed.rows_of(MOBILITY_QUEUE, "mobility")
    assert [row["MobilityDeviceId"] for row in rows] == [21, 22, 23, 24, 25, 26]
    assert pushed.rows_of(MOBILITY_QUEUE, "m2m") == []


async def test_mobility_charges(pushed: PushRun) -> None:
    customer = MOBILITY_CUSTOMER
    expected = [
        charge(customer, 9121, (None, 311), "20.00", RATE_21, NOVEMBER_TELEGENCE),
        charge(customer, 9121, (None, 302), "1.25", OVERAGE_21, NOVEMBER_TELEGENCE),
        charge(customer, 9121, (None, 303), "0.40", SMS_21, NOVEMBER_TELEGENCE),
        charge(customer, 9123, (None, 302), "2.00", OVERAGE_23, NOVEMBER_POND),
        charge(customer, 9124, (None, 311), "5.00", RATE_24, NOVEMBER_POND),
        charge(customer, 9125, (None, 311), "8.00", RATE_25, DECEMBER_POND),
    ]
    assert pushed.charges_of(customer) == sorted(expected, key=by_service_and_description)


async def test_mobility_winning_queue(pushed: PushRun) -> None:
    queues = {row["QueueId"] for row in pushed.m2m_rows + pushed.mobility_rows}
    assert M2M_ONLY_QUEUE not in queues
    assert f"{M2M_ONLY_QUEUE}.txt" not in pushed.objects


async def test_mobility_row_outcome(pushed: PushRun) -> None:
    row = pushed.rows_of(MOBILITY_QUEUE, "mobility")[0]
    assert row["IsProcessed"] is True
    assert row["ChargeId"] == pushed.charge_id(9121, RATE_21)
    assert row["SmsChargeId"] == pushed.charge_id(9121, SMS_21)
    assert row["ChargeAmount"] == Decimal("21.25")
    assert row["BaseChargeAmount"] == Decimal("20.00")
    assert row["TotalChargeAmount"] == Decimal("41.25")
    assert row["HasErrors"] is False


async def test_windows_zone_date_charged(pushed: PushRun) -> None:
    # "Tokyo Standard Time" is Asia/Tokyo, always UTC+9.
    row = pushed.rows_of(MOBILITY_QUEUE, "mobility")[0]
    local = row["ModifiedDate"] + TOKYO_OFFSET
    date_charged = charge_list_rows(pushed, MOBILITY_QUEUE)[0][8]
    assert date_charged == local.strftime("%Y-%m-%d %H:%M:%S")


async def test_overage_only_charge_id(pushed: PushRun) -> None:
    row = pushed.rows_of(MOBILITY_QUEUE, "mobility")[2]
    assert row["ChargeId"] == pushed.charge_id(9123, OVERAGE_23)
    assert row["SmsChargeId"] == -1
    assert row["HasErrors"] is False


async def test_missing_product_error(pushed: PushRun) -> None:
    row = pushed.rows_of(MOBILITY_QUEUE, "mobility")[3]
    assert row["IsProcessed"] is True
    assert row["ChargeId"] == pushed.charge_id(9124, RATE_24)
    assert row["HasErrors"] is True
    assert row["ErrorMessage"] == MISSING_OVERAGE_PRODUCT


async def test_missing_product_in_file(pushed: PushRun) -> None:
    fields = charge_list_rows(pushed, MOBILITY_QUEUE)[3]
    assert fields[1] == "False"
    assert fields[2] == str(pushed.charge_id(9124, RATE_24))
    assert fields[3] == "6.00"
    assert fields[9] == MISSING_OVERAGE_PRODUCT


async def test_advance_sms_not_needed(pushed: PushRun) -> None:
    row = pushed.rows_of(MOBILITY_QUEUE, "mobility")[4]
    assert row["ChargeId"] == pushed.charge_id(9125, RATE_25)
    assert row["SmsChargeId"] == -1
    assert row["HasErrors"] is False
    assert (row["ErrorMessage"] or "") == ""


async def test_rate_plan_not_found(pushed: PushRun) -> None:
    row = pushed.rows_of(MOBILITY_QUEUE, "mobility")[5]
    assert row["IsProcessed"] is True
    assert row["ChargeId"] == 0
    assert row["SmsChargeId"] == 0
    assert row["HasErrors"] is True
    assert row["ErrorMessage"] == "rate plan not found"
    assert row["ChargeAmount"] == Decimal("3.00")


async def test_mobility_total(pushed: PushRun) -> None:
    # 21.25 + 0.00 + 2.00 + 6.00 + 8.00 + 3.00
    text = pushed.objects[f"{MOBILITY_QUEUE}.txt"].decode("utf-8")
    assert text.split("\n")[-2] == "\t\t\t40.25\t\t\t\t\t\t"


async def test_mobility_email_error_count(pushed: PushRun) -> None:
    # Two rows failed: the missing overage product and the missing rate plan.
    message = pushed.email_with_attachment(f"{MOBILITY_QUEUE}.txt")
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert "2 error(s) occurred when uploading charges to Rev.io" in str(body.get_content())


# --- cross-provider -------------------------------------------------------------------


async def test_cross_provider_rows_tables(pushed: PushRun) -> None:
    m2m_rows = pushed.rows_of(CROSS_QUEUE, "m2m")
    mobility_rows = pushed.rows_of(CROSS_QUEUE, "mobility")
    assert [row["AmopDeviceId"] for row in m2m_rows] == [31]
    assert [row["MobilityDeviceId"] for row in mobility_rows] == [32]


async def test_cross_provider_charges(pushed: PushRun) -> None:
    expected = [
        charge(CROSS_CUSTOMER, 9131, (None, 301), "6.00", "M2M flat - 50.00 MB", NOVEMBER_JASPER),
        charge(CROSS_CUSTOMER, 9132, (None, 311), "20.00", "Mobile 2GB - 100.00 MB", NOVEMBER_POND),
        charge(CROSS_CUSTOMER, 9132, (None, 303), "0.50", "Billable SMS usage: 20", NOVEMBER_POND),
    ]
    assert pushed.charges_of(CROSS_CUSTOMER) == sorted(expected, key=by_service_and_description)


async def test_cross_provider_charge_list(pushed: PushRun) -> None:
    rows = charge_list_rows(pushed, CROSS_QUEUE)
    m2m_row, mobility_row = rows
    assert m2m_row[0] == "6175550131"
    assert m2m_row[1:4] == ["True", str(pushed.charge_id(9131, "M2M flat - 50.00 MB")), "6.00"]
    assert mobility_row[0] == "6175550132"
    assert mobility_row[1:6] == [
        "True",
        str(pushed.charge_id(9132, "Mobile 2GB - 100.00 MB")),
        "20.00",
        str(pushed.charge_id(9132, "Billable SMS usage: 20")),
        "0.50",
    ]


async def test_cross_provider_total(pushed: PushRun) -> None:
    text = pushed.objects[f"{CROSS_QUEUE}.txt"].decode("utf-8")
    assert text.split("\n")[-2] == "\t\t\t26.00\t\t\t\t\t\t"


# --- single-usage mode ----------------------------------------------------------------


async def test_single_usage_charges(pushed: PushRun) -> None:
    expected = [
        charge(
            SINGLE_CUSTOMER,
            9141,
            (601, None),
            "4.50",
            "Billable data usage: 1536.25 MB",
            NOVEMBER_POND,
        ),
        charge(SINGLE_CUSTOMER, 9141, (None, 303), "0.25", "Billable SMS usage: 5", NOVEMBER_POND),
    ]
    assert pushed.charges_of(SINGLE_CUSTOMER) == sorted(expected, key=by_service_and_description)


async def test_single_usage_ledger_kinds(pushed: PushRun) -> None:
    kinds = sorted(line["kind"] for line in pushed.ledger if line["target_id"] == SINGLE_QUEUE)
    assert kinds == ["sms", "usage"]


async def test_single_usage_row_outcome(pushed: PushRun) -> None:
    row = pushed.rows_of(SINGLE_QUEUE)[0]
    assert row["IsProcessed"] is True
    assert row["ChargeId"] == pushed.charge_id(9141, "Billable data usage: 1536.25 MB")
    assert row["SmsChargeId"] == pushed.charge_id(9141, "Billable SMS usage: 5")
    assert row["ChargeAmount"] == Decimal("4.50")
    assert row["BaseChargeAmount"] == Decimal("3.00")
    assert row["TotalChargeAmount"] == Decimal("7.50")
    assert row["HasErrors"] is False


# --- rows with nothing to charge ------------------------------------------------------


async def test_nothing_to_charge_rows(pushed: PushRun) -> None:
    rows = [pushed.rows_of(MOBILITY_QUEUE, "mobility")[1], pushed.rows_of(SINGLE_QUEUE)[1]]
    for row in rows:
        assert row["IsProcessed"] is True, row
        assert row["ChargeId"] == -1, row
        assert row["SmsChargeId"] == -1, row
        assert row["ChargeAmount"] == Decimal("0.00"), row
        assert row["HasErrors"] is False, row
        assert (row["ErrorMessage"] or "") == "", row


async def test_nothing_to_charge_no_lines(pushed: PushRun) -> None:
    row_ids = {
        ("mobility", pushed.rows_of(MOBILITY_QUEUE, "mobility")[1]["Id"]),
        ("m2m", pushed.rows_of(SINGLE_QUEUE)[1]["Id"]),
    }
    lines = [line for line in pushed.ledger if (line["row_table"], line["row_id"]) in row_ids]
    assert lines == []


async def test_nothing_to_charge_in_file(pushed: PushRun) -> None:
    mobility_line = charge_list_rows(pushed, MOBILITY_QUEUE)[1]
    single_line = charge_list_rows(pushed, SINGLE_QUEUE)[1]
    for fields in (mobility_line, single_line):
        assert fields[1] == "True", fields
        assert fields[2] == "", fields
        assert fields[3] == "0.00", fields
        assert fields[4] == "", fields
        assert fields[9] == "", fields


# --- non-Rev customers ----------------------------------------------------------------


async def test_non_rev_row_processed(pushed: PushRun) -> None:
    row = pushed.rows_of(NON_REV_QUEUE)[0]
    assert row["IsProcessed"] is True
    assert row["ChargeId"] <= 0
    assert row["SmsChargeId"] <= 0
    assert row["HasErrors"] is False
    assert row["ChargeAmount"] == Decimal("9.99")


async def test_non_rev_nothing_sent(pushed: PushRun) -> None:
    sent_numbers = {charge["service_id"] for charge in pushed.charges}
    assert 9143 not in sent_numbers


async def test_non_rev_in_file(pushed: PushRun) -> None:
    (fields,) = charge_list_rows(pushed, NON_REV_QUEUE)
    assert fields[0] == "2145550143"
    assert fields[1] == "True"
    assert fields[3] == "9.99"


async def test_non_rev_email_names_customer(pushed: PushRun) -> None:
    message = pushed.email_with_attachment(f"{NON_REV_QUEUE}.txt")
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert "Offline Co" in str(body.get_content())


async def test_modified_date_is_utc(pushed: PushRun) -> None:
    # ModifiedDate is stored as naive UTC, so it lies within minutes of now in UTC.
    now = datetime.now(UTC).replace(tzinfo=None)
    for row in pushed.m2m_rows + pushed.mobility_rows:
        assert abs(now - row["ModifiedDate"]) < timedelta(minutes=10), row["ModifiedDate"]
