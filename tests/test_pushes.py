"""Multi-instance pushes on the embedded stack: one consolidated summary, whatever the order.

A push of several instances (or the old portal's single-instance action) sends no
email per queue. Once every instance is enqueued and every winning queue has its
charge list, it sends one consolidated email with a zip of one workbook per queue,
or POSTs the summary to the portal proxy when `proxy_url` is set.
"""

import io
import json
import zipfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from email.message import EmailMessage
from typing import Any

import openpyxl
import pytest
from aiohttp import web
from sqlalchemy import select, update

from chargeworker.context import Context
from chargeworker.controller import enqueue_push
from chargeworker.daemon import Daemon
from chargeworker.db import platform as p
from chargeworker.db.tables import progress
from chargeworker.db.tables import push as push_table
from chargeworker.devstack.local_aws import LocalAws
from chargeworker.devstack.sample import PERIOD_END, PERIOD_START, Sample, SampleInstance
from chargeworker.messages import (
    CheckMessage,
    EnqueueMessage,
    Push,
    QueueName,
    Target,
    check_message,
    enqueue_message,
    parse_create,
)
from chargeworker.phases.create import handle_create
from chargeworker.phases.enqueue import handle_enqueue
from tests.conftest import _harness
from tests.harness import Harness, running_daemon, wait_until

# A one-second long poll returns as soon as a message arrives, and keeps the three
# consumers from spinning on moto. Waiting checks come back after one second, and
# the last instance's last page goes out at once.
QUIET: dict[str, Any] = {
    "receive_wait_s": 1,
    "check_retry_delay_s": 1,
    "last_instance_delay_s": 0,
}
SUMMARY_ZIP = "CustomerChargeSummary.zip"
BANNER_COLOR = "#b00020"
ERROR_SENTENCE = "error(s) occurred when uploading charges to Rev.io"
PERIOD_END_TEXT = PERIOD_END.date().isoformat()
SEED = 11
NON_REV_CUSTOMER_ID = 9_001
NON_REV_CUSTOMER_NAME = "Prairie Offline Fleet"


# --- running the daemon -----------------------------------------------------------------


async def wait_until_idle(
    harness: Harness, ctx: Context, daemon: Daemon, *, timeout_s: float = 30
) -> dict[str, int]:
    """Wait until no queue contains a message and no handler runs, three polls in a row.

    Return what was left when time ran out: message counts by queue, and the number
    of handlers still running. The result is empty when the daemon went idle.
    """
    quiet_polls = 0
    left: dict[str, int] = {}

    async def idle() -> bool:
        nonlocal quiet_polls, left
        left = {}
        for name, url in ctx.aws.queue_urls.items():
            depth = await harness.queue_depth(ctx, url) if url else 0
            if depth:
                left[name] = depth
        running = sum(len(consumer.in_flight) for consumer in daemon.consumers)
        if running:
            left["running handlers"] = running
        quiet_polls = quiet_polls + 1 if not left else 0
        return quiet_polls >= 3

    await wait_until(idle, timeout_s=timeout_s)
    return left


async def send_push(ctx: Context, instance_ids: list[int]) -> None:
    """Send a multi-instance push the way the controller does, without the last one's delay."""
    async with ctx.engine.connect() as connection:
        await enqueue_push(ctx.aws, connection, instance_ids, last_instance_delay_s=0)


def push_of(sample: Sample, instance_ids: list[int], *, is_last: bool = False) -> Push:
    return Push(
        instance_ids=tuple(instance_ids),
        is_multiple_instance=True,
        is_last_instance=is_last,
        integration_authentication_id=sample.integration_authentication_id,
    )


async def receive_all(ctx: Context, queue: QueueName) -> list[dict[str, Any]]:
    """Receive and delete every visible message of a queue."""
    received: list[dict[str, Any]] = []
    url = ctx.aws.queue_url(queue)
    for _ in range(100):
        answer = await ctx.aws.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        )
        messages = answer.get("Messages", [])
        if not messages:
            break
        for message in messages:
            await ctx.aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        received.extend(messages)
    return received


