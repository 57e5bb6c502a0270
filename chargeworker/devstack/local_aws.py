"""Local AWS for the embedded stack: moto's server in this process, on loopback."""

import asyncio
import logging
import uuid
from dataclasses import dataclass

from aiobotocore.session import get_session
from moto.server import ThreadedMotoServer

ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"  # moto accepts any key; nothing here reaches AWS
REGION = "us-east-1"


@dataclass(frozen=True)
class LocalResources:
    """Queue URLs and bucket made for one run of the embedded stack."""

    enqueue_queue_url: str
    create_queue_url: str
    check_queue_url: str
    dead_letter_queue_url: str
    bucket: str
    email_from: str


class LocalAws:
    """moto's server on a free loopback port; one per process is enough."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint_url = ""

    async def start(self) -> str:
        # werkzeug logs every request; the embedded stack's output stays readable without it.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        await asyncio.to_thread(self._server.start)
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self.endpoint_url

    async def stop(self) -> None:
        await asyncio.to_thread(self._server.stop)

    def sent_emails(self) -> list[bytes]:
        """Return every raw email that moto's SES accepted in this process, oldest first."""
        # moto keeps sent emails in its in-process backend; its server runs in this
        # process, so the backend is the same object.
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        backend = ses_backends[DEFAULT_ACCOUNT_ID][REGION]
        return [
            message.raw_data.encode() if isinstance(message.raw_data, str) else message.raw_data
            for message in backend.sent_messages
            if hasattr(message, "raw_data")
        ]

    async def create_resources(
        self,
        *,
        prefix: str | None = None,
        email_from: str = "charges@example.com",
        max_receive_count: int = 5,
        visibility_timeout_s: int = 300,
    ) -> LocalResources:
        """Create the three queues, their dead-letter queue and the bucket; verify the sender."""
        prefix = prefix or f"cw-{uuid.uuid4().hex[:8]}"
        session = get_session()
        options = {
            "endpoint_url": self.endpoint_url,
            "region_name": REGION,
            "aws_access_key_id": ACCESS_KEY_ID,
            "aws_secret_access_key": SECRET_ACCESS_KEY,
        }
        async with (
            session.create_client("sqs", **options) as sqs,
            session.create_client("s3", **options) as s3,
            session.create_client("ses", **options) as ses,
        ):
            dead_letter = await sqs.create_queue(QueueName=f"{prefix}-dead-letter")
            attributes = await sqs.get_queue_attributes(
                QueueUrl=dead_letter["QueueUrl"], AttributeNames=["QueueArn"]
            )
            redrive = (
                f'{{"deadLetterTargetArn":"{attributes["Attributes"]["QueueArn"]}",'
                f'"maxReceiveCount":"{max_receive_count}"}}'
            )
            urls = {}
            for name in ("enqueue", "create", "check"):
                created = await sqs.create_queue(
                    QueueName=f"{prefix}-{name}",
                    Attributes={
                        "RedrivePolicy": redrive,
                        "VisibilityTimeout": str(visibility_timeout_s),
                    },
                )
                urls[name] = created["QueueUrl"]
            bucket = f"{prefix}-charge-lists"
            await s3.create_bucket(Bucket=bucket)
            await ses.verify_email_identity(EmailAddress=email_from)
        return LocalResources(
            enqueue_queue_url=urls["enqueue"],
            create_queue_url=urls["create"],
            check_queue_url=urls["check"],
            dead_letter_queue_url=dead_letter["QueueUrl"],
            bucket=bucket,
            email_from=email_from,
        )
