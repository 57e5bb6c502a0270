"""Send one page's charge lines to Rev.io, settling in-doubt lines first.

Every POST is preceded by a committed `sending` ledger state, and the ledger
update after it is shielded from cancellation. A shutdown between the two can
only leave a line in doubt. The next attempt settles such a line by listing the
customer's charges before anything is sent again.
"""

import asyncio
import enum
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TypeVar

import structlog
from pydantic import ValidationError

from chargeworker import heartbeat, metrics
from chargeworker.context import Context
from chargeworker.db import ledger
from chargeworker.db.ledger import LedgerLine
from chargeworker.errors import (
    RevioError,
    RevioInDoubt,
    RevioRejected,
    RevioThrottled,
    RevioUnauthorized,
    RevioUnavailable,
)
from chargeworker.revio.models import ChargeRequest, RevioAccount, RevioCharge, RevioService

log = structlog.get_logger()

T = TypeVar("T")

# created_date of a listed charge is the account's local time; a day of slack
# covers any time zone.
LOCAL_TIME_SLACK = timedelta(days=1)


class Holdback(enum.Enum):
    """Reason a line is not final after this attempt."""

    RETRY = "retry"  # a transient failure or an unsettled doubt: counts against RetryCount
    DEFER = "defer"  # rate limit or refused credentials: waits without counting
    BUSY = "busy"  # another worker holds the line's lease


@dataclass
class PageOutcome:
    holdbacks: dict[int, Holdback] = field(default_factory=dict)
    retry_after_s: float | None = None
    busy_for_s: float = 0.0

    def hold(self, line: LedgerLine, reason: Holdback) -> None:
        self.holdbacks[line.id] = reason

    def hold_all(self, lines: list[LedgerLine], reason: Holdback) -> None:
        for line in lines:
            self.hold(line, reason)


async def shielded(awaitable: Awaitable[T]) -> T:
    """Finish the bookkeeping even when the caller is cancelled meanwhile."""
    task = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


@dataclass(frozen=True)
class Service:
    """The Rev.io service a line is charged to, and the customer that owns it."""

    service_id: int
    customer_id: int


@dataclass(frozen=True)
class Customer:
    """The Rev.io customer a page's charges go to, and the period its services must cover."""

    rev_customer_id: int
    period_start: date
    period_end: date


