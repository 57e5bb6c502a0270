"""The embedded stack: local AWS, a SQLite file and the Rev.io simulator, all on loopback."""

from pathlib import Path
from typing import Any

from chargeworker.config import Settings
from chargeworker.db.engine import create_engine, upgrade_schema
from chargeworker.devstack.local_aws import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    LocalAws,
    LocalResources,
)
from chargeworker.devstack.revio_simulator import RevioSimulator

# Delays short enough for a run of seconds; the daemon's defaults are minutes.
SHORT_DELAYS: dict[str, Any] = {
    "receive_wait_s": 1,
    "transient_retry_delay_s": 1,
    "retry_base_delay_s": 1,
    "retry_max_delay_s": 2,
    "deferral_delay_s": 1,
    "last_instance_delay_s": 1,
    "enqueue_last_instance_delay_s": 1,
    "initial_check_delay_s": 2,
    "check_retry_delay_s": 1,
    "revio_retry_base_delay_s": 0.01,
    "revio_max_retry_after_s": 1.0,
    "shutdown_grace_s": 5.0,
    "metrics_port": 0,
}


class EmbeddedStack:
    """Start everything chargeworker talks to, on this machine, and stop it again."""

    def __init__(
        self,
        directory: Path,
        *,
        revio_latency_s: float = 0.0,
        revio_rate_per_minute: int | None = None,
    ) -> None:
        self.directory = directory
        self.aws = LocalAws()
        self.simulator = RevioSimulator(
            latency_s=revio_latency_s, rate_limit_per_minute=revio_rate_per_minute
        )
        self.database_url = f"sqlite+aiosqlite:///{directory / 'chargeworker.sqlite3'}"
        self.resources: LocalResources | None = None

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        await self.aws.start()
        self.resources = await self.aws.create_resources()
        await self.simulator.start()
        engine = create_engine(self.database_url)
        try:
            await upgrade_schema(engine, with_platform=True)
        finally:
            await engine.dispose()

    async def stop(self) -> None:
        await self.simulator.stop()
        await self.aws.stop()

    def settings(self, **overrides: Any) -> Settings:
        """Settings that point at this stack, with short delays; overrides win."""
        if self.resources is None:
            raise RuntimeError("start the embedded stack before asking for its settings")
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
            **SHORT_DELAYS,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]