def attributes(message: dict[str, Any]) -> dict[str, str]:
    return {
        name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()
    }


async def push_is_waiting(harness: Harness) -> bool:
    async with harness.engine.connect() as connection:
        started = await connection.scalars(select(push_table.c.wait_started_at))
        return any(moment is not None for moment in started.all())


async def charge_lists_written(harness: Harness, queue_ids: list[int]) -> bool:
    async with harness.engine.connect() as connection:
        query = select(progress.c.target_id).where(
            progress.c.target_kind == "queue",
            progress.c.target_id.in_(queue_ids),
            progress.c.charge_list_written_at.isnot(None),
        )
        written = set((await connection.scalars(query)).all())
    return written == set(queue_ids)


# --- reading emails -------------------------------------------------------------------------


def attachment_names(message: EmailMessage) -> list[str]:
    return [part.get_filename() or "" for part in message.iter_attachments()]


def consolidated_emails(emails: list[EmailMessage]) -> list[EmailMessage]:
    return [message for message in emails if SUMMARY_ZIP in attachment_names(message)]


def queue_summaries(emails: list[EmailMessage]) -> list[EmailMessage]:
    """Return the per-queue summaries: emails with a charge list attached."""
    return [
        message
        for message in emails
        if any(name.endswith(".txt") for name in attachment_names(message))
    ]


def body_text(message: EmailMessage, subtype: str = "plain") -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None, f"the email has no text/{subtype} part"
    return str(part.get_content())


def customer_lines(message: EmailMessage) -> list[str]:
    """Return the list items of the plain-text part: one line per customer."""
    return [line[2:] for line in body_text(message).splitlines() if line.startswith("- ")]


def repeated_subjects(emails: list[EmailMessage]) -> list[str]:
    copies = Counter(message.as_bytes() for message in emails)
    return [str(message["Subject"]) for message in emails if copies[message.as_bytes()] > 1]


# --- charge lists and workbooks --------------------------------------------------------------


def charge_list_items(text: str) -> list[dict[str, str]]:
    """Parse a charge list into one dict per row, without its header and footer."""
    lines = text.split("\n")
    header = lines[0].split("\t")
    body = [line for line in lines[1:] if line][:-1]
    return [dict(zip(header, line.split("\t"), strict=True)) for line in body]


def charge_list_total(text: str) -> str:
    footer = [line for line in text.split("\n") if line][-1]
    return footer.split("\t")[3]


def workbook_sheet(content: bytes) -> list[tuple[Any, ...]]:
    workbook = openpyxl.load_workbook(io.BytesIO(content))
    return [tuple(row) for row in workbook.worksheets[0].iter_rows(values_only=True)]


def rev_date(value: datetime | date | None) -> str:
    """Format a workbook date cell as the charge list writes dates (`yyyy-M-d`)."""
    if value is None:
        return ""
    return f"{value.year}-{value.month}-{value.day}"


def money(value: float | None) -> str:
    return "" if value is None else str(Decimal(str(value)).quantize(Decimal("0.01")))


def workbook_items(rows: list[tuple[Any, ...]]) -> list[dict[str, str]]:
    """Turn the workbook's data rows into charge-list fields, so the two compare as text."""
    header = rows[0]
    items = []
    for row in rows[1:-1]:
        cells = dict(zip(header, row, strict=True))
        items.append(
            {
                "Customer": cells["Customer"] or "",
                "MSISDN": cells["MSISDN"] or "",
                "IsSuccessful": cells["IsSuccessful"] or "",
                "ChargeId": "" if cells["ChargeId"] is None else str(cells["ChargeId"]),
                "ChargeAmount": money(cells["ChargeAmount"]),
                "BillingPeriodStart": rev_date(cells["BillingPeriodStart"]),
                "BillingPeriodEnd": rev_date(cells["BillingPeriodEnd"]),
                "DateCharged": cells["DateCharged"] or "",
                "ErrorMessage": cells["ErrorMessage"] or "",
            }
        )
    return items


# --- one push of the sample's three instances ---------------------------------------------


