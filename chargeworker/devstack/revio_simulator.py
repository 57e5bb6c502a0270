"""An in-process Rev.io simulator for the demo, the benchmark and the tests.

It serves the three endpoints chargeworker uses (GET /v1/Services, POST /v1/Charges,
GET /v1/Charges) with HTTP Basic authentication, an optional subscription key, a
settable latency, a settable rate limit and fault injection. It keeps every charge
it stored in `charges`, so a test can prove that no charge was created twice.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress
import json
import math
import re
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any

from aiohttp import web

ENDPOINT_SERVICES = "services"
ENDPOINT_CHARGES_CREATE = "charges_create"
ENDPOINT_CHARGES_LIST = "charges_list"
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 25
MAX_DESCRIPTION_LENGTH = 1500

_REVIO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_NUMBER_FIELDS = ("amount", "product_amount", "rate", "cost")
_FLAG_FIELDS = ("is_tax_included", "is_commission_exempted", "is_prorated")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RevioSimulator:
    """A Rev.io REST API (v1) on a loopback port, with fault injection."""

    def __init__(
        self,
        *,
        username: str = "chargeworker",
        password: str = "sim-password",
        client_code: str = "SIM",
        subscription_key: str | None = None,
        latency_s: float = 0.0,
        rate_limit_per_minute: int | None = None,
        retry_after_s: int = 1,
        rate_window_s: float = 60.0,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.username = username
        self.client_code = client_code
        self._password = password
        self._subscription_key = subscription_key
        self.latency_s = latency_s
        # Maximum requests per sliding window of `rate_window_s`, or None for no limit.
        self.rate_limit_per_minute = rate_limit_per_minute
        self.rate_window_s = rate_window_s
        # Retry-After of the 429 responses that throttle_next() injects.
        self.retry_after_s = retry_after_s
        # Source of `created_date`: a naive datetime in the account's local time.
        self.clock = clock

        self.base_url = ""
        self.services: dict[int, dict[str, Any]] = {}
        self.charges: list[dict[str, Any]] = []
        self.request_count = 0
        self.throttled_count = 0
        self.requests_by_endpoint: Counter[str] = Counter()

        self._post_failure_statuses: deque[int] = deque()
        self._get_failure_statuses: deque[int] = deque()
        self._responses_to_lose = 0
        self._requests_to_throttle = 0
        self._rejected_products: set[int] = set()
        self._accepted_request_times: deque[float] = deque()
        self._next_service_id = 1001
        self._next_charge_id = 50001
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        return f"RevioSimulator(base_url={self.base_url!r}, login={self.login!r})"

    @property
    def password(self) -> str:
        """Password that Basic authentication expects, for setting up the demo's account."""
        return self._password

    @property
    def subscription_key(self) -> str | None:
        """Subscription key that every request must carry, or None when none is required."""
        return self._subscription_key

    @property
    def login(self) -> str:
        """User name that Basic authentication expects, `username@client_code`."""
        return f"{self.username}@{self.client_code}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving on a loopback address and return the base URL, ending in /v1.

        Port 0 picks a free port.
        """
        if not _is_loopback(host):
            raise ValueError(f"the Rev.io simulator listens on loopback only, got host {host!r}")
        if self._runner is not None:
            raise RuntimeError(f"the Rev.io simulator is already running at {self.base_url}")

        app = web.Application(middlewares=[self._gatekeeper])
        app.router.add_get("/v1/Services", self._list_services)
        app.router.add_post("/v1/Charges", self._create_charge)
        app.router.add_get("/v1/Charges", self._list_charges)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()

        self._runner = runner
        bound_port = runner.addresses[0][1]
        url_host = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{url_host}:{bound_port}/v1"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving; a stopped simulator keeps its services and charges."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> RevioSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def add_service(
        self,
        *,
        customer_id: int,
        number: str,
        activated_date: date | None = None,
        disconnected_date: date | None = None,
        service_id: int | None = None,
    ) -> int:
        """Add a service of a customer and return its service id."""
        if service_id is None:
            service_id = self._next_service_id
        if service_id in self.services:
            raise ValueError(f"service_id {service_id} already exists in the simulator")
        self._next_service_id = max(self._next_service_id, service_id + 1)

        self.services[service_id] = {
            "service_id": service_id,
            "customer_id": customer_id,
            "number": number,
            "activated_date": activated_date,
            "disconnected_date": disconnected_date,
        }
        return service_id

    def add_charge(
        self,
        *,
        customer_id: int,
        service_id: int,
        description: str,
        amount: Decimal,
        start_date: date,
        end_date: date,
        product_id: int | None = None,
        product_type_id: int | None = None,
        created_date: datetime | None = None,
    ) -> int:
        """Store a charge as if POST /Charges had created it, and return its charge id."""
        charge = self._store_charge(
            customer_id=customer_id,
            service_id=service_id,
            product_id=product_id,
            product_type_id=product_type_id,
            description=description,
            amount=amount,
            start_date=start_date,
            end_date=end_date,
        )
        if created_date is not None:
            charge["created_date"] = created_date
        return int(charge["charge_id"])

    def fail_next_posts(self, count: int, status: int = 500) -> None:
        """Respond to the next `count` POST /Charges with `status`, storing nothing."""
        self._post_failure_statuses.extend([status] * count)

    def lose_next_answers(self, count: int) -> None:
        """Store the next `count` valid charges, then close each connection without a response."""
        self._responses_to_lose += count

    def fail_next_gets(self, count: int, status: int = 503) -> None:
        """Respond to the next `count` GET requests (services or charges) with `status`."""
        self._get_failure_statuses.extend([status] * count)

    def throttle_next(self, count: int) -> None:
        """Respond to the next `count` authorized requests with 429 and `retry_after_s`."""
        self._requests_to_throttle += count

    def reject_product(self, product_id_or_type_id: int) -> None:
        """Respond with 422 to every POST /Charges with this product id or product type id."""
        self._rejected_products.add(product_id_or_type_id)

    @web.middleware
    async def _gatekeeper(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count the request, then apply latency, authentication and rate limits."""
        endpoint = _endpoint_name(request)
        self.request_count += 1
        self.requests_by_endpoint[endpoint] += 1
        # Read the body before the latency, as a server does. A client that times out
        # during the latency then leaves a charge that is stored but gets no response.
        await request.read()
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)

        if not self._has_valid_credentials(request):
            return _error(401, "Invalid credentials: wrong user name or password")
        if not self._has_valid_subscription_key(request):
            return _error(401, "Access denied due to a missing or invalid subscription key")

        retry_after_s = self._throttle_retry_after_s()
        if retry_after_s is not None:
            self.throttled_count += 1
            return _error(
                429,
                f"Rate limit is exceeded. Try again in {retry_after_s} seconds.",
                headers={"Retry-After": str(retry_after_s)},
            )

        if request.method == "GET" and self._get_failure_statuses:
            return _error(self._get_failure_statuses.popleft(), "Simulated failure")
        return await handler(request)

    def _has_valid_credentials(self, request: web.Request) -> bool:
        credentials = _decode_basic_authorization(request.headers.get("Authorization", ""))
        if credentials is None:
            return False
        login, password = credentials
        login_matches = _equal_secrets(login, self.login)
        password_matches = _equal_secrets(password, self._password)
        return login_matches and password_matches

    def _has_valid_subscription_key(self, request: web.Request) -> bool:
        if self._subscription_key is None:
            return True
        sent_key = request.headers.get("Ocp-Apim-Subscription-Key", "")
        return _equal_secrets(sent_key, self._subscription_key)

    def _throttle_retry_after_s(self) -> int | None:
        """Return the Retry-After of a throttled request, or None to let it through."""
        if self._requests_to_throttle > 0:
            self._requests_to_throttle -= 1
            return self.retry_after_s

        limit = self.rate_limit_per_minute
        if limit is None:
            return None
        now = time.monotonic()
        window_start = now - self.rate_window_s
        while self._accepted_request_times and self._accepted_request_times[0] <= window_start:
            self._accepted_request_times.popleft()
        if len(self._accepted_request_times) >= limit:
            oldest = self._accepted_request_times[0]
            return max(1, math.ceil(oldest + self.rate_window_s - now))

        self._accepted_request_times.append(now)
        return None

    async def _list_services(self, request: web.Request) -> web.Response:
        customer_id = _optional_int_param(request, "search.customer_id")
        number = request.query.get("search.number")
        services = [
            service
            for service in self.services.values()
            if (customer_id is None or service["customer_id"] == customer_id)
            and (number is None or service["number"] == number)
        ]
        services.sort(key=lambda service: service["service_id"])
        return _page_response(request, [_service_json(service) for service in services])

    async def _list_charges(self, request: web.Request) -> web.Response:
        customer_id = _optional_int_param(request, "search.customer_id")
        charges = [
            charge
            for charge in self.charges
            if customer_id is None or charge["customer_id"] == customer_id
        ]

        sort = request.query.get("search.sort", "charge_id")
        if sort == "-created_date":
            charges.sort(key=lambda c: (c["created_date"], c["charge_id"]), reverse=True)
        elif sort == "created_date":
            charges.sort(key=lambda c: (c["created_date"], c["charge_id"]))
        elif sort == "charge_id":
            charges.sort(key=lambda c: c["charge_id"])
        else:
            raise _bad_request(f"search.sort {sort!r} is not supported")
        return _page_response(request, [_charge_json(charge) for charge in charges])

    async def _create_charge(self, request: web.Request) -> web.StreamResponse:
        if self._post_failure_statuses:
            return _error(self._post_failure_statuses.popleft(), "Simulated failure")
        try:
            body = json.loads(await request.text(), parse_float=Decimal)
        except ValueError:
            return _error(400, "The request body is not valid JSON")

        problems = self._charge_problems(body)
        if problems:
            return _error(422, "The charge is invalid", errors=problems)
        product = body.get("product_id") or body.get("product_type_id")
        if product in self._rejected_products:
            return _error(422, f"Product {product} is not set up for charges in this account")

        charge = self._store_charge(
            customer_id=body["customer_id"],
            service_id=body["service_id"],
            product_id=body.get("product_id"),
            product_type_id=body.get("product_type_id"),
            description=body["description"],
            amount=Decimal(body["amount"]),
            start_date=_parse_revio_date(body["start_date"]),
            end_date=_parse_revio_date(body["end_date"]),
        )
        if self._responses_to_lose > 0:
            self._responses_to_lose -= 1
            return _drop_connection(request)
        return web.json_response({"ok": True, "id": charge["charge_id"]}, status=201)

    def _charge_problems(self, body: Any) -> list[str]:
        """List what is wrong with a POST /Charges body; empty when it is valid."""
        if not isinstance(body, dict):
            return ["the body must be a JSON object"]

        problems = _field_type_problems(body)
        if (body.get("product_id") is None) == (body.get("product_type_id") is None):
            problems.append("exactly one of product_id and product_type_id must be set")
        if problems:
            return problems

        service = self.services.get(body["service_id"])
        if service is None:
            problems.append(f"service {body['service_id']} was not found")
        elif service["customer_id"] != body["customer_id"]:
            problems.append(
                f"service {body['service_id']} does not belong to customer {body['customer_id']}"
            )
        return problems

    def _store_charge(
        self,
        *,
        customer_id: int,
        service_id: int,
        product_id: int | None,
        product_type_id: int | None,
        description: str,
        amount: Decimal,
        start_date: date,
        end_date: date,
    ) -> dict[str, Any]:
        charge = {
            "charge_id": self._next_charge_id,
            "customer_id": customer_id,
            "service_id": service_id,
            "product_id": product_id,
            "product_type_id": product_type_id,
            "description": description,
            "amount": amount,
            "start_date": start_date,
            "end_date": end_date,
            "created_date": self.clock(),
        }
        self._next_charge_id += 1
        self.charges.append(charge)
        return charge


