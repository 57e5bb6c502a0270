"""Tests of the Rev.io client against the simulator and scripted servers on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from pydantic import ValidationError

from chargeworker.devstack.revio_simulator import RevioSimulator
from chargeworker.errors import (
    RevioInDoubt,
    RevioRejected,
    RevioThrottled,
    RevioUnauthorized,
    RevioUnavailable,
)
from chargeworker.revio.client import RevioClient
from chargeworker.revio.models import (
    ChargeRequest,
    RevioAccount,
    RevioCharge,
    RevioPage,
    RevioService,
    dumps_json,
)

CUSTOMER_ID = 100
OTHER_CUSTOMER_ID = 200
PRODUCT_ID = 77
PRODUCT_TYPE_ID = 12
RETRY_ATTEMPTS = 3
THROTTLE_RETRIES = 2


@dataclass
class ScriptedResponse:
    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class ScriptedServer:
    """A loopback server that responds to each request with the next scripted response."""

    def __init__(self) -> None:
        self.responses: list[ScriptedResponse] = []
        self.requests: list[web.Request] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/v1/{path}", self._respond)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _respond(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        response = self.responses.pop(0)
        return web.Response(status=response.status, text=response.body, headers=response.headers)


def page_json(records: list[dict[str, object]], *, has_more: bool = False) -> str:
    return json.dumps(
        {"ok": True, "has_more": has_more, "record_count": len(records), "records": records}
    )


def make_request(**changes: object) -> ChargeRequest:
    fields: dict[str, object] = {
        "customer_id": CUSTOMER_ID,
        "service_id": 1001,
        "product_id": PRODUCT_ID,
        "description": "Plan 5GB - 1234.50 MB",
        "amount": Decimal("12.50"),
        "start_date": date(2026, 1, 5),
        "end_date": date(2026, 2, 4),
    }
    fields.update(changes)
    return ChargeRequest.model_validate(fields)


def request_count(endpoint: str, status: str) -> float:
    value = REGISTRY.get_sample_value(
        "chargeworker_revio_requests_total", {"endpoint": endpoint, "status": status}
    )
    return value or 0.0


async def wait_until(condition: Callable[[], bool], *, timeout_s: float) -> None:
    poll_interval_s = 0.005
    for _ in range(int(timeout_s / poll_interval_s)):
        if condition():
            return
        await asyncio.sleep(poll_interval_s)


def closed_port() -> int:
    """Return a loopback port that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def simulator() -> AsyncIterator[RevioSimulator]:
    simulator = RevioSimulator()
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def client(session: aiohttp.ClientSession) -> RevioClient:
    return RevioClient(
        session,
        timeout_s=2.0,
        retry_attempts=RETRY_ATTEMPTS,
        retry_base_delay_s=0.001,
        throttle_retries=THROTTLE_RETRIES,
        max_retry_after_s=0.01,
    )


@pytest.fixture
def account(simulator: RevioSimulator) -> RevioAccount:
    return RevioAccount(
        integration_authentication_id=7,
        base_url=simulator.base_url,
        username="chargeworker",
        password="sim-password",
        client_code="SIM",
    )


@pytest.fixture
def scripted_account(scripted: ScriptedServer) -> RevioAccount:
    return RevioAccount(
        integration_authentication_id=8,
        base_url=scripted.base_url,
        username="user",
        password="pw",
        client_code="SCRIPT",
    )


@pytest.fixture
def service_id(simulator: RevioSimulator) -> int:
    return simulator.add_service(customer_id=CUSTOMER_ID, number="5551230001")


# Models


def test_account_repr_hides_secrets() -> None:
    account = RevioAccount(
        integration_authentication_id=1,
        base_url="https://api.revioapi.com/v1/",
        username="login",
        password="hunter2-password",
        client_code="ACME",
        subscription_key="key-0123456789",
    )

    assert "hunter2-password" not in repr(account)
    assert "hunter2-password" not in str(account)
    assert "key-0123456789" not in repr(account)
    assert "key-0123456789" not in str(account)


