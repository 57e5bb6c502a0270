"""What phase 3 reports for single-instance pushes, on the embedded stack.

Non-Rev customers and dry runs send nothing to Rev.io and still report every row.
Rows that fail for good, stay unresolved or are never processed reach the charge
list, the summary email and one error-notification email per queue, exactly once.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from chargeworker.context import Context
from chargeworker.db import platform as p
from chargeworker.db.tables import progress
from chargeworker.devstack.local_aws import LocalAws
from chargeworker.devstack.sample import (
    CASE_NOTHING_TO_CHARGE,
    Sample,
    SampleInstance,
)
from chargeworker.messages import (
    CheckMessage,
    EnqueueMessage,
    Push,
    Target,
    check_message,
    parse_check,
    parse_create,
)
from chargeworker.phases.check import handle_check
from chargeworker.phases.create import handle_create
from chargeworker.phases.enqueue import handle_enqueue
from tests.conftest import _harness
from tests.harness import Harness
from tests.test_pushes import (
    NON_REV_CUSTOMER_NAME,
    QUIET,
    attributes,
    body_text,
    charge_list_items,
    make_non_rev,
    receive_all,
    repeated_subjects,
)

SEED = 11
NOTHING_SENT = "nothing was sent to Rev.io"
ERROR_SENTENCE = "error(s) occurred when uploading charges to Rev.io"
NOT_PROCESSED = "not processed"
UNRESOLVED = "unresolved: may exist in Rev.io"
NOT_CREATED = "not created after 4 attempts"
# A count of injected Rev.io failures that outlasts every retry of one run.
PERSISTENT = 10_000

RETIRED_PLAN_NAME = "Pooled 1 GB (retired)"
SCRIPT_PLAN_NAME = "<script>alert(1)</script> Pooled 1 GB"
WINDOWS_ZONE = "Central Standard Time"
CHICAGO = ZoneInfo("America/Chicago")


# --- one run and what it produced -------------------------------------------------------------


@dataclass
class Run:
    """The charge lists, rows, ledger, emails and Rev.io traffic of one run."""

    sample: Sample
    instances: list[SampleInstance]
    charge_lists: dict[int, str]  # queue id → charge-list text
    rows: list[dict[str, Any]]
    ledger: list[dict[str, Any]]
    emails: list[EmailMessage]
    revio_requests: int
    revio_charges: list[dict[str, Any]]

    @property
    def queue_ids(self) -> list[int]:
        return [queue for instance in self.instances for queue in instance.winning_queue_ids]

    def items(self, queue_id: int) -> list[dict[str, str]]:
        return charge_list_items(self.charge_lists[queue_id])

    def all_items(self) -> list[dict[str, str]]:
        return [item for queue_id in self.queue_ids for item in self.items(queue_id)]

    def summaries(self, queue_id: int) -> list[EmailMessage]:
        return [
            message
            for message in self.emails
            if any(part.get_filename() == f"{queue_id}.txt" for part in message.iter_attachments())
        ]

    def error_emails(self) -> list[EmailMessage]:
        return [message for message in self.emails if str(message["Subject"]).startswith("Errors:")]

    def failed_queue_ids(self) -> list[int]:
        return [
            queue_id
            for queue_id in self.queue_ids
            if any(item["IsSuccessful"] == "False" for item in self.items(queue_id))
        ]

    def queue_rows(self, queue_id: int) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["QueueId"] == queue_id]


async def collect(harness: Harness, ctx: Context, instances: list[SampleInstance]) -> Run:
    assert harness.sample is not None
    charge_lists = {}
    for instance in instances:
        for queue_id in instance.winning_queue_ids:
            charge_lists[queue_id] = await harness.read_object(ctx, f"{queue_id}.txt")
    return Run(
        sample=harness.sample,
        instances=instances,
        charge_lists=charge_lists,
        rows=await harness.charge_queue_rows("m2m") + await harness.charge_queue_rows("mobility"),
        ledger=await harness.ledger(),
        emails=harness.emails(),
        revio_requests=harness.simulator.request_count,
        revio_charges=list(harness.simulator.charges),
    )


async def push_alone(harness: Harness, instances: list[SampleInstance], **overrides: Any) -> Run:
    """Push each instance on its own and run the daemon until idle."""
    async with harness.context(**{**QUIET, **overrides}) as ctx:
        await harness.enqueue(ctx, *(instance.instance_id for instance in instances))
        await harness.run_until_idle(ctx)
        return await collect(harness, ctx, instances)


def single_push(instance: SampleInstance) -> Push:
    return Push(instance_ids=(instance.instance_id,))


def error_lines(run: Run) -> list[str]:
    """Return the table lines of every error notification's plain-text part."""
    return [line for message in run.error_emails() for line in body_text(message).splitlines()]


