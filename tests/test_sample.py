"""Tests of the sample push that the demo, the benchmark and end-to-end tests load."""

from __future__ import annotations

from base64 import b64encode
from collections import Counter
from collections.abc import AsyncIterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from chargeworker.db import platform as p
from chargeworker.db.engine import create_engine, upgrade_schema
from chargeworker.devstack.revio_simulator import RevioSimulator
from chargeworker.devstack.sample import (
    CASE_NO_SERVICE,
    CASE_OLDER_DISCONNECTED_SERVICE,
    CASE_OTHER_CUSTOMER,
    CASE_OVERAGE_PRODUCT_MISSING,
    CASE_RATE_PLAN_NOT_FOUND,
    FAULT_CASES,
    Sample,
    load_sample,
)

PERIOD_START = date(2026, 11, 1)
PERIOD_END = date(2026, 11, 30)
SUBSCRIPTION_KEY = "sample-test-key"

# The winning queue of a comm group, written from the definition rather than from the
# sample's code: the finished queue (RunEndTime and TotalCost set) with the lowest
# TotalCost that has device results of the instance's kind (cross-provider: either kind).
WINNING_QUEUE_SQL = text(
    """
    SELECT q.Id
    FROM OptimizationQueue AS q
    JOIN OptimizationInstance AS i ON i.Id = q.InstanceId
    WHERE q.CommPlanGroupId = :group_id
      AND q.RunEndTime IS NOT NULL
      AND q.TotalCost IS NOT NULL
      AND (
        (i.PortalTypeId IN (0, 3)
         AND EXISTS (SELECT 1 FROM OptimizationDeviceResult AS r WHERE r.QueueId = q.Id))
        OR (i.PortalTypeId IN (2, 3)
         AND EXISTS (SELECT 1 FROM OptimizationMobilityDeviceResult AS r WHERE r.QueueId = q.Id))
      )
    ORDER BY q.TotalCost, q.Id
    LIMIT 1
    """
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = await _new_database(tmp_path / "sample.sqlite3")
    yield engine
    await engine.dispose()


@pytest.fixture
async def simulator() -> AsyncIterator[RevioSimulator]:
    simulator = RevioSimulator(subscription_key=SUBSCRIPTION_KEY)
    await simulator.start()
    yield simulator
    await simulator.stop()


async def _new_database(path: Path) -> AsyncEngine:
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade_schema(engine, with_platform=True)
    return engine


async def _fetch_all(engine: AsyncEngine, query: Any, **params: Any) -> list[Any]:
    async with engine.connect() as connection:
        return list((await connection.execute(query, params)).all())


async def _fetch_services(simulator: RevioSimulator, **search: str | int) -> list[dict[str, Any]]:
    """Return every service that the simulator's GET /Services returns for `search`."""
    login = f"{simulator.username}@{simulator.client_code}"
    headers = {
        "Authorization": "Basic " + b64encode(f"{login}:{simulator.password}".encode()).decode(),
        "Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY,
        "Accept": "application/json",
    }
    records: list[dict[str, Any]] = []
    page = 1
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            params = {f"search.{name}": str(value) for name, value in search.items()}
            params |= {"search.page": str(page), "search.page_size": "500"}
            async with session.get(f"{simulator.base_url}/Services", params=params) as response:
                assert response.status == 200, await response.text()
                body = await response.json()
            records.extend(body["records"])
            if not body["has_more"]:
                return records
            page += 1


def _is_usable(service: dict[str, Any]) -> bool:
    activated = _service_date(service["activated_date"])
    disconnected = _service_date(service["disconnected_date"])
    active_by_end = activated is not None and activated <= PERIOD_END
    return active_by_end and (disconnected is None or disconnected >= PERIOD_START)


def _service_date(value: str | None) -> date | None:
    return None if not value else datetime.fromisoformat(value).date()


def _luhn_is_valid(digits: str) -> bool:
    total = 0
    for index, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


async def _winning_results(engine: AsyncEngine, sample: Sample) -> list[Any]:
    """Return (queue, device kind, device, plan, amounts, number) of every winning result."""
    winning = [q for instance in sample.instances for q in instance.winning_queue_ids]
    rows = []
    for kind, results, devices, column in (
        ("m2m", p.device_result, p.device, "AmopDeviceId"),
        ("mobility", p.mobility_device_result, p.mobility_device, "MobilityDeviceId"),
    ):
        query = (
            select(
                results.c.QueueId,
                results.c[column].label("DeviceId"),
                results.c.RateChargeAmt,
                results.c.OverageChargeAmt,
                results.c.SmsChargeAmt,
                devices.c.ICCID,
                devices.c.MSISDN,
                devices.c.RevServiceNumber,
                p.rate_plan.c.RatePlanCode,
                p.rate_plan.c.IsBillInAdvance,
                p.rate_plan.c.RevProductId,
                p.rate_plan.c.RevProductTypeId,
                p.rate_plan.c.OverageRevProductId,
                p.rate_plan.c.OverageRevProductTypeId,
                p.rate_plan.c.SmsRevProductId,
                p.rate_plan.c.SmsRevProductTypeId,
            )
            .join(devices, devices.c.Id == results.c[column])
            .join(p.rate_plan, p.rate_plan.c.Id == results.c.AssignedRatePlanId)
            .where(results.c.QueueId.in_(winning))
        )
        rows.extend((kind, row) for row in await _fetch_all(engine, query))
    return rows


async def _dump_platform_tables(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    dump = {}
    for table in p.platform_metadata.sorted_tables:
        # BaseUrl contains the simulator's port, which differs between runs.
        columns = [c for c in table.columns if c.name != "BaseUrl"]
        query = select(*columns).order_by(*table.primary_key.columns)
        dump[table.name] = [tuple(row) for row in await _fetch_all(engine, query)]
    return dump


async def test_sample_has_one_instance_per_kind(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    sample = await load_sample(engine, simulator)

    assert [instance.portal_type_id for instance in sample.instances] == [0, 2, 3]
    rows = await _fetch_all(
        engine,
        select(p.optimization_instance, p.rev_customer.c.RevCustomerId.label("RevioCustomerId"))
        .join(p.rev_customer, p.rev_customer.c.Id == p.optimization_instance.c.RevCustomerId)
        .order_by(p.optimization_instance.c.Id),
    )
    assert [row.PortalTypeId for row in rows] == [0, 2, 3]
    for instance, row in zip(sample.instances, rows, strict=True):
        assert row.Id == instance.instance_id
        assert row.RevioCustomerId == instance.rev_customer_id
        assert row.SessionId == sample.session_id
        assert row.TenantId == sample.tenant_id
        assert row.IntegrationAuthenticationId == sample.integration_authentication_id
        assert row.BillingPeriodStartDate == datetime(2026, 11, 1)
        assert row.BillingPeriodEndDate == datetime(2026, 11, 30)
    assert len({instance.rev_customer_id for instance in sample.instances}) == 3


async def test_winning_queues_match_sql_definition(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    sample = await load_sample(engine, simulator)

    for instance in sample.instances:
        group_ids = await _fetch_all(
            engine,
            select(p.optimization_comm_group.c.Id).where(
                p.optimization_comm_group.c.InstanceId == instance.instance_id
            ),
        )
        winners = []
        without_winner = []
        for (group_id,) in group_ids:
            winner = (await _fetch_all(engine, WINNING_QUEUE_SQL, group_id=group_id) or [None])[0]
            if winner is None:
                without_winner.append(group_id)
            else:
                winners.append(winner[0])
        queue_ids = await _fetch_all(
            engine,
            select(p.optimization_queue.c.Id).where(
                p.optimization_queue.c.InstanceId == instance.instance_id
            ),
        )

        assert sorted(instance.winning_queue_ids) == sorted(winners)
        assert sorted(instance.comm_groups_without_winner) == sorted(without_winner)
        losers = {queue_id for (queue_id,) in queue_ids} - set(winners)
        assert sorted(instance.losing_queue_ids) == sorted(losers)
    groups_without_winner = [g for i in sample.instances for g in i.comm_groups_without_winner]
    assert len(groups_without_winner) == 1


async def test_comm_groups_hold_two_to_four_candidates(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    await load_sample(engine, simulator)

    counts = await _fetch_all(
        engine,
        text("SELECT CommPlanGroupId, COUNT(*) FROM OptimizationQueue GROUP BY CommPlanGroupId"),
    )
    assert counts
    for group_id, count in counts:
        assert 2 <= count <= 4, f"comm group {group_id} has {count} queues"


async def test_cheaper_unfinished_queues_exist(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    sample = await load_sample(engine, simulator)

    winners = [q for instance in sample.instances for q in instance.winning_queue_ids]
    cheaper_running = await _fetch_all(
        engine,
        text(
            "SELECT q.Id FROM OptimizationQueue q JOIN OptimizationQueue w"
            " ON w.CommPlanGroupId = q.CommPlanGroupId"
            f" WHERE w.Id IN ({','.join(map(str, winners))})"
            " AND q.RunEndTime IS NULL AND q.TotalCost < w.TotalCost"
        ),
    )
    ended_without_cost = await _fetch_all(
        engine,
        text("SELECT Id FROM OptimizationQueue WHERE RunEndTime IS NOT NULL AND TotalCost IS NULL"),
    )
    assert len(cheaper_running) >= 3
    assert ended_without_cost


async def test_cheaper_queue_of_other_kind_loses(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    sample = await load_sample(engine, simulator)

    for instance, other_table in (
        (sample.instances[0], "OptimizationMobilityDeviceResult"),
        (sample.instances[1], "OptimizationDeviceResult"),
    ):
        own_table = (
            "OptimizationDeviceResult"
            if other_table == "OptimizationMobilityDeviceResult"
            else "OptimizationMobilityDeviceResult"
        )
        traps = await _fetch_all(
            engine,
            text(
                "SELECT q.Id FROM OptimizationQueue q JOIN OptimizationQueue w"
                " ON w.CommPlanGroupId = q.CommPlanGroupId AND w.Id <> q.Id"
                " WHERE q.InstanceId = :instance_id AND q.RunEndTime IS NOT NULL"
                " AND q.TotalCost < w.TotalCost"
                f" AND EXISTS (SELECT 1 FROM {other_table} r WHERE r.QueueId = q.Id)"
                f" AND NOT EXISTS (SELECT 1 FROM {own_table} r WHERE r.QueueId = q.Id)"
            ),
            instance_id=instance.instance_id,
        )
        assert traps, f"instance {instance.instance_id} has no cheaper queue of the other kind"
        assert not set(q for (q,) in traps) & set(instance.winning_queue_ids)


async def test_losing_queues_price_the_same_devices(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    sample = await load_sample(engine, simulator)

    query = text(
        "SELECT q.CommPlanGroupId, q.Id, r.AmopDeviceId, 'm2m' FROM OptimizationQueue q"
        " JOIN OptimizationDeviceResult r ON r.QueueId = q.Id"
        " UNION ALL"
        " SELECT q.CommPlanGroupId, q.Id, r.MobilityDeviceId, 'mobility' FROM OptimizationQueue q"
        " JOIN OptimizationMobilityDeviceResult r ON r.QueueId = q.Id"
    )
    devices_by_queue: dict[int, set[tuple[str, int]]] = {}
    group_of_queue: dict[int, int] = {}
    for group_id, queue_id, device_id, kind in await _fetch_all(engine, query):
        devices_by_queue.setdefault(queue_id, set()).add((kind, device_id))
        group_of_queue[queue_id] = group_id

    winners = {q for instance in sample.instances for q in instance.winning_queue_ids}
    shared = 0
    for queue_id, devices in devices_by_queue.items():
        if queue_id in winners:
            continue
        same_group_winners = [
            w for w in winners if group_of_queue.get(w) == group_of_queue[queue_id]
        ]
        if same_group_winners and devices == devices_by_queue[same_group_winners[0]]:
            shared += 1
    # Every losing queue of a group with a winner repeats its devices, except the two
    # cheaper queues that hold only the other device kind.
    losing_in_groups_with_winner = sum(
        1
        for queue_id in devices_by_queue
        if queue_id not in winners
        and any(group_of_queue.get(w) == group_of_queue[queue_id] for w in winners)
    )
    assert shared == losing_in_groups_with_winner - 2


async def test_expected_rows_count_winning_results(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    sample = await load_sample(engine, simulator, devices=60)

    results = await _winning_results(engine, sample)
    assert sample.expected_rows == len(results)
    assert sample.expected_rows == 60
    kinds_by_instance = Counter(
        (instance.portal_type_id, kind)
        for instance in sample.instances
        for kind, row in results
        if row.QueueId in instance.winning_queue_ids
    )
    assert set(kinds_by_instance) == {(0, "m2m"), (2, "mobility"), (3, "m2m"), (3, "mobility")}


async def test_small_device_count_keeps_every_case(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    sample = await load_sample(engine, simulator, devices=5)

    assert sample.expected_rows == 27
    assert Counter(case.case for case in sample.cases)[CASE_NO_SERVICE] == 3


async def test_device_count_below_one_rejected(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    with pytest.raises(ValueError, match="devices must be at least 1, got 0"):
        await load_sample(engine, simulator, devices=0)


async def test_devices_have_realistic_numbers(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    sample = await load_sample(engine, simulator)

    results = await _winning_results(engine, sample)
    for _kind, row in results:
        assert row.ICCID.isdigit(), row.ICCID
        assert len(row.ICCID) in (19, 20), row.ICCID
        assert _luhn_is_valid(row.ICCID), row.ICCID
        assert row.MSISDN.isdigit(), row.MSISDN
        assert len(row.MSISDN) == 10, row.MSISDN
        assert row.RevServiceNumber in (row.MSISDN, None, "")
    empty = [row for _kind, row in results if not row.RevServiceNumber]
    assert empty
    assert len(empty) < len(results) / 2


async def test_amounts_need_rounding(engine: AsyncEngine, simulator: RevioSimulator) -> None:
    sample = await load_sample(engine, simulator)

    results = await _winning_results(engine, sample)
    amounts = [
        amount
        for _kind, row in results
        for amount in (row.RateChargeAmt, row.OverageChargeAmt, row.SmsChargeAmt)
    ]
    assert all(isinstance(amount, Decimal) for amount in amounts)
    assert Decimal("3.1416") in amounts
    assert Decimal("1.0050") in amounts
    assert Decimal("0.6250") in amounts
    assert sum(1 for amount in amounts if amount != amount.quantize(Decimal("0.01"))) >= 10


async def test_rate_plans_cover_product_variants(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    await load_sample(engine, simulator)

    plans = await _fetch_all(engine, select(p.rate_plan))
    assert any(plan.RatePlanCode is None for plan in plans)
    assert any(plan.IsBillInAdvance for plan in plans)
    assert any(not plan.IsBillInAdvance for plan in plans)
    assert any(plan.OverageRevProductId for plan in plans)
    assert any(plan.OverageRevProductId is None and plan.OverageRevProductTypeId for plan in plans)
    assert any(plan.SmsRevProductId or plan.SmsRevProductTypeId for plan in plans)
    assert any(plan.SmsRevProductId is None and plan.SmsRevProductTypeId is None for plan in plans)

    product_types = {
        row.ProductTypeId for row in await _fetch_all(engine, select(p.rev_product_type))
    }
    used_types = {
        type_id
        for plan in plans
        for type_id in (
            plan.RevProductTypeId,
            plan.OverageRevProductTypeId,
            plan.SmsRevProductTypeId,
        )
        if type_id is not None
    }
    assert used_types <= product_types


async def test_faults_are_present(engine: AsyncEngine, simulator: RevioSimulator) -> None:
    sample = await load_sample(engine, simulator)

    counts = Counter(case.case for case in sample.cases)
    for fault in FAULT_CASES:
        assert 2 <= counts[fault] <= 3, f"{fault}: {counts[fault]}"
        assert all(case.expected_error for case in sample.cases if case.case == fault)

    results = {(kind, row.DeviceId): row for kind, row in await _winning_results(engine, sample)}
    for case in sample.cases:
        row = results[(case.device_kind, case.device_id)]
        assert row.QueueId == case.queue_id
        assert case.number == (row.RevServiceNumber or row.MSISDN)
        if case.case == CASE_RATE_PLAN_NOT_FOUND:
            assert row.RatePlanCode is None
            assert case.expected_error == "rate plan not found"
        if case.case == CASE_OVERAGE_PRODUCT_MISSING:
            assert row.OverageChargeAmt > 0
            assert row.OverageRevProductId is None
            assert row.OverageRevProductTypeId is None


async def test_ordinary_rows_have_their_products(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    sample = await load_sample(engine, simulator)

    faulty = {(c.device_kind, c.device_id) for c in sample.cases if c.expected_error}
    ordinary = [
        row
        for kind, row in await _winning_results(engine, sample)
        if (kind, row.DeviceId) not in faulty
    ]
    assert len(ordinary) == sample.expected_rows - len(faulty)
    for row in ordinary:
        device = f"device result of queue {row.QueueId}, device {row.DeviceId}"
        assert row.RatePlanCode, device
        if row.RateChargeAmt > 0:
            assert row.RevProductId or row.RevProductTypeId, device
        if row.OverageChargeAmt > 0:
            assert row.OverageRevProductId or row.OverageRevProductTypeId, device
        if row.SmsChargeAmt > 0 and not row.IsBillInAdvance:
            assert row.SmsRevProductId or row.SmsRevProductTypeId, device
    assert any(row.SmsChargeAmt > 0 and row.IsBillInAdvance for row in ordinary)
    assert any(row.RevProductId is None and row.RevProductTypeId for row in ordinary)


async def test_fault_numbers_are_missing_or_elsewhere(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    sample = await load_sample(engine, simulator)

    customer_of = {i.instance_id: i.rev_customer_id for i in sample.instances}
    for case in sample.cases:
        services = await _fetch_services(simulator, number=case.number)
        if case.case == CASE_NO_SERVICE:
            assert services == []
            assert case.expected_error == f"no active Rev.io service for number {case.number}"
        elif case.case == CASE_OTHER_CUSTOMER:
            assert services
            assert all(s["customer_id"] != customer_of[case.instance_id] for s in services)
            assert {s["customer_id"] for s in services} <= set(customer_of.values())
            assert case.expected_error == (
                f"number {case.number} belongs to another Rev.io customer"
            )


async def test_simulator_holds_usable_services(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    sample = await load_sample(engine, simulator)

    missing = {
        (case.device_kind, case.device_id)
        for case in sample.cases
        if case.case in (CASE_NO_SERVICE, CASE_OTHER_CUSTOMER)
    }
    numbers_by_queue: dict[int, list[tuple[tuple[str, int], str]]] = {}
    for kind, row in await _winning_results(engine, sample):
        number = row.RevServiceNumber or row.MSISDN
        numbers_by_queue.setdefault(row.QueueId, []).append(((kind, row.DeviceId), number))

    for instance in sample.instances:
        services = await _fetch_services(simulator, customer_id=instance.rev_customer_id)
        usable = {s["number"] for s in services if _is_usable(s)}
        for queue_id in instance.winning_queue_ids:
            for device, number in numbers_by_queue[queue_id]:
                if device in missing:
                    assert number not in usable
                else:
                    assert number in usable, f"{number} of {device} has no usable service"


async def test_highest_usable_service_is_not_highest_id(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    sample = await load_sample(engine, simulator)

    [case] = [c for c in sample.cases if c.case == CASE_OLDER_DISCONNECTED_SERVICE]
    services = await _fetch_services(simulator, number=case.number)
    assert len(services) == 2
    older, newer = sorted(services, key=lambda service: service["service_id"])
    assert not _is_usable(older)
    assert _service_date(older["disconnected_date"]) < PERIOD_START
    assert _is_usable(newer)

    later = [c for c in sample.cases if c.case == "service_activated_after_period"]
    assert later
    services = await _fetch_services(simulator, number=later[0].number)
    usable, upcoming = sorted(services, key=lambda service: service["service_id"])
    assert _is_usable(usable)
    assert not _is_usable(upcoming)


async def test_platform_service_copies_match_simulator(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    sample = await load_sample(engine, simulator)

    rows = await _fetch_all(engine, select(p.rev_service))
    assert len(rows) == len(simulator.services)
    for row in rows:
        service = simulator.services[row.ServiceId]
        assert row.Number == service["number"]
        assert row.CustomerId == service["customer_id"]
        assert row.IntegrationAuthenticationId == sample.integration_authentication_id


async def test_revio_account_uses_simulator(engine: AsyncEngine, simulator: RevioSimulator) -> None:
    sample = await load_sample(engine, simulator)

    [account] = await _fetch_all(engine, select(p.integration_authentication))
    [revio] = await _fetch_all(
        engine, select(p.integration).where(p.integration.c.Id == account.IntegrationId)
    )
    assert account.Id == sample.integration_authentication_id
    assert account.TenantId == sample.tenant_id
    assert revio.Name == "Rev.io"
    assert account.BaseUrl == simulator.base_url
    assert account.Username == simulator.username
    assert account.Password == simulator.password
    assert account.ClientCode == simulator.client_code
    assert account.SubscriptionKey == SUBSCRIPTION_KEY
    assert account.IsActive is True


async def test_carriers_include_jasper_and_unknown(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    await load_sample(engine, simulator)

    integrations = {row.Id: row.Name for row in await _fetch_all(engine, select(p.integration))}
    assert sorted(integrations.values()) == sorted(
        ["Pond", "Telegence", "Jasper", "ThingSpace", "Rev.io"]
    )
    providers = await _fetch_all(engine, select(p.service_provider))
    carriers = {integrations.get(provider.IntegrationId) for provider in providers}
    assert {"Pond", "Telegence", "Jasper", "ThingSpace", None} <= carriers
    unknown = [provider.Id for provider in providers if provider.IntegrationId not in integrations]
    charged_providers = await _fetch_all(
        engine,
        text(
            "SELECT ServiceProviderId FROM Device"
            " UNION SELECT ServiceProviderId FROM MobilityDevice"
        ),
    )
    assert set(unknown) & {provider_id for (provider_id,) in charged_providers}


async def test_settings_follow_mode(engine: AsyncEngine, simulator: RevioSimulator) -> None:
    itemized = await load_sample(engine, simulator, seed=1)
    single = await load_sample(engine, simulator, seed=2, single_usage=True)

    rows = await _fetch_all(engine, select(p.optimization_settings))
    flags = {row.TenantId: row.UsingNewProcessInCustomerCharge for row in rows}
    assert flags == {itemized.tenant_id: True, single.tenant_id: False}
    assert {row.BillingTimeZone for row in rows} == {"America/Chicago"}
    overage_errors = {
        sample.tenant_id: [
            c.expected_error for c in sample.cases if c.case == CASE_OVERAGE_PRODUCT_MISSING
        ]
        for sample in (itemized, single)
    }
    assert all(overage_errors[itemized.tenant_id])
    assert not any(overage_errors[single.tenant_id])


async def test_email_settings(engine: AsyncEngine, simulator: RevioSimulator) -> None:
    sample = await load_sample(engine, simulator)

    [row] = await _fetch_all(engine, select(p.general_provider_settings))
    assert row.CustomerChargeFromEmailAddress == sample.email_from == "charges@example.com"
    assert row.CustomerChargeToEmailAddresses == "billing@example.com; ops@example.com"
    assert sample.email_to == ["billing@example.com", "ops@example.com"]
    assert row.CustomerChargeResultsEmailSubject == sample.email_subject
    assert sample.email_subject


async def test_two_seeds_load_into_one_database(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    first = await load_sample(engine, simulator, seed=7)
    second = await load_sample(engine, simulator, seed=8)

    assert first.tenant_id != second.tenant_id
    assert first.session_id != second.session_id
    first_ids = {i.instance_id for i in first.instances}
    assert first_ids.isdisjoint(i.instance_id for i in second.instances)
    first_customers = {i.rev_customer_id for i in first.instances}
    assert first_customers.isdisjoint(i.rev_customer_id for i in second.instances)
    first_cases = {(c.device_kind, c.device_id) for c in first.cases}
    assert first_cases.isdisjoint((c.device_kind, c.device_id) for c in second.cases)

    [(instances,)] = await _fetch_all(engine, text("SELECT COUNT(*) FROM OptimizationInstance"))
    assert instances == 6
    [(integrations,)] = await _fetch_all(engine, text("SELECT COUNT(*) FROM Integration"))
    assert integrations == 5
    customers_by_number: dict[str, set[int]] = {}
    for service in simulator.services.values():
        customers_by_number.setdefault(service["number"], set()).add(service["customer_id"])
    shared_numbers = {n for n, customers in customers_by_number.items() if len(customers) > 1}
    other_customer_numbers = {
        c.number for c in first.cases + second.cases if c.case == CASE_OTHER_CUSTOMER
    }
    assert set(shared_numbers) <= other_customer_numbers


async def test_same_seed_twice_into_one_database(
    engine: AsyncEngine, simulator: RevioSimulator
) -> None:
    first = await load_sample(engine, simulator, seed=7)
    second = await load_sample(engine, simulator, seed=7)

    assert first.expected_rows == second.expected_rows
    assert second.instances[0].instance_id > first.instances[-1].instance_id
    first_numbers = {c.number for c in first.cases}
    assert first_numbers.isdisjoint(c.number for c in second.cases)


async def test_same_seed_gives_same_data(tmp_path: Path) -> None:
    dumps = []
    samples: list[Sample] = []
    for name in ("first", "second"):
        engine = await _new_database(tmp_path / f"{name}.sqlite3")
        simulator = RevioSimulator(subscription_key=SUBSCRIPTION_KEY)
        await simulator.start()
        try:
            samples.append(await load_sample(engine, simulator, seed=11))
            dumps.append(await _dump_platform_tables(engine))
        finally:
            await simulator.stop()
            await engine.dispose()

    assert samples[0] == samples[1]
    assert dumps[0] == dumps[1]
    assert dumps[0]["OptimizationDeviceResult"]


async def test_other_seed_gives_other_data(tmp_path: Path) -> None:
    samples: list[Sample] = []
    for seed in (11, 12):
        engine = await _new_database(tmp_path / f"seed-{seed}.sqlite3")
        simulator = RevioSimulator()
        await simulator.start()
        try:
            samples.append(await load_sample(engine, simulator, seed=seed))
        finally:
            await simulator.stop()
            await engine.dispose()

    assert samples[0].session_id != samples[1].session_id
    numbers: list[set[str]] = [{case.number for case in s.cases} for s in samples]
    assert numbers[0] != numbers[1]
