"""Fixtures: a Stripe sandbox on a random loopback port, a real StripeClient, a webhook receiver."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import stripe
from werkzeug.wrappers import Request, Response

from sandboxes._server import SandboxServer
from sandboxes.stripe import StripeSandbox

START = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86_400


class FakeClock:
    """An injectable ``now``: unix seconds that only move when a test says so."""

    def __init__(self, start: int = START) -> None:
        self.value = start

    def __call__(self) -> int:
        return self.value

    def advance(self, seconds: int) -> None:
        self.value += seconds


def stop_in_background(stop: Callable[[], None]) -> None:
    """Shut a server down without waiting out werkzeug's 0.5 s shutdown poll."""
    threading.Thread(target=stop, daemon=True).start()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(clock: FakeClock) -> Iterator[StripeSandbox]:
    sb = StripeSandbox(now=clock).start()
    yield sb
    stop_in_background(sb.stop)


def make_client(
    url: str, api_key: str = "sk_test_dealbridge", stripe_version: str | None = None
) -> stripe.StripeClient:
    """A client of the sandbox (pinned to ``stripe_version`` if given, as stripe-python
    otherwise pins its own)."""
    addresses: Any = {"api": url, "files": url, "connect": url}
    if stripe_version is None:
        return stripe.StripeClient(api_key, base_addresses=addresses, max_network_retries=0)
    return stripe.StripeClient(
        api_key,
        base_addresses=addresses,
        max_network_retries=0,
        stripe_version=stripe_version,
    )


@pytest.fixture
def client(sandbox: StripeSandbox) -> stripe.StripeClient:
    return make_client(sandbox.url)


@dataclass
class Received:
    body: str
    headers: dict[str, str]

    @property
    def event(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result


@dataclass
class Receiver:
    """A webhook receiver: records every POST and answers the queued statuses (then 200)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)

    def types(self) -> list[str]:
        return [r.event["type"] for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recorder = Receiver()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        recorder.received.append(
            Received(request.get_data(as_text=True), dict(request.headers.items()))
        )
        status = recorder.statuses.popleft() if recorder.statuses else 200
        return Response("ok", status=status)(environ, start_response)

    server = SandboxServer(app).start()
    recorder.url = server.url + "/webhooks/stripe"
    yield recorder
    stop_in_background(server.stop)


@pytest.fixture
def recurring_price(client: stripe.StripeClient) -> stripe.Price:
    return client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 2000,
            "recurring": {"interval": "month"},
            "product_data": {"name": "Gold plan"},
        }
    )


@pytest.fixture
def one_time_price(client: stripe.StripeClient, recurring_price: stripe.Price) -> stripe.Price:
    return client.v1.prices.create(
        params={"currency": "usd", "unit_amount": 5000, "product": str(recurring_price.product)}
    )


#: A working test card as the customer's default payment method (Stripe's own idiom: the
#: test value is attached and becomes the default in the same request).
WITH_CARD: dict[str, Any] = {
    "payment_method": "pm_card_visa",
    "invoice_settings": {"default_payment_method": "pm_card_visa"},
}


@pytest.fixture
def customer(client: stripe.StripeClient) -> stripe.Customer:
    return client.v1.customers.create(
        params={"email": "ada@example.com", "name": "Ada", **WITH_CARD}
    )
