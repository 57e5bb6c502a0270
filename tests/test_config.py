"""Tests of the settings: `CHARGEWORKER_*` variables, the `.env` file, defaults and secrets."""

import os
from pathlib import Path

import pytest

from chargeworker.config import Settings, load_settings
from chargeworker.errors import ConfigurationError


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Remove every `CHARGEWORKER_` variable and work in an empty folder (no `.env`)."""
    for name in list(os.environ):
        if name.upper().startswith("CHARGEWORKER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_unknown_variable_named(clean_environment: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGEWORKER_FOO", "1")

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    assert "CHARGEWORKER_FOO" in str(caught.value)


def test_unknown_lowercase_variable_named(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("chargeworker_page_sise", "10")

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    assert "chargeworker_page_sise" in str(caught.value)


def test_invalid_page_size_named(clean_environment: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARGEWORKER_PAGE_SIZE", "0")

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    assert "CHARGEWORKER_PAGE_SIZE" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHARGEWORKER_PAGE_SIZE", "501"),
        ("CHARGEWORKER_PAGE_SIZE", "fifty"),
        ("CHARGEWORKER_RECEIVE_WAIT_S", "21"),
        ("CHARGEWORKER_SEND_TO_REV", "maybe"),
        ("CHARGEWORKER_LOG_FORMAT", "xml"),
        ("CHARGEWORKER_METRICS_PORT", "70000"),
        ("CHARGEWORKER_RETRY_MAX_DELAY_S", "901"),
    ],
)
def test_invalid_value_named(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    assert name in str(caught.value)


def test_defaults_without_environment(clean_environment: Path) -> None:
    settings = load_settings()

    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.enqueue_queue_url is None
    assert settings.create_queue_url is None
    assert settings.check_queue_url is None
    assert settings.dead_letter_queue_url is None
    assert settings.aws_endpoint_url is None
    assert settings.send_to_rev is True
    assert settings.page_size == 50
    assert settings.revio_rate_per_minute == 500
    assert settings.revio_daily_quota == 150_000
    assert settings.shutdown_grace_s == 25.0
    assert settings.receive_wait_s == 20


def test_missing_queue_urls_listed(clean_environment: Path) -> None:
    settings = load_settings()

    assert settings.missing_queue_urls() == [
        "CHARGEWORKER_ENQUEUE_QUEUE_URL",
        "CHARGEWORKER_CREATE_QUEUE_URL",
        "CHARGEWORKER_CHECK_QUEUE_URL",
    ]


def test_environment_variable_read(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARGEWORKER_PAGE_SIZE", "200")

    assert load_settings().page_size == 200


def test_dotenv_file_read(clean_environment: Path) -> None:
    (clean_environment / ".env").write_text("CHARGEWORKER_PAGE_SIZE=120\n")

    assert load_settings().page_size == 120


def test_dotenv_unknown_variable_named(clean_environment: Path) -> None:
    (clean_environment / ".env").write_text("CHARGEWORKER_FOO=1\n")

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    assert "CHARGEWORKER_FOO" in str(caught.value)
    assert "CHARGEWORKER_CHARGEWORKER_FOO" not in str(caught.value)


def test_dotenv_other_program_ignored(clean_environment: Path) -> None:
    # Only `CHARGEWORKER_` variables are chargeworker's, and a shared `.env` contains others.
    (clean_environment / ".env").write_text("POSTGRES_PASSWORD=example\nCHARGEWORKER_PAGE_SIZE=7\n")

    assert load_settings().page_size == 7


def test_secret_key_not_in_repr() -> None:
    settings = Settings(_env_file=None, aws_secret_access_key="s3cr3t-key-value")  # type: ignore[call-arg]

    assert "s3cr3t-key-value" not in repr(settings)
    assert "s3cr3t-key-value" not in str(settings)


def test_secret_key_readable() -> None:
    settings = Settings(_env_file=None, aws_secret_access_key="s3cr3t-key-value")  # type: ignore[call-arg]

    assert settings.aws_secret_access_key is not None
    assert settings.aws_secret_access_key.get_secret_value() == "s3cr3t-key-value"


def test_database_password_not_in_repr() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url="postgresql+asyncpg://charges:db-pa55word@db.example.com/charges",
    )

    assert "db-pa55word" not in repr(settings)
