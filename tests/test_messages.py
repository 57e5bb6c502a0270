"""Tests of the SQS wire format: the exact messages chargeworker writes, and reading the
messages the old producers wrote, including malformed ones.

Everything here is pure except `test_enqueue_push_*`, which run the controller against
the embedded stack because the delay of an enqueue message is chosen there.
"""

from typing import Any

import pytest

from chargeworker.controller import enqueue_push
from chargeworker.errors import PermanentError
from chargeworker.messages import (
    CheckMessage,
    CreateMessage,
    EnqueueMessage,
    OutgoingMessage,
    Push,
    Target,
    check_message,
    create_message,
    enqueue_message,
    parse_check,
    parse_create,
    parse_enqueue,
)
from tests.harness import Harness

SUMMARY_STEP = "IsSendSummaryEmailForMultipleInstaceStep"  # sic, as the old producers spell it


def string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def number(value: str) -> dict[str, str]:
    return {"DataType": "Number", "StringValue": value}


def strings(values: dict[str, str]) -> dict[str, dict[str, str]]:
    return {name: string(value) for name, value in values.items()}


def wire(message: OutgoingMessage) -> dict[str, Any]:
    return {
        "queue": message.queue,
        "body": message.body,
        "attributes": message.sqs_attributes(),
        "delay_s": message.delay_s,
    }


# --- golden messages -----------------------------------------------------------------


def test_enqueue_single_golden() -> None:
    push = Push(instance_ids=(12,), integration_authentication_id=7)

    written = enqueue_message(12, push)

    assert wire(written) == {
        "queue": "enqueue",
        "body": "Instance to work is 12",
        "attributes": {
            "InstanceId": string("12"),
            "IsMultipleInstanceId": string("0"),
            "IsLastInstanceId": string("0"),
            "InstanceIds": string("12"),
            "CurrentIntegrationAuthenticationId": string("7"),
        },
        "delay_s": 0,
    }


def test_enqueue_multi_not_last_golden() -> None:
    push = Push(
        instance_ids=(12, 13, 14), is_multiple_instance=True, integration_authentication_id=7
    )

    written = enqueue_message(13, push)

    assert wire(written) == {
        "queue": "enqueue",
        "body": "Instance to work is 13",
        "attributes": {
            "InstanceId": string("13"),
            "IsMultipleInstanceId": string("1"),
            "IsLastInstanceId": string("0"),
            "InstanceIds": string("12,13,14"),
            "CurrentIntegrationAuthenticationId": string("7"),
        },
        "delay_s": 0,
    }


def test_enqueue_multi_last_golden() -> None:
    push = Push(
        instance_ids=(12, 13, 14),
        is_multiple_instance=True,
        is_last_instance=True,
        integration_authentication_id=7,
    )

    written = enqueue_message(14, push, delay_s=90)

    assert wire(written) == {
        "queue": "enqueue",
        "body": "Instance to work is 14",
        "attributes": {
            "InstanceId": string("14"),
            "IsMultipleInstanceId": string("1"),
            "IsLastInstanceId": string("1"),
            "InstanceIds": string("12,13,14"),
            "CurrentIntegrationAuthenticationId": string("7"),
        },
        "delay_s": 90,
    }


def test_create_queue_page_golden() -> None:
    push = Push(
        instance_ids=(12, 13),
        is_multiple_instance=True,
        is_last_instance=True,
        integration_authentication_id=7,
        summary_step="1",
    )
    message = CreateMessage(
        target=Target("queue", 31),
        push=push,
        portal_type_id=2,
        page_number=4,
        retry_count=1,
        retry_number=3,
    )

    written = create_message(message, delay_s=300)

    assert wire(written) == {
        "queue": "create",
        "body": "Queue to work is 31",
        "attributes": {
            "QueueId": string("31"),
            "IsMultipleInstanceId": string("1"),
            "IsLastInstanceId": string("1"),
            "InstanceIds": string("12,13"),
            "PortalTypeId": string("2"),
            "CurrentIntegrationAuthenticationId": string("7"),
            SUMMARY_STEP: string("1"),
            "RetryNumber": string("3"),
            "PageNumber": string("4"),
            "RetryCount": string("1"),
        },
        "delay_s": 300,
    }