def _field_type_problems(body: dict[str, Any]) -> list[str]:
    """Check presence and type of every field of a POST /Charges body."""
    problems = _id_problems(body)
    description = body.get("description")
    if not isinstance(description, str) or not description:
        problems.append("description is required")
    elif len(description) > MAX_DESCRIPTION_LENGTH:
        problems.append(f"description is longer than {MAX_DESCRIPTION_LENGTH} characters")

    for name in _NUMBER_FIELDS:
        value = body.get(name)
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            problems.append(f"{name} must be a number, got {value!r}")
    for name in _FLAG_FIELDS:
        if not isinstance(body.get(name), bool):
            problems.append(f"{name} must be true or false, got {body.get(name)!r}")
    for name in ("start_date", "end_date"):
        if _parse_revio_date(body.get(name)) is None:
            problems.append(f"{name} must be a date as yyyy-M-d, got {body.get(name)!r}")
    return problems


def _id_problems(body: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for name in ("customer_id", "service_id", "quantity"):
        if not _is_positive_int(body.get(name)):
            problems.append(f"{name} must be a positive integer, got {body.get(name)!r}")
    for name in ("product_id", "product_type_id"):
        if body.get(name) is not None and not _is_positive_int(body[name]):
            problems.append(f"{name} must be a positive integer, got {body[name]!r}")
    return problems


def _parse_revio_date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    match = _REVIO_DATE.fullmatch(value)
    if match is None:
        return None
    try:
        return date(*(int(part) for part in match.groups()))
    except ValueError:
        return None


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _page_response(request: web.Request, records: list[dict[str, Any]]) -> web.Response:
    """Build the response with one page of `records` in Rev.io's collection envelope."""
    page = _optional_int_param(request, "search.page")
    page = 1 if page is None else page
    page_size = _optional_int_param(request, "search.page_size")
    page_size = DEFAULT_PAGE_SIZE if page_size is None else page_size
    if page < 1:
        raise _bad_request(f"search.page must be at least 1, got {page}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise _bad_request(f"search.page_size must be 1 to {MAX_PAGE_SIZE}, got {page_size}")

    start = (page - 1) * page_size
    page_records = records[start : start + page_size]
    return web.json_response(
        {
            "ok": True,
            "has_more": start + page_size < len(records),
            "record_count": len(page_records),
            "records": page_records,
        }
    )


def _optional_int_param(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise _bad_request(f"{name} must be an integer, got {text!r}") from None


def _service_json(service: dict[str, Any]) -> dict[str, Any]:
    # Rev.io sends dates as date-times at midnight.
    return {
        "service_id": service["service_id"],
        "customer_id": service["customer_id"],
        "number": service["number"],
        "activated_date": _midnight_text(service["activated_date"]),
        "disconnected_date": _midnight_text(service["disconnected_date"]),
    }


def _charge_json(charge: dict[str, Any]) -> dict[str, Any]:
    amount = float(charge["amount"])
    return {
        "charge_id": charge["charge_id"],
        "customer_id": charge["customer_id"],
        "service_id": charge["service_id"],
        "product_id": charge["product_id"],
        "product_type_id": charge["product_type_id"],
        "description": charge["description"],
        "amount": amount,
        "rate": amount,
        "quantity": 1,
        "start_date": _midnight_text(charge["start_date"]),
        "end_date": _midnight_text(charge["end_date"]),
        "created_date": charge["created_date"].isoformat(),
    }


def _midnight_text(value: date | None) -> str | None:
    return None if value is None else f"{value.isoformat()}T00:00:00"


def _endpoint_name(request: web.Request) -> str:
    """Name the endpoint as chargeworker's metrics do, e.g. `charges_create`."""
    names = {
        ("GET", "/v1/Services"): ENDPOINT_SERVICES,
        ("POST", "/v1/Charges"): ENDPOINT_CHARGES_CREATE,
        ("GET", "/v1/Charges"): ENDPOINT_CHARGES_LIST,
    }
    return names.get((request.method, request.path), f"{request.method} {request.path}")


def _error(
    status: int,
    message: str,
    *,
    errors: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"ok": False, "message": message}
    if errors:
        body["errors"] = errors
    return web.json_response(body, status=status, headers=headers)


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(
        text=json.dumps({"ok": False, "message": message}), content_type="application/json"
    )


def _drop_connection(request: web.Request) -> web.Response:
    """Close the connection so the client gets no response at all."""
    if request.transport is not None:
        request.transport.close()
    # aiohttp cannot write this to a closed transport, so it never reaches the client.
    return web.Response(status=504)


def _decode_basic_authorization(header: str) -> tuple[str, str] | None:
    """Return the user name and password of a Basic Authorization header, or None."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    login, separator, password = decoded.partition(":")
    if not separator:
        return None
    return login, password


def _equal_secrets(sent: str, expected: str) -> bool:
    return hmac.compare_digest(sent.encode(), expected.encode())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
