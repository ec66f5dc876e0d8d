"""Dataverse webhooks: the service endpoint's key, RemoteExecutionContext bodies, the ack."""

from __future__ import annotations

import json

import pytest

from connector.crm.base import PushNotice, PushRejected
from tests.crm.dynamics.support import (
    ACCOUNT_ID,
    OPPORTUNITY_ID,
    WEBHOOK_KEY,
    FakeTime,
    fixture_text,
    make_adapter,
)

WIN = fixture_text("remote_execution_context__opportunity_win.json").encode()
CREDIT_HOLD = fixture_text("remote_execution_context__account_credit_hold_update.json").encode()
#: Microsoft's sample body of a webhook: a contact Update.
CONTACT_UPDATE = fixture_text("remote_execution_context__contact_update.json")
CONTACT_ID = "6d81597f-0f9f-e711-8122-000d3aa2331c"
DYNAMICS_HEADERS = {
    "x-ms-dynamics-organization": "contoso.crm.dynamics.com",
    "x-ms-dynamics-entity-name": "opportunity",
    "x-ms-dynamics-request-name": "Win",
    "x-ms-correlation-request-id": "b374239d-4233-41a9-8b17-a86cb4f737b5",
}


def test_a_win_with_the_webhook_key_in_the_query_string_is_a_deal_notice(
    fake_time: FakeTime,
) -> None:
    batch = make_adapter(fake_time).parse_push(DYNAMICS_HEADERS, {"code": WEBHOOK_KEY}, WIN)
    assert batch.notices == [
        PushNotice(
            kind="deal",
            record_id=OPPORTUNITY_ID,
            event_id=f"4af10637-4ea2-e711-8122-000d3aa2331c:Win:{OPPORTUNITY_ID}",
        )
    ]
    assert batch.ack_body == b""


def test_the_key_is_accepted_in_the_configured_header(fake_time: FakeTime) -> None:
    headers = {**DYNAMICS_HEADERS, "X-Dealbridge-Key": WEBHOOK_KEY}
    batch = make_adapter(fake_time).parse_push(headers, {}, WIN)
    assert [n.record_id for n in batch.notices] == [OPPORTUNITY_ID]


def test_an_account_update_is_an_account_notice(fake_time: FakeTime) -> None:
    batch = make_adapter(fake_time).parse_push({}, {"code": WEBHOOK_KEY}, CREDIT_HOLD)
    assert batch.notices == [
        PushNotice(
            kind="account",
            record_id=ACCOUNT_ID,
            event_id=f"9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b:Update:{ACCOUNT_ID}",
        )
    ]


def test_a_contact_update_is_a_contact_notice(fake_time: FakeTime) -> None:
    body = CONTACT_UPDATE.encode()
    batch = make_adapter(fake_time).parse_push({}, {"code": WEBHOOK_KEY}, body)
    assert batch.notices == [
        PushNotice(
            kind="contact",
            record_id=CONTACT_ID,
            event_id=f"4af10637-4ea2-e711-8122-000d3aa2331c:Update:{CONTACT_ID}",
        )
    ]


def test_a_wrong_key_is_rejected_with_401(fake_time: FakeTime) -> None:
    with pytest.raises(PushRejected) as caught:
        make_adapter(fake_time).parse_push(DYNAMICS_HEADERS, {"code": "guess"}, WIN)
    assert caught.value.status == 401
    assert WEBHOOK_KEY not in caught.value.message


def test_a_missing_key_is_rejected_with_401_naming_the_registration_settings(
    fake_time: FakeTime,
) -> None:
    with pytest.raises(PushRejected) as caught:
        make_adapter(fake_time).parse_push(DYNAMICS_HEADERS, {}, WIN)
    assert caught.value.status == 401
    assert "WebhookKey" in caught.value.message


def test_without_a_configured_key_every_push_is_rejected(fake_time: FakeTime) -> None:
    with pytest.raises(PushRejected) as caught:
        make_adapter(fake_time, webhook_key=None).parse_push({}, {"code": "anything"}, WIN)
    assert caught.value.status == 401
    assert "DYNAMICS_WEBHOOK_KEY" in caught.value.message


@pytest.mark.parametrize(
    "body",
    [b"<Notification/>", b"[]", json.dumps({"MessageName": "Win"}).encode(), b"\xff\xfe"],
)
def test_a_malformed_body_is_rejected_with_400(fake_time: FakeTime, body: bytes) -> None:
    with pytest.raises(PushRejected) as caught:
        make_adapter(fake_time).parse_push({}, {"code": WEBHOOK_KEY}, body)
    assert caught.value.status == 400


def test_a_notification_without_a_record_id_is_rejected_with_400(fake_time: FakeTime) -> None:
    context = json.loads(WIN)
    context["InputParameters"] = []
    with pytest.raises(PushRejected) as caught:
        make_adapter(fake_time).parse_push({}, {"code": WEBHOOK_KEY}, json.dumps(context).encode())
    assert caught.value.status == 400


def test_a_bad_key_is_rejected_before_the_body_is_read(fake_time: FakeTime) -> None:
    with pytest.raises(PushRejected) as caught:
        make_adapter(fake_time).parse_push({}, {"code": "guess"}, b"not json")
    assert caught.value.status == 401


def test_a_table_dealbridge_does_not_map_is_acknowledged_without_notices(
    fake_time: FakeTime,
) -> None:
    context = {**json.loads(CONTACT_UPDATE), "PrimaryEntityName": "lead"}
    body = json.dumps(context).encode()
    batch = make_adapter(fake_time).parse_push({}, {"code": WEBHOOK_KEY}, body)
    assert batch.notices == []