def test_check_queue_golden() -> None:
    push = Push(instance_ids=(12,), integration_authentication_id=7)
    message = CheckMessage(target=Target("queue", 31), push=push, portal_type_id=3, retry_number=2)

    written = check_message(message, delay_s=60)

    assert wire(written) == {
        "queue": "check",
        "body": "Queue to work is 31",
        "attributes": {
            "QueueId": string("31"),
            "IsMultipleInstanceId": string("0"),
            "IsLastInstanceId": string("0"),
            "InstanceIds": string("12"),
            "PortalTypeId": string("3"),
            "CurrentIntegrationAuthenticationId": string("7"),
            SUMMARY_STEP: string("0"),
            "RetryNumber": string("2"),
        },
        "delay_s": 60,
    }


def test_create_file_page_golden() -> None:
    message = CreateMessage(
        target=Target("file", 5),
        push=Push(instance_ids=(), integration_authentication_id=7),
        page_number=2,
        retry_count=1,
    )

    written = create_message(message)

    assert wire(written) == {
        "queue": "create",
        "body": "File to work is 5",
        "attributes": {
            "FileId": string("5"),
            "CurrentIntegrationAuthenticationId": string("7"),
            "PageNumber": string("2"),
            "RetryCount": string("1"),
        },
        "delay_s": 0,
    }


def test_check_file_golden() -> None:
    message = CheckMessage(
        target=Target("file", 5),
        push=Push(instance_ids=(), integration_authentication_id=7),
        retry_number=4,
    )

    written = check_message(message, delay_s=60)

    assert wire(written) == {
        "queue": "check",
        "body": "File to work is 5",
        "attributes": {
            "FileId": string("5"),
            "CurrentIntegrationAuthenticationId": string("7"),
            "RetryNumber": string("4"),
        },
        "delay_s": 60,
    }


def test_push_check_golden() -> None:
    # The interface lists no body for a push check; the body is informational only.
    push = Push(
        instance_ids=(12, 13),
        is_multiple_instance=True,
        is_last_instance=True,
        integration_authentication_id=7,
    )
    message = CheckMessage(target=None, push=push, retry_number=1)

    written = check_message(message, delay_s=60)

    assert wire(written) == {
        "queue": "check",
        "body": "Push to check is 12,13",
        "attributes": {
            "IsMultipleInstanceId": string("1"),
            "IsLastInstanceId": string("1"),
            "InstanceIds": string("12,13"),
            "CurrentIntegrationAuthenticationId": string("7"),
            "RetryNumber": string("1"),
        },
        "delay_s": 60,
    }


# --- the controller's enqueue messages (embedded stack) ------------------------------


class SentRecorder:
    """Records each outgoing message, then sends it on to the local SQS."""

    def __init__(self, aws: Any) -> None:
        self.aws = aws
        self.sent: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage) -> str:
        self.sent.append(message)
        return str(await self.aws.send(message))


async def test_enqueue_push_single_instance(sqlite_harness: Harness) -> None:
    sample = await sqlite_harness.load_sample(devices=3, seed=5)
    instance_id = sample.instances[0].instance_id

    async with sqlite_harness.context() as ctx, ctx.engine.connect() as connection:
        recorder = SentRecorder(ctx.aws)
        await enqueue_push(recorder, connection, [instance_id])  # type: ignore[arg-type]

    assert [wire(message) for message in recorder.sent] == [
        {
            "queue": "enqueue",
            "body": f"Instance to work is {instance_id}",
            "attributes": strings(
                {
                    "InstanceId": str(instance_id),
                    "IsMultipleInstanceId": "0",
                    "IsLastInstanceId": "0",
                    "InstanceIds": str(instance_id),
                    "CurrentIntegrationAuthenticationId": str(sample.integration_authentication_id),
                }
            ),
            "delay_s": 0,
        }
    ]