def test_account_limiter_key() -> None:
    account = RevioAccount(
        integration_authentication_id=1,
        base_url="https://api.revioapi.com/v1/",
        username="login",
        password="pw",
        client_code="ACME",
    )

    assert account.base_url == "https://api.revioapi.com/v1"
    assert account.limiter_key == ("https://api.revioapi.com/v1", "ACME")


def test_account_validation_error_hides_password() -> None:
    with pytest.raises(ValidationError) as caught:
        RevioAccount.model_validate(
            {"integration_authentication_id": 1, "base_url": "x", "password": "hunter2-pw"}
        )

    assert "hunter2-pw" not in str(caught.value)


def test_charge_body_with_product_id() -> None:
    body = make_request().to_json()

    assert body == {
        "customer_id": CUSTOMER_ID,
        "service_id": 1001,
        "product_id": PRODUCT_ID,
        "description": "Plan 5GB - 1234.50 MB",
        "amount": 12.5,
        "product_amount": 12.5,
        "rate": 12.5,
        "quantity": 1,
        "cost": 0,
        "is_tax_included": False,
        "is_commission_exempted": False,
        "is_prorated": False,
        "start_date": "2026-1-5",
        "end_date": "2026-2-4",
    }


def test_charge_body_with_product_type_id() -> None:
    body = make_request(product_id=None, product_type_id=PRODUCT_TYPE_ID).to_json()

    assert body["product_type_id"] == PRODUCT_TYPE_ID
    assert "product_id" not in body


@pytest.mark.parametrize(
    "amount",
    ["0.01", "0.10", "0.29", "1.15", "12.50", "-3.35", "1234567.89", "9999999999999.99"],
)
def test_charge_amount_round_trips(amount: str) -> None:
    request = make_request(amount=Decimal(amount))

    text = dumps_json(request.to_json())
    parsed = json.loads(text, parse_float=Decimal)

    assert f'"amount": {amount},' in text
    assert parsed["amount"] == Decimal(amount)
    assert parsed["product_amount"] == Decimal(amount)
    assert parsed["rate"] == Decimal(amount)


def test_charge_amount_quantized() -> None:
    assert str(make_request(amount=Decimal("12.5")).amount) == "12.50"


def test_charge_rejects_three_decimals() -> None:
    with pytest.raises(ValidationError, match="decimal places"):
        make_request(amount=Decimal("12.345"))


def test_charge_rejects_both_products() -> None:
    with pytest.raises(ValidationError, match="exactly one of product_id and product_type_id"):
        make_request(product_type_id=PRODUCT_TYPE_ID)


def test_charge_rejects_no_product() -> None:
    with pytest.raises(ValidationError, match="exactly one of product_id and product_type_id"):
        make_request(product_id=None)


def test_charge_rejects_long_description() -> None:
    with pytest.raises(ValidationError, match="1500"):
        make_request(description="x" * 1501)


def test_service_parses_date_times() -> None:
    service = RevioService.model_validate(
        {
            "service_id": 1,
            "customer_id": 2,
            "number": "555",
            "activated_date": "2024-03-07T15:20:11.1234567",
            "disconnected_date": None,
        }
    )

    assert service.activated_date == date(2024, 3, 7)
    assert service.disconnected_date is None


def test_listed_charge_created_date_naive() -> None:
    charge = RevioCharge.model_validate(
        {
            "charge_id": 1,
            "customer_id": 2,
            "description": "x",
            "amount": Decimal("1.50"),
            "created_date": "2026-01-05T10:11:12+02:00",
        }
    )

    assert charge.created_date == datetime(2026, 1, 5, 10, 11, 12)
    assert charge.created_date.tzinfo is None


def test_page_rejects_ok_false() -> None:
    with pytest.raises(ValidationError, match="ok=false"):
        RevioPage[RevioService].model_validate({"ok": False, "has_more": False, "records": []})


# Services


async def test_services_read_all_pages(
    session: aiohttp.ClientSession, simulator: RevioSimulator, account: RevioAccount
) -> None:
    client = RevioClient(session, page_size=2)
    for index in range(5):
        simulator.add_service(customer_id=CUSTOMER_ID, number=f"55500000{index}")

    services = await client.list_customer_services(account, CUSTOMER_ID)

    assert len(services) == 5
    assert simulator.requests_by_endpoint["services"] == 3


