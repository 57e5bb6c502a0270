"""A test harness around the embedded stack: one moto server per session, fresh queues,
bucket, database and Rev.io simulator per test, and the daemon run until idle."""

import asyncio
import email
import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from chargeworker.config import Settings
from chargeworker.context import Context
from chargeworker.controller import enqueue_push
from chargeworker.daemon import Daemon, run_until
from chargeworker.db.platform import m2m_charge_queue, mobility_charge_queue
from chargeworker.db.tables import charge_line
from chargeworker.devstack.local_aws import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    LocalAws,
    LocalResources,
)
from chargeworker.devstack.revio_simulator import RevioSimulator
from chargeworker.devstack.sample import Sample, load_sample
from chargeworker.devstack.stack import SHORT_DELAYS
from chargeworker.messages import OutgoingMessage, QueueName
from chargeworker.runtime import open_context

# Delays near zero: no test waits on a real poll, retry or check delay.
TEST_DELAYS: dict[str, Any] = {
    **SHORT_DELAYS,
    "receive_wait_s": 0,
    "transient_retry_delay_s": 0,
    "retry_base_delay_s": 0,
    "retry_max_delay_s": 0,
    "deferral_delay_s": 0,
    "initial_check_delay_s": 0,
    "check_retry_delay_s": 0,
    "revio_retry_base_delay_s": 0.001,
    "revio_max_retry_after_s": 0.01,
    "shutdown_grace_s": 2.0,
}


@dataclass
class Harness:
    aws: LocalAws
    resources: LocalResources
    simulator: RevioSimulator
    engine: AsyncEngine
    database_url: str
    backend: str
    emails_before: int
    sample: Sample | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "enqueue_queue_url": self.resources.enqueue_queue_url,
            "create_queue_url": self.resources.create_queue_url,
            "check_queue_url": self.resources.check_queue_url,
            "dead_letter_queue_url": self.resources.dead_letter_queue_url,
            "bucket": self.resources.bucket,
            "aws_endpoint_url": self.aws.endpoint_url,
            "aws_region": REGION,
            "aws_access_key_id": ACCESS_KEY_ID,
            "aws_secret_access_key": SECRET_ACCESS_KEY,
            **TEST_DELAYS,
            **self.overrides,
            **overrides,
        }
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    async def load_sample(self, **options: Any) -> Sample:
        self.sample = await load_sample(self.engine, self.simulator, **options)
        return self.sample

    @asynccontextmanager
    async def context(self, **overrides: Any) -> AsyncIterator[Context]:
        async with open_context(self.settings(**overrides)) as ctx:
            yield ctx

    async def enqueue(self, ctx: Context, *instance_ids: int) -> None:
        async with ctx.engine.connect() as connection:
            for instance_id in instance_ids:
                await enqueue_push(ctx.aws, connection, [instance_id])

    async def send(self, ctx: Context, message: OutgoingMessage) -> str:
        return await ctx.aws.send(message)

    async def send_raw(
        self, ctx: Context, queue: QueueName, attributes: dict[str, Any], body: str = "test"
    ) -> str:
        """Send a message with attributes exactly as given (any DataType)."""
        answer = await ctx.aws.sqs.send_message(
            QueueUrl=ctx.aws.queue_url(queue), MessageBody=body, MessageAttributes=attributes
        )
        return str(answer["MessageId"])

    async def queue_depth(self, ctx: Context, queue_url: str) -> int:
        answer = await ctx.aws.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )
        return sum(int(value) for value in answer["Attributes"].values())

    async def run_until_idle(self, ctx: Context, *, timeout_s: float = 60.0) -> Daemon:
        """Run the daemon until every queue is empty and no handler runs, three polls in a row."""
        daemon = Daemon(ctx)
        urls = [url for url in ctx.aws.queue_urls.values() if url]
        quiet_polls = 0

        async def idle() -> bool:
            nonlocal quiet_polls
            depth = 0
            for url in urls:
                depth += await self.queue_depth(ctx, url)
            quiet = depth == 0 and not daemon.is_busy
            quiet_polls = quiet_polls + 1 if quiet else 0
            return quiet_polls >= 3

        await run_until(daemon, idle, poll_s=0.05, timeout_s=timeout_s)
        return daemon

    async def charge_queue_rows(self, table: str = "m2m") -> list[dict[str, Any]]:
        source = m2m_charge_queue if table == "m2m" else mobility_charge_queue
        async with self.engine.connect() as connection:
            result = await connection.execute(select(source).order_by(source.c.Id))
            return [dict(row) for row in result.mappings()]

    async def ledger(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as connection:
            result = await connection.execute(select(charge_line).order_by(charge_line.c.id))
            return [dict(row) for row in result.mappings()]

    async def read_object(self, ctx: Context, key: str) -> str:
        answer = await ctx.aws.s3.get_object(Bucket=self.resources.bucket, Key=key)
        async with answer["Body"] as body:
            return (await body.read()).decode("utf-8")

    def emails(self) -> list[EmailMessage]:
        """Emails SES accepted during this test and addressed to this test's bucket's run."""
        raw_emails = self.aws.sent_emails()[self.emails_before :]
        return [
            email.message_from_bytes(raw, policy=policy.default)  # type: ignore[misc]
            for raw in raw_emails
        ]

    async def dead_letters(self, ctx: Context) -> list[dict[str, Any]]:
        answer = await ctx.aws.sqs.receive_message(
            QueueUrl=self.resources.dead_letter_queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        return list(answer.get("Messages", []))

    def ledger_problems(self, ledger_rows: list[dict[str, Any]]) -> list[str]:
        """List simulator charges not held by exactly one ledger line, and ids held twice."""
        held: dict[int, int] = {}
        for row in ledger_rows:
            if row["charge_id"] is not None:
                held[row["charge_id"]] = held.get(row["charge_id"], 0) + 1
        problems = [f"charge {cid} held {n} times" for cid, n in held.items() if n != 1]
        for charge in self.simulator.charges:
            if held.get(charge["charge_id"], 0) != 1:
                problems.append(f"simulator charge {charge['charge_id']} not in the ledger")
        return problems


def unique_name() -> str:
    return f"cw{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def running_daemon(ctx: Context) -> AsyncIterator[Daemon]:
    """Run the daemon for the body of the block, then drain and close it."""
    daemon = Daemon(ctx)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.drain()
        await daemon.close()


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    timeout_s: float = 20,
    poll_s: float = 0.05,
) -> bool:
    """Poll `condition` until it is true or time is up, and return whether it was."""
    for _ in range(int(timeout_s / poll_s)):
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return True
        await asyncio.sleep(poll_s)
    return False
