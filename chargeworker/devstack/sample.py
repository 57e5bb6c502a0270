"""Load a realistic optimization push into the platform's tables and the Rev.io simulator.

`load_sample` writes one tenant with three instances (M2M, Mobility and
cross-provider), their comm groups, candidate optimization queues with device
results, devices, rate plans and settings, and registers the devices' numbers as
services in the Rev.io simulator. Every value comes from `random.Random(seed)`,
so one seed gives the same rows and the same simulator calls in a fresh database
and a fresh simulator.

The push contains deliberate faults so that a run shows real errors. It also
contains other cases that a correct run must handle. `Sample.cases` lists each
one with the error that phase 2 should record for it.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chargeworker.db import platform as p

if TYPE_CHECKING:
    from chargeworker.devstack.revio_simulator import RevioSimulator

DeviceKind = Literal["m2m", "mobility"]
M2M: DeviceKind = "m2m"
MOBILITY: DeviceKind = "mobility"

PORTAL_M2M = 0
PORTAL_MOBILITY = 2
PORTAL_CROSS_PROVIDER = 3

PERIOD_START = datetime(2026, 11, 1)
PERIOD_END = datetime(2026, 11, 30)
TIME_ZONE = "America/Chicago"

# Values of the GeneralProviderSettings row, written only when the table is empty.
EMAIL_FROM = "charges@example.com"
EMAIL_TO = "billing@example.com; ops@example.com"
EMAIL_SUBJECT = "Customer charges uploaded to Rev.io"

# Case names of `SampleCase.case`. The first four are deliberate faults.
CASE_RATE_PLAN_NOT_FOUND = "rate_plan_not_found"
CASE_NO_SERVICE = "no_service"
CASE_OTHER_CUSTOMER = "other_customer"
CASE_OVERAGE_PRODUCT_MISSING = "overage_product_missing"
CASE_HALF_CENT_AMOUNTS = "half_cent_amounts"
CASE_NOTHING_TO_CHARGE = "nothing_to_charge"
CASE_EMPTY_SERVICE_NUMBER = "empty_service_number"
CASE_UNKNOWN_CARRIER = "unknown_carrier"
CASE_OLDER_DISCONNECTED_SERVICE = "older_disconnected_service"
CASE_LATER_SERVICE = "service_activated_after_period"
CASE_DISCONNECTED_DURING_PERIOD = "disconnected_during_period"

FAULT_CASES = (
    CASE_RATE_PLAN_NOT_FOUND,
    CASE_NO_SERVICE,
    CASE_OTHER_CUSTOMER,
    CASE_OVERAGE_PRODUCT_MISSING,
)

# Integration ids are looked up by name. No Integration row gets this id, so the
# service provider that points at it has no known carrier.
MISSING_INTEGRATION_ID = 999_999
REV_CUSTOMER_ID_FLOOR = 41_000
MIN_DEVICES_PER_GROUP = 3
MONTH_DAYS = 30
FOUR_PLACES = Decimal("0.0001")
CENT = Decimal("0.01")


@dataclass(frozen=True)
class SampleInstance:
    """One instance of the sample with its queues, as phase 1 should find them."""

    instance_id: int
    portal_type_id: int
    customer_name: str
    rev_customer_id: int  # Rev.io's customer_id
    winning_queue_ids: list[int]
    losing_queue_ids: list[int]
    comm_groups_without_winner: list[int]


@dataclass(frozen=True)
class SampleCase:
    """A device result of a winning queue that exercises one rule of the push.

    `expected_error` is the error that phase 2 should record on the charge-queue row,
    or None when the row should succeed.
    """

    case: str
    instance_id: int
    queue_id: int
    device_kind: DeviceKind
    device_id: int
    number: str  # the service number sent to Rev.io: RevServiceNumber, else MSISDN
    expected_error: str | None


@dataclass(frozen=True)
class Sample:
    """Ids of the push that `load_sample` wrote, and the expected outcome of phase 1."""

    tenant_id: int
    session_id: uuid.UUID
    integration_authentication_id: int
    instances: list[SampleInstance]
    expected_rows: int  # charge-queue rows phase 1 will create for all winning queues
    email_from: str
    email_to: list[str]
    email_subject: str
    cases: list[SampleCase]


async def load_sample(
    engine: AsyncEngine,
    simulator: RevioSimulator,
    *,
    devices: int = 60,
    seed: int = 7,
    single_usage: bool = False,
) -> Sample:
    """Insert a push of about `devices` charged devices and register their Rev.io services.

    Every instance gets at least three devices in each of its comm groups, so small
    values of `devices` give about 27. Ids continue after the largest ones in the
    database, so the sample can be loaded several times into one database. The
    simulator must be started, because its base URL goes into the Rev.io account.
    """
    if devices < 1:
        raise ValueError(f"devices must be at least 1, got {devices}")
    if not simulator.base_url:
        raise ValueError("the Rev.io simulator has no base URL: start it before loading")

    # NOTE: services are added to the simulator before the rows are inserted, because
    # the RevService rows need their service ids. A failed insert leaves them there.
    async with engine.begin() as connection:
        existing = await _read_existing(connection)
        builder = _SampleBuilder(random.Random(seed), existing, simulator, single_usage)
        sample = builder.build(devices)
        for table, rows in builder.rows.items():
            await connection.execute(table.insert(), rows)
    return sample


# --- rate plans -----------------------------------------------------------------------

M2M_SERVICE_TYPE = 301
DATA_OVERAGE_TYPE = 302
SMS_TYPE = 303
MOBILITY_SERVICE_TYPE = 311

PRODUCT_TYPE_DESCRIPTIONS = {
    M2M_SERVICE_TYPE: "M2M monthly service",
    DATA_OVERAGE_TYPE: "Data overage",
    SMS_TYPE: "SMS usage",
    MOBILITY_SERVICE_TYPE: "Mobility monthly service",
}

Product = tuple[int | None, int | None]  # (Rev.io product id, product type id)
NO_PRODUCT: Product = (None, None)


class _PlanUse(Enum):
    WINNING = "winning"  # assigned to ordinary devices in winning queues
    LOSING = "losing"  # assigned in the more expensive candidate queues
    CASE = "case"  # assigned only to the devices of one case


@dataclass(frozen=True)
class _PlanSpec:
    code: str | None
    name: str
    kinds: tuple[DeviceKind, ...]
    use: _PlanUse
    base_rate: Decimal
    included_mb: int
    overage_per_mb: Decimal  # zero for plans without overage
    sms_per_message: Decimal  # zero for plans that include SMS
    bill_in_advance: bool
    product: Product
    overage_product: Product
    sms_product: Product
    weight: int = 1


def _plan(
    code: str | None,
    name: str,
    kinds: tuple[DeviceKind, ...],
    use: _PlanUse,
    rates: tuple[str, int, str, str],
    products: tuple[Product, Product, Product],
    *,
    bill_in_advance: bool = False,
    weight: int = 1,
) -> _PlanSpec:
    base_rate, included_mb, overage_per_mb, sms_per_message = rates
    return _PlanSpec(
        code=code,
        name=name,
        kinds=kinds,
        use=use,
        base_rate=Decimal(base_rate),
        included_mb=included_mb,
        overage_per_mb=Decimal(overage_per_mb),
        sms_per_message=Decimal(sms_per_message),
        bill_in_advance=bill_in_advance,
        product=products[0],
        overage_product=products[1],
        sms_product=products[2],
        weight=weight,
    )


_BOTH: tuple[DeviceKind, ...] = (M2M, MOBILITY)
_W, _L, _C = _PlanUse.WINNING, _PlanUse.LOSING, _PlanUse.CASE

# Rates are (base rate, included MB, price per overage MB, price per SMS). A plan
# without an overage or SMS product never charges overage or SMS, except the one
# plan that is a deliberate fault.
IOT_POOL_1GB = _plan(
    "IOT-POOL-1GB", "IoT Pooled 1 GB", (M2M,), _W, ("4.5000", 1024, "0.0125", "0.0050"),
    ((5101, M2M_SERVICE_TYPE), (5102, DATA_OVERAGE_TYPE), (5103, SMS_TYPE)), weight=4,
)  # fmt: skip
IOT_POOL_5GB = _plan(
    "IOT-POOL-5GB", "IoT Pooled 5 GB", (M2M,), _W, ("9.9900", 5120, "0.0100", "0.0050"),
    ((None, M2M_SERVICE_TYPE), (None, DATA_OVERAGE_TYPE), (None, SMS_TYPE)), weight=3,
)  # fmt: skip
IOT_250MB_ADVANCE = _plan(
    "IOT-250MB-ADV", "IoT 250 MB billed in advance", (M2M,), _W,
    ("2.7500", 250, "0.0200", "0.0050"),
    ((5104, M2M_SERVICE_TYPE), (5102, DATA_OVERAGE_TYPE), (5103, SMS_TYPE)),
    bill_in_advance=True, weight=2,
)  # fmt: skip
IOT_DATA_ONLY = _plan(
    "IOT-DATA-500MB", "IoT Data Only 500 MB", (M2M,), _W, ("3.2500", 500, "0", "0"),
    ((5105, M2M_SERVICE_TYPE), NO_PRODUCT, NO_PRODUCT), weight=2,
)  # fmt: skip
MOB_SHARE_2GB = _plan(
    "MOB-SHARE-2GB", "Business Share 2 GB", (MOBILITY,), _W, ("25.0000", 2048, "0.0125", "0.0050"),
    ((5201, MOBILITY_SERVICE_TYPE), (5202, DATA_OVERAGE_TYPE), (5203, SMS_TYPE)), weight=4,
)  # fmt: skip
MOB_5GB = _plan(
    "MOB-5GB", "Business 5 GB", (MOBILITY,), _W, ("30.0000", 5120, "0.0100", "0.0100"),
    ((None, MOBILITY_SERVICE_TYPE), (5202, DATA_OVERAGE_TYPE), (None, SMS_TYPE)), weight=3,
)  # fmt: skip
MOB_UNLIMITED_ADVANCE = _plan(
    "MOB-UNL-ADV", "Business Unlimited billed in advance", (MOBILITY,), _W,
    ("45.0000", 0, "0", "0"), ((5204, MOBILITY_SERVICE_TYPE), NO_PRODUCT, NO_PRODUCT),
    bill_in_advance=True, weight=2,
)  # fmt: skip
IOT_POOL_10GB = _plan(
    "IOT-POOL-10GB", "IoT Pooled 10 GB", (M2M,), _L, ("17.5000", 10240, "0.0080", "0.0050"),
    ((5106, M2M_SERVICE_TYPE), (5102, DATA_OVERAGE_TYPE), (5103, SMS_TYPE)),
)  # fmt: skip
MOB_UNLIMITED_PLUS = _plan(
    "MOB-UNL-PLUS", "Business Unlimited Plus", (MOBILITY,), _L, ("60.0000", 0, "0", "0.0050"),
    ((5205, MOBILITY_SERVICE_TYPE), NO_PRODUCT, (5203, SMS_TYPE)),
)  # fmt: skip
SUSPENDED = _plan(
    "SUSPENDED", "Suspended", _BOTH, _C, ("0.0000", 0, "0", "0"),
    ((5107, M2M_SERVICE_TYPE), NO_PRODUCT, NO_PRODUCT),
)  # fmt: skip
RETIRED_WITHOUT_CODE = _plan(
    None, "Pooled 1 GB (retired)", _BOTH, _C, ("8.0000", 1024, "0.0100", "0.0050"),
    ((5108, M2M_SERVICE_TYPE), (5102, DATA_OVERAGE_TYPE), (5103, SMS_TYPE)),
)  # fmt: skip
POOL_2GB_WITHOUT_OVERAGE_PRODUCT = _plan(
    "POOL-2GB", "Pooled 2 GB", _BOTH, _C, ("12.0000", 2048, "0.0150", "0.0050"),
    ((5109, M2M_SERVICE_TYPE), NO_PRODUCT, (5103, SMS_TYPE)),
)  # fmt: skip

PLANS = (
    IOT_POOL_1GB,
    IOT_POOL_5GB,
    IOT_250MB_ADVANCE,
    IOT_DATA_ONLY,
    MOB_SHARE_2GB,
    MOB_5GB,
    MOB_UNLIMITED_ADVANCE,
    IOT_POOL_10GB,
    MOB_UNLIMITED_PLUS,
    SUSPENDED,
    RETIRED_WITHOUT_CODE,
    POOL_2GB_WITHOUT_OVERAGE_PRODUCT,
)
HALF_CENT_PLANS = {M2M: IOT_POOL_1GB, MOBILITY: MOB_SHARE_2GB}


def _plans_for(kind: DeviceKind, use: _PlanUse) -> list[_PlanSpec]:
    return [plan for plan in PLANS if kind in plan.kinds and plan.use is use]


# --- instances, comm groups and queues ------------------------------------------------


class _Role(Enum):
    """The part a candidate queue plays in its comm group."""

    WINNER = "winner"
    MORE_EXPENSIVE = "more expensive"
    RUNNING_CHEAPER = "running, cheaper"  # RunEndTime null
    ENDED_WITHOUT_COST = "ended without cost"  # TotalCost null
    OTHER_KIND_CHEAPER = "finished, cheaper, only the other device kind"
    EMPTY_CHEAPER = "finished, cheaper, no device results"


@dataclass(frozen=True)
class _InstanceSpec:
    portal_type_id: int
    group_kinds: tuple[tuple[DeviceKind, ...], ...]  # device kinds of each group with a winner
    trap_role: _Role  # the cheaper finished queue of the second group, which must not win
    has_group_without_winner: bool
    cases: tuple[str, ...]


INSTANCE_SPECS = (
    _InstanceSpec(
        PORTAL_M2M,
        ((M2M,), (M2M,), (M2M,)),
        _Role.OTHER_KIND_CHEAPER,
        False,
        (
            CASE_HALF_CENT_AMOUNTS,
            CASE_NOTHING_TO_CHARGE,
            CASE_RATE_PLAN_NOT_FOUND,
            CASE_NO_SERVICE,
            CASE_OTHER_CUSTOMER,
            CASE_OVERAGE_PRODUCT_MISSING,
            CASE_OLDER_DISCONNECTED_SERVICE,
            CASE_UNKNOWN_CARRIER,
            CASE_EMPTY_SERVICE_NUMBER,
        ),
    ),
    _InstanceSpec(
        PORTAL_MOBILITY,
        ((MOBILITY,), (MOBILITY,), (MOBILITY,)),
        _Role.OTHER_KIND_CHEAPER,
        True,
        (
            CASE_HALF_CENT_AMOUNTS,
            CASE_NOTHING_TO_CHARGE,
            CASE_RATE_PLAN_NOT_FOUND,
            CASE_NO_SERVICE,
            CASE_OTHER_CUSTOMER,
            CASE_LATER_SERVICE,
            CASE_EMPTY_SERVICE_NUMBER,
        ),
    ),
    _InstanceSpec(
        PORTAL_CROSS_PROVIDER,
        ((M2M, MOBILITY), (M2M,), (MOBILITY,)),
        _Role.EMPTY_CHEAPER,
        False,
        (
            CASE_HALF_CENT_AMOUNTS,
            CASE_NOTHING_TO_CHARGE,
            CASE_RATE_PLAN_NOT_FOUND,
            CASE_NO_SERVICE,
            CASE_OTHER_CUSTOMER,
            CASE_OVERAGE_PRODUCT_MISSING,
            CASE_DISCONNECTED_DURING_PERIOD,
            CASE_UNKNOWN_CARRIER,
        ),
    ),
)


def _group_roles(group_index: int, trap_role: _Role) -> tuple[_Role, ...]:
    if group_index == 0:
        return (_Role.WINNER, _Role.MORE_EXPENSIVE, _Role.RUNNING_CHEAPER)
    if group_index == 1:
        return (_Role.WINNER, _Role.RUNNING_CHEAPER, trap_role, _Role.MORE_EXPENSIVE)
    return (_Role.WINNER, _Role.ENDED_WITHOUT_COST)


ROLES_WITHOUT_WINNER = (_Role.RUNNING_CHEAPER, _Role.ENDED_WITHOUT_COST)

CUSTOMER_NAMES = (
    "Acme Logistics",
    "Northwind Fleet Services",
    "Barker & Lowe Utilities",
    "Contoso Cold Chain",
    "Globex Field Services",
    "Initech Transit",
    "Umbrella Agritech",
    "Stark Vending",
)

# (service provider, integration) pairs; None is the provider whose integration is missing.
SERVICE_PROVIDERS: tuple[tuple[str, str | None], ...] = (
    ("Pond IoT", "Pond"),
    ("AT&T Mobility", "Telegence"),
    ("AT&T Control Center", "Jasper"),
    ("Verizon Wireless", "ThingSpace"),
    ("Legacy Carrier", None),
)
INTEGRATION_NAMES = ("Pond", "Telegence", "Jasper", "ThingSpace", "Rev.io")
REVIO_INTEGRATION = "Rev.io"
UNKNOWN_CARRIER_PROVIDER = "Legacy Carrier"
CARRIER_WEIGHTS: dict[DeviceKind, dict[str, int]] = {
    M2M: {"AT&T Control Center": 5, "Pond IoT": 3, "Verizon Wireless": 2},
    MOBILITY: {"AT&T Mobility": 6, "Verizon Wireless": 3},
}

AREA_CODES = ("312", "773", "214", "512", "617", "415", "206", "303", "404", "612")
ICCID_PREFIXES = ("8901410", "8901260", "89148000")  # AT&T, T-Mobile (19 digits), Verizon (20)


# --- reading the existing rows --------------------------------------------------------

ID_TABLES = (
    p.optimization_session,
    p.optimization_instance,
    p.optimization_comm_group,
    p.optimization_queue,
    p.device_result,
    p.mobility_device_result,
    p.device,
    p.mobility_device,
    p.rate_plan,
    p.service_provider,
    p.integration,
    p.integration_authentication,
    p.rev_service,
    p.rev_product_type,
    p.general_provider_settings,
)


@dataclass
class _Existing:
    """Rows already in the database that the sample continues from or reuses."""

    next_ids: dict[str, int]
    tenant_id: int
    rev_customer_id: int
    numbers: set[str]
    iccids: set[str]
    guids: set[uuid.UUID]
    integration_ids: dict[str, int]
    service_provider_ids: dict[str, int]
    email_settings: tuple[str | None, str | None, str | None] | None


async def _read_existing(connection: AsyncConnection) -> _Existing:
    next_ids = {}
    for table in ID_TABLES:
        next_ids[table.name] = (await connection.scalar(select(func.max(table.c.Id))) or 0) + 1

    tenant_columns = (
        p.optimization_session.c.TenantId,
        p.optimization_instance.c.TenantId,
        p.optimization_settings.c.TenantId,
        p.integration_authentication.c.TenantId,
    )
    tenant_id = max([await connection.scalar(select(func.max(c))) or 0 for c in tenant_columns])
    rev_customer_id = await connection.scalar(select(func.max(p.rev_customer.c.RevCustomerId)))

    return _Existing(
        next_ids=next_ids,
        tenant_id=tenant_id + 1,
        rev_customer_id=max(rev_customer_id or 0, REV_CUSTOMER_ID_FLOOR) + 1,
        numbers=await _read_numbers(connection),
        iccids=await _read_values(connection, [p.device.c.ICCID, p.mobility_device.c.ICCID]),
        guids=await _read_values(
            connection, [p.optimization_session.c.SessionId, p.rev_customer.c.Id]
        ),
        integration_ids=await _read_ids_by_name(connection, p.integration),
        service_provider_ids=await _read_ids_by_name(connection, p.service_provider),
        email_settings=await _read_email_settings(connection),
    )


async def _read_numbers(connection: AsyncConnection) -> set[str]:
    columns = [
        p.device.c.MSISDN,
        p.device.c.RevServiceNumber,
        p.mobility_device.c.MSISDN,
        p.mobility_device.c.RevServiceNumber,
        p.rev_service.c.Number,
    ]
    return await _read_values(connection, columns)


async def _read_values(connection: AsyncConnection, columns: Iterable[Any]) -> set[Any]:
    values: set[Any] = set()
    for column in columns:
        values.update(v for v in (await connection.scalars(select(column))).all() if v)
    return values


async def _read_ids_by_name(connection: AsyncConnection, table: Table) -> dict[str, int]:
    rows = (await connection.execute(select(table.c.Name, table.c.Id).order_by(table.c.Id))).all()
    ids: dict[str, int] = {}
    for name, row_id in rows:
        ids.setdefault(name, row_id)
    return ids


async def _read_email_settings(
    connection: AsyncConnection,
) -> tuple[str | None, str | None, str | None] | None:
    table = p.general_provider_settings
    query = select(
        table.c.CustomerChargeFromEmailAddress,
        table.c.CustomerChargeToEmailAddresses,
        table.c.CustomerChargeResultsEmailSubject,
    ).order_by(table.c.Id)
    row = (await connection.execute(query)).first()
    return None if row is None else (row[0], row[1], row[2])


# --- the in-memory push ---------------------------------------------------------------


@dataclass
class _Line:
    """A device or Mobility line, with what the winning optimization assigned to it."""

    kind: DeviceKind
    device_id: int
    iccid: str
    msisdn: str
    rev_service_number: str | None
    service_provider_id: int
    plan: _PlanSpec
    usage_mb: Decimal
    sms_usage: int
    prorated_days: int | None = None  # days of the month the line was billed for
    rate_override: Decimal | None = None
    rev_service_id: int | None = None  # RevService.Id of the service it is charged to
    case: str | None = None

    @property
    def service_number(self) -> str:
        return self.rev_service_number or self.msisdn


@dataclass(frozen=True)
class _Amounts:
    base_rate: Decimal
    rate: Decimal
    overage: Decimal
    sms: Decimal

    @property
    def total(self) -> Decimal:
        return self.rate + self.overage + self.sms


def _amounts(line: _Line, plan: _PlanSpec) -> _Amounts:
    """Compute a device result's amounts, rounded to the four places of the money columns."""
    rate = plan.base_rate
    if line.prorated_days is not None:
        rate = plan.base_rate * line.prorated_days / MONTH_DAYS
    if line.rate_override is not None and plan is line.plan:
        rate = line.rate_override

    overage_mb = max(line.usage_mb - plan.included_mb, Decimal(0)) if plan.included_mb else 0
    return _Amounts(
        base_rate=plan.base_rate,
        rate=_four_places(rate),
        overage=_four_places(overage_mb * plan.overage_per_mb),
        sms=_four_places(line.sms_usage * plan.sms_per_message),
    )


