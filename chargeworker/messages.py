"""The three SQS message kinds: parsed from and written to message attributes.

The attribute names and encodings are those of the functions chargeworker
replaces, so either side can be swapped one phase at a time. Attributes are
read whatever their DataType and written as `String`. Booleans travel as
"0"/"1", and an empty string counts as absent.
"""

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from chargeworker.errors import PermanentError

QueueName = Literal["enqueue", "create", "check"]
TargetKind = Literal["queue", "file"]

SUMMARY_STEP = "IsSendSummaryEmailForMultipleInstaceStep"  # sic: the old producers' spelling
SUMMARY_STEP_ALIASES = (SUMMARY_STEP, "IsSendSummaryEmailForMultipleInstanceStep")

_INTEGER = re.compile(r"^[+-]?[0-9]+$")
# Ids of BIGINT columns (instances, queues) and of INT columns (everything else).
BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1
_BIGINT_ATTRIBUTES = frozenset({"InstanceId", "QueueId", "InstanceIds"})


@dataclass(frozen=True)
class Push:
    """Attributes that describe the push a message belongs to and travel with it."""

    instance_ids: tuple[int, ...]
    is_multiple_instance: bool = False
    is_last_instance: bool = False
    integration_authentication_id: int = 0
    summary_step: str = "0"


@dataclass(frozen=True)
class Target:
    """Target of a create or check message: a winning queue or an uploaded file."""

    kind: TargetKind
    id: int

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


@dataclass(frozen=True)
class EnqueueMessage:
    instance_id: int
    push: Push


@dataclass(frozen=True)
class CreateMessage:
    target: Target
    push: Push
    portal_type_id: int = 0
    page_number: int = 1
    retry_count: int = 0
    retry_number: int = 0


@dataclass(frozen=True)
class CheckMessage:
    """A check of one queue or file; `target` is None for a push check."""

    target: Target | None
    push: Push
    portal_type_id: int = 0
    retry_number: int = 0


@dataclass(frozen=True)
class OutgoingMessage:
    """A message ready for SQS: body, string attributes and delay."""

    queue: QueueName
    body: str
    attributes: dict[str, str]
    delay_s: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def sqs_attributes(self) -> dict[str, dict[str, str]]:
        return {
            name: {"DataType": "String", "StringValue": value}
            for name, value in self.attributes.items()
        }


# --- reading -----------------------------------------------------------------


def _raw_values(attributes: dict[str, Any]) -> dict[str, str]:
    """Flatten SQS attributes to name → string, dropping empty values."""
    values: dict[str, str] = {}
    for name, attribute in attributes.items():
        value = attribute.get("StringValue") if isinstance(attribute, dict) else attribute
        if value is None:
            continue
        text = str(value).strip()
        if text:
            values[name] = text
    return values


def _integer(values: dict[str, str], name: str, default: int | None, *, minimum: int) -> int:
    text = values.get(name)
    if text is None:
        if default is None:
            raise PermanentError(f"attribute {name} is missing", kind="missing_attribute")
        return default
    maximum = BIGINT_MAX if name in _BIGINT_ATTRIBUTES else INT_MAX
    if not _INTEGER.match(text) or not minimum <= int(text) <= maximum:
        expected = "a positive integer" if minimum > 0 else f"an integer >= {minimum}"
        raise PermanentError(
            f"attribute {name} has invalid value {text!r}: expected {expected} up to {maximum}",
            kind="invalid_attribute",
        )
    return int(text)


def _flag(values: dict[str, str], name: str) -> bool:
    text = values.get(name, "0")
    if text not in ("0", "1"):
        raise PermanentError(
            f"attribute {name} has invalid value {text!r}: expected 0 or 1",
            kind="invalid_attribute",
        )
    return text == "1"


def _instance_ids(values: dict[str, str], fallback: int | None) -> tuple[int, ...]:
    text = values.get("InstanceIds")
    if text is None:
        return (fallback,) if fallback is not None else ()
    ids = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not _INTEGER.match(part) or not 1 <= int(part) <= BIGINT_MAX:
            raise PermanentError(
                f"attribute InstanceIds has invalid value {text!r}: expected comma-separated "
                "positive integers",
                kind="invalid_attribute",
            )
        ids.append(int(part))
    return tuple(ids)


def _push(values: dict[str, str], instance_id: int | None) -> Push:
    summary_step = next((values[alias] for alias in SUMMARY_STEP_ALIASES if alias in values), "0")
    return Push(
        instance_ids=_instance_ids(values, instance_id),
        is_multiple_instance=_flag(values, "IsMultipleInstanceId"),
        is_last_instance=_flag(values, "IsLastInstanceId"),
        integration_authentication_id=_integer(
            values, "CurrentIntegrationAuthenticationId", 0, minimum=0
        ),
        summary_step=summary_step,
    )


def _target(values: dict[str, str]) -> Target | None:
    has_queue = "QueueId" in values
    has_file = "FileId" in values
    if has_queue and has_file:
        raise PermanentError(
            f"message carries both QueueId {values['QueueId']!r} and FileId "
            f"{values['FileId']!r}: expected one of them",
            kind="ambiguous_target",
        )
    if has_queue:
        return Target("queue", _integer(values, "QueueId", None, minimum=1))
    if has_file:
        return Target("file", _integer(values, "FileId", None, minimum=1))
    return None


