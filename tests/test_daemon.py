"""Tests of the daemon's outer surface: the metrics and health server, and signals."""

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from chargeworker import daemon as daemon_module
from chargeworker.daemon import Daemon
from chargeworker.db.engine import create_engine, upgrade_schema
from chargeworker.devstack.local_aws import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, LocalAws
from chargeworker.devstack.revio_simulator import RevioSimulator
from tests.harness import Harness, unique_name
from tests.harness import running_daemon as running

STARTUP_TIMEOUT_S = 20
SHUTDOWN_GRACE_S = 5


async def wait_until(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        # Metrics and daemon state offer no event to wait on, so poll them.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def received(queue: str) -> float:
    value = REGISTRY.get_sample_value("chargeworker_messages_received_total", {"queue": queue})
    return value or 0.0


async def get(daemon: Daemon, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{daemon.metrics_port}{path}"
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        return response.status, await response.text()


def closed_port() -> int:
    """Return a loopback port that nothing listens on (it was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, local_aws: LocalAws
) -> AsyncIterator[Harness]:
    """Queues, bucket and a migrated SQLite database shared by this module's quick tests."""
    database_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('daemon') / 'cw.sqlite3'}"
    engine = create_engine(database_url)
    simulator = RevioSimulator()
    try:
        await upgrade_schema(engine, with_platform=True)
        resources = await local_aws.create_resources(prefix=unique_name())
        await simulator.start()
        yield Harness(
            aws=local_aws,
            resources=resources,
            simulator=simulator,
            engine=engine,
            database_url=database_url,
            backend="sqlite",
            emails_before=len(local_aws.sent_emails()),
        )
    finally:
        await simulator.stop()
        await engine.dispose()


# --- metrics and health --------------------------------------------------------------


async def test_metrics_served_after_run(stack: Harness) -> None:
    async with stack.context() as ctx, running(ctx) as daemon:
        before = received("create")
        await stack.send_raw(
            ctx, "create", {"PageNumber": {"DataType": "String", "StringValue": "1"}}
        )
        await wait_until(lambda: received("create") > before)
        await wait_until(lambda: not daemon.is_busy)
        status, text = await get(daemon, "/metrics")

    assert status == 200
    assert 'chargeworker_messages_received_total{queue="create"}' in text
    assert 'chargeworker_messages_finished_total{outcome="dead_letter",queue="create"}' in text
    assert "chargeworker_handler_duration_seconds_bucket" in text


async def test_metrics_port_bound(stack: Harness) -> None:
    async with stack.context() as ctx, running(ctx) as daemon:
        port = daemon.metrics_port

    assert port is not None
    assert port > 0


async def test_healthz_ok(stack: Harness) -> None:
    async with stack.context() as ctx, running(ctx) as daemon:
        status, _text = await get(daemon, "/healthz")

    assert status == 200


async def test_readyz_ok(stack: Harness) -> None:
    async with stack.context() as ctx, running(ctx) as daemon:
        status, _text = await get(daemon, "/readyz")

    assert status == 200


async def test_readyz_database_unreachable(stack: Harness, tmp_path: Path) -> None:
    unreachable = f"sqlite+aiosqlite:///{tmp_path / 'no-such-folder' / 'chargeworker.sqlite3'}"

    async with stack.context(database_url=unreachable) as ctx, running(ctx) as daemon:
        status, text = await get(daemon, "/readyz")

    assert status == 503
    assert "database" in text


async def test_readyz_sqs_unreachable(stack: Harness) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"

    async with stack.context(aws_endpoint_url=endpoint) as ctx, running(ctx) as daemon:
        status, text = await get(daemon, "/readyz")

    assert status == 503
    assert "sqs" in text


async def test_unknown_path_not_served(stack: Harness) -> None:
    async with stack.context() as ctx, running(ctx) as daemon:
        status, _text = await get(daemon, "/debug")

    assert status == 404


# --- signals (`chargeworker run` as a subprocess) ------------------------------------


def run_environment(harness: Harness) -> dict[str, str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("CHARGEWORKER_")
    }
    resources = harness.resources
    environment.update(
        {
            "CHARGEWORKER_DATABASE_URL": harness.database_url,
            "CHARGEWORKER_ENQUEUE_QUEUE_URL": resources.enqueue_queue_url,
            "CHARGEWORKER_CREATE_QUEUE_URL": resources.create_queue_url,
            "CHARGEWORKER_CHECK_QUEUE_URL": resources.check_queue_url,
            "CHARGEWORKER_DEAD_LETTER_QUEUE_URL": resources.dead_letter_queue_url,
            "CHARGEWORKER_BUCKET": resources.bucket,
            "CHARGEWORKER_AWS_ENDPOINT_URL": harness.aws.endpoint_url,
            "CHARGEWORKER_AWS_REGION": REGION,
            "CHARGEWORKER_AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "CHARGEWORKER_AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "CHARGEWORKER_METRICS_PORT": "0",
            "CHARGEWORKER_RECEIVE_WAIT_S": "1",
            "CHARGEWORKER_SHUTDOWN_GRACE_S": str(SHUTDOWN_GRACE_S),
            "CHARGEWORKER_LOG_FORMAT": "json",
        }
    )
    return environment


def events(stderr: str) -> list[dict[str, Any]]:
    parsed = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            parsed.append(json.loads(line))
    return parsed


async def run_then_signal(harness: Harness, cwd: Path, signal_number: int) -> dict[str, Any]:
    """Start `chargeworker run`, wait for `daemon.started`, send a signal, wait for the exit."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chargeworker.cli",
        "run",
        cwd=cwd,
        env=run_environment(harness),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    started_lines: list[str] = []
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while True:
                line = (await process.stderr.readline()).decode()
                if not line:
                    break
                started_lines.append(line)
                if "daemon.started" in line:
                    break
        process.send_signal(signal_number)
        async with asyncio.timeout(SHUTDOWN_GRACE_S + 5):
            _stdout, rest = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    stderr = "".join(started_lines) + rest.decode()
    return {"returncode": process.returncode, "stderr": stderr, "events": events(stderr)}


@pytest.fixture(scope="module")
async def sigterm_run(stack: Harness, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `chargeworker run` stopped by SIGTERM, shared by the tests that read its output."""
    return await run_then_signal(stack, tmp_path_factory.mktemp("sigterm"), signal.SIGTERM)


def test_sigterm_exits_0(sigterm_run: dict[str, Any]) -> None:
    assert sigterm_run["returncode"] == 0, sigterm_run["stderr"][-2000:]


def test_sigterm_logs_stopped(sigterm_run: dict[str, Any]) -> None:
    names = [event["event"] for event in sigterm_run["events"]]

    assert "daemon.started" in names
    assert "daemon.stopping" in names
    assert "daemon.stopped" in names
    assert names.index("daemon.stopping") < names.index("daemon.stopped")


def test_sigterm_logs_counts(sigterm_run: dict[str, Any]) -> None:
    drained = [event for event in sigterm_run["events"] if event["event"] == "daemon.drained"]

    assert len(drained) == 1
    assert set(drained[0]["counts"]) == {"enqueue", "create", "check"}


async def test_sigint_exits_0(stack: Harness, tmp_path: Path) -> None:
    result = await run_then_signal(stack, tmp_path, signal.SIGINT)

    assert result["returncode"] == 0, result["stderr"][-2000:]


# --- heartbeat (own stack: it leaves a push half done) ----------------------------------


async def test_healthz_ok_while_handler_progresses(
    sqlite_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A busy handler making progress counts as a heartbeat. The 60 s limit is cut to
    # 0.5 s so that a page sending to a slow Rev.io outlasts it within this test.
    monkeypatch.setattr(daemon_module, "HEARTBEAT_LIMIT_S", 0.5)
    sample = await sqlite_harness.load_sample(devices=3, seed=9)
    sqlite_harness.simulator.latency_s = 0.3

    async with (
        sqlite_harness.context(concurrency_per_queue=1, revio_concurrency_per_page=1) as ctx,
        running(ctx) as daemon,
    ):
        create = next(consumer for consumer in daemon.consumers if consumer.name == "create")
        await sqlite_harness.enqueue(ctx, sample.instances[0].instance_id)
        await wait_until(lambda: create.is_busy and sqlite_harness.simulator.request_count > 0)
        page_task = next(iter(create.in_flight))
        requests_before = sqlite_harness.simulator.request_count
        await asyncio.sleep(0.8)  # longer than the shortened limit
        still_busy = page_task in create.in_flight
        progressed = sqlite_harness.simulator.request_count > requests_before
        status, text = await get(daemon, "/healthz")
        sqlite_harness.simulator.latency_s = 0.0

    assert still_busy
    assert progressed
    assert status == 200, text