class PageSender:
    """Bring the page's non-final lines as far as Rev.io allows in one attempt."""

    def __init__(self, ctx: Context, account: RevioAccount, customer: Customer | None) -> None:
        """Send for one Rev.io customer, or with `customer` None for uploaded-file rows.

        File rows have no instance: each number's service is found across the
        account, and the charge goes to that service's customer.
        """
        self.ctx = ctx
        self.account = account
        self.customer = customer
        self.outcome = PageOutcome()

    async def run(
        self, lines: list[LedgerLine], numbers: dict[tuple[str, int], str]
    ) -> PageOutcome:
        """Settle, look up and send; `numbers` maps each row to its Rev.io service number."""
        now = self.ctx.clock.now()
        open_lines = [line for line in lines if not line.is_final]
        for line in open_lines:
            if line.is_leased(now):
                self._hold_busy(line, now)

        in_doubt = [line for line in open_lines if line.is_in_doubt(now)]
        if in_doubt:
            await self._settle_in_doubt(in_doubt)

        pending = [
            line
            for line in open_lines
            if line.state == ledger.PENDING and line.id not in self.outcome.holdbacks
        ]
        if pending:
            services = await self._resolve_services(pending, numbers)
            await self._send_all(pending, services)
        return self.outcome

    def _hold_busy(self, line: LedgerLine, now: datetime) -> None:
        self.outcome.hold(line, Holdback.BUSY)
        if line.lease_expires_at is not None:
            remaining_s = (line.lease_expires_at - now).total_seconds()
            self.outcome.busy_for_s = max(self.outcome.busy_for_s, remaining_s)

    def _hold_for_error(self, lines: list[LedgerLine], error: RevioError) -> None:
        if isinstance(error, RevioThrottled | RevioUnauthorized):
            self.outcome.hold_all(lines, Holdback.DEFER)
            if isinstance(error, RevioThrottled) and error.retry_after_s:
                self.outcome.retry_after_s = error.retry_after_s
        else:
            self.outcome.hold_all(lines, Holdback.RETRY)

    # --- in-doubt lines ------------------------------------------------------

    async def _settle_in_doubt(self, lines: list[LedgerLine]) -> None:
        by_customer: dict[int, list[LedgerLine]] = {}
        for line in lines:
            customer_id = line.rev_customer_id
            if customer_id is None and self.customer is not None:
                customer_id = self.customer.rev_customer_id
            if customer_id is None:
                # Never claimed for a customer, so never sent: it may go out again.
                await self._record_settlement(line, None)
                continue
            by_customer.setdefault(customer_id, []).append(line)
        for customer_id, customer_lines in by_customer.items():
            await self._settle_customer_lines(customer_id, customer_lines)

    async def _settle_customer_lines(self, customer_id: int, lines: list[LedgerLine]) -> None:
        oldest = min(line.first_sent_at or self.ctx.clock.now() for line in lines)
        since = oldest - timedelta(seconds=self.ctx.settings.in_doubt_slack_s) - LOCAL_TIME_SLACK
        try:
            listed = await self.ctx.revio.list_charges(
                self.account, customer_id, created_since=since
            )
        except RevioError as exc:
            log.warning("charge.in_doubt_unsettled", lines=len(lines), error=str(exc))
            self._hold_for_error(lines, exc)
            return

        async with self.ctx.engine.connect() as connection:
            claimed_ids = await ledger.charge_ids_in_use(
                connection,
                self.account.integration_authentication_id,
                {charge.charge_id for charge in listed},
            )
        for line in lines:
            match = _find_match(line, listed, claimed_ids)
            await self._record_settlement(line, match)
            if match is not None:
                claimed_ids.add(match.charge_id)

    async def _record_settlement(self, line: LedgerLine, match: RevioCharge | None) -> None:
        now = self.ctx.clock.now()
        async with self.ctx.engine.begin() as connection:
            if match is not None:
                moved = await ledger.settle_line(
                    connection, line.id, state=ledger.CREATED, charge_id=match.charge_id, now=now
                )
            else:
                moved = await ledger.settle_line(connection, line.id, state=ledger.PENDING, now=now)
        if not moved:
            self.outcome.hold(line, Holdback.BUSY)
            return
        result = "found" if match is not None else "absent"
        metrics.IN_DOUBT_RESOLVED.labels(result).inc()
        log.info(
            "charge.in_doubt_settled",
            line_id=line.id,
            kind=line.kind,
            result=result,
            charge_id=match.charge_id if match else None,
        )
        if match is not None:
            line.state, line.charge_id = ledger.CREATED, match.charge_id
            _count_final(line, "created")
        else:
            line.state = ledger.PENDING

    # --- service look-up -----------------------------------------------------

    async def _resolve_services(
        self, lines: list[LedgerLine], numbers: dict[tuple[str, int], str]
    ) -> dict[int, Service]:
        """Map line id → its service; lines without a usable service fail for good."""
        if self.customer is None:
            return await self._resolve_by_number(lines, numbers)
        customer = self.customer
        try:
            services = await self.ctx.revio.list_customer_services(
                self.account, customer.rev_customer_id
            )
        except RevioError as exc:
            log.warning("revio.services_unavailable", error=str(exc))
            self._hold_for_error(lines, exc)
            return {}

        by_number = _usable_services(services, customer)
        resolved: dict[int, Service] = {}
        reasons: dict[str, str | RevioError] = {}
        for line in lines:
            number = numbers[line.row_key]
            service_id = by_number.get(number)
            if service_id is not None:
                resolved[line.id] = Service(service_id, customer.rev_customer_id)
                continue
            if number not in reasons:
                reasons[number] = await self._missing_service_reason(
                    number, services, customer.rev_customer_id
                )
            await self._fail_or_hold(line, reasons[number])
        return resolved

    async def _resolve_by_number(
        self, lines: list[LedgerLine], numbers: dict[tuple[str, int], str]
    ) -> dict[int, Service]:
        """Find each number's service across the account, usable during the line's dates."""
        found: dict[str, list[RevioService] | RevioError] = {}
        resolved: dict[int, Service] = {}
        for line in lines:
            number = numbers[line.row_key]
            if number not in found:
                found[number] = await self._services_by_number(number)
            services = found[number]
            if isinstance(services, RevioError):
                self._hold_for_error([line], services)
                continue
            usable = [
                service
                for service in services
                if service.number == number and _is_active(service, line.start_date, line.end_date)
            ]
            if not usable:
                await self._fail(line, f"no active Rev.io service for number {number}")
                continue
            best = max(usable, key=lambda service: service.service_id)
            resolved[line.id] = Service(best.service_id, best.customer_id)
        return resolved

    async def _services_by_number(self, number: str) -> list[RevioService] | RevioError:
        """Find a number's services across the account, or return why Rev.io could not say."""
        try:
            return await self.ctx.revio.find_services_by_number(self.account, number)
        except RevioError as exc:
            log.warning("revio.number_lookup_failed", number=number, error=str(exc))
            return exc

    async def _fail_or_hold(self, line: LedgerLine, reason: str | RevioError) -> None:
        if isinstance(reason, RevioError):
            self._hold_for_error([line], reason)
        else:
            await self._fail(line, reason)

    async def _missing_service_reason(
        self, number: str, customer_services: list[RevioService], customer_id: int
    ) -> str | RevioError:
        """Say why a number has no usable service, or return the error that prevented asking."""
        if any(service.number == number for service in customer_services):
            return f"no active Rev.io service for number {number}"
        elsewhere = await self._services_by_number(number)
        if isinstance(elsewhere, RevioError):
            return elsewhere
        if any(service.customer_id != customer_id for service in elsewhere):
            return f"number {number} belongs to another Rev.io customer"
        return f"no active Rev.io service for number {number}"

    # --- sending -------------------------------------------------------------

    async def _send_all(self, lines: list[LedgerLine], services: dict[int, Service]) -> None:
        limit = asyncio.Semaphore(self.ctx.settings.revio_concurrency_per_page)

        async def send(line: LedgerLine) -> None:
            async with limit:
                await self._send_one(line, services[line.id])
            heartbeat.beat()

        sendable = [line for line in lines if line.id in services]
        async with asyncio.TaskGroup() as group:
            for line in sendable:
                group.create_task(send(line))

    async def _send_one(self, line: LedgerLine, service: Service) -> None:
        log_line = log.bind(line_id=line.id, row_id=line.row_id, kind=line.kind)
        try:
            request = ChargeRequest(
                customer_id=service.customer_id,
                service_id=service.service_id,
                product_id=line.product_id,
                product_type_id=line.product_type_id,
                description=line.description,
                amount=line.amount,
                start_date=line.start_date,
                end_date=line.end_date,
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            await self._fail(line, f"invalid charge: {problems}")
            return

        # Wait for the rate limiter before taking the lease, so the lease covers
        # only the request itself.
        await self.ctx.revio.reserve_slot(self.account)
        async with self.ctx.engine.begin() as connection:
            claimed = await ledger.claim_for_sending(
                connection,
                line,
                owner=self.ctx.worker_id,
                lease_s=self.ctx.settings.lease_s,
                service_id=service.service_id,
                rev_customer_id=service.customer_id,
                now=self.ctx.clock.now(),
            )
        if not claimed:
            self.outcome.hold(line, Holdback.BUSY)
            return
        line.state = ledger.SENDING

        try:
            charge_id = await self.ctx.revio.create_charge(
                self.account, request, slot_reserved=True, wait_out_throttles=False
            )
        except RevioRejected as exc:
            await shielded(self._fail(line, f"Rev.io rejected the charge: {exc}", SENDING_STATES))
        except RevioInDoubt as exc:
            log_line.warning("charge.in_doubt", error=str(exc))
            await shielded(self._leave_in_doubt(line))
        except (RevioThrottled, RevioUnauthorized, RevioUnavailable) as exc:
            # Nothing was stored in Rev.io, so the line may be sent again.
            await shielded(self._release(line))
            self._hold_for_error([line], exc)
        else:
            await shielded(self._record_created(line, charge_id))
            log_line.info("charge.created", charge_id=charge_id, amount=str(line.amount))

    async def _record_created(self, line: LedgerLine, charge_id: int) -> None:
        async with self.ctx.engine.begin() as connection:
            moved = await ledger.settle_line(
                connection,
                line.id,
                state=ledger.CREATED,
                charge_id=charge_id,
                now=self.ctx.clock.now(),
                from_states=(ledger.SENDING, ledger.PENDING),
            )
        if not moved:
            # The lease ran out and another worker settled the line meanwhile, so this
            # charge may be a second one in Rev.io: an operator must look at it.
            metrics.ORPHAN_CHARGES.inc()
            log.error(
                "charge.created_after_lease_lost",
                line_id=line.id,
                charge_id=charge_id,
                amount=str(line.amount),
            )
            return
        line.state, line.charge_id = ledger.CREATED, charge_id
        _count_final(line, "created")

    async def _leave_in_doubt(self, line: LedgerLine) -> None:
        now = self.ctx.clock.now()
        async with self.ctx.engine.begin() as connection:
            # An expired lease marks the line in doubt: the next attempt settles it first.
            await ledger.settle_line(
                connection, line.id, state=ledger.SENDING, now=now, lease_expires_at=now
            )
        self.outcome.hold(line, Holdback.RETRY)

    async def _release(self, line: LedgerLine) -> None:
        async with self.ctx.engine.begin() as connection:
            await ledger.settle_line(
                connection, line.id, state=ledger.PENDING, now=self.ctx.clock.now()
            )
        line.state = ledger.PENDING

    async def _fail(
        self, line: LedgerLine, reason: str, from_states: tuple[str, ...] = (ledger.PENDING,)
    ) -> None:
        async with self.ctx.engine.begin() as connection:
            await ledger.settle_line(
                connection,
                line.id,
                state=ledger.FAILED,
                error=reason,
                from_states=from_states,
                now=self.ctx.clock.now(),
            )
        line.state, line.error = ledger.FAILED, reason
        _count_final(line, "failed")
        log.info(
            "charge.failed", line_id=line.id, row_id=line.row_id, kind=line.kind, reason=reason
        )


SENDING_STATES = (ledger.SENDING,)


def _count_final(line: LedgerLine, outcome: str) -> None:
    metrics.CHARGE_LINES.labels(line.kind, outcome).inc()
    if outcome == "created":
        metrics.AMOUNT_CHARGED.inc(float(line.amount))


def _is_active(service: RevioService, start: date | None, end: date | None) -> bool:
    """Tell whether a service was activated by the end and not disconnected before the start."""
    if end is not None and service.activated_date is not None and service.activated_date > end:
        return False
    disconnected = service.disconnected_date
    return not (start is not None and disconnected is not None and disconnected < start)


def _usable_services(services: list[RevioService], customer: Customer) -> dict[str, int]:
    """Map number → the highest service id active during the billing period."""
    usable: dict[str, int] = {}
    for service in services:
        if service.customer_id != customer.rev_customer_id:
            continue
        if not _is_active(service, customer.period_start, customer.period_end):
            continue
        usable[service.number] = max(usable.get(service.number, 0), service.service_id)
    return usable


def _find_match(
    line: LedgerLine, listed: list[RevioCharge], claimed_ids: set[int]
) -> RevioCharge | None:
    """Find the listed charge that an in-doubt line created, if Rev.io shows one."""
    for charge in listed:
        if charge.charge_id in claimed_ids:
            continue
        if (
            charge.service_id == line.service_id
            and charge.description == line.description
            and charge.amount == line.amount
            and charge.start_date == line.start_date
            and charge.end_date == line.end_date
            and (line.product_id is None or charge.product_id == line.product_id)
        ):
            return charge
    return None