def money(amount: Decimal) -> str:
    return str(Decimal(amount).quantize(Decimal("0.01")))


def expected_error_lines(run: Run) -> list[str]:
    """Build the line the notification should show for each failed line or failed row."""
    expected = []
    for row in run.rows:
        if not row["HasErrors"] and row["IsProcessed"]:
            continue
        failed = [
            line
            for line in run.ledger
            if line["row_id"] == row["Id"]
            and line["target_id"] == row["QueueId"]
            and line["state"] in ("failed", "unresolved")
        ]
        account, iccid = row["RevAccountNumber"], row["ICCID"]
        for line in failed:
            cells = (account, iccid, line["description"], money(line["amount"]), line["error"])
            expected.append(" | ".join(cells))
        if not failed:
            reason = row["ErrorMessage"] if row["IsProcessed"] else NOT_PROCESSED
            cells = (account, iccid, row["RatePlanName"], money(row["DeviceCharge"]), reason)
            expected.append(" | ".join(cells))
    return expected


# --- non-Rev customers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def non_rev(
    tmp_path_factory: pytest.TempPathFactory, local_aws: LocalAws
) -> AsyncIterator[Run]:
    directory = tmp_path_factory.mktemp("non-rev")
    async for harness in _harness("sqlite", directory, local_aws, None):
        sample = await harness.load_sample(devices=1, seed=SEED)
        instance = sample.instances[0]
        await make_non_rev(harness, sample, instance)
        yield await push_alone(harness, [instance])


async def test_non_rev_sends_nothing(non_rev: Run) -> None:
    assert non_rev.revio_requests == 0
    assert non_rev.revio_charges == []


async def test_non_rev_rows_processed(non_rev: Run) -> None:
    rows = [row for queue_id in non_rev.queue_ids for row in non_rev.queue_rows(queue_id)]
    assert rows != []
    for row in rows:
        assert row["IsProcessed"] is True, row["Id"]
        assert row["HasErrors"] is False, row["Id"]
        assert row["ChargeId"] <= 0, row["Id"]
        assert row["SmsChargeId"] <= 0, row["Id"]


async def test_non_rev_rows_successful(non_rev: Run) -> None:
    items = non_rev.all_items()
    assert items != []
    assert {item["IsSuccessful"] for item in items} == {"True"}
    assert {item["ChargeId"] for item in items} == {""}


async def test_non_rev_summary_names_customer(non_rev: Run) -> None:
    for queue_id in non_rev.queue_ids:
        summaries = non_rev.summaries(queue_id)
        assert len(summaries) == 1, queue_id
        assert NON_REV_CUSTOMER_NAME in body_text(summaries[0]), queue_id


# --- dry runs --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def dry_run(
    tmp_path_factory: pytest.TempPathFactory, local_aws: LocalAws
) -> AsyncIterator[Run]:
    directory = tmp_path_factory.mktemp("dry-run")
    async for harness in _harness("sqlite", directory, local_aws, None):
        sample = await harness.load_sample(devices=1, seed=SEED)
        yield await push_alone(harness, [sample.instances[2]], send_to_rev=False)


async def test_dry_run_sends_no_request(dry_run: Run) -> None:
    assert dry_run.revio_requests == 0


async def test_dry_run_rows_have_no_charge_ids(dry_run: Run) -> None:
    assert {row["QueueId"] for row in dry_run.rows} == set(dry_run.queue_ids)
    for row in dry_run.rows:
        assert row["IsProcessed"] is True, row["Id"]
        assert row["ChargeId"] <= 0, row["Id"]
        assert row["SmsChargeId"] <= 0, row["Id"]


