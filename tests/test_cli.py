"""Tests of the `chargeworker` command, each run as a subprocess in an empty folder."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chargeworker.db.platform import platform_metadata
from chargeworker.db.tables import metadata

CHARGE_LIST_CHECKER = Path("/work/shared/tools/check_charge_list.py")
QUEUE_VARIABLES = [
    "CHARGEWORKER_ENQUEUE_QUEUE_URL",
    "CHARGEWORKER_CREATE_QUEUE_URL",
    "CHARGEWORKER_CHECK_QUEUE_URL",
]
COMMAND_TIMEOUT_S = 30
DEMO_TIMEOUT_S = 60


def clean_environment(**variables: str) -> dict[str, str]:
    """Return this process's environment without `CHARGEWORKER_` variables, plus `variables`."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("CHARGEWORKER_")
    }
    environment.update(variables)
    return environment


def chargeworker(
    cwd: Path, *arguments: str, timeout_s: float = COMMAND_TIMEOUT_S, **variables: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chargeworker.cli", *arguments],
        cwd=cwd,
        env=clean_environment(**variables),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def sqlite_tables(path: Path) -> set[str]:
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        connection.close()
    return {name for (name,) in rows}


# --- run -----------------------------------------------------------------------------


def test_run_without_queue_urls_fails(tmp_path: Path) -> None:
    result = chargeworker(tmp_path, "run")

    assert result.returncode != 0
    for variable in QUEUE_VARIABLES:
        assert variable in result.stderr


def test_run_unknown_variable_exits_2(tmp_path: Path) -> None:
    result = chargeworker(tmp_path, "run", CHARGEWORKER_FOO="1")

    assert result.returncode == 2
    assert "CHARGEWORKER_FOO" in result.stderr


def test_run_invalid_value_exits_2(tmp_path: Path) -> None:
    result = chargeworker(tmp_path, "run", CHARGEWORKER_PAGE_SIZE="0")

    assert result.returncode == 2
    assert "CHARGEWORKER_PAGE_SIZE" in result.stderr


# --- db upgrade ----------------------------------------------------------------------


def test_db_upgrade_creates_own_tables(tmp_path: Path) -> None:
    database = tmp_path / "fresh.sqlite3"

    result = chargeworker(
        tmp_path, "db", "upgrade", CHARGEWORKER_DATABASE_URL=f"sqlite+aiosqlite:///{database}"
    )

    assert result.returncode == 0, result.stderr
    assert sqlite_tables(database) == {*metadata.tables, "cw_alembic_version"}
    assert all(name.startswith("cw_") for name in metadata.tables)


def test_db_upgrade_with_platform(tmp_path: Path) -> None:
    database = tmp_path / "fresh.sqlite3"

    result = chargeworker(
        tmp_path,
        "db",
        "upgrade",
        "--with-platform",
        CHARGEWORKER_DATABASE_URL=f"sqlite+aiosqlite:///{database}",
    )

    assert result.returncode == 0, result.stderr
    assert sqlite_tables(database) == {
        *metadata.tables,
        *platform_metadata.tables,
        "cw_alembic_version",
    }
    assert "OptimizationQueue" in platform_metadata.tables


def test_db_upgrade_adds_platform_later(tmp_path: Path) -> None:
    database = tmp_path / "fresh.sqlite3"
    url = f"sqlite+aiosqlite:///{database}"

    first = chargeworker(tmp_path, "db", "upgrade", CHARGEWORKER_DATABASE_URL=url)
    second = chargeworker(
        tmp_path, "db", "upgrade", "--with-platform", CHARGEWORKER_DATABASE_URL=url
    )

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "OptimizationQueue" in sqlite_tables(database)


def test_db_upgrade_twice_succeeds(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.sqlite3'}"

    first = chargeworker(tmp_path, "db", "upgrade", CHARGEWORKER_DATABASE_URL=url)
    second = chargeworker(tmp_path, "db", "upgrade", CHARGEWORKER_DATABASE_URL=url)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr


# --- demo ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run `demo --json --devices 20 --keep DIR` once for the module (it takes seconds)."""
    directory = tmp_path_factory.mktemp("demo")
    kept = directory / "kept"
    result = chargeworker(
        directory,
        "demo",
        "--json",
        "--devices",
        "20",
        "--keep",
        str(kept),
        timeout_s=DEMO_TIMEOUT_S,
    )
    return {"result": result, "kept": kept}


def demo_report(demo: dict[str, Any]) -> dict[str, Any]:
    result = demo["result"]
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert isinstance(report, dict)
    return report


def test_demo_exits_0(demo: dict[str, Any]) -> None:
    assert demo["result"].returncode == 0, demo["result"].stderr[-2000:]


def test_demo_prints_one_object(demo: dict[str, Any]) -> None:
    assert isinstance(json.loads(demo["result"].stdout), dict)


def test_demo_report_keys(demo: dict[str, Any]) -> None:
    report = demo_report(demo)

    for key in (
        "instances",
        "queues",
        "rows",
        "rows_processed",
        "rows_with_errors",
        "lines",
        "revio",
        "files",
        "emails",
        "uploads",
        "elapsed_s",
    ):
        assert key in report
    for key in ("created", "failed", "unresolved"):
        assert key in report["lines"]
    for key in ("charges", "duplicates", "requests", "throttled"):
        assert key in report["revio"]
    for item in report["emails"]:
        assert set(item) >= {"subject", "to", "attachments"}


def test_demo_every_row_processed(demo: dict[str, Any]) -> None:
    report = demo_report(demo)

    assert report["rows"] > 0
    assert report["rows"] == report["rows_processed"]


def test_demo_no_duplicate_charges(demo: dict[str, Any]) -> None:
    assert demo_report(demo)["revio"]["duplicates"] == 0


def test_demo_charges_match_lines(demo: dict[str, Any]) -> None:
    report = demo_report(demo)

    assert report["revio"]["charges"] == report["lines"]["created"]


def test_demo_summaries_attach_charge_lists(demo: dict[str, Any]) -> None:
    report = demo_report(demo)
    attachments = [name for item in report["emails"] for name in item["attachments"]]
    charge_lists = [name for name in attachments if name.endswith(".txt")]
    files = {uri.rsplit("/", 1)[-1] for uri in report["files"]}
    upload_list = f"{report['uploads'][0]['file_id']}.txt"

    assert len(charge_lists) == len(set(charge_lists))
    assert set(charge_lists) <= files
    assert upload_list in charge_lists
    assert attachments.count("CustomerChargeSummary.zip") == 1


def test_demo_file_per_queue_and_upload(demo: dict[str, Any]) -> None:
    report = demo_report(demo)
    expected = report["queues"] + len(report["uploads"])

    assert len(report["files"]) == expected
    assert len(set(report["files"])) == expected


def test_demo_keeps_charge_lists(demo: dict[str, Any]) -> None:
    report = demo_report(demo)
    kept_names = sorted(path.name for path in demo["kept"].glob("*.txt"))

    assert kept_names == sorted(uri.rsplit("/", 1)[-1] for uri in report["files"])


def test_demo_keeps_emails(demo: dict[str, Any]) -> None:
    report = demo_report(demo)

    assert len(list(demo["kept"].glob("*.eml"))) == len(report["emails"])


def test_demo_charge_lists_valid(demo: dict[str, Any]) -> None:
    demo_report(demo)
    if not CHARGE_LIST_CHECKER.exists():
        pytest.skip(f"the shared charge-list checker {CHARGE_LIST_CHECKER} is not on this machine")

    checked = subprocess.run(
        [sys.executable, str(CHARGE_LIST_CHECKER), str(demo["kept"])],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )

    assert checked.returncode == 0, checked.stdout