async def test_services_of_one_customer_only(
    client: RevioClient, simulator: RevioSimulator, account: RevioAccount
) -> None:
    own_id = simulator.add_service(
        customer_id=CUSTOMER_ID, number="5550001", activated_date=date(2025, 4, 1)
    )
    simulator.add_service(customer_id=OTHER_CUSTOMER_ID, number="5550002")

    services = await client.list_customer_services(account, CUSTOMER_ID)

    assert [service.service_id for service in services] == [own_id]
    assert services[0].activated_date == date(2025, 4, 1)


async def test_find_services_by_number(
    client: RevioClient, simulator: RevioSimulator, account: RevioAccount
) -> None:
    other_id = simulator.add_service(customer_id=OTHER_CUSTOMER_ID, number="5550009")
    simulator.add_service(customer_id=CUSTOMER_ID, number="5550010")

    services = await client.find_services_by_number(account, "5550009")

    assert [service.service_id for service in services] == [other_id]
    assert services[0].customer_id == OTHER_CUSTOMER_ID


# Creating charges


async def test_create_charge_stores_fields(
    client: RevioClient, simulator: RevioSimulator, account: RevioAccount, service_id: int
) -> None:
    charge_id = await client.create_charge(account, make_request(service_id=service_id))

    [stored] = simulator.charges
    assert stored["charge_id"] == charge_id
    assert stored["customer_id"] == CUSTOMER_ID
    assert stored["service_id"] == service_id
    assert stored["product_id"] == PRODUCT_ID
    assert stored["product_type_id"] is None
    assert stored["description"] == "Plan 5GB - 1234.50 MB"
    assert stored["amount"] == Decimal("12.50")
    assert stored["start_date"] == date(2026, 1, 5)
    assert stored["end_date"] == date(2026, 2, 4)


async def test_create_charge_with_product_type(
    client: RevioClient, simulator: RevioSimulator, account: RevioAccount, service_id: int
) -> None:
    request = make_request(service_id=service_id, product_id=None, product_type_id=PRODUCT_TYPE_ID)

    await client.create_charge(account, request)

    [stored] = simulator.charges
    assert stored["product_type_id"] == PRODUCT_TYPE_ID
    assert stored["product_id"] is None


async def test_throttled_then_created(
    client: RevioClient, simulator: RevioSimulator, account: RevioAccount, service_id: int
) -> None:
    simulator.throttle_next(1)

    charge_id = await client.create_charge(account, make_request(service_id=service_id))

    assert [charge["charge_id"] for charge in simulator.charges] == [charge_id]
    assert simulator.throttled_count == 1
    assert simulator.requests_by_endpoint["charges_create"] == 2


async def test_throttle_persisting_raises(
    client: RevioClient, simulator: RevioSimulator, account: RevioAccount, service_id: int
) -> None:
    simulator.throttle_next(10)

    with pytest.raises(RevioThrottled) as caught:
        await client.create_charge(account, make_request(service_id=service_id))

    assert caught.value.retry_after_s == 1
    assert caught.value.status == 429
    assert simulator.charges == []
    assert simulator.requests_by_endpoint["charges_create"] == THROTTLE_RETRIES + 1


async def test_rate_limit_window_throttles(
    client: RevioClient, simulator: RevioSimulator, account: RevioAccount
) -> None:
    simulator.rate_limit_per_minute = 2
    await client.list_customer_services(account, CUSTOMER_ID)
    await client.list_customer_services(account, CUSTOMER_ID)

    with pytest.raises(RevioThrottled) as caught:
        await client.list_customer_services(account, CUSTOMER_ID)

    assert caught.value.retry_after_s is not None
    assert 1 <= caught.value.retry_after_s <= 60


async def test_post_500_in_doubt_sent_once(
    client: RevioClient, simulator: RevioSimulator, account: RevioAccount, service_id: int
) -> None:
    simulator.fail_next_posts(1, status=500)

    with pytest.raises(RevioInDoubt) as caught:
        await client.create_charge(account, make_request(service_id=service_id))

    assert caught.value.status == 500
    assert simulator.requests_by_endpoint["charges_create"] == 1
    assert simulator.charges == []