def _four_places(amount: Decimal) -> Decimal:
    return amount.quantize(FOUR_PLACES, rounding=ROUND_HALF_UP)


@dataclass
class _Registration:
    """One service to add to the simulator, mirrored as a RevService row."""

    customer_id: int
    number: str
    activated: date
    disconnected: date | None = None
    line: _Line | None = None  # the line charged to this service, when it is the usable one


@dataclass
class _InstanceState:
    spec: _InstanceSpec
    instance_id: int
    customer_guid: uuid.UUID
    customer_name: str
    rev_customer_id: int
    account_number: str
    winning_queue_ids: list[int] = field(default_factory=list)
    losing_queue_ids: list[int] = field(default_factory=list)
    groups_without_winner: list[int] = field(default_factory=list)


# --- building the push ----------------------------------------------------------------


class _SampleBuilder:
    """Builder of one sample push: its rows in memory and its services in the simulator."""

    def __init__(
        self,
        rng: random.Random,
        existing: _Existing,
        simulator: RevioSimulator,
        single_usage: bool,
    ) -> None:
        self.rng = rng
        self.existing = existing
        self.simulator = simulator
        self.single_usage = single_usage
        self.rows: dict[Table, list[dict[str, Any]]] = {}
        self.registrations: list[_Registration] = []
        self.lines: list[_Line] = []
        self.cases: list[SampleCase] = []
        self.expected_rows = 0
        self.queue_clock = PERIOD_END + timedelta(days=1, hours=6)
        self.integration_ids: dict[str, int] = {}
        self.provider_ids: dict[str, int] = {}
        self.plan_ids: dict[str, int] = {}
        self.auth_id = 0

    def build(self, devices: int) -> Sample:
        """Build every row, register the services in the simulator and return the Sample."""
        tenant_id = self.existing.tenant_id
        session_id = self._new_guid()
        self._add_session(tenant_id, session_id)
        self._add_tenant_settings(tenant_id)
        email = self._add_email_settings()

        self.integration_ids = self._add_integrations()
        self.provider_ids = self._add_service_providers()
        self.auth_id = self._add_revio_account(tenant_id)
        self.plan_ids = self._add_rate_plans()
        self._add_product_types(tenant_id)

        instances = self._add_instances(tenant_id, session_id)
        for state, device_count in zip(instances, _split(devices, len(instances)), strict=True):
            self._add_instance_push(state, instances, device_count)

        self._register_services()
        self._add_devices()
        return self._sample(tenant_id, session_id, email, instances)

    # -- ids and rows

    def _take_id(self, table: Table) -> int:
        next_id = self.existing.next_ids[table.name]
        self.existing.next_ids[table.name] = next_id + 1
        return next_id

    def _add_row(self, table: Table, **values: Any) -> None:
        self.rows.setdefault(table, []).append(values)

    # -- tenant-wide rows

    def _add_session(self, tenant_id: int, session_id: uuid.UUID) -> None:
        self._add_row(
            p.optimization_session,
            Id=self._take_id(p.optimization_session),
            SessionId=session_id,
            TenantId=tenant_id,
            CreatedDate=PERIOD_END + timedelta(days=1, hours=5, minutes=55),
        )

    def _add_tenant_settings(self, tenant_id: int) -> None:
        self._add_row(
            p.optimization_settings,
            TenantId=tenant_id,
            BillingTimeZone=TIME_ZONE,
            UsingNewProcessInCustomerCharge=not self.single_usage,
        )

    def _add_email_settings(self) -> tuple[str, list[str], str]:
        """Add the email settings when the database has none; return the ones in force."""
        stored = self.existing.email_settings
        if stored is None:
            stored = (EMAIL_FROM, EMAIL_TO, EMAIL_SUBJECT)
            self._add_row(
                p.general_provider_settings,
                Id=self._take_id(p.general_provider_settings),
                CustomerChargeFromEmailAddress=EMAIL_FROM,
                CustomerChargeToEmailAddresses=EMAIL_TO,
                CustomerChargeResultsEmailSubject=EMAIL_SUBJECT,
            )
        sender, recipients, subject = stored
        to = [address.strip() for address in (recipients or "").split(";") if address.strip()]
        return sender or "", to, subject or ""

    def _add_integrations(self) -> dict[str, int]:
        ids = dict(self.existing.integration_ids)
        for name in INTEGRATION_NAMES:
            if name not in ids:
                ids[name] = self._take_id(p.integration)
                self._add_row(p.integration, Id=ids[name], Name=name)
        return ids

    def _add_service_providers(self) -> dict[str, int]:
        ids = dict(self.existing.service_provider_ids)
        for name, integration_name in SERVICE_PROVIDERS:
            if name in ids:
                continue
            integration_id = (
                MISSING_INTEGRATION_ID
                if integration_name is None
                else self.integration_ids[integration_name]
            )
            ids[name] = self._take_id(p.service_provider)
            self._add_row(p.service_provider, Id=ids[name], Name=name, IntegrationId=integration_id)
        return ids

    def _add_revio_account(self, tenant_id: int) -> int:
        auth_id = self._take_id(p.integration_authentication)
        self._add_row(
            p.integration_authentication,
            Id=auth_id,
            TenantId=tenant_id,
            IntegrationId=self.integration_ids[REVIO_INTEGRATION],
            BaseUrl=self.simulator.base_url,
            Username=self.simulator.username,
            Password=self.simulator.password,
            ClientCode=self.simulator.client_code,
            SubscriptionKey=self.simulator.subscription_key,
            IsActive=True,
        )
        return auth_id

    def _add_rate_plans(self) -> dict[str, int]:
        ids: dict[str, int] = {}
        for plan in PLANS:
            ids[plan.name] = self._take_id(p.rate_plan)
            self._add_row(
                p.rate_plan,
                Id=ids[plan.name],
                RatePlanCode=plan.code,
                RatePlanName=plan.name,
                BaseRate=plan.base_rate,
                IsBillInAdvance=plan.bill_in_advance,
                RevProductId=plan.product[0],
                RevProductTypeId=plan.product[1],
                OverageRevProductId=plan.overage_product[0],
                OverageRevProductTypeId=plan.overage_product[1],
                SmsRevProductId=plan.sms_product[0],
                SmsRevProductTypeId=plan.sms_product[1],
            )
        return ids

    def _add_product_types(self, tenant_id: int) -> None:
        for product_type_id, description in PRODUCT_TYPE_DESCRIPTIONS.items():
            self._add_row(
                p.rev_product_type,
                Id=self._take_id(p.rev_product_type),
                TenantId=tenant_id,
                ProductTypeId=product_type_id,
                Description=description,
                IsActive=True,
                IsDeleted=False,
            )

    # -- instances

    def _add_instances(self, tenant_id: int, session_id: uuid.UUID) -> list[_InstanceState]:
        names = self.rng.sample(CUSTOMER_NAMES, len(INSTANCE_SPECS))
        instances = []
        for spec, name in zip(INSTANCE_SPECS, names, strict=True):
            state = _InstanceState(
                spec=spec,
                instance_id=self._take_id(p.optimization_instance),
                customer_guid=self._new_guid(),
                customer_name=name,
                rev_customer_id=self.existing.rev_customer_id,
                account_number=str(self.rng.randrange(1_000_000, 10_000_000)),
            )
            self.existing.rev_customer_id += 1
            self._add_instance_rows(state, tenant_id, session_id)
            instances.append(state)
        return instances

    def _add_instance_rows(
        self, state: _InstanceState, tenant_id: int, session_id: uuid.UUID
    ) -> None:
        self._add_row(
            p.rev_customer,
            Id=state.customer_guid,
            IntegrationAuthenticationId=self.auth_id,
            RevCustomerId=state.rev_customer_id,
            CustomerName=state.customer_name,
            RevAccountNumber=state.account_number,
        )
        self._add_row(
            p.optimization_instance,
            Id=state.instance_id,
            SessionId=session_id,
            TenantId=tenant_id,
            PortalTypeId=state.spec.portal_type_id,
            RevCustomerId=state.customer_guid,
            AMOPCustomerId=None,
            IntegrationAuthenticationId=self.auth_id,
            BillingPeriodStartDate=PERIOD_START,
            BillingPeriodEndDate=PERIOD_END,
        )

    def _add_instance_push(
        self, state: _InstanceState, instances: Sequence[_InstanceState], device_count: int
    ) -> None:
        """Add the instance's comm groups, with the cases spread over its charged lines."""
        spec = state.spec
        counts = [
            max(count, MIN_DEVICES_PER_GROUP)
            for count in _split(device_count, len(spec.group_kinds))
        ]
        groups = [
            [self._new_line(kind) for kind in _spread(kinds, count)]
            for kinds, count in zip(spec.group_kinds, counts, strict=True)
        ]

        charged = [line for group in groups for line in group]
        other = instances[(instances.index(state) + 1) % len(instances)]
        for case, line in zip(spec.cases, self.rng.sample(charged, len(spec.cases)), strict=True):
            self._apply_case(line, case, other)
        for line in charged:
            if line.case not in (CASE_NO_SERVICE, CASE_OTHER_CUSTOMER):
                self._register_usable(line, state)

        for index, lines in enumerate(groups):
            self._add_group(state, lines, _group_roles(index, spec.trap_role))
        if spec.has_group_without_winner:
            kind = spec.group_kinds[0][0]
            lines = [self._new_line(kind) for _ in range(MIN_DEVICES_PER_GROUP)]
            for line in lines:
                self._register_usable(line, state)
            self._add_group(state, lines, ROLES_WITHOUT_WINNER)

    # -- lines

    def _new_line(self, kind: DeviceKind) -> _Line:
        rng = self.rng
        plans = _plans_for(kind, _PlanUse.WINNING)
        plan = rng.choices(plans, weights=[plan.weight for plan in plans])[0]
        msisdn = self._new_number()
        carriers = CARRIER_WEIGHTS[kind]
        carrier = rng.choices(list(carriers), weights=list(carriers.values()))[0]

        line = _Line(
            kind=kind,
            device_id=self._take_id(p.device if kind == M2M else p.mobility_device),
            iccid=self._new_iccid(),
            msisdn=msisdn,
            rev_service_number=msisdn if rng.random() < 0.9 else rng.choice((None, "")),
            service_provider_id=self.provider_ids[carrier],
            plan=plan,
            usage_mb=self._usage_mb(plan),
            sms_usage=rng.randrange(0, 400),
            prorated_days=rng.randrange(3, MONTH_DAYS) if rng.random() < 0.15 else None,
        )
        self.lines.append(line)
        return line

    def _usage_mb(self, plan: _PlanSpec) -> Decimal:
        # About one line in four uses more than its plan includes.
        ceiling_mb = plan.included_mb * 13 // 10 if plan.included_mb else 8000
        return Decimal(self.rng.randrange(0, ceiling_mb * 10_000)) / 10_000

    def _new_number(self) -> str:
        while True:
            number = (
                self.rng.choice(AREA_CODES)
                + str(self.rng.randrange(200, 1000))
                + f"{self.rng.randrange(10_000):04d}"
            )
            if number not in self.existing.numbers:
                self.existing.numbers.add(number)
                return number

    def _new_guid(self) -> uuid.UUID:
        while True:
            guid = uuid.UUID(int=self.rng.getrandbits(128), version=4)
            if guid not in self.existing.guids:
                self.existing.guids.add(guid)
                return guid

    def _new_iccid(self) -> str:
        while True:
            prefix = self.rng.choice(ICCID_PREFIXES)
            length = 20 if len(prefix) == 8 else 19
            body = prefix + "".join(
                str(self.rng.randrange(10)) for _ in range(length - 1 - len(prefix))
            )
            iccid = body + _luhn_check_digit(body)
            if iccid not in self.existing.iccids:
                self.existing.iccids.add(iccid)
                return iccid

    # -- cases

    def _apply_case(self, line: _Line, case: str, other: _InstanceState) -> None:
        """Make `line` the example of `case`.

        Only the other-customer case registers a service here, under `other`'s Rev.io
        customer. The services of the other cases are registered with the line's own.
        """
        line.case = case
        if case == CASE_HALF_CENT_AMOUNTS:
            # A prorated rate of 3.14159 is stored as 3.1416 and charged as 3.14. Overage
            # of 80.4 MB and 125 SMS cost 1.0050 and 0.6250: half up gives 1.01 and
            # 0.63, where rounding half to even would give 1.00 and 0.62.
            line.plan = HALF_CENT_PLANS[line.kind]
            line.rate_override = Decimal("3.14159")
            line.usage_mb = line.plan.included_mb + Decimal("80.4")
            line.sms_usage = 125
        elif case == CASE_NOTHING_TO_CHARGE:
            line.plan = SUSPENDED
            line.usage_mb = Decimal(0)
            line.sms_usage = 0
            line.prorated_days = None
        elif case == CASE_RATE_PLAN_NOT_FOUND:
            line.plan = RETIRED_WITHOUT_CODE
        elif case == CASE_OVERAGE_PRODUCT_MISSING:
            line.plan = POOL_2GB_WITHOUT_OVERAGE_PRODUCT
            line.usage_mb = line.plan.included_mb + Decimal(self.rng.randrange(1, 500))
        elif case == CASE_UNKNOWN_CARRIER:
            line.service_provider_id = self.provider_ids[UNKNOWN_CARRIER_PROVIDER]
        elif case == CASE_EMPTY_SERVICE_NUMBER:
            line.rev_service_number = None
        elif case == CASE_OTHER_CUSTOMER:
            self._register(other.rev_customer_id, line.service_number, self._activation_date())

    def _expected_error(self, line: _Line) -> str | None:
        number = line.service_number
        if line.case == CASE_RATE_PLAN_NOT_FOUND:
            return "rate plan not found"
        if line.case == CASE_NO_SERVICE:
            return f"no active Rev.io service for number {number}"
        if line.case == CASE_OTHER_CUSTOMER:
            return f"number {number} belongs to another Rev.io customer"
        if line.case == CASE_OVERAGE_PRODUCT_MISSING and not self.single_usage:
            # In single-usage mode the overage is part of the usage charge, which uses
            # the rate product, so the missing overage product is never needed.
            return "Rev.io product for overage charges is not set up"
        return None

    # -- services

    def _activation_date(self) -> date:
        days_before = self.rng.randrange(30, 4 * 365)
        return PERIOD_START.date() - timedelta(days=days_before)

    def _register(
        self,
        customer_id: int,
        number: str,
        activated: date,
        disconnected: date | None = None,
        line: _Line | None = None,
    ) -> None:
        self.registrations.append(_Registration(customer_id, number, activated, disconnected, line))

    def _register_usable(self, line: _Line, state: _InstanceState) -> None:
        """Register the line's usable service, and the extra services its case adds."""
        case = line.case
        customer_id = state.rev_customer_id
        number = line.service_number
        period_start = PERIOD_START.date()

        if case == CASE_OLDER_DISCONNECTED_SERVICE:
            # Registered first so that it gets the lower service_id.
            activated = period_start - timedelta(days=5 * 365)
            self._register(customer_id, number, activated, period_start - timedelta(days=200))
        disconnected = None
        if case == CASE_DISCONNECTED_DURING_PERIOD:
            disconnected = period_start + timedelta(days=19)

        self._register(customer_id, number, self._activation_date(), disconnected, line)

        if case == CASE_LATER_SERVICE:
            # A higher service_id that only starts after the period, so it is not usable.
            self._register(customer_id, number, PERIOD_END.date() + timedelta(days=5))

    def _register_services(self) -> None:
        for registration in self.registrations:
            service_id = self.simulator.add_service(
                customer_id=registration.customer_id,
                number=registration.number,
                activated_date=registration.activated,
                disconnected_date=registration.disconnected,
            )
            row_id = self._take_id(p.rev_service)
            self._add_row(
                p.rev_service,
                Id=row_id,
                IntegrationAuthenticationId=self.auth_id,
                ServiceId=service_id,
                CustomerId=registration.customer_id,
                Number=registration.number,
            )
            if registration.line is not None:
                registration.line.rev_service_id = row_id

    # -- comm groups and queues

    def _add_group(
        self, state: _InstanceState, lines: list[_Line], roles: tuple[_Role, ...]
    ) -> None:
        group_id = self._take_id(p.optimization_comm_group)
        self._add_row(p.optimization_comm_group, Id=group_id, InstanceId=state.instance_id)

        results = {role: self._role_results(role, lines, state) for role in roles}
        # Traps are priced against the winner, or in a group without one, against the
        # first candidate's own results.
        reference_cost = _results_cost(results.get(_Role.WINNER) or results[roles[0]])

        shuffled = list(roles)
        self.rng.shuffle(shuffled)
        for role in shuffled:
            queue_id = self._add_queue(state, group_id, role, results[role], reference_cost)
            self._record_queue(state, queue_id, role, results[role])
        if _Role.WINNER not in roles:
            state.groups_without_winner.append(group_id)

    def _role_results(
        self, role: _Role, lines: list[_Line], state: _InstanceState
    ) -> list[tuple[_Line, _PlanSpec]]:
        """Return the (line, assigned plan) pairs of a candidate queue."""
        if role is _Role.WINNER:
            return [(line, line.plan) for line in lines]
        if role is _Role.EMPTY_CHEAPER:
            return []
        if role is _Role.OTHER_KIND_CHEAPER:
            other_kind = MOBILITY if lines[0].kind == M2M else M2M
            others = [self._new_line(other_kind) for _ in range(2)]
            for line in others:
                self._register_usable(line, state)
            return [(line, line.plan) for line in others]

        use = _PlanUse.LOSING if role is _Role.MORE_EXPENSIVE else _PlanUse.WINNING
        return [(line, self.rng.choice(_plans_for(line.kind, use))) for line in lines]

    def _queue_cost(
        self, role: _Role, results: list[tuple[_Line, _PlanSpec]], reference_cost: Decimal
    ) -> Decimal | None:
        """Return a TotalCost that puts the queue on the intended side of the winner."""
        own_cost = _results_cost(results)
        if role is _Role.WINNER:
            return own_cost
        if role is _Role.ENDED_WITHOUT_COST:
            return None
        if role is _Role.MORE_EXPENSIVE:
            return max(own_cost, reference_cost + Decimal("5.00"))
        fraction = Decimal(self.rng.randrange(40, 90)) / 100
        return (reference_cost * fraction).quantize(CENT, rounding=ROUND_HALF_UP)

    def _add_queue(
        self,
        state: _InstanceState,
        group_id: int,
        role: _Role,
        results: list[tuple[_Line, _PlanSpec]],
        reference_cost: Decimal,
    ) -> int:
        queue_id = self._take_id(p.optimization_queue)
        started = self.queue_clock
        self.queue_clock += timedelta(minutes=self.rng.randrange(1, 6))
        ended = None if role is _Role.RUNNING_CHEAPER else started + timedelta(minutes=20)
        self._add_row(
            p.optimization_queue,
            Id=queue_id,
            InstanceId=state.instance_id,
            CommPlanGroupId=group_id,
            TotalCost=self._queue_cost(role, results, reference_cost),
            RunStartTime=started,
            RunEndTime=ended,
        )
        for line, plan in results:
            self._add_result(queue_id, line, plan)
        return queue_id

    def _add_result(self, queue_id: int, line: _Line, plan: _PlanSpec) -> None:
        table = p.device_result if line.kind == M2M else p.mobility_device_result
        device_column = "AmopDeviceId" if line.kind == M2M else "MobilityDeviceId"
        amounts = _amounts(line, plan)
        self._add_row(
            table,
            Id=self._take_id(table),
            QueueId=queue_id,
            **{device_column: line.device_id},
            AssignedRatePlanId=self.plan_ids[plan.name],
            UsageMB=line.usage_mb,
            SmsUsage=line.sms_usage,
            BaseRateAmt=amounts.base_rate,
            RateChargeAmt=amounts.rate,
            OverageChargeAmt=amounts.overage,
            SmsChargeAmt=amounts.sms,
        )

    def _record_queue(
        self,
        state: _InstanceState,
        queue_id: int,
        role: _Role,
        results: list[tuple[_Line, _PlanSpec]],
    ) -> None:
        if role is not _Role.WINNER:
            state.losing_queue_ids.append(queue_id)
            return

        state.winning_queue_ids.append(queue_id)
        self.expected_rows += len(results)
        for line, _plan in results:
            if line.case is None:
                continue
            self.cases.append(
                SampleCase(
                    case=line.case,
                    instance_id=state.instance_id,
                    queue_id=queue_id,
                    device_kind=line.kind,
                    device_id=line.device_id,
                    number=line.service_number,
                    expected_error=self._expected_error(line),
                )
            )

    # -- devices and the result

    def _add_devices(self) -> None:
        for line in self.lines:
            self._add_row(
                p.device if line.kind == M2M else p.mobility_device,
                Id=line.device_id,
                TenantId=self.existing.tenant_id,
                ICCID=line.iccid,
                MSISDN=line.msisdn,
                ServiceProviderId=line.service_provider_id,
                RevServiceNumber=line.rev_service_number,
                RevServiceId=line.rev_service_id,
            )

    def _sample(
        self,
        tenant_id: int,
        session_id: uuid.UUID,
        email: tuple[str, list[str], str],
        instances: list[_InstanceState],
    ) -> Sample:
        return Sample(
            tenant_id=tenant_id,
            session_id=session_id,
            integration_authentication_id=self.auth_id,
            instances=[
                SampleInstance(
                    instance_id=state.instance_id,
                    portal_type_id=state.spec.portal_type_id,
                    customer_name=state.customer_name,
                    rev_customer_id=state.rev_customer_id,
                    winning_queue_ids=state.winning_queue_ids,
                    losing_queue_ids=state.losing_queue_ids,
                    comm_groups_without_winner=state.groups_without_winner,
                )
                for state in instances
            ],
            expected_rows=self.expected_rows,
            email_from=email[0],
            email_to=email[1],
            email_subject=email[2],
            cases=self.cases,
        )


def _results_cost(results: Iterable[tuple[_Line, _PlanSpec]]) -> Decimal:
    return sum((_amounts(line, plan).total for line, plan in results), Decimal(0))


def _split(total: int, parts: int) -> list[int]:
    """Split `total` into `parts` counts that differ by at most one."""
    share, extra = divmod(total, parts)
    return [share + (1 if index < extra else 0) for index in range(parts)]


def _spread(kinds: tuple[DeviceKind, ...], count: int) -> list[DeviceKind]:
    """Return `count` device kinds, taking the kinds in turn."""
    return [kinds[index % len(kinds)] for index in range(count)]


def _luhn_check_digit(digits: str) -> str:
    total = 0
    for index, digit in enumerate(reversed(digits)):
        value = int(digit)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)