async def test_dry_run_file_has_no_charge_ids(dry_run: Run) -> None:
    items = dry_run.all_items()
    assert {item["ChargeId"] for item in items} == {""}
    assert {item["SMSChargeId"] for item in items} == {""}


async def test_dry_run_summary_says_nothing_sent(dry_run: Run) -> None:
    for queue_id in dry_run.queue_ids:
        summaries = dry_run.summaries(queue_id)
        assert len(summaries) == 1, queue_id
        assert NOTHING_SENT in body_text(summaries[0]), queue_id


# --- error notifications -----------------------------------------------------------------------


async def rename_retired_plan(harness: Harness, name: str) -> None:
    plan = p.rate_plan
    async with harness.engine.begin() as connection:
        await connection.execute(
            update(plan).where(plan.c.RatePlanName == RETIRED_PLAN_NAME).values(RatePlanName=name)
        )


async def use_windows_zone(harness: Harness, sample: Sample) -> None:
    settings = p.optimization_settings
    async with harness.engine.begin() as connection:
        await connection.execute(
            update(settings)
            .where(settings.c.TenantId == sample.tenant_id)
            .values(BillingTimeZone=WINDOWS_ZONE)
        )


@pytest.fixture(scope="module")
async def reported(
    tmp_path_factory: pytest.TempPathFactory, local_aws: LocalAws
) -> AsyncIterator[Run]:
    """The M2M and Mobility instances pushed alone, with every check message sent twice.

    A rate plan's name contains HTML, and the tenant stores its zone under a Windows name.
    """
    directory = tmp_path_factory.mktemp("reported")
    async for harness in _harness("sqlite", directory, local_aws, None):
        sample = await harness.load_sample(devices=1, seed=SEED)
        instances = sample.instances[:2]
        await rename_retired_plan(harness, SCRIPT_PLAN_NAME)
        await use_windows_zone(harness, sample)
        async with harness.context(**QUIET) as ctx:
            for instance in instances:
                await handle_enqueue(
                    ctx, EnqueueMessage(instance.instance_id, single_push(instance))
                )
            for instance in instances:
                for queue_id in instance.winning_queue_ids:
                    check = CheckMessage(
                        Target("queue", queue_id), single_push(instance), instance.portal_type_id
                    )
                    for _ in range(2):
                        await harness.send(ctx, check_message(check))
            await harness.run_until_idle(ctx)
            run = await collect(harness, ctx, instances)
        yield run


async def test_error_email_per_failed_queue(reported: Run) -> None:
    failed = reported.failed_queue_ids()
    clean = [queue_id for queue_id in reported.queue_ids if queue_id not in failed]
    assert failed != []
    assert clean != []
    assert len(reported.error_emails()) == len(failed)


async def test_error_email_recipients(reported: Run) -> None:
    summary = reported.summaries(reported.queue_ids[0])[0]
    for message in reported.error_emails():
        assert message["To"] == summary["To"]
        assert message["From"] == summary["From"]


async def test_error_email_lists_failures(reported: Run) -> None:
    notification_lines = error_lines(reported)
    expected = expected_error_lines(reported)
    assert expected != []
    for line in expected:
        assert line in notification_lines


async def test_error_email_once_per_failure(reported: Run) -> None:
    notification_lines = error_lines(reported)
    for line in expected_error_lines(reported):
        assert notification_lines.count(line) == 1, line
    assert repeated_subjects(reported.emails) == []


async def test_error_email_escapes_html(reported: Run) -> None:
    naming = [
        body_text(message, "html")
        for message in reported.error_emails()
        if "alert(1)" in body_text(message, "html")
    ]
    assert naming != []
    for html_part in naming:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_part
        assert "<script>" not in html_part


async def test_summary_once_despite_copies(reported: Run) -> None:
    for queue_id in reported.queue_ids:
        assert len(reported.summaries(queue_id)) == 1, queue_id