async def test_lost_response_in_doubt_stored_once(
    client: RevioClient, simulator: RevioSimulator, account: RevioAccount, service_id: int
) -> None:
    simulator.lose_next_answers(1)

    with pytest.raises(RevioInDoubt):
        await client.create_charge(account, make_request(service_id=service_id))

    assert len(simulator.charges) == 1
    assert simulator.requests_by_endpoint["charges_create"] == 1


async def test_post_timeout_in_doubt_sent_once(
    session: aiohttp.ClientSession,
    simulator: RevioSimulator,
    account: RevioAccount,
    service_id: int,
) -> None:
    client = RevioClient(session, timeout_s=0.02, retry_base_delay_s=0.001)
    simulator.latency_s = 0.1

    with pytest.raises(RevioInDoubt, match="timeout"):
        await client.create_charge(account, make_request(service_id=service_id))
    # The simulator stores the charge after its latency, long after the client gave up.
    await wait_until(lambda: len(simulator.charges) > 0, timeout_s=2.0)

    assert len(simulator.charges) == 1
    assert simulator.requests_by_endpoint["charges_create"] == 1


async def test_post_connection_refused_retried(client: RevioClient) -> None:
    account = RevioAccount(
        integration_authentication_id=9,
        base_url=f"http://127.0.0.1:{closed_port()}/v1",
        username="u",
        password="pw",
        client_code="REFUSED",
    )
    before = request_count("charges_create", "connection_error")

    with pytest.raises(RevioUnavailable):
        await client.create_charge(account, make_request())

    assert request_count("charges_create", "connection_error") - before == RETRY_ATTEMPTS + 1


async def test_post_without_id_in_doubt(
    client: RevioClient, scripted: ScriptedServer, scripted_account: RevioAccount
) -> None:
    scripted.responses = [ScriptedResponse(201, '{"ok": true}')]

    with pytest.raises(RevioInDoubt, match="without a positive integer id"):
        await client.create_charge(scripted_account, make_request())

    assert len(scripted.requests) == 1


async def test_post_not_json_in_doubt(
    client: RevioClient, scripted: ScriptedServer, scripted_account: RevioAccount
) -> None:
    scripted.responses = [ScriptedResponse(200, "<html>gateway</html>")]

    with pytest.raises(RevioInDoubt):
        await client.create_charge(scripted_account, make_request())

    assert len(scripted.requests) == 1


async def test_post_charge_id_key_accepted(
    client: RevioClient, scripted: ScriptedServer, scripted_account: RevioAccount
) -> None:
    scripted.responses = [ScriptedResponse(200, '{"charge_id": 4321}')]

    assert await client.create_charge(scripted_account, make_request()) == 4321


async def test_post_quota_403_throttled(
    client: RevioClient, scripted: ScriptedServer, scripted_account: RevioAccount
) -> None:
    quota = ScriptedResponse(403, '{"statusCode": 403, "message": "Out of call volume quota."}')
    scripted.responses = [quota, ScriptedResponse(201, '{"id": 55}')]

    assert await client.create_charge(scripted_account, make_request()) == 55


async def test_rejected_product_body(
    client: RevioClient, simulator: RevioSimulator, account: RevioAccount, service_id: int
) -> None:
    simulator.reject_product(PRODUCT_ID)

    with pytest.raises(RevioRejected) as caught:
        await client.create_charge(account, make_request(service_id=service_id))

    assert caught.value.status == 422
    assert "Product 77 is not set up" in str(caught.value)
    assert "Product 77 is not set up" in caught.value.body
    assert simulator.charges == []


async def test_service_of_other_customer_rejected(
    client: RevioClient, simulator: RevioSimulator, account: RevioAccount
) -> None:
    other_service_id = simulator.add_service(customer_id=OTHER_CUSTOMER_ID, number="5550003")

    with pytest.raises(RevioRejected, match="does not belong to customer 100"):
        await client.create_charge(account, make_request(service_id=other_service_id))


# Reading with retries


