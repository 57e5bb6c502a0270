"""Pydantic models of the Rev.io REST API (v1): accounts, services, charges, pages."""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

MAX_DESCRIPTION_LENGTH = 1500
CENT = Decimal("0.01")

RecordT = TypeVar("RecordT")


def _parse_optional_date(value: Any) -> Any:
    """Turn an ISO date or date-time string into a date, and an empty string into None.

    Rev.io sends dates such as `2024-01-05` or `2024-01-05T00:00:00`. Other values are
    left for pydantic to validate.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        return datetime.fromisoformat(text).date()
    if isinstance(value, datetime):
        return value.date()
    return value


def _parse_naive_datetime(value: Any) -> Any:
    """Parse an ISO date-time string and drop any UTC offset.

    Rev.io sends `created_date` without a time zone, in the account's local time.
    """
    # NOTE: an offset, if Rev.io ever sends one, is dropped and the wall-clock time is
    # kept. Converting it would need the account's time zone, which is not known here.
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip())
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.replace(tzinfo=None)
    return value


def _quantize_to_cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT)


RevioDate = Annotated[date | None, BeforeValidator(_parse_optional_date)]
NaiveDatetime = Annotated[datetime, BeforeValidator(_parse_naive_datetime)]
# 15 significant digits at most, so the float sent in the JSON body converts back to
# exactly this decimal (IEEE 754 doubles keep 15 significant decimal digits).
Money = Annotated[
    Decimal,
    Field(max_digits=15, decimal_places=2),
    AfterValidator(_quantize_to_cents),
]


def dumps_json(body: Any) -> str:
    """Serialize a request body, writing each Decimal as a plain JSON number (`12.50`)."""
    marker = f"decimal-{uuid.uuid4().hex}:"

    def encode(value: Any) -> str:
        if isinstance(value, Decimal):
            return marker + format(value, "f")
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    text = json.dumps(body, default=encode)
    return re.sub(f'"{re.escape(marker)}(-?[0-9]+(?:\\.[0-9]+)?)"', r"\1", text)


def format_revio_date(value: date) -> str:
    """Format a date as Rev.io's `yyyy-M-d`, without zero padding (`2026-1-5`)."""
    return f"{value.year}-{value.month}-{value.day}"


class RevioAccount(BaseModel):
    """Credentials and address of one Rev.io account (an integration authentication)."""

    # hide_input_in_errors keeps the password and key out of validation errors.
    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    integration_authentication_id: int
    base_url: str
    username: str
    password: str = Field(repr=False)
    client_code: str
    subscription_key: str | None = Field(default=None, repr=False)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        base_url = value.strip().rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        return base_url

    @field_validator("username", "client_code")
    @classmethod
    def _check_login_part(cls, value: str) -> str:
        # HTTP Basic authentication separates the user name from the password by ":".
        if ":" in value:
            raise ValueError(f"must not contain ':', got {value!r}")
        return value

    @property
    def limiter_key(self) -> tuple[str, str]:
        """Key of the account's rate limiter: Rev.io counts requests per base URL and client."""
        return (self.base_url, self.client_code)

    @property
    def login(self) -> str:
        """User name of HTTP Basic authentication, `username@client_code`."""
        return f"{self.username}@{self.client_code}"


class RevioService(BaseModel):
    """A service (a phone number or line) of a Rev.io customer."""

    model_config = ConfigDict(extra="ignore")

    service_id: int
    customer_id: int
    number: str
    activated_date: RevioDate = None
    disconnected_date: RevioDate = None

    @field_validator("number", mode="before")
    @classmethod
    def _number_as_text(cls, value: Any) -> Any:
        # A number made only of digits may come back as a JSON integer.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class RevioCharge(BaseModel):
    """A charge as Rev.io lists it, used to settle in-doubt charge lines."""

    model_config = ConfigDict(extra="ignore")

    charge_id: int
    customer_id: int
    service_id: int | None = None
    product_id: int | None = None
    description: str
    amount: Decimal
    rate: Decimal | None = None
    quantity: int | None = None
    start_date: RevioDate = None
    end_date: RevioDate = None
    created_date: NaiveDatetime


class ChargeRequest(BaseModel):
    """One charge to create with POST /Charges."""

    model_config = ConfigDict(frozen=True)

    customer_id: int = Field(gt=0)
    service_id: int = Field(gt=0)
    product_id: int | None = Field(default=None, gt=0)
    product_type_id: int | None = Field(default=None, gt=0)
    description: str = Field(max_length=MAX_DESCRIPTION_LENGTH)
    amount: Money
    start_date: date
    end_date: date

    @model_validator(mode="after")
    def _check_one_product(self) -> ChargeRequest:
        if (self.product_id is None) == (self.product_type_id is None):
            raise ValueError(
                "exactly one of product_id and product_type_id must be set, got "
                f"product_id={self.product_id} and product_type_id={self.product_type_id}"
            )
        return self

    def to_json(self) -> dict[str, Any]:
        """Build the JSON body of POST /Charges.

        Amounts stay `Decimal` with two places; `dumps_json` writes them as JSON
        numbers with exactly two decimals (`10.00`).
        """
        amount = self.amount
        body: dict[str, Any] = {
            "customer_id": self.customer_id,
            "service_id": self.service_id,
        }
        if self.product_id is not None:
            body["product_id"] = self.product_id
        else:
            body["product_type_id"] = self.product_type_id
        body.update(
            description=self.description,
            amount=amount,
            product_amount=amount,
            rate=amount,
            quantity=1,
            cost=0,
            is_tax_included=False,
            is_commission_exempted=False,
            is_prorated=False,
            start_date=format_revio_date(self.start_date),
            end_date=format_revio_date(self.end_date),
        )
        return body


class RevioPage(BaseModel, Generic[RecordT]):
    """One page of a Rev.io collection; `record_count` counts this page only."""

    model_config = ConfigDict(extra="ignore")

    ok: bool = True
    has_more: bool
    record_count: int | None = None
    records: list[RecordT]

    @field_validator("ok")
    @classmethod
    def _check_ok(cls, value: bool) -> bool:
        if not value:
            raise ValueError("Rev.io returned ok=false in a 2xx response")
        return value