@dataclass
class PushRun:
    """What one run of a push produced, read after the daemon went idle."""

    sample: Sample
    instances: list[SampleInstance]  # the instances of the push, the last one last
    emails: list[EmailMessage]
    charge_lists: dict[int, str]  # queue id → charge-list text

    @property
    def winning_queue_ids(self) -> list[int]:
        return [queue for instance in self.instances for queue in instance.winning_queue_ids]

    def instance_of(self, queue_id: int) -> SampleInstance:
        return next(i for i in self.instances if queue_id in i.winning_queue_ids)

    def only_consolidated(self) -> EmailMessage:
        found = consolidated_emails(self.emails)
        assert len(found) == 1, [str(message["Subject"]) for message in self.emails]
        return found[0]

    def zip_entries(self) -> dict[str, bytes]:
        (part,) = [
            part
            for part in self.only_consolidated().iter_attachments()
            if part.get_filename() == SUMMARY_ZIP
        ]
        with zipfile.ZipFile(io.BytesIO(part.get_content())) as archive:
            return {name: archive.read(name) for name in archive.namelist()}


async def run_push(
    harness: Harness,
    prepare: Callable[[Harness, Sample], Awaitable[None]] | None = None,
    *,
    instance_count: int = 3,
    **overrides: Any,
) -> PushRun:
    """Push the sample's first instances as one multi-instance push and collect the outputs.

    `prepare` changes the loaded sample before the push starts.
    """
    sample = await harness.load_sample(devices=1, seed=SEED)
    if prepare is not None:
        await prepare(harness, sample)
    instances = sample.instances[:instance_count]
    async with harness.context(**{**QUIET, **overrides}) as ctx:
        await send_push(ctx, [instance.instance_id for instance in instances])
        await harness.run_until_idle(ctx)
        charge_lists = {}
        for instance in instances:
            for queue_id in instance.winning_queue_ids:
                charge_lists[queue_id] = await harness.read_object(ctx, f"{queue_id}.txt")
    return PushRun(sample, instances, harness.emails(), charge_lists)


async def make_non_rev(harness: Harness, sample: Sample, instance: SampleInstance) -> None:
    """Turn the instance into a customer billed outside Rev.io, named in the Customer table."""
    table = p.optimization_instance
    async with harness.engine.begin() as connection:
        await connection.execute(
            p.customer.insert().values(
                Id=NON_REV_CUSTOMER_ID,
                TenantId=sample.tenant_id,
                CustomerName=NON_REV_CUSTOMER_NAME,
            )
        )
        await connection.execute(
            update(table)
            .where(table.c.Id == instance.instance_id)
            .values(
                AMOPCustomerId=NON_REV_CUSTOMER_ID,
                RevCustomerId=None,
                IntegrationAuthenticationId=None,
            )
        )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def pushed(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    local_aws: LocalAws,
    postgres_unavailable: str | None,
) -> AsyncIterator[PushRun]:
    """The sample's three instances pushed together once, on SQLite and on PostgreSQL."""
    directory = tmp_path_factory.mktemp(f"pushes-{request.param}")
    async for harness in _harness(request.param, directory, local_aws, postgres_unavailable):
        yield await run_push(harness)


async def test_push_sends_one_email(pushed: PushRun) -> None:
    assert len(consolidated_emails(pushed.emails)) == 1


async def test_push_sends_no_queue_summary(pushed: PushRun) -> None:
    assert queue_summaries(pushed.emails) == []


async def test_push_email_headers(pushed: PushRun) -> None:
    message = pushed.only_consolidated()
    recipients = [address.addr_spec for address in message["To"].addresses]
    assert message["Subject"] == pushed.sample.email_subject
    assert message["From"] == pushed.sample.email_from
    assert recipients == pushed.sample.email_to


async def test_push_email_has_text_and_html(pushed: PushRun) -> None:
    message = pushed.only_consolidated()
    assert message.get_body(preferencelist=("plain",)) is not None
    assert message.get_body(preferencelist=("html",)) is not None


