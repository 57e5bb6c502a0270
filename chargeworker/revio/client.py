"""Rev.io REST client: one rate limiter per account and the retry rule of each response.

GET requests are retried on 5xx, timeouts, dropped connections and unusable bodies.
POST /Charges is re-sent only when Rev.io certainly stored nothing: a 429 (or quota
403), or a connection that could not be opened. Any other failure after the request
went out raises `RevioInDoubt`, because the charge may exist in Rev.io.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import math
import random
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp
import structlog
from aiolimiter import AsyncLimiter

from chargeworker import heartbeat
from chargeworker.errors import (
    RevioError,
    RevioInDoubt,
    RevioRejected,
    RevioThrottled,
    RevioUnauthorized,
    RevioUnavailable,
)
from chargeworker.metrics import REVIO_REQUEST_DURATION, REVIO_REQUESTS, REVIO_THROTTLED
from chargeworker.revio.models import (
    ChargeRequest,
    RevioAccount,
    RevioCharge,
    RevioPage,
    RevioService,
    dumps_json,
)

log = structlog.get_logger()

ENDPOINT_SERVICES = "services"
ENDPOINT_CHARGES_CREATE = "charges_create"
ENDPOINT_CHARGES_LIST = "charges_list"
MAX_PAGE_SIZE = 500
MAX_ERROR_TEXT_LENGTH = 1000

_REQUEST_NAMES = {
    ENDPOINT_SERVICES: "GET /Services",
    ENDPOINT_CHARGES_CREATE: "POST /Charges",
    ENDPOINT_CHARGES_LIST: "GET /Charges",
}
# Failures that happen before any byte of the request reaches Rev.io.
_NOTHING_SENT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)

RecordT = TypeVar("RecordT")


@dataclass(frozen=True, slots=True)
class _Response:
    """An HTTP response of Rev.io, read in full."""

    status: int
    text: str
    retry_after: str | None


class RevioClient:
    """Client of the Rev.io REST API (v1), shared by every task of the process."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        rate_per_minute: int = 500,
        timeout_s: float = 30.0,
        retry_attempts: int = 3,
        retry_base_delay_s: float = 0.5,
        throttle_retries: int = 2,
        max_retry_after_s: float = 60.0,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        _check_setting("rate_per_minute", rate_per_minute, minimum=1)
        _check_setting("timeout_s", timeout_s, minimum=0, exclusive=True)
        _check_setting("retry_attempts", retry_attempts, minimum=0)
        _check_setting("retry_base_delay_s", retry_base_delay_s, minimum=0)
        _check_setting("throttle_retries", throttle_retries, minimum=0)
        _check_setting("max_retry_after_s", max_retry_after_s, minimum=0)
        _check_setting("page_size", page_size, minimum=1, maximum=MAX_PAGE_SIZE)

        self._session = session
        self._rate_per_minute = rate_per_minute
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._timeout_s = timeout_s
        self._retry_attempts = retry_attempts
        self._retry_base_delay_s = retry_base_delay_s
        self._throttle_retries = throttle_retries
        self._max_retry_after_s = max_retry_after_s
        self._page_size = page_size
        self._limiters: dict[tuple[str, str], AsyncLimiter] = {}

    async def list_customer_services(
        self, account: RevioAccount, customer_id: int
    ) -> list[RevioService]:
        """Fetch every service of one Rev.io customer, page by page."""
        search = {"search.customer_id": str(customer_id)}
        return await self._list_all(
            account, ENDPOINT_SERVICES, "Services", search, RevioPage[RevioService]
        )

    async def find_services_by_number(
        self, account: RevioAccount, number: str
    ) -> list[RevioService]:
        """Fetch the services with this number in the whole account, of any customer."""
        search = {"search.number": number}
        return await self._list_all(
            account, ENDPOINT_SERVICES, "Services", search, RevioPage[RevioService]
        )

    async def reserve_slot(self, account: RevioAccount) -> None:
        """Wait until the account's limiter allows one request, and take that slot."""
        await self._limiter_for(account).acquire()

    async def create_charge(
        self,
        account: RevioAccount,
        request: ChargeRequest,
        *,
        slot_reserved: bool = False,
        wait_out_throttles: bool = True,
    ) -> int:
        """Create one charge and return its Rev.io charge id.

        Raises RevioInDoubt when the request may have created the charge but no id
        came back. The client never sends such a request again by itself. A caller
        that holds a lease on the charge reserves its slot first and does not wait
        out 429s, so the request goes out promptly or not at all.
        """
        url = f"{account.base_url}/Charges"
        body = request.to_json()
        failures = 0
        throttles = 0
        while True:
            try:
                response = await self._send_once(
                    account,
                    "POST",
                    ENDPOINT_CHARGES_CREATE,
                    url,
                    body=body,
                    acquire=not (slot_reserved and failures == 0 and throttles == 0),
                )
            except _NOTHING_SENT_ERRORS as exc:
                failures += 1
                problem = _describe_exception(exc, self._timeout_s)
                await self._retry_or_raise(account, ENDPOINT_CHARGES_CREATE, failures, problem, exc)
                continue
            except (TimeoutError, aiohttp.ClientError) as exc:
                problem = _describe_exception(exc, self._timeout_s)
                raise RevioInDoubt(
                    f"Rev.io POST /Charges failed after the request was sent ({problem}), "
                    "so the charge may exist in Rev.io"
                ) from exc

            if _is_throttle(response):
                throttles += 1
                await self._wait_out_throttle(
                    account,
                    ENDPOINT_CHARGES_CREATE,
                    response,
                    throttles,
                    give_up=not wait_out_throttles,
                )
                continue
            return _read_charge_id(response)

    async def list_charges(
        self, account: RevioAccount, customer_id: int, *, created_since: datetime
    ) -> list[RevioCharge]:
        """Fetch a customer's charges created at or after `created_since`, newest first.

        `created_since` is naive, in the account's local time like Rev.io's
        `created_date`. Paging stops at the first page that reaches older charges.
        """
        if created_since.tzinfo is not None:
            raise ValueError(
                f"created_since must be a naive datetime in the account's local time, "
                f"got {created_since.isoformat()}"
            )

        search = {"search.customer_id": str(customer_id), "search.sort": "-created_date"}
        charges: list[RevioCharge] = []
        pages = self._pages(
            account, ENDPOINT_CHARGES_LIST, "Charges", search, RevioPage[RevioCharge]
        )
        async with aclosing(pages):
            async for page in pages:
                charges.extend(c for c in page.records if c.created_date >= created_since)
                if any(c.created_date < created_since for c in page.records):
                    break

        charges.sort(key=lambda charge: charge.created_date, reverse=True)
        return charges

    async def _list_all(
        self,
        account: RevioAccount,
        endpoint: str,
        path: str,
        search: Mapping[str, str],
        page_model: type[RevioPage[RecordT]],
    ) -> list[RecordT]:
        records: list[RecordT] = []
        async with aclosing(self._pages(account, endpoint, path, search, page_model)) as pages:
            async for page in pages:
                records.extend(page.records)
        return records

    async def _pages(
        self,
        account: RevioAccount,
        endpoint: str,
        path: str,
        search: Mapping[str, str],
        page_model: type[RevioPage[RecordT]],
    ) -> AsyncIterator[RevioPage[RecordT]]:
        """Yield the pages of a collection until a page has `has_more` false."""
        url = f"{account.base_url}/{path}"
        page_number = 1
        while True:
            params = {
                **search,
                "search.page": str(page_number),
                "search.page_size": str(self._page_size),
            }
            page = await self._get_page(account, endpoint, url, params, page_model)
            yield page

            if not page.has_more:
                return
            if not page.records:
                # Asking for the next page could loop forever.
                log.warning("revio.empty_page_with_more", endpoint=endpoint, page=page_number)
                return
            page_number += 1

    async def _get_page(
        self,
        account: RevioAccount,
        endpoint: str,
        url: str,
        params: Mapping[str, str],
        page_model: type[RevioPage[RecordT]],
    ) -> RevioPage[RecordT]:
        """Send one GET, retrying failures and throttled responses, and parse the page."""
        failures = 0
        throttles = 0
        while True:
            cause: BaseException | None = None
            status: int | None = None
            try:
                response = await self._send_once(account, "GET", endpoint, url, params=params)
            except (TimeoutError, aiohttp.ClientError) as exc:
                problem = _describe_exception(exc, self._timeout_s)
                cause = exc
            else:
                status = response.status
                if _is_throttle(response):
                    throttles += 1
                    await self._wait_out_throttle(account, endpoint, response, throttles)
                    continue
                if 400 <= response.status < 500:
                    raise _client_error(endpoint, response)
                if not 200 <= response.status < 300:
                    problem = f"HTTP {response.status}"
                else:
                    try:
                        return page_model.model_validate(_parse_json(response.text))
                    except ValueError as exc:
                        problem = f"HTTP {response.status} with an invalid body ({_one_line(exc)})"
                        cause = exc

            failures += 1
            await self._retry_or_raise(account, endpoint, failures, problem, cause, status=status)

    async def _send_once(
        self,
        account: RevioAccount,
        method: str,
        endpoint: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: dict[str, Any] | None = None,
        acquire: bool = True,
    ) -> _Response:
        """Send one request under the account's rate limit and record its metrics."""
        if acquire:
            await self._limiter_for(account).acquire()
        started = time.perf_counter()
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                data=None if body is None else dumps_json(body),
                headers=_headers(account),
                timeout=self._timeout,
                allow_redirects=False,
            ) as http_response:
                content = await http_response.read()
                response = _Response(
                    status=http_response.status,
                    text=_decode_body(content, http_response.charset),
                    retry_after=http_response.headers.get("Retry-After"),
                )
        except TimeoutError:
            _record_request(endpoint, "timeout", started)
            raise
        except aiohttp.ClientError:
            _record_request(endpoint, "connection_error", started)
            raise

        _record_request(endpoint, str(response.status), started)
        heartbeat.beat()
        return response

    def _limiter_for(self, account: RevioAccount) -> AsyncLimiter:
        # NOTE: only the per-minute rate is limited, per process. The daily quota of the
        # account is not counted, and the rate does not drop after a 429.
        limiter = self._limiters.get(account.limiter_key)
        if limiter is None:
            limiter = AsyncLimiter(self._rate_per_minute, 60)
            self._limiters[account.limiter_key] = limiter
        return limiter

    async def _retry_or_raise(
        self,
        account: RevioAccount,
        endpoint: str,
        failures: int,
        problem: str,
        cause: BaseException | None,
        *,
        status: int | None = None,
    ) -> None:
        """Wait before retry number `failures`, or raise RevioUnavailable past the limit."""
        request_name = _REQUEST_NAMES[endpoint]
        if failures > self._retry_attempts:
            raise RevioUnavailable(
                f"Rev.io {request_name} failed {failures} times, last with {problem}, "
                "so nothing was created. Try again later.",
                status=status,
            ) from cause

        delay_s = self._backoff_delay_s(failures)
        log.warning(
            "revio.retry",
            endpoint=endpoint,
            status=status,
            error=problem,
            attempt=failures,
            delay_s=round(delay_s, 3),
            integration_authentication_id=account.integration_authentication_id,
        )
        await asyncio.sleep(delay_s)

    async def _wait_out_throttle(
        self,
        account: RevioAccount,
        endpoint: str,
        response: _Response,
        throttles: int,
        *,
        give_up: bool = False,
    ) -> None:
        """Wait for the Retry-After of Rev.io, or raise RevioThrottled past the retry limit."""
        REVIO_THROTTLED.labels(account=str(account.integration_authentication_id)).inc()
        retry_after_s = _parse_retry_after_s(response.retry_after)
        if give_up or throttles > self._throttle_retries:
            retry_after_text = "a while" if retry_after_s is None else f"{retry_after_s:g} s"
            raise RevioThrottled(
                f"Rev.io rejected {_REQUEST_NAMES[endpoint]} {throttles} times because of "
                f"its rate limit (HTTP {response.status}), so nothing was stored. "
                f"Retry after {retry_after_text}.",
                status=response.status,
                body=response.text,
                retry_after_s=retry_after_s,
            )

        if retry_after_s is None:
            delay_s = self._backoff_delay_s(throttles)
        else:
            delay_s = min(retry_after_s, self._max_retry_after_s)
        log.warning(
            "revio.throttled",
            endpoint=endpoint,
            status=response.status,
            attempt=throttles,
            retry_after_s=retry_after_s,
            delay_s=round(delay_s, 3),
            integration_authentication_id=account.integration_authentication_id,
        )
        await asyncio.sleep(delay_s)

    def _backoff_delay_s(self, retry_number: int) -> float:
        """Exponential backoff with jitter: a random delay in [d/2, d], d = base * 2**(n-1)."""
        nominal_s = self._retry_base_delay_s * 2 ** (retry_number - 1)
        return random.uniform(nominal_s / 2, nominal_s)


