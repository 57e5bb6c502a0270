"""Settings of chargeworker, read once from `CHARGEWORKER_*` variables and `.env`."""

import os
from typing import Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from chargeworker.errors import ConfigurationError

ENV_PREFIX = "CHARGEWORKER_"


class Settings(BaseSettings):
    """Every setting of the daemon; delays are in seconds and all settable."""

    model_config = SettingsConfigDict(
        # Unknown CHARGEWORKER_ names are rejected by load_settings; other names in
        # .env belong to other programs.
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        frozen=True,
    )

    database_url: str = Field("sqlite+aiosqlite:///chargeworker.sqlite3", repr=False)

    enqueue_queue_url: str | None = None
    create_queue_url: str | None = None
    check_queue_url: str | None = None
    dead_letter_queue_url: str | None = None
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = None
    # Unset in production: the standard AWS credential chain applies.
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    bucket: str = "chargeworker-charge-lists"

    email_from: str | None = None
    email_to: str | None = None
    email_subject: str | None = None

    send_to_rev: bool = True
    proxy_url: str | None = None
    page_size: int = Field(50, ge=1, le=500)

    revio_rate_per_minute: int = Field(500, ge=1)
    revio_daily_quota: int = Field(150_000, ge=1)
    revio_timeout_s: float = Field(30.0, gt=0)
    revio_retry_attempts: int = Field(3, ge=0)
    revio_retry_base_delay_s: float = Field(0.5, ge=0)
    revio_throttle_retries: int = Field(2, ge=0)
    revio_max_retry_after_s: float = Field(60.0, ge=0)
    revio_concurrency_per_page: int = Field(8, ge=1)
    pond_integration_name: str = "Pond"
    telegence_integration_name: str = "Telegence"

    concurrency_per_queue: int = Field(4, ge=1)
    receive_wait_s: int = Field(20, ge=0, le=20)
    max_messages_per_receive: int = Field(10, ge=1, le=10)
    visibility_timeout_s: int = Field(300, ge=1, le=43_200)
    transient_retry_delay_s: int = Field(30, ge=0, le=43_200)
    lease_s: float = Field(120.0, gt=0)
    in_doubt_slack_s: float = Field(300.0, ge=0)

    max_page_retries: int = Field(3, ge=0)
    retry_base_delay_s: int = Field(30, ge=0, le=900)
    retry_max_delay_s: int = Field(900, ge=0, le=900)
    deferral_delay_s: int = Field(60, ge=0, le=900)
    deferral_limit_s: float = Field(86_400.0, ge=0)
    last_instance_delay_s: int = Field(300, ge=0, le=900)
    enqueue_last_instance_delay_s: int = Field(90, ge=0, le=900)
    initial_check_delay_s: int = Field(300, ge=0, le=900)
    check_retry_delay_s: int = Field(60, ge=0, le=900)
    max_checks: int = Field(20, ge=0)
    # A queue with unfinished rows and no progress for this long counts as stalled:
    # only then does a check count against max_checks.
    check_stall_s: float = Field(300.0, ge=0)
    push_wait_limit_s: float = Field(7_200.0, ge=0)
    proxy_timeout_s: float = Field(30.0, gt=0)

    shutdown_grace_s: float = Field(25.0, ge=0)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9464, ge=0, le=65_535)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def missing_queue_urls(self) -> list[str]:
        """Return the variable names of the queue URLs that `run` needs and are not set."""
        names = ("enqueue_queue_url", "create_queue_url", "check_queue_url")
        return [ENV_PREFIX + name.upper() for name in names if not getattr(self, name)]


def load_settings(**overrides: object) -> Settings:
    """Read the settings, rejecting unknown `CHARGEWORKER_` variables by name."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    names = set(os.environ)
    if os.path.exists(".env"):
        names |= set(dotenv_values(".env"))
    unknown = sorted(
        key for key in names if key.upper().startswith(ENV_PREFIX) and key.upper() not in known
    )
    if unknown:
        raise ConfigurationError(
            f"unknown setting(s) {', '.join(unknown)}: remove them or fix their spelling"
        )
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{_variable_name(error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None


def _variable_name(location: tuple[int | str, ...]) -> str:
    name = ".".join(str(part) for part in location).upper()
    return name if name.startswith(ENV_PREFIX) else ENV_PREFIX + name