async def test_push_email_line_per_customer(pushed: PushRun) -> None:
    lines = customer_lines(pushed.only_consolidated())
    for instance in pushed.instances:
        naming = [line for line in lines if line.startswith(f"{instance.customer_name}:")]
        assert len(naming) == 1, (instance.customer_name, lines)
        assert f"billing period ending {PERIOD_END_TEXT}" in naming[0]
    assert len(lines) == len(pushed.instances)


async def test_push_email_html_lists_customers(pushed: PushRun) -> None:
    html_part = body_text(pushed.only_consolidated(), "html")
    for instance in pushed.instances:
        assert instance.customer_name.replace("&", "&amp;") in html_part


async def test_push_email_error_banner(pushed: PushRun) -> None:
    message = pushed.only_consolidated()
    failed = sum(
        item["IsSuccessful"] == "False"
        for text in pushed.charge_lists.values()
        for item in charge_list_items(text)
    )
    assert failed > 0
    assert BANNER_COLOR in body_text(message, "html")
    assert f"{failed} {ERROR_SENTENCE}" in body_text(message)


async def test_push_zip_attached(pushed: PushRun) -> None:
    parts = [
        part
        for part in pushed.only_consolidated().iter_attachments()
        if part.get_filename() == SUMMARY_ZIP
    ]
    assert len(parts) == 1
    assert parts[0].get_content_type() == "application/zip"


async def test_push_zip_has_workbook_per_queue(pushed: PushRun) -> None:
    expected = sorted(f"{queue_id}.xlsx" for queue_id in pushed.winning_queue_ids)
    assert sorted(pushed.zip_entries()) == expected


async def test_push_workbooks_match_charge_lists(pushed: PushRun) -> None:
    entries = pushed.zip_entries()
    for queue_id, text in pushed.charge_lists.items():
        listed = charge_list_items(text)
        cells = workbook_items(workbook_sheet(entries[f"{queue_id}.xlsx"]))
        assert len(cells) == len(listed), queue_id
        for column in cells[0]:
            if column == "Customer":
                continue
            assert [item[column] for item in cells] == [item[column] for item in listed], (
                queue_id,
                column,
            )


async def test_push_workbooks_name_customer(pushed: PushRun) -> None:
    entries = pushed.zip_entries()
    for queue_id in pushed.winning_queue_ids:
        cells = workbook_items(workbook_sheet(entries[f"{queue_id}.xlsx"]))
        customer = pushed.instance_of(queue_id).customer_name
        assert {item["Customer"] for item in cells} == {customer}, queue_id


async def test_push_workbook_total_row(pushed: PushRun) -> None:
    entries = pushed.zip_entries()
    for queue_id, text in pushed.charge_lists.items():
        total_row = workbook_sheet(entries[f"{queue_id}.xlsx"])[-1]
        assert total_row[0] == "Total", queue_id
        assert money(total_row[4]) == charge_list_total(text), queue_id


async def test_push_sends_one_error_notification(pushed: PushRun) -> None:
    notifications = [m for m in pushed.emails if str(m["Subject"]).startswith("Errors:")]
    assert len(notifications) == 1
    assert repeated_subjects(pushed.emails) == []


# --- pushes without errors, out of order, incomplete ----------------------------------------


async def test_dry_run_push_has_no_banner(sqlite_harness: Harness) -> None:
    run = await run_push(sqlite_harness, instance_count=2, send_to_rev=False)
    message = run.only_consolidated()
    assert BANNER_COLOR not in body_text(message, "html")
    assert ERROR_SENTENCE not in body_text(message)
    assert "nothing was sent to Rev.io" in body_text(message)


