"""Raw attribute sets exactly as the old controller and functions wrote them, read back.

Each set copies what the replaced producers sent: every value a string (some as
Number), booleans as "0"/"1", and only the attributes that producer knew about.
"""

from chargeworker.messages import (
    SUMMARY_STEP,
    CheckMessage,
    CreateMessage,
    EnqueueMessage,
    Push,
    Target,
    parse_check,
    parse_create,
    parse_enqueue,
)


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _number(value: str) -> dict[str, str]:
    return {"DataType": "Number", "StringValue": value}


def test_old_controller_enqueue_read() -> None:
    raw = {
        "InstanceId": _string("12"),
        "IsMultipleInstanceId": _string("1"),
        "IsLastInstanceId": _string("1"),
        "InstanceIds": _string("11,12"),
        "CurrentIntegrationAuthenticationId": _string("7"),
    }

    expected = EnqueueMessage(
        instance_id=12,
        push=Push(
            instance_ids=(11, 12),
            is_multiple_instance=True,
            is_last_instance=True,
            integration_authentication_id=7,
        ),
    )
    assert parse_enqueue(raw) == expected


def test_old_enqueue_function_create_read() -> None:
    # The old enqueue function wrote no PageNumber, RetryCount or RetryNumber.
    raw = {
        "QueueId": _string("90001"),
        "IsMultipleInstanceId": _string("0"),
        "IsLastInstanceId": _string("0"),
        "InstanceIds": _string("12"),
        "PortalTypeId": _string("2"),
        "CurrentIntegrationAuthenticationId": _string("7"),
    }

    expected = CreateMessage(
        target=Target("queue", 90001),
        push=Push(instance_ids=(12,), integration_authentication_id=7),
        portal_type_id=2,
        page_number=1,
        retry_count=0,
        retry_number=0,
    )
    assert parse_create(raw) == expected


def test_old_create_function_page_read() -> None:
    raw = {
        "QueueId": _number("90001"),
        "IsMultipleInstanceId": _number("1"),
        "IsLastInstanceId": _number("0"),
        "InstanceIds": _string("11,12,13"),
        "PortalTypeId": _number("3"),
        "CurrentIntegrationAuthenticationId": _number("7"),
        SUMMARY_STEP: _number("0"),
        "RetryNumber": _number("0"),
        "PageNumber": _number("4"),
        "RetryCount": _number("2"),
    }

    parsed = parse_create(raw)

    assert parsed.target == Target("queue", 90001)
    assert parsed.page_number == 4
    assert parsed.retry_count == 2
    assert parsed.portal_type_id == 3
    assert parsed.push.instance_ids == (11, 12, 13)
    assert parsed.push.is_multiple_instance
    assert not parsed.push.is_last_instance


def test_old_create_function_check_read() -> None:
    raw = {
        "QueueId": _string("90001"),
        "PortalTypeId": _string("0"),
        "InstanceIds": _string("12"),
        "IsMultipleInstanceId": _string("0"),
        "IsLastInstanceId": _string("0"),
        "CurrentIntegrationAuthenticationId": _string("7"),
        SUMMARY_STEP: _string("0"),
        "RetryNumber": _string("3"),
    }

    expected = CheckMessage(
        target=Target("queue", 90001),
        push=Push(instance_ids=(12,), integration_authentication_id=7),
        portal_type_id=0,
        retry_number=3,
    )
    assert parse_check(raw) == expected


def test_old_portal_file_create_read() -> None:
    raw = {
        "FileId": _number("41"),
        "CurrentIntegrationAuthenticationId": _number("7"),
    }

    parsed = parse_create(raw)

    assert parsed.target == Target("file", 41)
    assert parsed.page_number == 1
    assert parsed.retry_count == 0
    assert parsed.push.integration_authentication_id == 7


def test_old_file_check_read() -> None:
    raw = {
        "FileId": _string("41"),
        "CurrentIntegrationAuthenticationId": _string("7"),
        "RetryNumber": _string("1"),
        # Old producers sent empty strings for attributes they had no value for.
        "InstanceIds": _string(""),
        "PortalTypeId": _string(""),
    }

    parsed = parse_check(raw)

    assert parsed.target == Target("file", 41)
    assert parsed.retry_number == 1
    assert parsed.portal_type_id == 0
