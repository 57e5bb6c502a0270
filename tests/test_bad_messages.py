"""Messages that can never succeed, sent raw to the daemon on the embedded stack.

Each must reach the dead-letter queue with its body and attributes intact, be logged
with its message id and reason, and be counted, while a good push sent in the same
run is charged and reported as usual.
"""

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from chargeworker.daemon import Daemon
from chargeworker.db.engine import create_engine, upgrade_schema
from chargeworker.devstack.local_aws import LocalAws
from chargeworker.devstack.revio_simulator import RevioSimulator
from chargeworker.messages import QueueName
from tests.harness import Harness, unique_name

UNKNOWN_ID = "999999"


def string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def number(value: str) -> dict[str, str]:
    return {"DataType": "Number", "StringValue": value}


@dataclass(frozen=True)
class BadCase:
    name: str
    queue: QueueName
    attributes: dict[str, dict[str, str]]
    reason_kind: str  # label `reason` of chargeworker_bad_messages_total
    reason_words: str  # expected in the logged reason

    @property
    def body(self) -> str:
        # Unique per case, so that its dead-letter copy can be found. Non-ASCII on purpose.
        return f"bad message {self.name} — ünïcode ✓"


BAD_CASES = [
    BadCase(
        "missing_instance_id",
        "enqueue",
        {"IsMultipleInstanceId": number("0"), "CurrentIntegrationAuthenticationId": string("7")},
        "missing_attribute",
        "InstanceId",
    ),
    BadCase(
        "both_targets",
        "create",
        {"QueueId": number(UNKNOWN_ID), "FileId": number("4"), "PageNumber": string("1")},
        "ambiguous_target",
        "FileId",
    ),
    BadCase(
        "neither_target",
        "create",
        {"PageNumber": string("1"), "RetryCount": number("0")},
        "missing_attribute",
        "QueueId or FileId",
    ),
    BadCase(
        "page_number_abc",
        "create",
        {"QueueId": number(UNKNOWN_ID), "PageNumber": string("abc")},
        "invalid_attribute",
        "'abc'",
    ),
    BadCase(
        "instance_id_negative",
        "enqueue",
        {"InstanceId": string("-1")},
        "invalid_attribute",
        "'-1'",
    ),
    BadCase(
        "is_last_true",
        "enqueue",
        {"InstanceId": number(UNKNOWN_ID), "IsLastInstanceId": string("true")},
        "invalid_attribute",
        "'true'",
    ),
    BadCase(
        "unknown_instance",
        "enqueue",
        {"InstanceId": number(UNKNOWN_ID)},
        "unknown_instance",
        f"instance {UNKNOWN_ID} not found",
    ),
    BadCase(
        "unknown_queue",
        "create",
        {"QueueId": number(UNKNOWN_ID), "PageNumber": number("1")},
        "unknown_queue",
        f"queue {UNKNOWN_ID} not found",
    ),
    BadCase(
        "check_neither_target",
        "check",
        {"RetryNumber": string("1")},
        "missing_attribute",
        "QueueId or FileId",
    ),
    BadCase(
        "check_unknown_queue",
        "check",
        {"QueueId": string(UNKNOWN_ID)},
        "unknown_queue",
        f"queue {UNKNOWN_ID} not found",
    ),
]
CASE_IDS = [case.name for case in BAD_CASES]
QUEUES: list[QueueName] = ["enqueue", "create", "check"]


def bad_messages(queue: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "chargeworker_bad_messages_total", {"queue": queue, "reason": reason}
    )
    return value or 0.0


def finished(queue: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "chargeworker_messages_finished_total", {"queue": queue, "outcome": outcome}
    )
    return value or 0.0