async def test_get_503_twice_then_success(
    client: RevioClient, simulator: RevioSimulator, account: RevioAccount, service_id: int
) -> None:
    simulator.fail_next_gets(2, status=503)
    before = request_count("services", "503")

    services = await client.list_customer_services(account, CUSTOMER_ID)

    assert [service.service_id for service in services] == [service_id]
    assert simulator.requests_by_endpoint["services"] == 3
    assert request_count("services", "503") - before == 2


async def test_get_503_persisting_unavailable(
    client: RevioClient, simulator: RevioSimulator, account: RevioAccount
) -> None:
    simulator.fail_next_gets(10, status=503)

    with pytest.raises(RevioUnavailable) as caught:
        await client.list_customer_services(account, CUSTOMER_ID)

    assert caught.value.status == 503
    assert simulator.requests_by_endpoint["services"] == RETRY_ATTEMPTS + 1


async def test_get_invalid_body_retried(
    client: RevioClient, scripted: ScriptedServer, scripted_account: RevioAccount
) -> None:
    record = {"service_id": 3, "customer_id": CUSTOMER_ID, "number": "555"}
    scripted.responses = [
        ScriptedResponse(200, "not json"),
        ScriptedResponse(200, page_json([record])),
    ]

    services = await client.list_customer_services(scripted_account, CUSTOMER_ID)

    assert [service.service_id for service in services] == [3]
    assert len(scripted.requests) == 2


async def test_get_sends_paging_parameters(
    client: RevioClient, scripted: ScriptedServer, scripted_account: RevioAccount
) -> None:
    scripted.responses = [ScriptedResponse(200, page_json([]))]

    await client.list_customer_services(scripted_account, CUSTOMER_ID)

    query = scripted.requests[0].query
    assert query["search.customer_id"] == str(CUSTOMER_ID)
    assert query["search.page"] == "1"
    assert query["search.page_size"] == "500"


# Credentials


async def test_wrong_password_unauthorized(client: RevioClient, account: RevioAccount) -> None:
    wrong = account.model_copy(update={"password": "not-the-password"})

    with pytest.raises(RevioUnauthorized) as caught:
        await client.list_customer_services(wrong, CUSTOMER_ID)

    assert caught.value.status == 401
    assert "not-the-password" not in str(caught.value)


async def test_subscription_key_sent(
    client: RevioClient, scripted: ScriptedServer, scripted_account: RevioAccount
) -> None:
    keyed = scripted_account.model_copy(update={"subscription_key": "key-123"})
    scripted.responses = [ScriptedResponse(200, page_json([]))]

    await client.list_customer_services(keyed, CUSTOMER_ID)

    headers = scripted.requests[0].headers
    assert headers["Ocp-Apim-Subscription-Key"] == "key-123"
    assert headers["Accept"] == "application/json"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"user@SCRIPT:pw").decode()


async def test_subscription_key_required_by_simulator(
    session: aiohttp.ClientSession, client: RevioClient
) -> None:
    async with RevioSimulator(subscription_key="key-456") as simulator:
        account = RevioAccount(
            integration_authentication_id=10,
            base_url=simulator.base_url,
            username="chargeworker",
            password="sim-password",
            client_code="SIM",
        )
        keyed = account.model_copy(update={"subscription_key": "key-456"})

        assert await client.list_customer_services(keyed, CUSTOMER_ID) == []
        with pytest.raises(RevioUnauthorized):
            await client.list_customer_services(account, CUSTOMER_ID)


async def test_other_403_unauthorized(
    client: RevioClient, scripted: ScriptedServer, scripted_account: RevioAccount
) -> None:
    scripted.responses = [ScriptedResponse(403, '{"message": "Forbidden"}')]

    with pytest.raises(RevioUnauthorized):
        await client.list_customer_services(scripted_account, CUSTOMER_ID)


