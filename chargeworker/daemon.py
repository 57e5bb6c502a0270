"""The daemon: start consumers and the health server, run until a stop signal, drain, close."""

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from chargeworker.consumer import Consumer, Dispatch
from chargeworker.context import Context
from chargeworker.messages import QueueName, parse_check, parse_create, parse_enqueue
from chargeworker.phases.check import handle_check
from chargeworker.phases.create import handle_create
from chargeworker.phases.enqueue import handle_enqueue

log = structlog.get_logger()

HEARTBEAT_LIMIT_S = 60.0


async def _dispatch_enqueue(ctx: Context, attributes: dict[str, Any]) -> None:
    message = parse_enqueue(attributes)
    structlog.contextvars.bind_contextvars(instance_id=message.instance_id)
    await handle_enqueue(ctx, message)


async def _dispatch_create(ctx: Context, attributes: dict[str, Any]) -> None:
    message = parse_create(attributes)
    structlog.contextvars.bind_contextvars(
        **{f"{message.target.kind}_id": message.target.id}, page=message.page_number
    )
    await handle_create(ctx, message)


async def _dispatch_check(ctx: Context, attributes: dict[str, Any]) -> None:
    message = parse_check(attributes)
    if message.target is not None:
        structlog.contextvars.bind_contextvars(**{f"{message.target.kind}_id": message.target.id})
    await handle_check(ctx, message)


DISPATCH: dict[QueueName, Dispatch] = {
    "enqueue": _dispatch_enqueue,
    "create": _dispatch_create,
    "check": _dispatch_check,
}


class Daemon:
    """Consume the three queues concurrently in one process."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.consumers = [Consumer(name, ctx, dispatch) for name, dispatch in DISPATCH.items()]
        self.should_exit = asyncio.Event()
        self.force_exit = False
        self.metrics_port: int | None = None
        self._poll_tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None

    @property
    def is_busy(self) -> bool:
        return any(consumer.is_busy for consumer in self.consumers)

    async def run(self) -> None:
        """Start, consume until `should_exit` is set, drain in-flight work, close."""
        await self.start()
        await self.should_exit.wait()
        await self.drain()
        await self.close()

    async def start(self) -> None:
        await self._start_health_server()
        self._poll_tasks = [
            asyncio.create_task(consumer.run(), name=f"consume-{consumer.name}")
            for consumer in self.consumers
        ]
        log.info("daemon.started", worker=self.ctx.worker_id, metrics_port=self.metrics_port)
        settings = self.ctx.settings
        if settings.lease_s <= settings.revio_timeout_s:
            log.warning(
                "daemon.lease_shorter_than_request_timeout",
                lease_s=settings.lease_s,
                revio_timeout_s=settings.revio_timeout_s,
                hint="a charge still in flight when its lease ends may be sent twice",
            )

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, self._on_signal, signal_number)

    def _on_signal(self, signal_number: int) -> None:
        if self.should_exit.is_set():
            log.warning("daemon.forced_exit", signal=signal.Signals(signal_number).name)
            self.force_exit = True
            for consumer in self.consumers:
                for task in consumer.in_flight:
                    task.cancel()
            return
        log.info("daemon.stopping", signal=signal.Signals(signal_number).name)
        self.should_exit.set()

    async def drain(self) -> None:
        """Stop receiving, then give in-flight work the grace period to finish."""
        for task in self._poll_tasks:
            task.cancel()
        await asyncio.gather(*self._poll_tasks, return_exceptions=True)

        in_flight = [task for consumer in self.consumers for task in consumer.in_flight]
        cancelled = 0
        if in_flight:
            _done, pending = await asyncio.wait(
                in_flight, timeout=self.ctx.settings.shutdown_grace_s
            )
            for task in pending:
                task.cancel()
            cancelled = len(pending)
            await asyncio.gather(*pending, return_exceptions=True)
        log.info(
            "daemon.drained",
            cancelled=cancelled,
            counts={consumer.name: consumer.counts for consumer in self.consumers},
        )

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        log.info("daemon.stopped")

    # --- health and metrics ---------------------------------------------------

    async def _start_health_server(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", _metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.ctx.settings.metrics_host, self.ctx.settings.metrics_port
        )
        await site.start()
        # aiohttp exposes the bound port only through the server's sockets.
        sockets = site._server.sockets if site._server else []
        self.metrics_port = sockets[0].getsockname()[1] if sockets else None

    async def _healthz(self, _request: web.Request) -> web.Response:
        now = time.monotonic()
        stale = [c.name for c in self.consumers if now - c.heartbeat > HEARTBEAT_LIMIT_S]
        if stale:
            return web.json_response({"status": "stale", "consumers": stale}, status=503)
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        problems = await _readiness_problems(self.ctx)
        if problems:
            return web.json_response({"status": "not ready", "problems": problems}, status=503)
        return web.json_response({"status": "ready"})


async def _metrics(_request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _readiness_problems(ctx: Context) -> list[str]:
    problems = []
    try:
        async with ctx.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        problems.append(f"database: {type(exc).__name__}")
    try:
        await ctx.aws.sqs.get_queue_attributes(
            QueueUrl=ctx.aws.queue_url("enqueue"), AttributeNames=["QueueArn"]
        )
    except Exception as exc:
        problems.append(f"sqs: {type(exc).__name__}")
    return problems


async def run_until(
    daemon: Daemon,
    is_finished: Callable[[], Any],
    *,
    poll_s: float = 0.1,
    timeout_s: float | None = None,
) -> None:
    """Run the daemon until `is_finished()` (a coroutine function) returns true."""
    await daemon.start()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                if await is_finished():
                    break
                await asyncio.sleep(poll_s)
    finally:
        await daemon.drain()
        await daemon.close()
