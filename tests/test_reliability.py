"""Reliability promises under faults, on the embedded stack.

Each test runs the real daemon, or one phase handler where a test must stop between
steps, against moto, a real database and the Rev.io simulator. It injects a fault
and checks what a user would see: simulator charges, ledger states, charge-queue
rows, charge lists and emails. The promises: no charge is created twice, no charge
is lost silently, no message is lost silently.
"""

import asyncio
import functools
from collections import Counter
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from chargeworker.context import Context
from chargeworker.daemon import Daemon
from chargeworker.db.platform import integration_authentication
from chargeworker.db.tables import charge_line
from chargeworker.db.tables import page as page_table
from chargeworker.devstack.sample import (
    CASE_HALF_CENT_AMOUNTS,
    CASE_NO_SERVICE,
    CASE_OTHER_CUSTOMER,
    PERIOD_START,
    Sample,
    SampleCase,
    SampleInstance,
)
from chargeworker.messages import (
    CheckMessage,
    CreateMessage,
    EnqueueMessage,
    Push,
    QueueName,
    Target,
    check_message,
    create_message,
)
from chargeworker.phases.create import handle_create
from chargeworker.phases.enqueue import handle_enqueue
from tests.harness import Harness, running_daemon, unique_name
from tests.harness import wait_until as wait_until_every

# The harness polls SQS without waiting, so the three consumers spin on moto, which
# serves from this process, and slow every run. A one-second long poll still returns
# as soon as a message arrives, and a one-second re-check keeps waiting check
# messages from spinning.
QUIET_POLLING: dict[str, Any] = {"receive_wait_s": 1, "check_retry_delay_s": 1}
# A daemon stopped in the middle of a test must leave no long poll behind, because
# moto hands the next message to that poll, whose response is never read, and hides
# the message for the queue's visibility timeout (300 s).
NO_LONG_POLL: dict[str, Any] = {"receive_wait_s": 0}

# Errors that the sample push contains on purpose (chargeworker.devstack.sample).
SAMPLE_FAULTS = (
    "no active Rev.io service for number",
    "belongs to another Rev.io customer",
    "is not set up",
)
# Sample cases whose number has no usable service of the instance's customer.
UNSERVED_CASES = (CASE_NO_SERVICE, CASE_OTHER_CUSTOMER)
NOT_CREATED = "not created after 4 attempts"
UNRESOLVED = "unresolved: may exist in Rev.io"
# A count of injected Rev.io failures that outlasts every retry of one test.
PERSISTENT = 10_000
# Page copies that run at the same time meet each other's live leases, and a copy
# that meets one is sent again after the lease's remaining time (120 s by default).
SHORT_LEASE: dict[str, Any] = {"lease_s": 2}


# Some cases catch a short-lived moment, so they poll every 20 ms.
wait_until = functools.partial(wait_until_every, poll_s=0.02)


def settings(**overrides: Any) -> dict[str, Any]:
    """Return setting overrides with quiet polling."""
    return {**QUIET_POLLING, **overrides}


# --- running phases and the daemon ---------------------------------------------------


async def fill_queues(ctx: Context, instance: SampleInstance) -> None:
    """Run phase 1 for one instance: charge-queue rows, and page 1 of each queue in SQS."""
    push = Push(instance_ids=(instance.instance_id,))
    await handle_enqueue(ctx, EnqueueMessage(instance.instance_id, push))


def page_message(instance: SampleInstance, queue_id: int, page_number: int = 1) -> CreateMessage:
    return CreateMessage(
        target=Target("queue", queue_id),
        push=Push(instance_ids=(instance.instance_id,)),
        portal_type_id=instance.portal_type_id,
        page_number=page_number,
    )


def queue_check(instance: SampleInstance, queue_id: int) -> CheckMessage:
    return CheckMessage(
        Target("queue", queue_id),
        Push(instance_ids=(instance.instance_id,)),
        instance.portal_type_id,
    )


async def run_page(
    ctx: Context, instance: SampleInstance, queue_id: int, page_number: int = 1
) -> None:
    """Run phase 2 for one page once, outside the daemon."""
    await handle_create(ctx, page_message(instance, queue_id, page_number))


