"""The `chargeworker` command: run, enqueue, db upgrade, demo."""

import argparse
import asyncio
import json
import sys
from pathlib import Path

import structlog

from chargeworker.config import Settings, load_settings
from chargeworker.errors import ChargeworkerError, ConfigurationError
from chargeworker.logs import configure_logging

log = structlog.get_logger()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chargeworker", description="Push optimization results into Rev.io as charges."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser(
        "run",
        help="run the daemon on the three queues until SIGTERM/SIGINT",
        description="Run the daemon. Needs CHARGEWORKER_ENQUEUE_QUEUE_URL, "
        "CHARGEWORKER_CREATE_QUEUE_URL and CHARGEWORKER_CHECK_QUEUE_URL.",
    )

    enqueue = commands.add_parser("enqueue", help="send the enqueue message(s) of one push")
    enqueue.add_argument(
        "--instance",
        type=int,
        action="append",
        required=True,
        metavar="ID",
        help="optimization instance id (repeat for several)",
    )
    enqueue.add_argument(
        "--integration-auth",
        type=int,
        metavar="ID",
        help="Rev.io integration authentication id (default: the tenant's)",
    )

    upload = commands.add_parser(
        "upload", help="validate a charge CSV, store its rows and send its FileId message"
    )
    upload.add_argument(
        "file",
        type=Path,
        metavar="FILE.csv",
        help="the charge file: a header row with RevIoServiceNumber, RevIoProductTypeId, "
        "Description, BaseChargeAmount, OverageChargeAmount, SmsChargeAmount, "
        "SmsRevIoProductTypeId, BillingStartDate, BillingEndDate",
    )
    upload.add_argument(
        "--integration-auth",
        type=int,
        metavar="ID",
        required=True,
        help="Rev.io integration authentication id the charges go to",
    )

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply chargeworker's migrations")
    upgrade.add_argument(
        "--with-platform",
        action="store_true",
        help="also create the platform's tables (embedded stack and tests)",
    )

    demo = commands.add_parser("demo", help="run the whole flow on the embedded stack")
    demo.add_argument(
        "--devices",
        type=_positive_int,
        default=60,
        metavar="N",
        help="devices of the first sample session, spread over its winning queues; "
        "each comm group gets at least 3 (default 60)",
    )
    demo.add_argument("--seed", type=int, default=7, metavar="S", help="sample seed (default 7)")
    demo.add_argument(
        "--keep", type=Path, metavar="DIR", help="write the charge lists and emails (.eml) into DIR"
    )
    demo.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        if arguments.command == "demo":
            keep: Path | None = arguments.keep
            if keep is not None and keep.exists() and not keep.is_dir():
                raise ConfigurationError(f"--keep {keep}: exists and is not a folder")
            return asyncio.run(_demo(arguments))
        settings = load_settings()
        configure_logging(settings.log_format, settings.log_level)
        if arguments.command == "run":
            return asyncio.run(_run(settings))
        if arguments.command == "enqueue":
            return asyncio.run(_enqueue(settings, arguments))
        if arguments.command == "upload":
            return asyncio.run(_upload(settings, arguments))
        return asyncio.run(_db_upgrade(settings, arguments.with_platform))
    except ConfigurationError as exc:
        print(f"chargeworker: {exc}", file=sys.stderr)
        return 2
    except ChargeworkerError as exc:
        print(f"chargeworker: {exc}", file=sys.stderr)
        return 1


async def _run(settings: Settings) -> int:
    from chargeworker.daemon import Daemon
    from chargeworker.runtime import open_context

    missing = settings.missing_queue_urls()
    if missing:
        raise ConfigurationError(f"set {', '.join(missing)} before running the daemon")
    async with open_context(settings) as ctx:
        daemon = Daemon(ctx)
        daemon.install_signal_handlers()
        await daemon.run()
    return 0


async def _enqueue(settings: Settings, arguments: argparse.Namespace) -> int:
    from chargeworker.controller import enqueue_push
    from chargeworker.runtime import open_context

    if not settings.enqueue_queue_url:
        raise ConfigurationError("set CHARGEWORKER_ENQUEUE_QUEUE_URL before enqueuing")
    async with open_context(settings) as ctx, ctx.engine.connect() as connection:
        message_ids = await enqueue_push(
            ctx.aws,
            connection,
            arguments.instance,
            integration_authentication_id=arguments.integration_auth,
            last_instance_delay_s=settings.enqueue_last_instance_delay_s,
        )
    for instance_id, message_id in zip(arguments.instance, message_ids, strict=True):
        print(f"instance {instance_id}: message {message_id}")
    return 0


async def _upload(settings: Settings, arguments: argparse.Namespace) -> int:
    from chargeworker.runtime import open_context
    from chargeworker.uploads import upload_file

    if not settings.create_queue_url:
        raise ConfigurationError("set CHARGEWORKER_CREATE_QUEUE_URL before uploading")
    path: Path = arguments.file
    try:
        content = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from None
    async with open_context(settings) as ctx:
        result = await upload_file(ctx, path.name, content, arguments.integration_auth)
    print(f"file {result.file_id}: {result.rows} rows stored, message {result.message_id}")
    return 0


async def _db_upgrade(settings: Settings, with_platform: bool) -> int:
    from chargeworker.db.engine import create_engine, upgrade_schema

    engine = create_engine(settings.database_url)
    try:
        await upgrade_schema(engine, with_platform=with_platform)
    finally:
        await engine.dispose()
    print(
        "database schema is up to date" + (" (with the platform's tables)" if with_platform else "")
    )
    return 0


async def _demo(arguments: argparse.Namespace) -> int:
    from chargeworker.demo import format_report, run_demo

    configure_logging("console" if not arguments.json else "json", "WARNING")
    say = (lambda _text: None) if arguments.json else print
    report = await run_demo(
        devices=arguments.devices, seed=arguments.seed, keep=arguments.keep, say=say
    )
    if arguments.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_report(report, arguments.keep))
    return 0 if report["revio"]["duplicates"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
