"""Webhook input anyone can send gets a defined answer, never a 500 (issue 16, item 3)."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
import sqlalchemy as sa

from connector.crm.base import PushRejected
from connector.crm.dynamics.push import parse_remote_execution_context
from connector.crm.salesforce.outbound import parse_outbound_message
from connector.runtime import Runtime
from connector.secrets import Secret
from connector.services.inbox import store_event
from connector.store.db import Database
from connector.store.models import InboxEvent
from tests.support import FrozenClock
from tests.support.stripe_events import stripe_signature

SF_TOKEN = "sf-outbound-token-0123456789abcdef"


def _post_stripe(client: Any, body: str, signature: str) -> Any:
    return client.post(
        "/webhooks/stripe",
        data=body.encode(),
        headers={"Stripe-Signature": signature},
        content_type="application/json",
    )


@pytest.mark.parametrize(
    "signature",
    [
        "t=1700000000,v1=é",
        "t=1700000000,v1=" + "ä" * 64,
        "t=é,v1=abc",
        "\u00ff" * 10,
    ],
)
def test_a_non_ascii_stripe_signature_is_refused_as_invalid_not_a_500(
    store_client: Any, signature: str
) -> None:
    response = _post_stripe(store_client, '{"id": "evt_1", "type": "invoice.paid"}', signature)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_signature"


def test_a_signed_body_of_deeply_nested_json_is_refused_as_malformed(
    store_client: Any, db: Database, clock: FrozenClock
) -> None:
    body = "[" * 50_000 + "]" * 50_000
    response = _post_stripe(store_client, body, stripe_signature(body, int(clock().timestamp())))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "too_deeply_nested"
    with db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(InboxEvent)) == 0


def test_a_signed_event_nested_moderately_deep_is_refused_too(
    store_client: Any, clock: FrozenClock
) -> None:
    event = {"id": "evt_deep", "type": "invoice.paid", "data": {"object": {}}}
    inner = event["data"]["object"]
    for _ in range(200):
        inner["x"] = {}
        inner = inner["x"]
    body = json.dumps(event)
    response = _post_stripe(store_client, body, stripe_signature(body, int(clock().timestamp())))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "too_deeply_nested"


def _dynamics(body: bytes) -> Any:
    return parse_remote_execution_context(
        {},
        {"code": "dv-key"},
        body,
        key=Secret("dv-key"),
        header_name="X-Dealbridge-Key",
        kinds={"opportunity": "deal", "account": "account"},
    )


def test_a_dataverse_webhook_of_deeply_nested_json_is_refused_with_400() -> None:
    with pytest.raises(PushRejected) as refused:
        _dynamics(b"{" + b'"a":{' * 50_000 + b"}" * 50_001)
    assert refused.value.status == 400
    assert "nests deeper" in refused.value.message


def test_a_dataverse_message_name_too_long_for_an_event_id_is_refused_with_400() -> None:
    body = json.dumps(
        {
            "MessageName": "W" * 300,
            "PrimaryEntityName": "opportunity",
            "PrimaryEntityId": "4af10637-4ea2-e711-8122-000d3aa2331c",
        }
    ).encode()
    with pytest.raises(PushRejected) as refused:
        _dynamics(body)
    assert refused.value.status == 400


def _outbound_message(notification_id: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>00Dxx0000001gPL</OrganizationId>
   <Notification>
    <Id>{notification_id}</Id>
    <sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com"
             xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
     <sf:Id>006Dn00000AcmeDlAAA</sf:Id>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>""".encode()


_parse_sf = functools.partial(
    parse_outbound_message,
    token=SF_TOKEN,
    expected_token=Secret(SF_TOKEN),
    organization_id=None,
    deal_object="Opportunity",
    account_object="Account",
)


def test_an_outbound_message_with_a_300_character_notification_id_is_refused_with_400() -> None:
    with pytest.raises(PushRejected) as refused:
        _parse_sf(_outbound_message("0" * 300))
    assert refused.value.status == 400
    assert "not a Salesforce id" in refused.value.message


def test_an_outbound_message_with_a_real_notification_id_is_accepted() -> None:
    batch = _parse_sf(_outbound_message("04l5e00000AbCdEAAZ"))
    assert [n.event_id for n in batch.notices] == ["sfom:04l5e00000AbCdEAAZ"]


@pytest.mark.postgresql(reason="VARCHAR(255) is enforced there, not on SQLite")
def test_an_event_id_longer_than_the_column_is_stored_once_by_its_digest(
    store_runtime: Runtime, db: Database
) -> None:
    long_id = "sfom:" + "x" * 300
    assert store_event(store_runtime, "crm", long_id, "deal.changed", "{}") == "stored"
    assert store_event(store_runtime, "crm", long_id, "deal.changed", "{}") == "duplicate"
    with db.session() as session:
        (stored,) = session.scalars(sa.select(InboxEvent.event_id)).all()
    assert stored.startswith("sha256:") and len(stored) <= 255


@pytest.mark.postgresql(reason="a NUL cannot be stored there")
@pytest.mark.parametrize("event_id", ["evt_\u0000nul", "evt with space", "evt_é"])
def test_a_signed_event_whose_id_is_not_a_stripe_id_is_refused_with_400(
    store_client: Any, clock: FrozenClock, event_id: str
) -> None:
    body = json.dumps({"id": event_id, "type": "invoice.paid", "data": {"object": {}}})
    response = _post_stripe(store_client, body, stripe_signature(body, int(clock().timestamp())))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "missing_id"