async def test_out_of_order_push_waits(sqlite_harness: Harness) -> None:
    """The last instance enqueued first waits for the others; copies change nothing."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=SEED)
    first, second, last = sample.instances
    instance_ids = [first.instance_id, second.instance_id, last.instance_id]
    push = push_of(sample, instance_ids)
    last_push = replace(push, is_last_instance=True)

    # Enqueue copies that run at the same time can both send page 1, and the copy that
    # meets the other's lease is sent again after the lease's remaining time.
    async with harness.context(**QUIET, lease_s=2) as ctx, running_daemon(ctx) as daemon:
        await harness.send(ctx, enqueue_message(last.instance_id, last_push))
        waiting = await wait_until(lambda: push_is_waiting(harness))
        early = consolidated_emails(harness.emails())

        for instance in (first, second, first):
            await harness.send(ctx, enqueue_message(instance.instance_id, push))
        await harness.send(ctx, enqueue_message(last.instance_id, last_push))
        for queue_id in last.winning_queue_ids:
            copy_push = last_push if queue_id == last.winning_queue_ids[-1] else push
            check = CheckMessage(Target("queue", queue_id), copy_push, last.portal_type_id)
            await harness.send(ctx, check_message(check))
        left = await wait_until_idle(harness, ctx, daemon)

    emails = harness.emails()
    summaries = consolidated_emails(emails)
    assert waiting
    assert early == []
    assert left == {}
    assert len(summaries) == 1
    assert len(customer_lines(summaries[0])) == len(sample.instances)
    assert repeated_subjects(emails) == []


@dataclass
class LateRun:
    """A push whose wait for one instance ended, and what came after that instance arrived."""

    missing: SampleInstance
    at_limit: list[EmailMessage]  # emails sent when the wait ended
    later: list[EmailMessage]  # emails sent after the late instance was enqueued
    settled: dict[str, int]
    left: dict[str, int]


@pytest.fixture(scope="module")
async def late_push(
    tmp_path_factory: pytest.TempPathFactory, local_aws: LocalAws
) -> AsyncIterator[LateRun]:
    """A push of two instances that waits for none, and then its first instance arrives late."""
    directory = tmp_path_factory.mktemp("late-push")
    async for harness in _harness("sqlite", directory, local_aws, None):
        sample = await harness.load_sample(devices=1, seed=SEED)
        _, missing, last = sample.instances
        push = push_of(sample, [missing.instance_id, last.instance_id])
        last_push = replace(push, is_last_instance=True)

        async with (
            harness.context(**QUIET, push_wait_limit_s=0) as ctx,
            running_daemon(ctx) as daemon,
        ):
            await harness.send(ctx, enqueue_message(last.instance_id, last_push))
            settled = await wait_until_idle(harness, ctx, daemon)
            at_limit = harness.emails()
            await harness.send(ctx, enqueue_message(missing.instance_id, push))
            left = await wait_until_idle(harness, ctx, daemon)

        later = harness.emails()[len(at_limit) :]
        yield LateRun(missing, at_limit, later, settled, left)


async def test_wait_limit_names_missing_instance(late_push: LateRun) -> None:
    summaries = consolidated_emails(late_push.at_limit)
    missing = late_push.missing
    assert late_push.settled == {}
    assert len(summaries) == 1
    text = body_text(summaries[0])
    assert f"Instances still missing from this summary: {missing.instance_id}" in text
    assert not any(line.startswith(missing.customer_name) for line in customer_lines(summaries[0]))


async def test_late_instance_reported(late_push: LateRun) -> None:
    """Charges of an instance that arrives after the wait ended still reach a summary email."""
    naming = [
        message
        for message in late_push.later
        if late_push.missing.customer_name in body_text(message)
    ]
    assert late_push.left == {}
    assert len(naming) >= 1


async def test_old_portal_single_push(sqlite_harness: Harness) -> None:
    """IsMultipleInstanceId=1 with one instance ends in the consolidated email."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=SEED)
    instance = sample.instances[0]
    push = push_of(sample, [instance.instance_id], is_last=True)

    async with harness.context(**QUIET) as ctx:
        await harness.send(ctx, enqueue_message(instance.instance_id, push))
        await harness.run_until_idle(ctx)

    emails = harness.emails()
    summaries = consolidated_emails(emails)
    assert len(summaries) == 1
    assert queue_summaries(emails) == []
    assert [line.split(":")[0] for line in customer_lines(summaries[0])] == [instance.customer_name]


