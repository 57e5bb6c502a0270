"""One SQS queue's long-poll loop: receive, dispatch to the phase, then delete or dead-letter.

This module alone decides a message's fate: done (delete), retry later (leave it
in the queue, visible again after a short delay) or dead-letter (a permanent
error: copy it, body and attributes intact, to the dead-letter queue).
"""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from chargeworker import heartbeat, metrics
from chargeworker.context import Context
from chargeworker.errors import PermanentError, TransientError
from chargeworker.messages import QueueName
from chargeworker.phases.sending import shielded

log = structlog.get_logger()

Dispatch = Callable[[Context, dict[str, Any]], Awaitable[None]]
RECEIVE_ERROR_BACKOFF_S = 1.0


class Consumer:
    """Long-polls one queue and runs each message under the queue's concurrency limit."""

    def __init__(self, name: QueueName, ctx: Context, dispatch: Dispatch) -> None:
        self.name = name
        self.ctx = ctx
        self.dispatch = dispatch
        self.queue_url = ctx.aws.queue_url(name)
        self.concurrency = ctx.settings.concurrency_per_queue
        self.in_flight: set[asyncio.Task[None]] = set()
        self.heartbeat = time.monotonic()
        self.counts: dict[str, int] = {}
        self._slot_freed = asyncio.Event()

    @property
    def is_busy(self) -> bool:
        return bool(self.in_flight)

    async def run(self) -> None:
        """Receive until cancelled; handlers keep running when the loop stops."""
        while True:
            free = self.concurrency - len(self.in_flight)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            messages = await self._receive(min(free, self.ctx.settings.max_messages_per_receive))
            self.heartbeat = time.monotonic()
            for message in messages:
                task = asyncio.create_task(self._handle(message))
                self.in_flight.add(task)
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self.heartbeat = time.monotonic()
        self._slot_freed.set()

    async def _receive(self, max_messages: int) -> list[dict[str, Any]]:
        try:
            answer = await self.ctx.aws.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=max_messages,
                WaitTimeSeconds=self.ctx.settings.receive_wait_s,
                VisibilityTimeout=self.ctx.settings.visibility_timeout_s,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
            )
        except (BotoCoreError, ClientError) as exc:
            log.warning("consumer.receive_failed", queue=self.name, error=str(exc))
            await asyncio.sleep(RECEIVE_ERROR_BACKOFF_S)
            return []
        return list(answer.get("Messages", []))

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    async def _handle(self, message: dict[str, Any]) -> None:
        structlog.contextvars.bind_contextvars(queue=self.name, message_id=message["MessageId"])
        heartbeat.set_listener(self.beat)
        metrics.MESSAGES_RECEIVED.labels(self.name).inc()
        metrics.MESSAGES_IN_FLIGHT.labels(self.name).inc()
        started = time.monotonic()
        try:
            outcome = await self._run_phase(message)
        finally:
            metrics.MESSAGES_IN_FLIGHT.labels(self.name).dec()
            metrics.HANDLER_DURATION.labels(self.name).observe(time.monotonic() - started)
        metrics.MESSAGES_FINISHED.labels(self.name, outcome).inc()
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    async def _run_phase(self, message: dict[str, Any]) -> str:
        try:
            async with self._kept_invisible(message):
                await self.dispatch(self.ctx, message.get("MessageAttributes", {}))
        except PermanentError as exc:
            return await shielded(self._reject(message, exc))
        except TransientError as exc:
            log.warning("message.retry_later", error=str(exc))
            await shielded(self._retry_later(message))
            return "retry"
        except asyncio.CancelledError:
            log.warning("message.cancelled")
            raise
        except Exception:
            log.exception("message.failed")
            await shielded(self._retry_later(message))
            return "retry"
        await shielded(self._delete(message))
        log.info("message.done")
        return "done"

    @asynccontextmanager
    async def _kept_invisible(self, message: dict[str, Any]) -> AsyncIterator[None]:
        """Extend the message's visibility while its work runs, so SQS keeps it hidden."""
        task = asyncio.create_task(self._extend_visibility(message))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _extend_visibility(self, message: dict[str, Any]) -> None:
        timeout_s = self.ctx.settings.visibility_timeout_s
        while True:
            await asyncio.sleep(timeout_s / 2)
            try:
                await self.ctx.aws.sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=timeout_s,
                )
            except (BotoCoreError, ClientError) as exc:
                log.warning("message.visibility_extension_failed", error=str(exc))
            else:
                log.debug("message.visibility_extended", visibility_timeout_s=timeout_s)

    async def _delete(self, message: dict[str, Any]) -> None:
        await self.ctx.aws.sqs.delete_message(
            QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
        )

    async def _retry_later(self, message: dict[str, Any]) -> None:
        try:
            await self.ctx.aws.sqs.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=self.ctx.settings.transient_retry_delay_s,
            )
        except (BotoCoreError, ClientError) as exc:
            log.warning("message.visibility_change_failed", error=str(exc))

    async def _reject(self, message: dict[str, Any], error: PermanentError) -> str:
        """Move a message that can never succeed to the dead-letter queue, or leave it."""
        metrics.BAD_MESSAGES.labels(self.name, error.kind).inc()
        dead_letter_url = self.ctx.settings.dead_letter_queue_url
        if not dead_letter_url:
            log.error("message.rejected", reason=error.reason, dead_letter_queue=None)
            await self._retry_later(message)
            return "permanent_error"
        try:
            await self.ctx.aws.sqs.send_message(
                QueueUrl=dead_letter_url,
                MessageBody=message.get("Body", ""),
                MessageAttributes=_resendable(message.get("MessageAttributes", {})),
            )
        except (BotoCoreError, ClientError) as exc:
            log.error("message.dead_letter_failed", reason=error.reason, error=str(exc))
            await self._retry_later(message)
            return "retry"
        await self._delete(message)
        log.error("message.dead_lettered", reason=error.reason)
        return "dead_letter"


def _resendable(attributes: dict[str, Any]) -> dict[str, Any]:
    """Keep each attribute's DataType and value, dropping SQS's read-only list fields."""
    copied = {}
    for name, attribute in attributes.items():
        value = {"DataType": attribute["DataType"]}
        for field in ("StringValue", "BinaryValue"):
            if field in attribute:
                value[field] = attribute[field]
        copied[name] = value
    return copied