async def wait_until_idle(
    harness: Harness, ctx: Context, daemon: Daemon, *, timeout_s: float = 30
) -> None:
    """Wait until no queue contains a message and no handler runs, three polls in a row."""
    urls = [url for url in ctx.aws.queue_urls.values() if url]
    quiet_polls = 0
    for _ in range(int(timeout_s / 0.05)):
        depth = 0
        for url in urls:
            depth += await harness.queue_depth(ctx, url)
        quiet_polls = quiet_polls + 1 if depth == 0 and not daemon.is_busy else 0
        if quiet_polls >= 3:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the daemon was still busy after {timeout_s} s")


def outcome_count(daemon: Daemon, queue: QueueName, outcome: str) -> int:
    """Count the messages of one queue that the daemon finished with `outcome`."""
    consumer = next(consumer for consumer in daemon.consumers if consumer.name == queue)
    return consumer.counts.get(outcome, 0)


async def receive_all(ctx: Context, queue: QueueName) -> list[dict[str, Any]]:
    """Receive every visible message of a queue, which hides them for its visibility timeout."""
    received: list[dict[str, Any]] = []
    for _ in range(100):
        answer = await ctx.aws.sqs.receive_message(
            QueueUrl=ctx.aws.queue_url(queue),
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        messages = answer.get("Messages", [])
        if not messages:
            break
        received.extend(messages)
    return received


def attributes(message: dict[str, Any]) -> dict[str, str]:
    return {
        name: value["StringValue"]
        for name, value in message.get("MessageAttributes", {}).items()
        if "StringValue" in value
    }


async def queue_depth(harness: Harness, ctx: Context, queue: QueueName) -> int:
    return await harness.queue_depth(ctx, ctx.aws.queue_url(queue))


# --- reading outcomes -------------------------------------------------------------------


async def all_rows(harness: Harness) -> list[dict[str, Any]]:
    return await harness.charge_queue_rows("m2m") + await harness.charge_queue_rows("mobility")


async def queue_rows(harness: Harness, queue_id: int) -> list[dict[str, Any]]:
    return [row for row in await all_rows(harness) if row["QueueId"] == queue_id]


def find_case(sample: Sample, case_name: str, instance_id: int) -> SampleCase:
    return next(
        case for case in sample.cases if case.case == case_name and case.instance_id == instance_id
    )


async def case_row(harness: Harness, case: SampleCase) -> dict[str, Any]:
    """Return the charge-queue row of a sample case."""
    device_column = "AmopDeviceId" if case.device_kind == "m2m" else "MobilityDeviceId"
    rows = await harness.charge_queue_rows(case.device_kind)
    return next(
        row
        for row in rows
        if row["QueueId"] == case.queue_id and row[device_column] == case.device_id
    )


def own_service_id(harness: Harness, customer_id: int, number: str) -> int:
    """Return the only Rev.io service of the number under the customer."""
    services = [
        service_id
        for service_id, service in harness.simulator.services.items()
        if service["number"] == number and service["customer_id"] == customer_id
    ]
    assert len(services) == 1, f"number {number} has services {services}"
    return services[0]


def charges_of_service(harness: Harness, service_id: int) -> list[dict[str, Any]]:
    return [charge for charge in harness.simulator.charges if charge["service_id"] == service_id]


def row_lines(ledger: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Map line kind to the ledger line of one M2M row."""
    return {
        line["kind"]: line
        for line in ledger
        if line["row_table"] == "m2m" and line["row_id"] == row["Id"]
    }


def unsettled_lines(ledger: list[dict[str, Any]]) -> list[str]:
    """Describe ledger lines that end neither created nor failed by a fault of the sample."""
    return [
        f"line {line['id']} ({line['kind']} of {line['row_table']} row {line['row_id']}): "
        f"{line['state']} {line['error'] or ''}".strip()
        for line in ledger
        if line["state"] != "created"
        and not any(fault in (line["error"] or "") for fault in SAMPLE_FAULTS)
    ]


def duplicate_charges(harness: Harness) -> list[tuple[Any, ...]]:
    """List the charges that the simulator stores more than once."""
    keys = Counter(
        (
            charge["customer_id"],
            charge["service_id"],
            charge["description"],
            charge["amount"],
            charge["start_date"],
            charge["end_date"],
        )
        for charge in harness.simulator.charges
    )
    return [key for key, count in keys.items() if count > 1]


def post_count(harness: Harness) -> int:
    return harness.simulator.requests_by_endpoint["charges_create"]


def created_lines(ledger: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in ledger if line["state"] == "created"]


def charge_list_rows(text: str) -> list[dict[str, str]]:
    """Parse a charge list: the header, one line per row, then the footer with the total."""
    lines = text.split("\n")
    header = lines[0].split("\t")
    body = [line for line in lines[1:] if line][:-1]
    return [dict(zip(header, line.split("\t"), strict=True)) for line in body]


def summary_emails(harness: Harness, queue_id: int) -> list[EmailMessage]:
    """Return the summary emails whose attached charge list is the queue's."""
    key = f"{queue_id}.txt"
    return [
        message
        for message in harness.emails()
        if any(part.get_filename() == key for part in message.iter_attachments())
    ]


def repeated_emails(harness: Harness) -> list[str]:
    """List the subjects of emails sent more than once, byte for byte."""
    copies = Counter(message.as_bytes() for message in harness.emails())
    return [
        str(message["Subject"]) for message in harness.emails() if copies[message.as_bytes()] > 1
    ]


def email_text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    return body.get_content() if body is not None else ""


async def page_records(harness: Harness) -> list[dict[str, Any]]:
    async with harness.engine.connect() as connection:
        result = await connection.execute(select(page_table))
        return [dict(row) for row in result.mappings()]


def register_missing_services(harness: Harness, sample: Sample, instance: SampleInstance) -> None:
    """Give every number of the instance a usable service, so no number is looked up alone."""
    for case in sample.cases:
        if case.instance_id == instance.instance_id and case.case in UNSERVED_CASES:
            harness.simulator.add_service(
                customer_id=instance.rev_customer_id,
                number=case.number,
                activated_date=PERIOD_START.date(),
            )


# --- replays and duplicates ------------------------------------------------------------


async def test_replayed_enqueue_adds_nothing(harness: Harness) -> None:
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    async with harness.context(**settings()) as ctx, running_daemon(ctx) as daemon:
        await harness.enqueue(ctx, instance.instance_id)
        await wait_until_idle(harness, ctx, daemon)
        rows_before = await all_rows(harness)
        ledger_before = await harness.ledger()
        charge_ids_before = [charge["charge_id"] for charge in harness.simulator.charges]
        emails_before = len(harness.emails())

        await harness.enqueue(ctx, instance.instance_id)
        await wait_until_idle(harness, ctx, daemon)

    assert await all_rows(harness) == rows_before
    assert await harness.ledger() == ledger_before
    assert [charge["charge_id"] for charge in harness.simulator.charges] == charge_ids_before
    assert len(harness.emails()) == emails_before


async def test_concurrent_enqueue_copies_add_rows_once(harness: Harness) -> None:
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    async with harness.context(**settings(**SHORT_LEASE)) as ctx:
        for _ in range(3):
            await harness.enqueue(ctx, instance.instance_id)
        await harness.run_until_idle(ctx)

    rows = await all_rows(harness)
    devices = {(row["QueueId"], row["AmopDeviceId"]) for row in rows}
    ledger = await harness.ledger()
    assert len(rows) == len(devices)
    assert {row["QueueId"] for row in rows} == set(instance.winning_queue_ids)
    assert duplicate_charges(harness) == []
    assert harness.ledger_problems(ledger) == []
    for queue_id in instance.winning_queue_ids:
        assert len(summary_emails(harness, queue_id)) == 1, queue_id


async def test_replayed_page_adds_no_charge(sqlite_harness: Harness) -> None:
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    async with harness.context(**settings()) as ctx, running_daemon(ctx) as daemon:
        await harness.enqueue(ctx, instance.instance_id)
        await wait_until_idle(harness, ctx, daemon)
        ledger_before = await harness.ledger()
        charge_count = len(harness.simulator.charges)
        posts_before = post_count(harness)

        for queue_id in instance.winning_queue_ids:
            await harness.send(ctx, create_message(page_message(instance, queue_id)))
        await wait_until_idle(harness, ctx, daemon)

    assert await harness.ledger() == ledger_before
    assert len(harness.simulator.charges) == charge_count
    assert post_count(harness) == posts_before


async def test_concurrent_duplicate_pages_add_no_charge(harness: Harness) -> None:
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    async with harness.context(**settings(**SHORT_LEASE)) as ctx:
        await fill_queues(ctx, instance)
        for _ in range(3):
            for queue_id in instance.winning_queue_ids:
                await harness.send(ctx, create_message(page_message(instance, queue_id)))
        await harness.run_until_idle(ctx)

    ledger = await harness.ledger()
    assert duplicate_charges(harness) == []
    assert harness.ledger_problems(ledger) == []
    assert post_count(harness) == len(created_lines(ledger))
    assert unsettled_lines(ledger) == []


# --- Rev.io's rate limit -----------------------------------------------------------------


async def test_rate_limit_storm_creates_every_line(sqlite_harness: Harness) -> None:
    """A slow Rev.io rate limit ends with every line created, even with no page retries allowed."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    register_missing_services(harness, sample, instance)
    harness.simulator.rate_limit_per_minute = 10
    harness.simulator.rate_window_s = 1.0
    async with harness.context(**settings(max_page_retries=0)) as ctx:
        await harness.enqueue(ctx, instance.instance_id)
        await harness.run_until_idle(ctx, timeout_s=40)

    ledger = await harness.ledger()
    assert harness.simulator.throttled_count > 0
    assert unsettled_lines(ledger) == []
    assert duplicate_charges(harness) == []
    assert harness.ledger_problems(ledger) == []


async def test_throttled_pages_keep_retry_count(sqlite_harness: Harness) -> None:
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    register_missing_services(harness, sample, instance)
    harness.simulator.throttle_next(12)
    async with harness.context(**settings(max_page_retries=0)) as ctx:
        await harness.enqueue(ctx, instance.instance_id)
        await harness.run_until_idle(ctx)

    ledger = await harness.ledger()
    pages = await page_records(harness)
    assert harness.simulator.throttled_count == 12
    assert pages != []
    assert [page["retry_count"] for page in pages] == [0] * len(pages)
    assert unsettled_lines(ledger) == []
    assert harness.ledger_problems(ledger) == []


async def test_throttled_number_lookup_is_deferred(sqlite_harness: Harness) -> None:
    """A 429 on the look-up of a number outside the customer defers its line without a retry."""
    harness = sqlite_harness
    simulator = harness.simulator
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    case = find_case(sample, CASE_OTHER_CUSTOMER, instance.instance_id)
    one_attempt = settings(max_page_retries=0, revio_concurrency_per_page=1)

    async with harness.context(**one_attempt) as ctx:
        await fill_queues(ctx, instance)
        simulator.latency_s = 0.3
        page = asyncio.create_task(run_page(ctx, instance, case.queue_id))
        # The customer's services come first, so the second GET /Services looks up the
        # number. The simulator decides on throttling after its latency, so the 429s
        # meet that GET and the client's own two retries of it.
        lookup_arrived = await wait_until(
            lambda: simulator.requests_by_endpoint["services"] >= 2, timeout_s=5
        )
        simulator.throttle_next(3)
        simulator.latency_s = 0.0
        await page

    lines = row_lines(await harness.ledger(), await case_row(harness, case))
    pages = await page_records(harness)
    assert lookup_arrived
    assert simulator.throttled_count == 3
    assert lines != {}
    assert [line["error"] for line in lines.values() if "attempts" in (line["error"] or "")] == []
    assert [page["retry_count"] for page in pages] == [0]


# --- responses lost, rejected or never sent --------------------------------------------------


async def test_lost_responses_settled_by_listing(sqlite_harness: Harness) -> None:
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    harness.simulator.lose_next_answers(3)
    async with harness.context(**settings()) as ctx:
        await harness.enqueue(ctx, instance.instance_id)
        await harness.run_until_idle(ctx)

    ledger = await harness.ledger()
    lost_ids = [charge["charge_id"] for charge in harness.simulator.charges[:3]]
    holders = {line["charge_id"]: line for line in ledger if line["charge_id"] in lost_ids}
    assert sorted(holders) == sorted(lost_ids)
    assert all(line["state"] == "created" for line in holders.values())
    assert harness.simulator.requests_by_endpoint["charges_list"] >= 1
    assert post_count(harness) == len(harness.simulator.charges)
    assert harness.ledger_problems(ledger) == []
    assert unsettled_lines(ledger) == []


async def test_failed_post_created_once_later(sqlite_harness: Harness) -> None:
    """A POST rejected with 500 stored nothing, so its line is settled by listing and sent again."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    harness.simulator.fail_next_posts(2, 500)
    async with harness.context(**settings()) as ctx:
        await harness.enqueue(ctx, instance.instance_id)
        await harness.run_until_idle(ctx)

    ledger = await harness.ledger()
    sent_twice = [line for line in ledger if line["send_count"] == 2]
    assert len(sent_twice) == 2
    assert all(line["state"] == "created" for line in sent_twice)
    assert harness.simulator.requests_by_endpoint["charges_list"] >= 1
    assert post_count(harness) == len(harness.simulator.charges) + 2
    assert duplicate_charges(harness) == []
    assert harness.ledger_problems(ledger) == []
    assert unsettled_lines(ledger) == []


async def test_crash_while_sending_settles_without_post(sqlite_harness: Harness) -> None:
    """A line left `sending` by a crashed worker, whose charge Rev.io stored, is not sent again."""
    harness = sqlite_harness
    simulator = harness.simulator
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    async with harness.context(**settings(revio_retry_attempts=0, **SHORT_LEASE)) as ctx:
        # One failed service look-up per page records the page's lines as pending.
        await fill_queues(ctx, instance)
        simulator.fail_next_gets(len(instance.winning_queue_ids), 503)
        for queue_id in instance.winning_queue_ids:
            await run_page(ctx, instance, queue_id)

        line, service_id = await _sendable_line(harness, instance)
        now = ctx.clock.now()
        async with harness.engine.begin() as connection:
            await connection.execute(
                update(charge_line)
                .where(charge_line.c.id == line["id"])
                .values(
                    state="sending",
                    owner="crashed-worker",
                    lease_expires_at=now - timedelta(minutes=1),
                    first_sent_at=now - timedelta(minutes=2),
                    send_count=1,
                    service_id=service_id,
                    rev_customer_id=instance.rev_customer_id,
                )
            )
        charge_id = simulator.add_charge(
            customer_id=instance.rev_customer_id,
            service_id=service_id,
            description=line["description"],
            amount=line["amount"],
            start_date=line["start_date"],
            end_date=line["end_date"],
            product_id=line["product_id"],
            product_type_id=line["product_type_id"],
        )
        await harness.run_until_idle(ctx)

    ledger = await harness.ledger()
    settled = next(row for row in ledger if row["id"] == line["id"])
    assert settled["state"] == "created"
    assert settled["charge_id"] == charge_id
    assert settled["send_count"] == 1
    assert post_count(harness) == len(simulator.charges) - 1
    assert duplicate_charges(harness) == []
    assert harness.ledger_problems(ledger) == []


async def test_throttle_wait_past_lease_sends_once(sqlite_harness: Harness) -> None:
    """A POST that waits out a 429 longer than its line's lease is not sent by a second worker."""
    harness = sqlite_harness
    simulator = harness.simulator
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    queue_id = instance.winning_queue_ids[0]
    # The lease is shorter than the Retry-After wait, as the default lease of 120 s is
    # shorter than the client's default two waits of up to 60 s each plus a 30 s request.
    short_lease = settings(lease_s=0.01, revio_max_retry_after_s=1.0, revio_concurrency_per_page=1)

    async with harness.context(**short_lease) as ctx:
        await fill_queues(ctx, instance)
        simulator.latency_s = 0.3
        first = asyncio.create_task(run_page(ctx, instance, queue_id))
        # The simulator decides on throttling after its latency, so this 429 meets the POST.
        post_arrived = await wait_until(lambda: post_count(harness) >= 1, timeout_s=5)
        simulator.throttle_next(1)
        simulator.latency_s = 0.0
        throttled = await wait_until(lambda: simulator.throttled_count >= 1, timeout_s=5)
        await run_page(ctx, instance, queue_id)
        await first

    ledger = await harness.ledger()
    assert post_arrived
    assert throttled
    assert duplicate_charges(harness) == []
    assert harness.ledger_problems(ledger) == []


async def _sendable_line(harness: Harness, instance: SampleInstance) -> tuple[dict[str, Any], int]:
    """Pick a pending ledger line whose number has exactly one Rev.io service of the customer."""
    rows = {row["Id"]: row for row in await harness.charge_queue_rows("m2m")}
    for line in await harness.ledger():
        row = rows[line["row_id"]]
        number = row["RevServiceNumber"] or row["MSISDN"]
        services = [
            service_id
            for service_id, service in harness.simulator.services.items()
            if service["number"] == number and service["customer_id"] == instance.rev_customer_id
        ]
        if line["state"] == "pending" and len(services) == 1:
            return line, services[0]
    raise AssertionError("the sample has no pending line with exactly one service")


# --- retries used up -------------------------------------------------------------------


async def test_exhausted_retries_fail_lines(sqlite_harness: Harness) -> None:
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    harness.simulator.fail_next_gets(PERSISTENT, 503)
    async with harness.context(**settings(revio_retry_attempts=0)) as ctx:
        await harness.enqueue(ctx, instance.instance_id)
        await harness.run_until_idle(ctx)

    ledger = await harness.ledger()
    errors = Counter(
        line["error"] for line in ledger if "is not set up" not in (line["error"] or "")
    )
    assert list(errors) == [NOT_CREATED]
    assert all(line["state"] == "failed" for line in ledger)
    assert post_count(harness) == 0


async def test_exhausted_retries_reach_charge_list(sqlite_harness: Harness) -> None:
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    harness.simulator.fail_next_gets(PERSISTENT, 503)
    async with harness.context(**settings(revio_retry_attempts=0)) as ctx:
        await harness.enqueue(ctx, instance.instance_id)
        await harness.run_until_idle(ctx)
        charge_lists = {
            queue_id: charge_list_rows(await harness.read_object(ctx, f"{queue_id}.txt"))
            for queue_id in instance.winning_queue_ids
        }

    rows = await all_rows(harness)
    failed_rows = [row for row in rows if NOT_CREATED in (row["ErrorMessage"] or "")]
    failed_msisdns = {row["MSISDN"] for row in failed_rows}
    listed = [item for items in charge_lists.values() for item in items]
    assert failed_rows != []
    assert all(row["IsProcessed"] for row in rows)
    assert all(row["HasErrors"] for row in failed_rows)
    assert all(row["ChargeId"] == 0 for row in failed_rows)
    assert {item["IsSuccessful"] for item in listed if item["MSISDN"] in failed_msisdns} == {
        "False"
    }
    assert all(
        NOT_CREATED in item["ErrorMessage"] for item in listed if item["MSISDN"] in failed_msisdns
    )
    for queue_id in instance.winning_queue_ids:
        summaries = summary_emails(harness, queue_id)
        assert len(summaries) == 1, queue_id
        assert "error(s) occurred" in email_text(summaries[0]), queue_id


async def test_rejected_credentials_fail_after_deferral(sqlite_harness: Harness) -> None:
    """A 401 from Rev.io defers the page, and after the deferral limit its rows fail and report."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    account = integration_authentication
    async with harness.engine.begin() as connection:
        await connection.execute(
            update(account)
            .where(account.c.Id == sample.integration_authentication_id)
            .values(Password="wrong-password")
        )
    async with harness.context(**settings(deferral_limit_s=1)) as ctx:
        await harness.enqueue(ctx, instance.instance_id)
        await harness.run_until_idle(ctx)

    ledger = await harness.ledger()
    rows = await all_rows(harness)
    sendable = [line for line in ledger if "is not set up" not in (line["error"] or "")]
    assert post_count(harness) == 0
    assert {line["state"] for line in sendable} == {"failed"}
    assert all("Rev.io refused the requests" in line["error"] for line in sendable)
    assert all(row["IsProcessed"] for row in rows)
    for queue_id in instance.winning_queue_ids:
        assert len(summary_emails(harness, queue_id)) == 1, queue_id


async def test_exhausted_retries_leave_in_doubt_unresolved(sqlite_harness: Harness) -> None:
    """Lines whose POST gets a 500 on every attempt end unresolved, never "not created"."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    harness.simulator.fail_next_posts(PERSISTENT, 500)
    async with harness.context(**settings()) as ctx:
        await harness.enqueue(ctx, instance.instance_id)
        await harness.run_until_idle(ctx)

    ledger = await harness.ledger()
    posted = [line for line in ledger if line["send_count"] > 0]
    rows = await all_rows(harness)
    assert posted != []
    assert {line["state"] for line in posted} == {"unresolved"}
    assert {line["error"] for line in posted} == {UNRESOLVED}
    assert [row["Id"] for row in rows if NOT_CREATED in (row["ErrorMessage"] or "")] == []


async def test_last_attempt_lost_response_unresolved(sqlite_harness: Harness) -> None:
    """A response lost on the last attempt leaves its line unresolved, not failed."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    harness.simulator.lose_next_answers(1)
    async with harness.context(**settings(max_page_retries=0)) as ctx:
        await harness.enqueue(ctx, instance.instance_id)
        await harness.run_until_idle(ctx)

    ledger = await harness.ledger()
    lost = harness.simulator.charges[0]
    line = next(
        line
        for line in ledger
        if line["service_id"] == lost["service_id"] and line["description"] == lost["description"]
    )
    assert line["state"] == "unresolved"
    assert line["error"] == UNRESOLVED


async def test_rejected_product_fails_without_resend(sqlite_harness: Harness) -> None:
    """A charge Rev.io rejects with 422 fails for good with Rev.io's reason and is not re-sent."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    case = find_case(sample, CASE_HALF_CENT_AMOUNTS, instance.instance_id)
    async with harness.context(**settings()) as ctx:
        await fill_queues(ctx, instance)
        row = await case_row(harness, case)
        harness.simulator.reject_product(row["RevProductId"])
        await harness.run_until_idle(ctx)

    lines = row_lines(await harness.ledger(), row)
    final_row = await case_row(harness, case)
    assert lines["rate"]["state"] == "failed"
    assert lines["rate"]["send_count"] == 1
    assert "Rev.io rejected the charge" in lines["rate"]["error"]
    assert lines["sms"]["state"] == "created"
    assert final_row["IsProcessed"]
    assert final_row["HasErrors"]
    assert "Rev.io rejected the charge" in final_row["ErrorMessage"]


# --- outages -------------------------------------------------------------------------------


async def test_revio_outage_resumes_after_recovery(sqlite_harness: Harness) -> None:
    harness = sqlite_harness
    simulator = harness.simulator
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    port = int(simulator.base_url.rsplit(":", 1)[1].split("/", 1)[0])
    backoff = settings(retry_base_delay_s=2, retry_max_delay_s=2)

    async def page_retry_scheduled() -> bool:
        return any(page["retry_count"] >= 1 for page in await page_records(harness))

    await simulator.stop()
    async with harness.context(**backoff) as ctx, running_daemon(ctx) as daemon:
        await harness.enqueue(ctx, instance.instance_id)
        retry_scheduled = await wait_until(page_retry_scheduled)
        waiting_pages = await queue_depth(harness, ctx, "create")
        await simulator.start(port=port)
        await wait_until_idle(harness, ctx, daemon)

    ledger = await harness.ledger()
    assert retry_scheduled
    assert waiting_pages >= 1
    assert unsettled_lines(ledger) == []
    assert harness.ledger_problems(ledger) == []
    assert all(row["IsProcessed"] for row in await all_rows(harness))
    for queue_id in instance.winning_queue_ids:
        assert len(summary_emails(harness, queue_id)) == 1, queue_id


async def test_long_page_keeps_message_invisible(sqlite_harness: Harness) -> None:
    """A page that works longer than its message's visibility timeout is not delivered twice."""
    harness = sqlite_harness
    simulator = harness.simulator
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    register_missing_services(harness, sample, instance)
    slow_pages = settings(visibility_timeout_s=2, revio_concurrency_per_page=1, **SHORT_LEASE)

    async with harness.context(**slow_pages) as ctx:
        # This test's own create queue gets the short timeout that the setting names.
        await ctx.aws.sqs.set_queue_attributes(
            QueueUrl=ctx.aws.queue_url("create"), Attributes={"VisibilityTimeout": "2"}
        )
        await fill_queues(ctx, instance)
        simulator.latency_s = 0.4
        await harness.run_until_idle(ctx)

    ledger = await harness.ledger()
    # Each page is attempted once when nothing fails, with one look-up of the services.
    assert simulator.requests_by_endpoint["services"] == len(instance.winning_queue_ids)
    assert duplicate_charges(harness) == []
    assert harness.ledger_problems(ledger) == []


async def test_database_outage_keeps_message(sqlite_harness: Harness, tmp_path: Path) -> None:
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    unreachable = f"sqlite+aiosqlite:///{tmp_path / 'missing-directory' / 'db.sqlite3'}"
    outage = settings(database_url=unreachable, transient_retry_delay_s=1, **NO_LONG_POLL)

    async with harness.context(**settings()) as ctx:
        await harness.enqueue(ctx, instance.instance_id)
    async with harness.context(**outage) as ctx, running_daemon(ctx) as daemon:
        handled = await wait_until(lambda: outcome_count(daemon, "enqueue", "retry") >= 1)
    async with harness.context(**settings()) as ctx:
        dead_letters = await harness.dead_letters(ctx)
        waiting = await queue_depth(harness, ctx, "enqueue")
        await harness.run_until_idle(ctx)

    assert handled
    assert dead_letters == []
    assert waiting == 1
    assert {row["QueueId"] for row in await all_rows(harness)} == set(instance.winning_queue_ids)


# --- summary emails ------------------------------------------------------------------------


async def test_duplicate_checks_send_one_summary(harness: Harness) -> None:
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    async with harness.context(**settings()) as ctx:
        await fill_queues(ctx, instance)
        for _ in range(3):
            for queue_id in instance.winning_queue_ids:
                await harness.send(ctx, check_message(queue_check(instance, queue_id)))
        await harness.run_until_idle(ctx)

    for queue_id in instance.winning_queue_ids:
        assert len(summary_emails(harness, queue_id)) == 1, queue_id
    assert repeated_emails(harness) == []


async def test_rejected_summary_sent_once(sqlite_harness: Harness) -> None:
    """SES rejects the summary until its sender is verified, then sends it once."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    queue_id = instance.winning_queue_ids[0]
    sender = f"{unique_name()}@example.org"

    async with harness.context(**settings(email_from=sender)) as ctx:
        await fill_queues(ctx, instance)
        for _ in range(2):
            await harness.send(ctx, check_message(queue_check(instance, queue_id)))
        async with running_daemon(ctx) as daemon:
            rejected = await wait_until(lambda: outcome_count(daemon, "check", "retry") >= 1)
            emails_while_rejected = len(summary_emails(harness, queue_id))
            await ctx.aws.ses.verify_email_identity(EmailAddress=sender)
            await wait_until_idle(harness, ctx, daemon)
        dead_letters = await harness.dead_letters(ctx)

    summaries = summary_emails(harness, queue_id)
    assert rejected
    assert emails_while_rejected == 0
    assert len(summaries) == 1
    assert summaries[0]["From"] == sender
    assert dead_letters == []


# --- failures that must reach the operator ------------------------------------------------


async def test_failed_row_sends_error_notification(sqlite_harness: Harness) -> None:
    """A row failed for good is listed, with its ICCID, in an error notification email."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    async with harness.context(**settings()) as ctx:
        await harness.enqueue(ctx, instance.instance_id)
        await harness.run_until_idle(ctx)

    failed = [row for row in await all_rows(harness) if row["HasErrors"]]
    texts = [email_text(message) for message in harness.emails()]
    assert failed != []
    for row in failed:
        assert any(row["ICCID"] in text for text in texts), row["ICCID"]


async def test_lost_page_is_still_reported(sqlite_harness: Harness) -> None:
    """A queue whose page message is lost after its lines were recorded still gets its summary."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=5)
    instance = sample.instances[0]
    queue_id = instance.winning_queue_ids[0]
    stalled = settings(revio_retry_attempts=0, check_stall_s=0, max_checks=3)

    async with harness.context(**stalled) as ctx:
        await fill_queues(ctx, instance)
        harness.simulator.fail_next_gets(1, 503)
        await run_page(ctx, instance, queue_id)
        await _lose_page_messages(ctx, queue_id)
        async with running_daemon(ctx):
            await wait_until(lambda: len(summary_emails(harness, queue_id)) >= 1, timeout_s=5)

    assert len(summary_emails(harness, queue_id)) == 1
    assert all(row["IsProcessed"] for row in await queue_rows(harness, queue_id))


async def _lose_page_messages(ctx: Context, queue_id: int) -> None:
    """Delete the queue's page messages, as if they were lost, and show the others again."""
    for message in await receive_all(ctx, "create"):
        handle = message["ReceiptHandle"]
        url = ctx.aws.queue_url("create")
        if attributes(message).get("QueueId") == str(queue_id):
            await ctx.aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
        else:
            await ctx.aws.sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0
            )