async def remove_winning_queues(harness: Harness, instance: SampleInstance) -> None:
    """Mark every optimization queue of the instance as still running, so none can win."""
    queue = p.optimization_queue
    async with harness.engine.begin() as connection:
        await connection.execute(
            update(queue).where(queue.c.InstanceId == instance.instance_id).values(RunEndTime=None)
        )


async def test_last_instance_without_queue(sqlite_harness: Harness) -> None:
    """A last instance with no winning queue, enqueued after the others finished, still reports."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=SEED)
    first, empty = sample.instances[0], sample.instances[1]
    await remove_winning_queues(harness, empty)
    push = push_of(sample, [first.instance_id, empty.instance_id])

    async with harness.context(**QUIET) as ctx, running_daemon(ctx) as daemon:
        await harness.send(ctx, enqueue_message(first.instance_id, push))
        first_done = await wait_until(
            lambda: charge_lists_written(harness, first.winning_queue_ids)
        )
        first_left = await wait_until_idle(harness, ctx, daemon, timeout_s=3)
        early = consolidated_emails(harness.emails())
        last_push = replace(push, is_last_instance=True)
        await harness.send(ctx, enqueue_message(empty.instance_id, last_push))
        left = await wait_until_idle(harness, ctx, daemon)

    summaries = consolidated_emails(harness.emails())
    assert first_done
    assert set(first_left) <= {"check"}  # only the waiting push check is left
    assert early == []
    assert left == {}
    assert len(summaries) == 1
    assert [line.split(":")[0] for line in customer_lines(summaries[0])] == [first.customer_name]


async def test_repushed_last_instance_reported(sqlite_harness: Harness) -> None:
    """A last instance whose pages went out in an earlier push still ends the new push.

    Phase 1 sends no page for a queue that an earlier push already sent, so the new
    push gets no check message that carries IsLastInstanceId=1.
    """
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=SEED)
    first, last = sample.instances[0], sample.instances[2]
    push = push_of(sample, [first.instance_id, last.instance_id])

    async with harness.context(**QUIET) as ctx, running_daemon(ctx) as daemon:
        await harness.enqueue(ctx, last.instance_id)
        earlier_left = await wait_until_idle(harness, ctx, daemon)
        await harness.send(ctx, enqueue_message(first.instance_id, push))
        first_left = await wait_until_idle(harness, ctx, daemon, timeout_s=3)
        last_push = replace(push, is_last_instance=True)
        await harness.send(ctx, enqueue_message(last.instance_id, last_push))
        left = await wait_until_idle(harness, ctx, daemon)

    assert earlier_left == {}
    assert set(first_left) <= {"check"}  # only the waiting push check is left
    assert left == {}
    assert len(consolidated_emails(harness.emails())) == 1


async def test_lost_last_instance_reported(sqlite_harness: Harness) -> None:
    """A last instance whose enqueue message is dead-lettered still lets the push report."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=SEED)
    first = sample.instances[0]
    deleted_id = max(instance.instance_id for instance in sample.instances) + 100
    push = push_of(sample, [first.instance_id, deleted_id])

    async with harness.context(**QUIET, push_wait_limit_s=0) as ctx:
        await harness.send(ctx, enqueue_message(first.instance_id, push))
        last_push = replace(push, is_last_instance=True)
        await harness.send(ctx, enqueue_message(deleted_id, last_push))
        await harness.run_until_idle(ctx)
        dead_letters = await harness.dead_letters(ctx)

    summaries = consolidated_emails(harness.emails())
    assert len(dead_letters) == 1
    assert len(summaries) == 1
    assert f"Instances still missing from this summary: {deleted_id}" in body_text(summaries[0])