async def test_enqueue_push_delays_last(sqlite_harness: Harness) -> None:
    sample = await sqlite_harness.load_sample(devices=3, seed=5)
    ids = [instance.instance_id for instance in sample.instances]
    joined = ",".join(str(instance_id) for instance_id in ids)

    async with sqlite_harness.context() as ctx, ctx.engine.connect() as connection:
        recorder = SentRecorder(ctx.aws)
        await enqueue_push(recorder, connection, ids, integration_authentication_id=44)  # type: ignore[arg-type]

    expected = [
        {
            "queue": "enqueue",
            "body": f"Instance to work is {instance_id}",
            "attributes": strings(
                {
                    "InstanceId": str(instance_id),
                    "IsMultipleInstanceId": "1",
                    "IsLastInstanceId": "1" if position == len(ids) - 1 else "0",
                    "InstanceIds": joined,
                    "CurrentIntegrationAuthenticationId": "44",
                }
            ),
            "delay_s": 90 if position == len(ids) - 1 else 0,
        }
        for position, instance_id in enumerate(ids)
    ]
    assert [wire(message) for message in recorder.sent] == expected


# --- reading what the old producers wrote --------------------------------------------


def test_number_data_type_read() -> None:
    parsed = parse_create(
        {
            "QueueId": number("31"),
            "PageNumber": number("2"),
            "RetryCount": number("1"),
            "PortalTypeId": number("3"),
            "CurrentIntegrationAuthenticationId": number("7"),
        }
    )

    assert parsed.target == Target("queue", 31)
    assert parsed.page_number == 2
    assert parsed.retry_count == 1
    assert parsed.portal_type_id == 3
    assert parsed.push.integration_authentication_id == 7


def test_number_instance_id_read() -> None:
    parsed = parse_enqueue({"InstanceId": number("12")})

    assert parsed.instance_id == 12


def test_booleans_zero_one_read() -> None:
    parsed = parse_enqueue(
        {
            "InstanceId": string("12"),
            "IsMultipleInstanceId": number("1"),
            "IsLastInstanceId": string("0"),
            "InstanceIds": string("12,13"),
        }
    )

    assert parsed.push.is_multiple_instance is True
    assert parsed.push.is_last_instance is False


def test_empty_strings_count_as_absent() -> None:
    parsed = parse_create(
        {
            "QueueId": string("31"),
            "FileId": string(""),
            "PageNumber": string(""),
            "RetryCount": string(""),
            "RetryNumber": string(""),
            "PortalTypeId": string(""),
            "IsMultipleInstanceId": string(""),
            "IsLastInstanceId": string(""),
            "InstanceIds": string(""),
            "CurrentIntegrationAuthenticationId": string(""),
            SUMMARY_STEP: string(""),
        }
    )

    assert parsed == CreateMessage(target=Target("queue", 31), push=Push(instance_ids=()))


def test_empty_instance_ids_fall_back() -> None:
    parsed = parse_enqueue({"InstanceId": string("12"), "InstanceIds": string("")})

    assert parsed.push.instance_ids == (12,)


def test_create_defaults_when_absent() -> None:
    parsed = parse_create({"QueueId": string("31")})

    assert parsed.page_number == 1
    assert parsed.retry_count == 0
    assert parsed.retry_number == 0
    assert parsed.portal_type_id == 0
    assert parsed.push == Push(instance_ids=())


def test_enqueue_defaults_when_absent() -> None:
    parsed = parse_enqueue({"InstanceId": string("12")})

    assert parsed == EnqueueMessage(
        instance_id=12,
        push=Push(
            instance_ids=(12,),
            is_multiple_instance=False,
            is_last_instance=False,
            integration_authentication_id=0,
            summary_step="0",
        ),
    )


