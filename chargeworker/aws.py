"""SQS, S3 and SES on aiobotocore: one long-lived client per service."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from chargeworker.config import Settings
from chargeworker.errors import TransientError
from chargeworker.messages import OutgoingMessage, QueueName

CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 40  # above the 20 s long poll


class Aws:
    """The daemon's SQS, S3 and SES clients and the queue URLs they serve."""

    def __init__(self, settings: Settings, sqs: Any, s3: Any, ses: Any) -> None:
        self.settings = settings
        self.sqs = sqs
        self.s3 = s3
        self.ses = ses
        self.queue_urls: dict[QueueName, str | None] = {
            "enqueue": settings.enqueue_queue_url,
            "create": settings.create_queue_url,
            "check": settings.check_queue_url,
        }

    def queue_url(self, queue: QueueName) -> str:
        url = self.queue_urls[queue]
        if not url:
            raise TransientError(f"the {queue} queue URL is not set")
        return url

    async def send(self, message: OutgoingMessage) -> str:
        """Send one message; return its SQS message id."""
        try:
            answer = await self.sqs.send_message(
                QueueUrl=self.queue_url(message.queue),
                MessageBody=message.body,
                MessageAttributes=message.sqs_attributes(),
                DelaySeconds=min(max(message.delay_s, 0), 900),
            )
        except (BotoCoreError, ClientError) as exc:
            raise TransientError(f"sending to the {message.queue} queue failed: {exc}") from exc
        return str(answer["MessageId"])

    async def put_object(self, key: str, body: bytes, content_type: str) -> None:
        """Store an object in the bucket and confirm that it exists."""
        bucket = self.settings.bucket
        try:
            await self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
            await self.s3.head_object(Bucket=bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise TransientError(f"writing s3://{bucket}/{key} failed: {exc}") from exc

    async def send_raw_email(self, raw: bytes) -> str:
        """Hand a raw MIME email to SES; return SES's message id."""
        try:
            answer = await self.ses.send_raw_email(RawMessage={"Data": raw})
        except (BotoCoreError, ClientError) as exc:
            raise TransientError(f"sending the email through SES failed: {exc}") from exc
        return str(answer["MessageId"])


@asynccontextmanager
async def open_aws(settings: Settings) -> AsyncIterator[Aws]:
    """Create the three clients for the life of the process and close them after."""
    session = get_session()
    config = AioConfig(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=50,
    )
    options: dict[str, Any] = {"region_name": settings.aws_region, "config": config}
    if settings.aws_endpoint_url:
        options["endpoint_url"] = settings.aws_endpoint_url
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        options["aws_access_key_id"] = settings.aws_access_key_id
        options["aws_secret_access_key"] = settings.aws_secret_access_key.get_secret_value()
    async with AsyncExitStack() as stack:
        sqs = await stack.enter_async_context(session.create_client("sqs", **options))
        s3 = await stack.enter_async_context(session.create_client("s3", **options))
        ses = await stack.enter_async_context(session.create_client("ses", **options))
        yield Aws(settings, sqs, s3, ses)
