"""`dealbridge stripe webhook-setup`: one endpoint per URL, exactly the handled events."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses
import sqlalchemy as sa
import stripe
from click.testing import CliRunner, Result

from connector.billing.event_types import HANDLED_STRIPE_EVENTS
from connector.cli import main
from connector.runtime import Runtime
from connector.secrets import Secret
from connector.services.inbox import move_spooled
from connector.store.db import Database
from connector.store.models import InboxEvent
from connector.web.app import create_app
from sandboxes._server import SandboxServer
from sandboxes.stripe import StripeSandbox
from tests.support import make_config

API = "https://api.stripe.com/v1/webhook_endpoints"
URL = "https://dealbridge.example.com/webhooks/stripe"
KEY = "sk_test_51DealbridgeSetupKey"
SECRET = "whsec_createdJustNowAbc123"


def _endpoint(endpoint_id: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": endpoint_id,
        "object": "webhook_endpoint",
        "api_version": None,
        "application": None,
        "created": 1795251600,
        "description": "dealbridge",
        "enabled_events": ["invoice.paid"],
        "livemode": False,
        "metadata": {},
        "status": "enabled",
        "url": url,
        **extra,
    }


def _listing(*endpoints: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": list(endpoints),
        "has_more": False,
        "url": "/v1/webhook_endpoints",
    }


def _setup(env: dict[str, str] | None = None, url: str = URL) -> Result:
    return CliRunner().invoke(
        main, ["stripe", "webhook-setup", "--url", url], env={"STRIPE_API_KEY": KEY, **(env or {})}
    )


def _form(call: Any) -> dict[str, list[str]]:
    return parse_qs(call.request.body)


def _enabled(form: dict[str, list[str]]) -> set[str]:
    return {v for k, values in form.items() if k.startswith("enabled_events[") for v in values}


@responses.activate
def test_setup_creates_an_endpoint_for_exactly_the_handled_events() -> None:
    responses.get(API, json=_listing())
    responses.post(API, json=_endpoint("we_new", URL, secret=SECRET))
    result = _setup()
    assert result.exit_code == 0, result.output
    create = responses.calls[1]
    form = _form(create)
    assert form["url"] == [URL]
    assert _enabled(form) == HANDLED_STRIPE_EVENTS
    assert create.request.headers["Idempotency-Key"].startswith("dealbridge-webhook-setup-")


@responses.activate
def test_setup_prints_the_new_secret_to_stdout_with_instructions_and_logs_nothing_of_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    responses.get(API, json=_listing())
    responses.post(API, json=_endpoint("we_new", URL, secret=SECRET))
    result = _setup()
    assert f"STRIPE_WEBHOOK_SECRET={SECRET}" in result.stdout
    assert SECRET not in result.stderr
    assert SECRET not in caplog.text


@responses.activate
def test_setup_updates_the_endpoint_that_already_has_the_url_instead_of_duplicating_it() -> None:
    responses.get(
        API,
        json=_listing(_endpoint("we_other", "https://elsewhere.example/x"), _endpoint("we_1", URL)),
    )
    responses.post(f"{API}/we_1", json=_endpoint("we_1", URL))
    result = _setup()
    assert result.exit_code == 0, result.output
    assert [c.request.url for c in responses.calls] == [f"{API}?limit=100", f"{API}/we_1"]
    assert _enabled(_form(responses.calls[1])) == HANDLED_STRIPE_EVENTS
    assert "secret is unchanged" in result.stdout
    assert "whsec_" not in result.stdout


def test_setup_without_an_api_key_stops_with_a_hint() -> None:
    result = _setup(env={"STRIPE_API_KEY": ""})
    assert result.exit_code == 2
    assert "STRIPE_API_KEY is not set" in result.output


@responses.activate
def test_setup_reports_a_stripe_refusal() -> None:
    responses.get(
        API,
        status=401,
        json={"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}},
    )
    result = _setup()
    assert result.exit_code == 1
    assert "Invalid API Key provided" in result.stderr


def test_setup_refuses_a_url_that_is_not_http() -> None:
    result = _setup(url="ftp://dealbridge.example.com/webhooks/stripe")
    assert result.exit_code == 2


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def stripe_sandbox() -> Iterator[StripeSandbox]:
    sandbox = StripeSandbox().start()
    yield sandbox
    threading.Thread(target=sandbox.stop, daemon=True).start()


def _secret_from(output: str) -> str:
    (line,) = [ln for ln in output.splitlines() if "STRIPE_WEBHOOK_SECRET=" in ln]
    return line.split("=", 1)[1].strip()


def test_setup_against_the_stripe_sandbox_then_stripe_delivers_events_dealbridge_stores(
    stripe_sandbox: StripeSandbox, db: Database
) -> None:
    # dealbridge's web app, served for real so the sandbox can POST to it; the app needs the
    # secret that setup creates, so the server starts with a slot the app is put into later.
    app_slot: dict[str, Any] = {}
    server = SandboxServer(lambda environ, start: app_slot["app"](environ, start))
    url = f"{server.url}/webhooks/stripe"
    env = {"DEALBRIDGE__STRIPE__API_BASE": stripe_sandbox.url}

    first = _setup(env=env, url=url)
    assert first.exit_code == 0, first.output
    again = _setup(env=env, url=url)
    assert "secret is unchanged" in again.stdout
    client = stripe.StripeClient(
        KEY, base_addresses={"api": stripe_sandbox.url}, max_network_retries=0
    )
    (endpoint,) = client.v1.webhook_endpoints.list().data
    assert set(endpoint.enabled_events) == HANDLED_STRIPE_EVENTS

    config = make_config(db.url)
    secrets = replace(config.secrets, stripe_webhook_secrets=(Secret(_secret_from(first.stdout)),))
    app_slot["app"] = create_app(runtime=Runtime(replace(config, secrets=secrets), db=db))
    server.start()
    try:
        customer = client.v1.customers.create(params={"email": "ap@acme.example"})
        client.v1.customers.update(customer.id, params={"email": "billing@acme.example"})
        stripe_sandbox.deliver_webhooks()
    finally:
        threading.Thread(target=server.stop, daemon=True).start()
    move_spooled(Runtime(config, db=db))  # on SQLite the web process spooled it
    with db.session() as session:
        stored = session.scalars(sa.select(InboxEvent)).all()
    assert [(e.event_type, e.status) for e in stored] == [("customer.updated", "pending")]
    assert json.loads(stored[0].payload)["data"]["object"]["email"] == "billing@acme.example"