async def test_push_check_has_no_target(sqlite_harness: Harness) -> None:
    """Phase 1 of a last instance without winning queues sends the push check itself."""
    harness = sqlite_harness
    sample = await harness.load_sample(devices=1, seed=SEED)
    first, empty = sample.instances[0], sample.instances[1]
    await remove_winning_queues(harness, empty)
    last_push = push_of(sample, [first.instance_id, empty.instance_id], is_last=True)

    async with harness.context(**QUIET) as ctx:
        await handle_enqueue(ctx, EnqueueMessage(empty.instance_id, last_push))
        checks = await receive_all(ctx, "check")
        pages = await receive_all(ctx, "create")

    assert pages == []
    assert [attributes(message) for message in checks] == [
        {
            "IsMultipleInstanceId": "1",
            "IsLastInstanceId": "1",
            "InstanceIds": f"{first.instance_id},{empty.instance_id}",
            "CurrentIntegrationAuthenticationId": str(sample.integration_authentication_id),
            "RetryNumber": "0",
        }
    ]


# --- message attributes -----------------------------------------------------------------------


@dataclass
class PushMessages:
    sample: Sample
    pages: list[dict[str, str]]  # attributes of the create messages that phase 1 sent
    checks: list[dict[str, str]]  # attributes of the check messages that phase 2 sent

    @property
    def last_queue_id(self) -> str:
        return str(self.sample.instances[-1].winning_queue_ids[-1])

    @property
    def instance_ids(self) -> str:
        return ",".join(str(instance.instance_id) for instance in self.sample.instances)


@pytest.fixture(scope="module")
async def push_messages(
    tmp_path_factory: pytest.TempPathFactory, local_aws: LocalAws
) -> AsyncIterator[PushMessages]:
    """Run phase 1, then phase 2 on its create messages, by hand, and keep every message."""
    directory = tmp_path_factory.mktemp("push-messages")
    async for harness in _harness("sqlite", directory, local_aws, None):
        sample = await harness.load_sample(devices=1, seed=SEED)
        instance_ids = [instance.instance_id for instance in sample.instances]
        async with harness.context(**QUIET) as ctx:
            for instance in sample.instances:
                is_last = instance is sample.instances[-1]
                push = push_of(sample, instance_ids, is_last=is_last)
                await handle_enqueue(ctx, EnqueueMessage(instance.instance_id, push))
            pages = await receive_all(ctx, "create")
            for page in pages:
                await handle_create(ctx, parse_create(page["MessageAttributes"]))
            checks = await receive_all(ctx, "check")
        yield PushMessages(
            sample,
            [attributes(message) for message in pages],
            [attributes(message) for message in checks],
        )


async def test_pages_carry_push(push_messages: PushMessages) -> None:
    winning = [q for i in push_messages.sample.instances for q in i.winning_queue_ids]
    assert sorted(int(page["QueueId"]) for page in push_messages.pages) == sorted(winning)
    for page in push_messages.pages:
        assert page["IsMultipleInstanceId"] == "1", page
        assert page["InstanceIds"] == push_messages.instance_ids, page


async def test_only_last_page_is_last(push_messages: PushMessages) -> None:
    last = [page["QueueId"] for page in push_messages.pages if page["IsLastInstanceId"] == "1"]
    assert last == [push_messages.last_queue_id]


async def test_checks_carry_push(push_messages: PushMessages) -> None:
    assert push_messages.checks != []
    for check in push_messages.checks:
        assert check["IsMultipleInstanceId"] == "1", check
        assert check["InstanceIds"] == push_messages.instance_ids, check


async def test_only_last_queue_check_is_last(push_messages: PushMessages) -> None:
    last = {check["QueueId"] for check in push_messages.checks if check["IsLastInstanceId"] == "1"}
    assert last == {push_messages.last_queue_id}


# --- the portal proxy -------------------------------------------------------------------------


