"""Webhooks: registered steps POST RemoteExecutionContext bodies, as Dataverse's service
endpoints do; dealbridge's own parser reads them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from connector.crm.dynamics.push import parse_remote_execution_context
from connector.demo.dataverse import register_webhook
from connector.secrets import Secret
from sandboxes.dataverse import DataverseSandbox
from tests.sandboxes.dataverse.conftest import WebApi
from tests.support.receiver import Receiver, run_receiver

KEY = "webhook-key-0123456789"
KINDS = {"opportunity": "deal", "account": "account", "contact": "contact"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with run_receiver() as running:
        yield running


@pytest.fixture
def hooked(sandbox: DataverseSandbox, receiver: Receiver) -> DataverseSandbox:
    register_webhook(sandbox, f"http://127.0.0.1:{receiver.port}/webhooks/crm", KEY)
    return sandbox


def _notices(receiver: Receiver) -> list[tuple[str, str]]:
    out = []
    for request in receiver.requests:
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.path).query).items()}
        batch = parse_remote_execution_context(
            request.headers, query, request.body, key=Secret(KEY),
            header_name="x-dealbridge-key", kinds=KINDS,
        )  # fmt: skip
        out += [(n.kind, n.record_id) for n in batch.notices]
    return out


def test_winning_an_opportunity_posts_the_win_with_its_opportunity_close(
    hooked: DataverseSandbox, receiver: Receiver, api: WebApi
) -> None:
    deal = hooked.ref("stark_pilot").id
    api.post(
        "WinOpportunity",
        json={"Status": 3, "OpportunityClose": {
            "subject": "Won: pilot", "opportunityid@odata.bind": f"/opportunities({deal})"}},
    )  # fmt: skip

    assert hooked.deliver_webhooks() == 1

    [request] = receiver.requests
    assert request.path == f"/webhooks/crm?code={KEY}"
    assert request.headers["x-ms-dynamics-request-name"] == "Win"
    context = json.loads(request.body)
    assert (context["MessageName"], context["PrimaryEntityName"]) == ("Win", "opportunity")
    close = context["InputParameters"][0]
    assert close["key"] == "OpportunityClose"
    attributes = {a["key"]: a["value"] for a in close["value"]["Attributes"]}
    assert attributes["opportunityid"]["Id"] == deal
    assert attributes["subject"] == "Won: pilot"
    assert _notices(receiver) == [("deal", deal)]


def test_an_account_update_posts_only_when_a_filtering_attribute_is_written(
    hooked: DataverseSandbox, receiver: Receiver, api: WebApi
) -> None:
    umbrella = hooked.ref("umbrella").id
    api.patch(f"accounts({umbrella})", json={"telephone1": "+1 555 0100"})
    api.patch(f"accounts({umbrella})", json={"creditonhold": True})

    assert hooked.deliver_webhooks() == 1

    context = json.loads(receiver.requests[0].body)
    target = context["InputParameters"][0]["value"]
    assert {a["key"]: a["value"] for a in target["Attributes"]}["creditonhold"] is True
    assert context["PostEntityImages"][0]["value"]["Attributes"][0] == {
        "key": "name", "value": "Umbrella Health Ltd",
    }  # fmt: skip
    assert _notices(receiver) == [("account", umbrella)]


def test_a_contacts_new_email_posts_the_contact_step_and_its_job_title_does_not(
    hooked: DataverseSandbox, receiver: Receiver, api: WebApi
) -> None:
    contact = hooked.ref("acme_ap").id
    api.patch(f"contacts({contact})", json={"jobtitle": "AP Lead"})
    api.patch(f"contacts({contact})", json={"emailaddress1": "billing@acmerobotics.example"})

    assert hooked.deliver_webhooks() == 1
    context = json.loads(receiver.requests[0].body)
    target = context["InputParameters"][0]["value"]
    written = {a["key"]: a["value"] for a in target["Attributes"]}
    assert written["emailaddress1"] == "billing@acmerobotics.example"
    assert _notices(receiver) == [("contact", contact)]


def test_a_failed_delivery_is_retried_and_a_refused_one_dropped(
    hooked: DataverseSandbox, receiver: Receiver
) -> None:
    umbrella = hooked.ref("umbrella").id
    receiver.script = [(503, {}), (200, {})]
    hooked.update("account", umbrella, {"creditlimit": None})
    assert hooked.deliver_webhooks() == 0
    assert hooked.pending_webhooks() == 1
    assert hooked.deliver_webhooks() == 1

    receiver.script = [(401, {})]
    hooked.update("account", umbrella, {"creditonhold": True})
    assert hooked.deliver_webhooks() == 0
    assert hooked.pending_webhooks() == 0


def test_an_http_header_registration_sends_its_header(
    sandbox: DataverseSandbox, receiver: Receiver
) -> None:
    sandbox.register_webhook(
        f"http://127.0.0.1:{receiver.port}/hook", header=("x-dealbridge-key", KEY),
        steps=[("Update", "account", ["creditonhold"])],
    )  # fmt: skip
    sandbox.update("account", sandbox.ref("acme").id, {"creditonhold": True})

    sandbox.deliver_webhooks()

    [request] = receiver.requests
    assert request.path == "/hook"
    assert request.headers["x-dealbridge-key"] == KEY


def test_loading_a_seed_notifies_nobody(hooked: DataverseSandbox) -> None:
    hooked.load_seed({"records": {"account": [{"ref": "new", "creditonhold": True}]}})

    assert hooked.pending_webhooks() == 0