def test_check_defaults_when_absent() -> None:
    parsed = parse_check({"FileId": number("5")})

    assert parsed == CheckMessage(target=Target("file", 5), push=Push(instance_ids=()))


def test_summary_step_misspelled_read() -> None:
    parsed = parse_check({"QueueId": string("31"), SUMMARY_STEP: string("1")})

    assert parsed.push.summary_step == "1"


def test_summary_step_instance_alias_read() -> None:
    attributes = {
        "QueueId": string("31"),
        "IsSendSummaryEmailForMultipleInstanceStep": string("1"),
    }

    parsed = parse_check(attributes)
    written = check_message(parsed)

    assert parsed.push.summary_step == "1"
    assert written.attributes[SUMMARY_STEP] == "1"
    assert "IsSendSummaryEmailForMultipleInstanceStep" not in written.attributes


def test_old_portal_single_instance_push() -> None:
    parsed = parse_enqueue(
        {
            "InstanceId": number("12"),
            "IsMultipleInstanceId": number("1"),
            "IsLastInstanceId": number("1"),
            "InstanceIds": string("12"),
        }
    )

    assert parsed.instance_id == 12
    assert parsed.push.is_multiple_instance is True
    assert parsed.push.is_last_instance is True
    assert parsed.push.instance_ids == (12,)


def test_push_check_without_target() -> None:
    parsed = parse_check(
        {
            "IsMultipleInstanceId": string("1"),
            "IsLastInstanceId": string("1"),
            "InstanceIds": string("12,13"),
            "CurrentIntegrationAuthenticationId": number("7"),
            "RetryNumber": number("2"),
        }
    )

    assert parsed.target is None
    assert parsed.push.instance_ids == (12, 13)
    assert parsed.push.integration_authentication_id == 7
    assert parsed.retry_number == 2


def test_portal_type_ignored_for_files() -> None:
    parsed = parse_create({"FileId": string("5"), "PortalTypeId": string("7")})

    assert parsed.target == Target("file", 5)
    assert parsed.portal_type_id == 0


# --- round trip ----------------------------------------------------------------------

MULTI_PUSH = Push(
    instance_ids=(12, 13),
    is_multiple_instance=True,
    is_last_instance=True,
    integration_authentication_id=7,
    summary_step="1",
)
ACCOUNT_ONLY = Push(instance_ids=(), integration_authentication_id=7)


@pytest.mark.parametrize(
    "message",
    [
        EnqueueMessage(12, Push(instance_ids=(12,), integration_authentication_id=7)),
        EnqueueMessage(
            13,
            Push(instance_ids=(12, 13), is_multiple_instance=True, integration_authentication_id=7),
        ),
        EnqueueMessage(
            13,
            Push(
                instance_ids=(12, 13),
                is_multiple_instance=True,
                is_last_instance=True,
                integration_authentication_id=7,
            ),
        ),
    ],
    ids=["single", "multi_not_last", "multi_last"],
)
def test_enqueue_round_trip(message: EnqueueMessage) -> None:
    written = enqueue_message(message.instance_id, message.push)

    assert parse_enqueue(written.sqs_attributes()) == message


@pytest.mark.parametrize(
    "message",
    [
        CreateMessage(
            Target("queue", 31), MULTI_PUSH, 2, page_number=4, retry_count=1, retry_number=3
        ),
        CreateMessage(Target("file", 5), ACCOUNT_ONLY, page_number=2, retry_count=1),
    ],
    ids=["queue_page", "file_page"],
)
def test_create_round_trip(message: CreateMessage) -> None:
    written = create_message(message)

    assert parse_create(written.sqs_attributes()) == message