class PortalProxy:
    """A loopback stand-in for the portal: records each JSON body and fails the first ones."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.bodies: list[Any] = []
        self.statuses: list[int] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/summary", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/summary"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        self.bodies.append(json.loads(await request.text()))
        status = 500 if len(self.statuses) < self.failures else 200
        self.statuses.append(status)
        return web.json_response({"ok": status == 200}, status=status)


async def make_mobility_non_rev(harness: Harness, sample: Sample) -> None:
    await make_non_rev(harness, sample, sample.instances[1])


@dataclass
class ProxyRun:
    push: PushRun
    proxy: PortalProxy
    bucket: str
    customers: dict[int, tuple[str, str]]  # instance id → expected customer id and name

    def accepted_body(self) -> dict[str, Any]:
        accepted = [
            body
            for body, status in zip(self.proxy.bodies, self.proxy.statuses, strict=True)
            if status == 200
        ]
        assert len(accepted) == 1, self.proxy.statuses
        return accepted[0]


@pytest.fixture(scope="module")
async def proxied(
    tmp_path_factory: pytest.TempPathFactory, local_aws: LocalAws
) -> AsyncIterator[ProxyRun]:
    """The sample pushed together with `proxy_url` set, the proxy failing once with HTTP 500.

    The Mobility instance is a non-Rev customer, so the payload names it by its platform id.
    """
    proxy = PortalProxy(failures=1)
    await proxy.start()
    directory = tmp_path_factory.mktemp("proxy")
    try:
        async for harness in _harness("sqlite", directory, local_aws, None):
            run = await run_push(
                harness, make_mobility_non_rev, instance_count=2, proxy_url=proxy.url
            )
            instance = p.optimization_instance
            async with harness.engine.connect() as connection:
                rows = await connection.execute(select(instance.c.Id, instance.c.RevCustomerId))
                guids = {row.Id: str(row.RevCustomerId) for row in rows}
            customers = {
                item.instance_id: (guids[item.instance_id], item.customer_name)
                for item in run.instances
            }
            non_rev_id = run.instances[1].instance_id
            customers[non_rev_id] = (str(NON_REV_CUSTOMER_ID), NON_REV_CUSTOMER_NAME)
            yield ProxyRun(run, proxy, harness.resources.bucket, customers)
    finally:
        await proxy.stop()


PROXY_KEYS = {"tenant_id", "is_non_rev", "bucket", "instance_ids", "queues"}
PROXY_QUEUE_KEYS = {
    "queue_id",
    "instance_id",
    "customer_id",
    "customer_name",
    "billing_period_start",
    "billing_period_end",
    "error_count",
    "charge_list_key",
}


async def test_proxy_failure_retried_once(proxied: ProxyRun) -> None:
    assert proxied.proxy.statuses == [500, 200]


async def test_proxy_replaces_email(proxied: ProxyRun) -> None:
    assert consolidated_emails(proxied.push.emails) == []
    assert queue_summaries(proxied.push.emails) == []


async def test_proxy_payload_keys(proxied: ProxyRun) -> None:
    body = proxied.accepted_body()
    assert set(body) == PROXY_KEYS
    for queue in body["queues"]:
        assert set(queue) == PROXY_QUEUE_KEYS, queue


async def test_proxy_payload_push(proxied: ProxyRun) -> None:
    body = proxied.accepted_body()
    run = proxied.push
    assert body["tenant_id"] == run.sample.tenant_id
    assert body["is_non_rev"] is False
    assert body["instance_ids"] == sorted(i.instance_id for i in run.instances)
    assert body["bucket"] == proxied.bucket


async def test_proxy_payload_queues(proxied: ProxyRun) -> None:
    body = proxied.accepted_body()
    run = proxied.push
    by_queue = {queue["queue_id"]: queue for queue in body["queues"]}
    assert sorted(by_queue) == sorted(run.winning_queue_ids)
    for queue_id, queue in by_queue.items():
        instance = run.instance_of(queue_id)
        failed = sum(
            item["IsSuccessful"] == "False"
            for item in charge_list_items(run.charge_lists[queue_id])
        )
        assert queue["instance_id"] == instance.instance_id, queue
        customer_id, customer_name = proxied.customers[instance.instance_id]
        assert queue["customer_id"] == customer_id, queue
        assert queue["customer_name"] == customer_name, queue
        assert queue["billing_period_start"] == PERIOD_START.date().isoformat(), queue
        assert queue["billing_period_end"] == PERIOD_END_TEXT, queue
        assert queue["error_count"] == failed, queue
        assert queue["charge_list_key"] == f"{queue_id}.txt", queue