_MISSING_TARGET = "attribute QueueId or FileId is missing"


def _portal_type(values: dict[str, str]) -> int:
    portal_type_id = _integer(values, "PortalTypeId", 0, minimum=0)
    if portal_type_id not in (0, 2, 3):
        raise PermanentError(
            f"attribute PortalTypeId has invalid value {portal_type_id!r}: expected 0, 2 or 3",
            kind="invalid_attribute",
        )
    return portal_type_id


def parse_enqueue(attributes: dict[str, Any]) -> EnqueueMessage:
    """Parse an enqueue message; raise PermanentError naming the bad attribute."""
    values = _raw_values(attributes)
    instance_id = _integer(values, "InstanceId", None, minimum=1)
    return EnqueueMessage(instance_id=instance_id, push=_push(values, instance_id))


def parse_create(attributes: dict[str, Any]) -> CreateMessage:
    """Parse a create (page) message; raise PermanentError naming the bad attribute."""
    values = _raw_values(attributes)
    target = _target(values)
    if target is None:
        raise PermanentError(_MISSING_TARGET, kind="missing_attribute")
    return CreateMessage(
        target=target,
        push=_push(values, None),
        portal_type_id=_portal_type(values) if target.kind == "queue" else 0,
        page_number=_integer(values, "PageNumber", 1, minimum=1),
        retry_count=_integer(values, "RetryCount", 0, minimum=0),
        retry_number=_integer(values, "RetryNumber", 0, minimum=0),
    )


def parse_check(attributes: dict[str, Any]) -> CheckMessage:
    """Parse a check message, including a push check that names no queue or file."""
    values = _raw_values(attributes)
    push = _push(values, None)
    target = _target(values)
    is_push_check = push.is_multiple_instance and push.is_last_instance
    if target is None and not is_push_check:
        raise PermanentError(_MISSING_TARGET, kind="missing_attribute")
    if target is None and not push.instance_ids:
        raise PermanentError("push check carries no InstanceIds", kind="missing_attribute")
    return CheckMessage(
        target=target,
        push=push,
        portal_type_id=_portal_type(values) if target and target.kind == "queue" else 0,
        retry_number=_integer(values, "RetryNumber", 0, minimum=0),
    )


# --- writing -----------------------------------------------------------------


def _bit(value: bool) -> str:
    return "1" if value else "0"


def _push_attributes(push: Push) -> dict[str, str]:
    return {
        "IsMultipleInstanceId": _bit(push.is_multiple_instance),
        "IsLastInstanceId": _bit(push.is_last_instance),
        "InstanceIds": ",".join(str(instance_id) for instance_id in push.instance_ids),
    }


def enqueue_message(instance_id: int, push: Push, *, delay_s: int = 0) -> OutgoingMessage:
    attributes = {
        "InstanceId": str(instance_id),
        **_push_attributes(push),
        "CurrentIntegrationAuthenticationId": str(push.integration_authentication_id),
    }
    return OutgoingMessage("enqueue", f"Instance to work is {instance_id}", attributes, delay_s)


def _body(target: Target) -> str:
    noun = "Queue" if target.kind == "queue" else "File"
    return f"{noun} to work is {target.id}"


def create_message(message: CreateMessage, *, delay_s: int = 0) -> OutgoingMessage:
    target, push = message.target, message.push
    account = str(push.integration_authentication_id)
    if target.kind == "file":
        attributes = {
            "FileId": str(target.id),
            "CurrentIntegrationAuthenticationId": account,
            "PageNumber": str(message.page_number),
            "RetryCount": str(message.retry_count),
        }
    else:
        attributes = {
            **_queue_attributes(target, push, message.portal_type_id, message.retry_number),
            "PageNumber": str(message.page_number),
            "RetryCount": str(message.retry_count),
        }
    return OutgoingMessage("create", _body(target), attributes, delay_s)


def _queue_attributes(
    target: Target, push: Push, portal_type_id: int, retry_number: int
) -> dict[str, str]:
    """Attributes that the create and check messages of a queue share, in wire order."""
    return {
        "QueueId": str(target.id),
        **_push_attributes(push),
        "PortalTypeId": str(portal_type_id),
        "CurrentIntegrationAuthenticationId": str(push.integration_authentication_id),
        SUMMARY_STEP: push.summary_step,
        "RetryNumber": str(retry_number),
    }


def check_message(message: CheckMessage, *, delay_s: int = 0) -> OutgoingMessage:
    target, push = message.target, message.push
    account = str(push.integration_authentication_id)
    retry_number = str(message.retry_number)
    if target is None:
        attributes = {
            "IsMultipleInstanceId": "1",
            "IsLastInstanceId": "1",
            "InstanceIds": _push_attributes(push)["InstanceIds"],
            "CurrentIntegrationAuthenticationId": account,
            "RetryNumber": retry_number,
        }
        body = "Push to check is " + attributes["InstanceIds"]
    elif target.kind == "file":
        attributes = {
            "FileId": str(target.id),
            "CurrentIntegrationAuthenticationId": account,
            "RetryNumber": retry_number,
        }
        body = _body(target)
    else:
        attributes = _queue_attributes(target, push, message.portal_type_id, message.retry_number)
        body = _body(target)
    return OutgoingMessage("check", body, attributes, delay_s)
