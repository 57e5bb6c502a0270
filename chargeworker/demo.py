"""`chargeworker demo`: the whole flow on the embedded stack, from enqueue to summary emails."""

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chargeworker.controller import enqueue_push
from chargeworker.daemon import Daemon, run_until
from chargeworker.db.engine import create_engine
from chargeworker.devstack.extras import make_non_rev, sample_charge_file
from chargeworker.devstack.report import (
    database_report,
    describe_email,
    revio_report,
    summaries_sent,
)
from chargeworker.devstack.sample import load_sample
from chargeworker.devstack.stack import EmbeddedStack
from chargeworker.runtime import open_context
from chargeworker.uploads import upload_file

# The simulator returns 429 above this many requests a minute. The daemon's limiter
# stays below it, so the demo finishes in seconds.
DEMO_SIMULATOR_RATE_PER_MINUTE = 6_000
DEMO_CLIENT_RATE_PER_MINUTE = 5_000
DEMO_TIMEOUT_S = 300.0
DEMO_FILE_NAME = "router-rentals-2026-11.csv"


async def run_demo(
    *,
    devices: int = 60,
    seed: int = 7,
    keep: Path | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Start the embedded stack, push a sample through the daemon and return what happened."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chargeworker-demo-") as scratch:
        stack = EmbeddedStack(Path(scratch), revio_rate_per_minute=DEMO_SIMULATOR_RATE_PER_MINUTE)
        await stack.start()
        try:
            report = await _run(stack, devices=devices, seed=seed, keep=keep, say=say)
        finally:
            await stack.stop()
    report["elapsed_s"] = round(time.monotonic() - started, 2)
    return report


async def _run(
    stack: EmbeddedStack,
    *,
    devices: int,
    seed: int,
    keep: Path | None,
    say: Callable[[str], None],
) -> dict[str, Any]:
    engine = create_engine(stack.database_url)
    try:
        sample = await load_sample(engine, stack.simulator, devices=devices, seed=seed)
        push_sample = await load_sample(
            engine, stack.simulator, devices=max(devices // 2, 1), seed=seed + 1
        )
        non_rev_instance = push_sample.instances[1]
        non_rev_name = await make_non_rev(engine, non_rev_instance.instance_id)
        charge_file = await sample_charge_file(engine, sample.integration_authentication_id)
    finally:
        await engine.dispose()
    emails_before = len(stack.aws.sent_emails())
    settings = stack.settings(revio_rate_per_minute=DEMO_CLIENT_RATE_PER_MINUTE)
    say(
        f"embedded stack: local AWS at {stack.aws.endpoint_url}, Rev.io simulator at "
        f"{stack.simulator.base_url}, database {stack.database_url}"
    )
    say(
        "short delays for the demo: retries after 1-2 s, checks every 1 s; Rev.io limited "
        f"to {DEMO_CLIENT_RATE_PER_MINUTE} requests a minute (production default 500)"
    )

    winning_queues = sum(len(instance.winning_queue_ids) for instance in sample.instances)
    push_ids = [instance.instance_id for instance in push_sample.instances]
    async with open_context(settings) as ctx:
        async with ctx.engine.connect() as connection:
            for instance in sample.instances:
                await enqueue_push(ctx.aws, connection, [instance.instance_id])
            await enqueue_push(
                ctx.aws,
                connection,
                push_ids,
                last_instance_delay_s=settings.enqueue_last_instance_delay_s,
            )
        say(
            f"enqueued {len(sample.instances)} single-instance pushes ({winning_queues} "
            f"winning queues) and one push of instances {push_ids}; instance "
            f"{non_rev_instance.instance_id} belongs to the non-Rev customer {non_rev_name!r}"
        )
        upload = await upload_file(
            ctx, DEMO_FILE_NAME, charge_file, sample.integration_authentication_id
        )
        say(f"uploaded {DEMO_FILE_NAME}: file {upload.file_id} with {upload.rows} rows")

        # One summary per single-instance queue, one for the push, one for the file.
        expected_summaries = winning_queues + 2
        daemon = Daemon(ctx)

        async def every_summary_sent() -> bool:
            sent = await summaries_sent(ctx.engine)
            return not daemon.is_busy and sent >= expected_summaries

        await run_until(daemon, every_summary_sent, timeout_s=DEMO_TIMEOUT_S)
        report = await database_report(ctx.engine)
        files = await _collect_files(ctx, report["charge_list_keys"], keep)
        report["uploads"] = [
            {"file_id": upload.file_id, "file_name": DEMO_FILE_NAME, "rows": upload.rows}
        ]

    raw_emails = stack.aws.sent_emails()[emails_before:]
    if keep is not None:
        for number, raw in enumerate(raw_emails, start=1):
            await _write_file(keep / f"email-{number:02d}.eml", raw)
    held_charge_ids = report.pop("held_charge_ids")
    report.pop("charge_list_keys")
    report["revio"] = revio_report(stack.simulator, held_charge_ids)
    report["files"] = files
    report["emails"] = [describe_email(raw) for raw in raw_emails]
    return report


async def _collect_files(ctx: Any, keys: list[str], keep: Path | None) -> list[str]:
    bucket = ctx.settings.bucket
    if keep is not None:
        for key in keys:
            answer = await ctx.aws.s3.get_object(Bucket=bucket, Key=key)
            async with answer["Body"] as body:
                await _write_file(keep / key, await body.read())
    return [f"s3://{bucket}/{key}" for key in keys]


async def _write_file(path: Path, content: bytes) -> None:
    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    await asyncio.to_thread(write)


def format_report(report: dict[str, Any], keep: Path | None) -> str:
    """Render the demo's report for a person."""
    lines = report["lines"]
    revio = report["revio"]
    text = [
        f"instances: {report['instances']}, winning queues charged: {report['queues']}, "
        f"uploaded files: {len(report['uploads'])}",
        f"charge-queue rows: {report['rows']} ({report['rows_processed']} processed, "
        f"{report['rows_with_errors']} with errors)",
        f"charge lines: {lines['created']} created, {lines['failed']} failed, "
        f"{lines['unresolved']} unresolved",
        f"Rev.io simulator: {revio['charges']} charges, {revio['duplicates']} not held by "
        f"exactly one ledger line, {revio['requests']} requests, {revio['throttled']} "
        "answered 429",
        "charge lists:",
        *(f"  {uri}" for uri in report["files"]),
        "emails:",
        *(
            f"  {item['subject']!r} to {', '.join(item['to'])} "
            f"(attached: {', '.join(item['attachments'])})"
            for item in report["emails"]
        ),
    ]
    if keep is not None:
        text.append(f"files and emails written to {keep}")
    text.append(f"elapsed: {report['elapsed_s']} s")
    return "\n".join(text)