@pytest.mark.parametrize(
    "message",
    [
        CheckMessage(Target("queue", 31), MULTI_PUSH, portal_type_id=3, retry_number=2),
        CheckMessage(Target("file", 5), ACCOUNT_ONLY, retry_number=4),
        CheckMessage(None, Push((12, 13), True, True, 7), retry_number=1),
    ],
    ids=["queue", "file", "push"],
)
def test_check_round_trip(message: CheckMessage) -> None:
    written = check_message(message)

    assert parse_check(written.sqs_attributes()) == message


# --- malformed values ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("parse", "attributes", "named"),
    [
        (
            parse_create,
            {"QueueId": string("31"), "PageNumber": string("abc")},
            ["PageNumber", "abc"],
        ),
        (parse_enqueue, {"InstanceId": string("-1")}, ["InstanceId", "-1"]),
        (
            parse_enqueue,
            {"InstanceId": string("12"), "IsLastInstanceId": string("true")},
            ["IsLastInstanceId", "true"],
        ),
        (
            parse_create,
            {"QueueId": string("31"), "FileId": string("5")},
            ["QueueId", "31", "FileId", "5"],
        ),
        (
            parse_check,
            {"QueueId": number("31"), "FileId": number("5")},
            ["QueueId", "31", "FileId", "5"],
        ),
        (parse_create, {"PageNumber": string("1")}, ["QueueId", "FileId"]),
        (parse_check, {"RetryNumber": string("1")}, ["QueueId", "FileId"]),
        (
            parse_enqueue,
            {"InstanceId": string("12"), "InstanceIds": string("1,x")},
            ["InstanceIds", "1,x"],
        ),
        (
            parse_create,
            {"QueueId": string("31"), "PortalTypeId": string("7")},
            ["PortalTypeId", "7"],
        ),
        (
            parse_check,
            {"QueueId": string("31"), "PortalTypeId": number("7")},
            ["PortalTypeId", "7"],
        ),
        (parse_create, {"QueueId": string("31"), "RetryCount": string("-2")}, ["RetryCount", "-2"]),
        (
            parse_check,
            {"QueueId": string("31"), "RetryNumber": string("x1")},
            ["RetryNumber", "x1"],
        ),
        (parse_create, {"QueueId": string("0")}, ["QueueId", "0"]),
        (parse_enqueue, {"InstanceId": string("12.5")}, ["InstanceId", "12.5"]),
        (
            parse_enqueue,
            {"InstanceId": string("12"), "CurrentIntegrationAuthenticationId": string("abc")},
            ["CurrentIntegrationAuthenticationId", "abc"],
        ),
        (
            parse_check,
            {"IsMultipleInstanceId": string("1"), "IsLastInstanceId": string("1")},
            ["InstanceIds"],
        ),
    ],
    ids=[
        "page_number_abc",
        "instance_id_negative",
        "is_last_true",
        "create_both_targets",
        "check_both_targets",
        "create_neither_target",
        "check_neither_target",
        "instance_ids_1_x",
        "create_portal_type_7",
        "check_portal_type_7",
        "retry_count_negative",
        "retry_number_x1",
        "queue_id_zero",
        "instance_id_decimal",
        "account_abc",
        "push_check_without_ids",
    ],
)
def test_bad_value_rejected(parse: Any, attributes: dict[str, Any], named: list[str]) -> None:
    with pytest.raises(PermanentError) as caught:
        parse(attributes)

    for word in named:
        assert word in str(caught.value)


def test_missing_instance_id_rejected() -> None:
    with pytest.raises(PermanentError, match="InstanceId"):
        parse_enqueue({"IsMultipleInstanceId": string("0")})


def test_non_ascii_digits_rejected() -> None:
    # Python's `\d` and `int()` accept any Unicode decimal digit, so without an ASCII
    # check the fullwidth "１２" below would parse as instance 12.
    with pytest.raises(PermanentError, match="InstanceId"):
        parse_enqueue({"InstanceId": string("\uff11\uff12")})