async def test_nothing_to_charge_successful(reported: Run) -> None:
    cases = [
        case
        for case in reported.sample.cases
        if case.case == CASE_NOTHING_TO_CHARGE and case.queue_id in reported.queue_ids
    ]
    assert cases != []
    for case in cases:
        device_column = "AmopDeviceId" if case.device_kind == "m2m" else "MobilityDeviceId"
        (row,) = [
            row
            for row in reported.queue_rows(case.queue_id)
            if row.get(device_column) == case.device_id
        ]
        (item,) = [
            item for item in reported.items(case.queue_id) if item["MSISDN"] == row["MSISDN"]
        ]
        assert item["IsSuccessful"] == "True", case
        assert item["ErrorMessage"] == "", case


# --- retries used up ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[UNRESOLVED, NOT_CREATED])
async def exhausted(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, local_aws: LocalAws
) -> AsyncIterator[tuple[str, Run]]:
    """One instance pushed while Rev.io fails every POST (500) or every GET (503)."""
    reason = request.param
    directory = tmp_path_factory.mktemp("exhausted")
    async for harness in _harness("sqlite", directory, local_aws, None):
        sample = await harness.load_sample(devices=1, seed=SEED)
        overrides: dict[str, Any] = {}
        if reason == UNRESOLVED:
            harness.simulator.fail_next_posts(PERSISTENT, 500)
        else:
            harness.simulator.fail_next_gets(PERSISTENT, 503)
            overrides["revio_retry_attempts"] = 0
        yield reason, await push_alone(harness, [sample.instances[0]], **overrides)


async def test_exhausted_lines_in_charge_list(exhausted: tuple[str, Run]) -> None:
    reason, run = exhausted
    marked = [item for item in run.all_items() if reason in item["ErrorMessage"]]
    assert marked != []
    assert {item["IsSuccessful"] for item in marked} == {"False"}


async def test_exhausted_lines_in_error_email(exhausted: tuple[str, Run]) -> None:
    reason, run = exhausted
    notification_lines = error_lines(run)
    expected = [line for line in expected_error_lines(run) if line.endswith(reason)]
    assert expected != []
    for line in expected:
        assert notification_lines.count(line) == 1, line


async def test_exhausted_summary_counts_errors(exhausted: tuple[str, Run]) -> None:
    _, run = exhausted
    for queue_id in run.queue_ids:
        failed = sum(item["IsSuccessful"] == "False" for item in run.items(queue_id))
        summaries = run.summaries(queue_id)
        assert len(summaries) == 1, queue_id
        assert f"{failed} {ERROR_SENTENCE}" in body_text(summaries[0]), queue_id


# --- lost pages: re-driven, or reported as not processed -----------------------------------------


LOST_PAGE = "2"
REDRIVE: dict[str, Any] = {**QUIET, "page_size": 1, "check_stall_s": 0}


async def lose_a_page(ctx: Context, instance: SampleInstance) -> tuple[int, dict[str, Any]]:
    """Run phase 1 and every page by hand except page 2 of the first queue, which is lost."""
    await handle_enqueue(ctx, EnqueueMessage(instance.instance_id, single_push(instance)))
    for message in await receive_all(ctx, "create"):
        await handle_create(ctx, parse_create(message["MessageAttributes"]))
    lost_queue_id = instance.winning_queue_ids[0]
    lost = {}
    for message in await receive_all(ctx, "create"):
        values = attributes(message)
        if values["QueueId"] == str(lost_queue_id) and values["PageNumber"] == LOST_PAGE:
            lost = values
            continue
        await handle_create(ctx, parse_create(message["MessageAttributes"]))
    return lost_queue_id, lost


async def redriven_at(harness: Harness, queue_id: int) -> Any:
    async with harness.engine.connect() as connection:
        return await connection.scalar(
            select(progress.c.redriven_at).where(
                progress.c.target_kind == "queue", progress.c.target_id == queue_id
            )
        )


@dataclass
class LostPageRun:
    run: Run
    lost_queue_id: int
    lost_page: dict[str, Any]
    redriven: bool


@pytest.fixture(scope="module")
async def redriven(
    tmp_path_factory: pytest.TempPathFactory, local_aws: LocalAws
) -> AsyncIterator[LostPageRun]:
    """A page message lost after the fan-out: the check sends it again."""
    directory = tmp_path_factory.mktemp("redriven")
    async for harness in _harness("sqlite", directory, local_aws, None):
        sample = await harness.load_sample(devices=1, seed=SEED)
        instance = sample.instances[0]
        async with harness.context(**REDRIVE) as ctx:
            lost_queue_id, lost_page = await lose_a_page(ctx, instance)
            await harness.run_until_idle(ctx)
            run = await collect(harness, ctx, [instance])
        is_redriven = await redriven_at(harness, lost_queue_id) is not None
        yield LostPageRun(run, lost_queue_id, lost_page, is_redriven)