def describe_error_body(text: str) -> str:
    """Summarize an error body (a JSON object, a JSON array, other text or nothing).

    The result is at most 1000 characters long.
    """
    stripped = text.strip()
    if not stripped:
        return "empty body"
    try:
        parsed = json.loads(stripped)
    except ValueError:
        return _truncate(stripped)

    if isinstance(parsed, list):
        summary = "; ".join(_compact_json(item) for item in parsed) or "empty JSON array"
    else:
        summary = _compact_json(parsed)
    return _truncate(summary)


def _read_charge_id(response: _Response) -> int:
    """Return the charge id of a POST /Charges response, or raise the matching RevioError.

    Throttled responses must be handled before this is called.
    """
    if 400 <= response.status < 500:
        raise _client_error(ENDPOINT_CHARGES_CREATE, response)
    if not 200 <= response.status < 300:
        raise RevioInDoubt(
            f"Rev.io POST /Charges responded with HTTP {response.status}, so the charge "
            f"may exist in Rev.io: {describe_error_body(response.text)}",
            status=response.status,
            body=response.text,
        )

    charge_id = _charge_id_from_body(response.text)
    if charge_id is None:
        raise RevioInDoubt(
            f"Rev.io POST /Charges responded with HTTP {response.status} but without a "
            f"positive integer id, so the charge may exist in Rev.io: "
            f"{_truncate(response.text)!r}",
            status=response.status,
            body=response.text,
        )
    return charge_id


