"""The charge lines that one charge-queue row needs, decided from its columns."""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from chargeworker.charges.descriptions import (
    MAX_DESCRIPTION_LENGTH,
    overage_description,
    rate_description,
    sms_description,
    usage_description,
)

RowTable = Literal["m2m", "mobility"]
LineKind = Literal["rate", "overage", "sms", "usage"]

RATE_PLAN_NOT_FOUND = "rate plan not found"
ZERO = Decimal("0")


@dataclass(frozen=True)
class ChargeRow:
    """A charge-queue row as the create and check phases need it."""

    table: RowTable
    id: int
    iccid: str
    msisdn: str
    rev_service_number: str
    service_provider_id: int | None
    rate_plan_code: str | None
    rate_plan_name: str
    usage_mb: Decimal
    sms_usage: int
    base_rate: Decimal
    rate_amount: Decimal
    overage_amount: Decimal
    sms_amount: Decimal
    device_charge: Decimal
    rate_product: tuple[int | None, int | None]
    overage_product: tuple[int | None, int | None]
    sms_product: tuple[int | None, int | None]
    is_bill_in_advance: bool
    rev_account_number: str
    is_processed: bool
    has_errors: bool
    error_message: str
    charge_id: int | None
    sms_charge_id: int | None
    modified_date: datetime | None
    description: str = ""
    billing_start_date: date | None = None
    billing_end_date: date | None = None

    @property
    def service_number(self) -> str:
        """The number to look up in Rev.io: RevServiceNumber, else the MSISDN."""
        return self.rev_service_number or self.msisdn

    @property
    def key(self) -> tuple[RowTable, int]:
        return (self.table, self.id)

    @classmethod
    def from_mapping(cls, table: RowTable, row: Any) -> "ChargeRow":
        return cls(
            table=table,
            id=row["Id"],
            iccid=row["ICCID"] or "",
            msisdn=row["MSISDN"] or "",
            rev_service_number=(row["RevServiceNumber"] or "").strip(),
            service_provider_id=row["ServiceProviderId"],
            rate_plan_code=row["RatePlanCode"] or None,
            rate_plan_name=row["RatePlanName"] or "",
            usage_mb=Decimal(row["UsageMB"] or 0),
            sms_usage=int(row["SmsUsage"] or 0),
            base_rate=row["BaseRate"] or ZERO,
            rate_amount=row["RateChargeAmount"] or ZERO,
            overage_amount=row["OverageChargeAmount"] or ZERO,
            sms_amount=row["SmsChargeAmount"] or ZERO,
            device_charge=row["DeviceCharge"] or ZERO,
            rate_product=(row["RevProductId"], row["RevProductTypeId"]),
            overage_product=(row["OverageRevProductId"], row["OverageRevProductTypeId"]),
            sms_product=(row["SmsRevProductId"], row["SmsRevProductTypeId"]),
            is_bill_in_advance=bool(row["IsBillInAdvance"]),
            rev_account_number=row["RevAccountNumber"] or "",
            is_processed=bool(row["IsProcessed"]),
            has_errors=bool(row["HasErrors"]),
            error_message=row["ErrorMessage"] or "",
            charge_id=row["ChargeId"],
            sms_charge_id=row["SmsChargeId"],
            modified_date=row["ModifiedDate"],
            description=row["Description"] or "",
            billing_start_date=_as_date(row["BillingStartDate"]),
            billing_end_date=_as_date(row["BillingEndDate"]),
        )


def _as_date(value: datetime | date | None) -> date | None:
    return value.date() if isinstance(value, datetime) else value


@dataclass(frozen=True)
class PlannedLine:
    """One Rev.io charge a row needs; `error` is set when it can never be sent."""

    kind: LineKind
    amount: Decimal
    product_id: int | None
    product_type_id: int | None
    description: str
    start_date: date
    end_date: date
    error: str | None = None


@dataclass(frozen=True)
class RowPlan:
    row: ChargeRow
    lines: list[PlannedLine]
    row_error: str | None = None


def plan_row(row: ChargeRow, *, itemized: bool, start_date: date, end_date: date) -> RowPlan:
    """Decide a row's charge lines: rate/overage/sms itemized, else usage/sms."""
    if not row.rate_plan_code:
        return RowPlan(row, [], row_error=RATE_PLAN_NOT_FOUND)

    needed: list[tuple[LineKind, Decimal, tuple[int | None, int | None], str]] = []
    if itemized:
        if row.device_charge > 0 and row.rate_amount > 0:
            description = rate_description(row.rate_plan_name, row.usage_mb)
            needed.append(("rate", row.rate_amount, row.rate_product, description))
        if row.device_charge > 0 and row.overage_amount > 0:
            description = overage_description(row.usage_mb)
            needed.append(("overage", row.overage_amount, row.overage_product, description))
    elif row.device_charge > 0:
        description = usage_description(row.usage_mb)
        needed.append(("usage", row.device_charge, row.rate_product, description))
    if row.sms_amount > 0 and not row.is_bill_in_advance:
        needed.append(("sms", row.sms_amount, row.sms_product, sms_description(row.sms_usage)))

    lines = [
        _line(kind, amount, product, description, start_date, end_date)
        for kind, amount, product, description in needed
    ]
    return RowPlan(row, lines)


def plan_file_row(row: ChargeRow, *, start_date: date, end_date: date) -> RowPlan:
    """Decide an uploaded-file row's lines: usage (base + overage) and SMS, with its description."""
    description = row.description[:MAX_DESCRIPTION_LENGTH]
    needed: list[tuple[LineKind, Decimal, tuple[int | None, int | None]]] = []
    if row.device_charge > 0:
        needed.append(("usage", row.device_charge, row.rate_product))
    if row.sms_amount > 0:
        needed.append(("sms", row.sms_amount, row.sms_product))
    lines = [
        _line(kind, amount, product, description, start_date, end_date)
        for kind, amount, product in needed
    ]
    return RowPlan(row, lines)


def _line(
    kind: LineKind,
    amount: Decimal,
    product: tuple[int | None, int | None],
    description: str,
    start_date: date,
    end_date: date,
) -> PlannedLine:
    product_id, product_type_id = product
    if product_id is not None and product_id > 0:
        return PlannedLine(kind, amount, product_id, None, description, start_date, end_date)
    if product_type_id is not None and product_type_id > 0:
        return PlannedLine(kind, amount, None, product_type_id, description, start_date, end_date)
    product_name = "usage" if kind == "usage" else kind
    error = f"Rev.io product for {product_name} charges is not set up"
    return PlannedLine(kind, amount, None, None, description, start_date, end_date, error=error)