# Error bodies


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"message": "customer_id is invalid"}', '{"message":"customer_id is invalid"}'),
        ('["first problem", {"code": 2}]', 'first problem; {"code":2}'),
        ("", "empty body"),
    ],
    ids=["object", "array", "empty"],
)
async def test_error_body_in_message(
    client: RevioClient,
    scripted: ScriptedServer,
    scripted_account: RevioAccount,
    body: str,
    expected: str,
) -> None:
    scripted.responses = [ScriptedResponse(400, body)]

    with pytest.raises(RevioRejected) as caught:
        await client.list_customer_services(scripted_account, CUSTOMER_ID)

    assert expected in str(caught.value)
    assert caught.value.body == body


async def test_error_body_truncated(
    client: RevioClient, scripted: ScriptedServer, scripted_account: RevioAccount
) -> None:
    scripted.responses = [ScriptedResponse(404, "x" * 5000)]

    with pytest.raises(RevioRejected) as caught:
        await client.list_customer_services(scripted_account, CUSTOMER_ID)

    assert len(caught.value.body) == 1000
    assert len(str(caught.value)) < 1100


# Listing charges


async def test_list_charges_newest_first(
    client: RevioClient, simulator: RevioSimulator, account: RevioAccount, service_id: int
) -> None:
    start = datetime(2026, 1, 5, 9, 0, 0)
    for hours in (1, 3, 2):
        simulator.add_charge(
            customer_id=CUSTOMER_ID,
            service_id=service_id,
            description=f"charge {hours}",
            amount=Decimal("1.25"),
            start_date=date(2026, 1, 1),
            end_date=date(2026, 1, 31),
            created_date=start + timedelta(hours=hours),
        )

    charges = await client.list_charges(account, CUSTOMER_ID, created_since=start)

    assert [charge.description for charge in charges] == ["charge 3", "charge 2", "charge 1"]
    assert charges[0].amount == Decimal("1.25")
    assert charges[0].start_date == date(2026, 1, 1)


async def test_list_charges_stops_at_created_since(
    session: aiohttp.ClientSession,
    simulator: RevioSimulator,
    account: RevioAccount,
    service_id: int,
) -> None:
    client = RevioClient(session, page_size=2)
    start = datetime(2026, 1, 5, 9, 0, 0)
    for hours in range(8):
        simulator.add_charge(
            customer_id=CUSTOMER_ID,
            service_id=service_id,
            description=f"charge {hours}",
            amount=Decimal("2.00"),
            start_date=date(2026, 1, 1),
            end_date=date(2026, 1, 31),
            created_date=start + timedelta(hours=hours),
        )

    charges = await client.list_charges(
        account, CUSTOMER_ID, created_since=start + timedelta(hours=5)
    )

    assert [charge.description for charge in charges] == ["charge 7", "charge 6", "charge 5"]
    assert simulator.requests_by_endpoint["charges_list"] == 2


async def test_list_charges_of_one_customer(
    client: RevioClient, simulator: RevioSimulator, account: RevioAccount, service_id: int
) -> None:
    other_service_id = simulator.add_service(customer_id=OTHER_CUSTOMER_ID, number="5550004")
    own_id = await client.create_charge(account, make_request(service_id=service_id))
    await client.create_charge(
        account, make_request(customer_id=OTHER_CUSTOMER_ID, service_id=other_service_id)
    )

    charges = await client.list_charges(
        account, CUSTOMER_ID, created_since=datetime.now() - timedelta(days=1)
    )

    assert [charge.charge_id for charge in charges] == [own_id]


async def test_list_charges_rejects_aware_datetime(
    client: RevioClient, account: RevioAccount
) -> None:
    aware = datetime.fromisoformat("2026-01-05T09:00:00+00:00")

    with pytest.raises(ValueError, match="naive"):
        await client.list_charges(account, CUSTOMER_ID, created_since=aware)


# Rate limiter


async def test_limiter_per_account(
    session: aiohttp.ClientSession, simulator: RevioSimulator, account: RevioAccount
) -> None:
    client = RevioClient(session, rate_per_minute=1)
    other_account = account.model_copy(update={"client_code": "OTHER"})
    await client.list_customer_services(account, CUSTOMER_ID)

    with pytest.raises(RevioUnauthorized):
        await asyncio.wait_for(client.list_customer_services(other_account, CUSTOMER_ID), 1.0)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.list_customer_services(account, CUSTOMER_ID), 0.05)