def _charge_id_from_body(text: str) -> int | None:
    try:
        parsed = _parse_json(text)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None

    for key in ("id", "charge_id"):
        value = parsed.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _client_error(endpoint: str, response: _Response) -> RevioError:
    """Build the error for a 4xx response that is not about the rate limit."""
    request_name = _REQUEST_NAMES[endpoint]
    summary = describe_error_body(response.text)
    if response.status in (401, 403):
        return RevioUnauthorized(
            f"Rev.io rejected the credentials for {request_name} (HTTP {response.status}): "
            f"{summary}; check the user name, password, client code and subscription key",
            status=response.status,
            body=response.text,
        )
    return RevioRejected(
        f"Rev.io rejected {request_name} with HTTP {response.status}: {summary}",
        status=response.status,
        body=response.text,
    )


def _is_throttle(response: _Response) -> bool:
    """Tell whether Rev.io rejected the request because of its rate limit or quota."""
    if response.status == 429:
        return True
    return response.status == 403 and (
        response.retry_after is not None or "quota" in response.text.lower()
    )


def _parse_retry_after_s(value: str | None) -> float | None:
    """Parse a Retry-After header (seconds or an HTTP date) into seconds from now."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _headers(account: RevioAccount) -> dict[str, str]:
    headers = {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "Authorization": _basic_authorization(account.login, account.password),
    }
    if account.subscription_key:
        headers["Ocp-Apim-Subscription-Key"] = account.subscription_key
    return headers


def _basic_authorization(login: str, password: str) -> str:
    """Encode an HTTP Basic Authorization header value, UTF-8 as RFC 7617 allows."""
    credentials = f"{login}:{password}".encode()
    return "Basic " + base64.b64encode(credentials).decode("ascii")


def _decode_body(content: bytes, charset: str | None) -> str:
    try:
        return content.decode(charset or "utf-8", errors="replace")
    except LookupError:
        # An unknown charset name in Content-Type.
        return content.decode("utf-8", errors="replace")


def _parse_json(text: str) -> Any:
    """Parse JSON with numbers that have a fraction as Decimal, so money is exact."""
    return json.loads(text, parse_float=Decimal)


def _record_request(endpoint: str, status: str, started: float) -> None:
    REVIO_REQUESTS.labels(endpoint, status).inc()
    REVIO_REQUEST_DURATION.labels(endpoint).observe(time.perf_counter() - started)


def _describe_exception(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"a timeout after {timeout_s} s"
    return f"a connection error ({type(exc).__name__}: {exc})"


def _compact_json(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _truncate(text: str) -> str:
    return text[:MAX_ERROR_TEXT_LENGTH]


def _check_setting(
    name: str,
    value: float,
    *,
    minimum: float,
    maximum: float | None = None,
    exclusive: bool = False,
) -> None:
    too_small = value <= minimum if exclusive else value < minimum
    too_large = maximum is not None and value > maximum
    if too_small or too_large:
        bound = f"greater than {minimum}" if exclusive else f"at least {minimum}"
        if maximum is not None:
            bound += f" and at most {maximum}"
        raise ValueError(f"RevioClient {name} must be {bound}, got {value}")