def intact(attributes: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Reduce SQS attributes to DataType and StringValue, the parts a sender sets."""
    return {
        name: {"DataType": value["DataType"], "StringValue": value["StringValue"]}
        for name, value in attributes.items()
    }


async def wait_until(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        # Metrics and daemon state offer no event to wait on, so poll them.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def drain_queue(harness: Harness, ctx: Any, queue_url: str) -> list[dict[str, Any]]:
    """Receive every message of a queue; each stays invisible for the rest of the test."""
    received: list[dict[str, Any]] = []
    while True:
        answer = await ctx.aws.sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            WaitTimeSeconds=0,
            VisibilityTimeout=300,
        )
        messages = answer.get("Messages", [])
        if not messages:
            return received
        received.extend(messages)


@dataclass
class BatchRun:
    """What one daemon run with every bad case and one good instance left behind."""

    sent_ids: dict[str, str] = field(default_factory=dict)
    dead_letters: dict[str, dict[str, Any]] = field(default_factory=dict)
    bad_counts: dict[tuple[str, str], float] = field(default_factory=dict)
    dead_letter_counts: dict[str, float] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)
    good_queue_ids: list[int] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)


async def _run_batch(harness: Harness) -> BatchRun:
    run = BatchRun()
    sample = await harness.load_sample(devices=3, seed=21)
    good = sample.instances[0]
    run.good_queue_ids = list(good.winning_queue_ids)

    bad_labels = {(case.queue, case.reason_kind) for case in BAD_CASES}
    bad_before = {labels: bad_messages(*labels) for labels in bad_labels}
    dead_before = {queue: finished(queue, "dead_letter") for queue in QUEUES}

    async with harness.context() as ctx:
        await harness.enqueue(ctx, good.instance_id)
        for case in BAD_CASES:
            run.sent_ids[case.name] = await harness.send_raw(
                ctx, case.queue, case.attributes, case.body
            )
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            await harness.run_until_idle(ctx, timeout_s=40)
        run.logs = list(logs)
        for message in await drain_queue(harness, ctx, harness.resources.dead_letter_queue_url):
            run.dead_letters[message["Body"]] = message

    run.bad_counts = {labels: bad_messages(*labels) - bad_before[labels] for labels in bad_labels}
    run.dead_letter_counts = {
        queue: finished(queue, "dead_letter") - dead_before[queue] for queue in QUEUES
    }
    for email in harness.emails():
        run.attachments.extend(part.get_filename() or "" for part in email.iter_attachments())
    return run


@pytest.fixture(scope="module")
async def batch(
    tmp_path_factory: pytest.TempPathFactory, local_aws: LocalAws
) -> AsyncIterator[BatchRun]:
    """Run the daemon once over every bad case and one good instance (module-wide, for time)."""
    directory: Path = tmp_path_factory.mktemp("bad-messages")
    database_url = f"sqlite+aiosqlite:///{directory / 'chargeworker.sqlite3'}"
    engine = create_engine(database_url)
    simulator = RevioSimulator()
    try:
        await upgrade_schema(engine, with_platform=True)
        resources = await local_aws.create_resources(prefix=unique_name())
        await simulator.start()
        harness = Harness(
            aws=local_aws,
            resources=resources,
            simulator=simulator,
            engine=engine,
            database_url=database_url,
            backend="sqlite",
            emails_before=len(local_aws.sent_emails()),
        )
        yield await _run_batch(harness)
    finally:
        await simulator.stop()
        await engine.dispose()


# --- every bad case, from the one run ------------------------------------------------


@pytest.mark.parametrize("case", BAD_CASES, ids=CASE_IDS)
def test_dead_lettered_body_intact(batch: BatchRun, case: BadCase) -> None:
    assert case.body in batch.dead_letters


@pytest.mark.parametrize("case", BAD_CASES, ids=CASE_IDS)
def test_dead_lettered_attributes_intact(batch: BatchRun, case: BadCase) -> None:
    copy = batch.dead_letters.get(case.body)

    assert copy is not None
    assert intact(copy.get("MessageAttributes", {})) == case.attributes


@pytest.mark.parametrize("case", BAD_CASES, ids=CASE_IDS)
def test_dead_letter_logged_with_reason(batch: BatchRun, case: BadCase) -> None:
    message_id = batch.sent_ids[case.name]
    entries = [
        entry
        for entry in batch.logs
        if entry.get("message_id") == message_id and entry["event"] == "message.dead_lettered"
    ]

    assert len(entries) == 1
    assert entries[0]["log_level"] == "error"
    assert entries[0]["queue"] == case.queue
    assert case.reason_words in entries[0]["reason"]


@pytest.mark.parametrize("case", BAD_CASES, ids=CASE_IDS)
def test_bad_message_counted(batch: BatchRun, case: BadCase) -> None:
    same_labels = [
        other
        for other in BAD_CASES
        if (other.queue, other.reason_kind) == (case.queue, case.reason_kind)
    ]

    assert batch.bad_counts[(case.queue, case.reason_kind)] == len(same_labels)


@pytest.mark.parametrize("queue", QUEUES)
def test_dead_letter_outcome_counted(batch: BatchRun, queue: str) -> None:
    expected = sum(1 for case in BAD_CASES if case.queue == queue)

    assert batch.dead_letter_counts[queue] == expected


def test_only_bad_messages_dead_lettered(batch: BatchRun) -> None:
    assert set(batch.dead_letters) == {case.body for case in BAD_CASES}


def test_good_push_reported(batch: BatchRun) -> None:
    expected = sorted(f"{queue_id}.txt" for queue_id in batch.good_queue_ids)

    assert batch.good_queue_ids
    assert sorted(batch.attachments) == expected


# --- no dead-letter queue, and a dead-letter queue that fails ------------------------


async def _reject_twice(harness: Harness, **overrides: Any) -> dict[str, Any]:
    """Send two bad create messages one after the other to a running daemon."""
    result: dict[str, Any] = {"sent_ids": []}
    rejected_before = bad_messages("create", "missing_attribute")

    async with harness.context(**overrides) as ctx:
        daemon = Daemon(ctx)
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            await daemon.start()
            try:
                for count in (1, 2):
                    body = f"bad message {count}"
                    result["sent_ids"].append(
                        await harness.send_raw(ctx, "create", {"PageNumber": string("1")}, body)
                    )
                    await wait_until(
                        lambda count=count: (
                            bad_messages("create", "missing_attribute") >= rejected_before + count
                        )
                    )
                    # Let the handler finish what it does after counting.
                    await wait_until(lambda: not daemon.is_busy)
                result["polling"] = [not task.done() for task in daemon._poll_tasks]
            finally:
                await daemon.drain()
                await daemon.close()
        result["logs"] = list(logs)
        queue_state = await ctx.aws.sqs.get_queue_attributes(
            QueueUrl=harness.resources.create_queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        result["queued"] = sum(int(value) for value in queue_state["Attributes"].values())
        result["dead_letters"] = await harness.dead_letters(ctx)
    return result


async def test_no_dead_letter_queue_keeps_message(sqlite_harness: Harness) -> None:
    # A long retry delay keeps the rejected message invisible, so the queue's own
    # redrive policy does not move it during the test.
    result = await _reject_twice(
        sqlite_harness, dead_letter_queue_url=None, transient_retry_delay_s=300
    )

    assert result["queued"] == 2
    assert result["dead_letters"] == []


async def test_no_dead_letter_queue_keeps_polling(sqlite_harness: Harness) -> None:
    result = await _reject_twice(
        sqlite_harness, dead_letter_queue_url=None, transient_retry_delay_s=300
    )

    assert result["polling"] == [True, True, True]


async def test_no_dead_letter_queue_logged(sqlite_harness: Harness) -> None:
    result = await _reject_twice(
        sqlite_harness, dead_letter_queue_url=None, transient_retry_delay_s=300
    )

    for message_id in result["sent_ids"]:
        entries = [entry for entry in result["logs"] if entry.get("message_id") == message_id]
        rejected = [entry for entry in entries if entry["event"] == "message.rejected"]
        assert len(rejected) == 1
        assert rejected[0]["log_level"] == "error"
        assert "QueueId or FileId" in rejected[0]["reason"]


async def test_failed_dead_letter_send_keeps_message(sqlite_harness: Harness) -> None:
    missing_queue = f"{sqlite_harness.aws.endpoint_url}/123456789012/{unique_name()}-missing"

    result = await _reject_twice(
        sqlite_harness, dead_letter_queue_url=missing_queue, transient_retry_delay_s=300
    )

    assert result["queued"] == 2
    assert result["polling"] == [True, True, True]


async def test_failed_dead_letter_send_logged(sqlite_harness: Harness) -> None:
    missing_queue = f"{sqlite_harness.aws.endpoint_url}/123456789012/{unique_name()}-missing"

    result = await _reject_twice(
        sqlite_harness, dead_letter_queue_url=missing_queue, transient_retry_delay_s=300
    )

    for message_id in result["sent_ids"]:
        errors = [
            entry
            for entry in result["logs"]
            if entry.get("message_id") == message_id and entry["log_level"] == "error"
        ]
        assert len(errors) >= 1
        assert any("QueueId or FileId" in str(entry) for entry in errors)


# --- ids too large for the platform's integer columns ----------------------------------


async def test_oversized_instance_id_dead_lettered(sqlite_harness: Harness) -> None:
    # The id columns store at most 64-bit integers, so this message can never succeed.
    oversized = "99999999999999999999"
    dead_before = finished("enqueue", "dead_letter")

    async with sqlite_harness.context() as ctx:
        daemon = Daemon(ctx)
        await daemon.start()
        try:
            received_before = REGISTRY.get_sample_value(
                "chargeworker_messages_received_total", {"queue": "enqueue"}
            )
            await sqlite_harness.send_raw(ctx, "enqueue", {"InstanceId": number(oversized)})
            await wait_until(
                lambda: (
                    (
                        REGISTRY.get_sample_value(
                            "chargeworker_messages_received_total", {"queue": "enqueue"}
                        )
                        or 0
                    )
                    > (received_before or 0)
                )
            )
            await wait_until(lambda: not daemon.is_busy)
        finally:
            await daemon.drain()
            await daemon.close()
        dead_letters = await sqlite_harness.dead_letters(ctx)

    assert finished("enqueue", "dead_letter") == dead_before + 1
    assert [message["Body"] for message in dead_letters] == ["test"]