async def test_lost_page_redriven(redriven: LostPageRun) -> None:
    assert redriven.lost_page != {}
    assert redriven.redriven


async def test_redriven_queue_completes(redriven: LostPageRun) -> None:
    rows = redriven.run.queue_rows(redriven.lost_queue_id)
    assert rows != []
    for row in rows:
        assert row["IsProcessed"] is True, row["Id"]
    assert [
        item
        for item in redriven.run.items(redriven.lost_queue_id)
        if NOT_PROCESSED in item["ErrorMessage"]
    ] == []


async def test_redriven_queue_reported_once(redriven: LostPageRun) -> None:
    assert len(redriven.run.summaries(redriven.lost_queue_id)) == 1


@pytest.fixture(scope="module")
async def abandoned(
    tmp_path_factory: pytest.TempPathFactory, local_aws: LocalAws
) -> AsyncIterator[LostPageRun]:
    """A page lost twice, the second time after the check re-sent it: the check gives up."""
    directory = tmp_path_factory.mktemp("abandoned")
    async for harness in _harness("sqlite", directory, local_aws, None):
        sample = await harness.load_sample(devices=1, seed=SEED)
        instance = sample.instances[0]
        async with harness.context(**REDRIVE, max_checks=1) as ctx:
            lost_queue_id, lost_page = await lose_a_page(ctx, instance)
            for message in await receive_all(ctx, "check"):
                await handle_check(ctx, parse_check(message["MessageAttributes"]))
            resent = [
                attributes(message)
                for message in await receive_all(ctx, "create")
                if attributes(message)["QueueId"] == str(lost_queue_id)
            ]
            await harness.run_until_idle(ctx)
            run = await collect(harness, ctx, [instance])
        yield LostPageRun(run, lost_queue_id, lost_page, resent != [])


def unprocessed_rows(lost: LostPageRun) -> list[dict[str, Any]]:
    return [row for row in lost.run.queue_rows(lost.lost_queue_id) if not row["IsProcessed"]]


async def test_abandoned_page_was_redriven(abandoned: LostPageRun) -> None:
    assert abandoned.lost_page != {}
    assert abandoned.redriven


async def test_abandoned_rows_not_processed(abandoned: LostPageRun) -> None:
    items = {item["MSISDN"]: item for item in abandoned.run.items(abandoned.lost_queue_id)}
    rows = unprocessed_rows(abandoned)
    assert rows != []
    for row in rows:
        assert items[row["MSISDN"]]["IsSuccessful"] == "False", row["Id"]
        assert items[row["MSISDN"]]["ErrorMessage"] == NOT_PROCESSED, row["Id"]


async def test_abandoned_rows_in_error_email(abandoned: LostPageRun) -> None:
    notification_lines = error_lines(abandoned.run)
    for row in unprocessed_rows(abandoned):
        naming = [line for line in notification_lines if row["ICCID"] in line]
        assert naming != [], row["Id"]
        assert all(line.endswith(f" | {NOT_PROCESSED}") for line in naming), naming


async def test_abandoned_queue_reported_once(abandoned: LostPageRun) -> None:
    assert len(abandoned.run.summaries(abandoned.lost_queue_id)) == 1


# --- time zones ----------------------------------------------------------------------------------


async def test_windows_zone_date_charged(reported: Run) -> None:
    """DateCharged is shown in America/Chicago when the tenant stored "Central Standard Time"."""
    for queue_id in reported.queue_ids:
        rows = reported.queue_rows(queue_id)
        items = reported.items(queue_id)
        assert len(items) == len(rows), queue_id
        for row, item in zip(rows, items, strict=True):
            moment = row["ModifiedDate"].replace(tzinfo=UTC).astimezone(CHICAGO)
            assert item["DateCharged"] == moment.strftime("%Y-%m-%d %H:%M:%S"), row["Id"]
