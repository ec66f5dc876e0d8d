"""Outbound messages: SOAP notifications, acknowledgement, retry with backoff, batching."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from simple_salesforce.api import Salesforce
from werkzeug.wrappers import Request, Response

from connector.crm.https_rewrite import HttpsRewriteSession
from sandboxes._server import SandboxServer
from sandboxes.salesforce import SalesforceSandbox

from .conftest import login, stop_in_background

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
OUT = "http://soap.sforce.com/2005/09/outbound"
SF = "urn:sobject.enterprise.soap.sforce.com"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP}"><soapenv:Body>'
    f'<notificationsResponse xmlns="{OUT}"><Ack>{{ack}}</Ack></notificationsResponse>'
    "</soapenv:Body></soapenv:Envelope>"
)


@dataclass
class Receiver:
    """An HTTP endpoint recording what it is sent and answering as told."""

    url: str = ""
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    answers: list[tuple[int, str]] = field(default_factory=list)
    received: threading.Event = field(default_factory=threading.Event)

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        self.bodies.append(request.get_data())
        self.headers.append(dict(request.headers))
        status, text = self.answers.pop(0) if self.answers else (200, ACK.format(ack="true"))
        self.received.set()
        return Response(text, status=status, content_type="text/xml")(environ, start_response)

    def notifications(self, index: int = -1) -> list[ET.Element]:
        root = ET.fromstring(self.bodies[index])  # noqa: S314
        return root.findall(f"./{{{SOAP}}}Body/{{{OUT}}}notifications/{{{OUT}}}Notification")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    server = SandboxServer(receiver).start()
    receiver.url = f"{server.url}/salesforce/outbound"
    yield receiver
    stop_in_background(server.stop)


def won_rule(sandbox: SalesforceSandbox, receiver: Receiver, **kwargs: Any) -> str:
    return sandbox.add_outbound_message(
        "Closed won to dealbridge",
        "Opportunity",
        ["Id", "Name", "StageName", "Amount", "CloseDate", "AccountId", "NextStep"],
        receiver.url,
        {"StageName": "Closed Won"},
        **kwargs,
    )


def new_deal(sf: Any, stage: str = "Prospecting") -> str:
    return str(
        sf.Opportunity.create(
            {"Name": "Deal", "StageName": stage, "CloseDate": "2026-11-21", "Amount": "1200.50"}
        )["id"]
    )


def test_closing_a_deal_sends_a_salesforce_shaped_soap_notification(
    sandbox: SalesforceSandbox, sf: Any, receiver: Receiver
) -> None:
    action = won_rule(sandbox, receiver)
    deal = new_deal(sf)
    sf.Opportunity.update(deal, {"StageName": "Closed Won"})
    assert sandbox.deliver_outbound_messages() == 1
    assert receiver.headers[0]["Content-Type"] == "text/xml; charset=utf-8"
    assert receiver.headers[0]["Soapaction"] == '""'
    root = ET.fromstring(receiver.bodies[0])  # noqa: S314
    message = root.find(f"./{{{SOAP}}}Body/{{{OUT}}}notifications")
    assert message is not None
    assert message.findtext(f"{{{OUT}}}OrganizationId") == sandbox.org_id
    assert message.findtext(f"{{{OUT}}}ActionId") == action
    session = message.find(f"{{{OUT}}}SessionId")
    assert session is not None and session.get(f"{{{XSI}}}nil") == "true"
    org15 = sandbox.org_id[:15]
    assert message.findtext(f"{{{OUT}}}EnterpriseUrl") == (
        f"{sandbox.url}/services/Soap/c/59.0/{org15}"
    )
    assert message.findtext(f"{{{OUT}}}PartnerUrl") == f"{sandbox.url}/services/Soap/u/59.0/{org15}"
    [notification] = receiver.notifications()
    assert (notification.findtext(f"{{{OUT}}}Id") or "").startswith("04l")
    sobject = notification.find(f"{{{OUT}}}sObject")
    assert sobject is not None
    assert sobject.get(f"{{{XSI}}}type") == "sf:Opportunity"
    fields = {child.tag.removeprefix(f"{{{SF}}}"): child.text for child in sobject}
    assert fields == {
        "Id": deal,
        "Name": "Deal",
        "StageName": "Closed Won",
        "Amount": "1200.5",
        "CloseDate": "2026-11-21",
    }


def test_a_change_that_does_not_meet_the_criteria_sends_nothing(
    sandbox: SalesforceSandbox, sf: Any, receiver: Receiver
) -> None:
    won_rule(sandbox, receiver)
    deal = new_deal(sf)
    sf.Opportunity.update(deal, {"StageName": "Negotiation/Review"})
    assert sandbox.deliver_outbound_messages() == 0
    assert receiver.bodies == []


def test_creating_a_record_that_meets_the_criteria_fires(
    sandbox: SalesforceSandbox, sf: Any, receiver: Receiver
) -> None:
    won_rule(sandbox, receiver)
    new_deal(sf, stage="Closed Won")
    assert sandbox.deliver_outbound_messages() == 1


def test_empty_criteria_fire_on_every_create_and_edit(
    sandbox: SalesforceSandbox, sf: Any, receiver: Receiver
) -> None:
    sandbox.add_outbound_message("Any account change", "Account", ["Name"], receiver.url, {})
    account = sf.Account.create({"Name": "Acme"})["id"]
    sf.Account.update(account, {"Phone": "555"})
    assert sandbox.deliver_outbound_messages() == 2


def test_edited_to_meet_criteria_fires_only_when_a_record_starts_meeting_them(
    sandbox: SalesforceSandbox, sf: Any, receiver: Receiver
) -> None:
    won_rule(sandbox, receiver, evaluation="created_and_edited_to_meet_criteria")
    deal = new_deal(sf)
    sf.Opportunity.update(deal, {"StageName": "Closed Won"})
    sf.Opportunity.update(deal, {"NextStep": "Kick-off"})
    assert sandbox.deliver_outbound_messages() == 1


def test_notifications_of_one_rule_are_batched_into_one_message(
    sandbox: SalesforceSandbox, sf: Any, receiver: Receiver
) -> None:
    won_rule(sandbox, receiver)
    first, second = new_deal(sf), new_deal(sf)
    sf.Opportunity.update(first, {"StageName": "Closed Won"})
    sf.Opportunity.update(second, {"StageName": "Closed Won"})
    assert sandbox.deliver_outbound_messages() == 2
    assert len(receiver.bodies) == 1
    assert len(receiver.notifications()) == 2


def test_the_message_carries_the_latest_field_values_at_delivery(
    sandbox: SalesforceSandbox, sf: Any, receiver: Receiver
) -> None:
    won_rule(sandbox, receiver)
    deal = new_deal(sf, stage="Closed Won")
    sf.Opportunity.update(deal, {"StageName": "Negotiation/Review", "NextStep": "Re-open"})
    sandbox.deliver_outbound_messages()
    sobject = receiver.notifications()[0].find(f"{{{OUT}}}sObject")
    assert sobject is not None
    assert sobject.findtext(f"{{{SF}}}StageName") == "Negotiation/Review"
    assert sobject.findtext(f"{{{SF}}}NextStep") == "Re-open"


def test_an_acknowledged_message_is_not_sent_again(
    sandbox: SalesforceSandbox, sf: Any, receiver: Receiver
) -> None:
    won_rule(sandbox, receiver)
    new_deal(sf, stage="Closed Won")
    assert sandbox.deliver_outbound_messages() == 1
    assert sandbox.deliver_outbound_messages() == 0
    assert len(receiver.bodies) == 1
    assert sandbox.pending_outbound_messages() == []


@pytest.mark.parametrize(
    "answer", [(200, ACK.format(ack="false")), (500, "oops"), (200, "<not-soap/>")]
)
def test_a_message_without_a_true_ack_is_retried_with_exponential_backoff(
    sandbox: SalesforceSandbox, sf: Any, receiver: Receiver, clock: Any, answer: tuple[int, str]
) -> None:
    won_rule(sandbox, receiver)
    new_deal(sf, stage="Closed Won")
    receiver.answers = [answer, answer]
    assert sandbox.deliver_outbound_messages() == 0
    clock.advance(seconds=14)
    assert sandbox.deliver_outbound_messages() == 0
    assert len(receiver.bodies) == 1
    clock.advance(seconds=1)
    assert sandbox.deliver_outbound_messages() == 0
    assert len(receiver.bodies) == 2
    clock.advance(seconds=29)
    sandbox.deliver_outbound_messages()
    assert len(receiver.bodies) == 2
    clock.advance(seconds=1)
    assert sandbox.deliver_outbound_messages() == 1
    assert len(receiver.bodies) == 3
    assert receiver.notifications(0)[0].findtext(f"{{{OUT}}}Id") == receiver.notifications(2)[
        0
    ].findtext(f"{{{OUT}}}Id")


def test_an_unreachable_endpoint_is_retried_like_a_refusal(
    sandbox: SalesforceSandbox, sf: Any, clock: Any
) -> None:
    sandbox.add_outbound_message("Dead end", "Account", ["Name"], "http://127.0.0.1:9/nowhere", {})
    sf.Account.create({"Name": "Acme"})
    assert sandbox.deliver_outbound_messages() == 0
    [pending] = sandbox.pending_outbound_messages()
    assert pending["attempts"] == 1 and pending["last_error"]


def test_undelivered_messages_are_dropped_after_24_hours(
    sandbox: SalesforceSandbox, sf: Any, receiver: Receiver, clock: Any
) -> None:
    won_rule(sandbox, receiver)
    new_deal(sf, stage="Closed Won")
    receiver.answers = [(500, "down")]
    sandbox.deliver_outbound_messages()
    clock.advance(hours=24, seconds=1)
    assert sandbox.deliver_outbound_messages() == 0
    assert sandbox.pending_outbound_messages() == []
    assert len(receiver.bodies) == 1


def test_a_session_id_can_be_sent_for_calls_back_into_the_org(
    sandbox: SalesforceSandbox, sf: Any, receiver: Receiver
) -> None:
    won_rule(sandbox, receiver, send_session_id=True)
    deal = new_deal(sf, stage="Closed Won")
    sandbox.deliver_outbound_messages()
    root = ET.fromstring(receiver.bodies[0])  # noqa: S314
    session_id = root.findtext(f".//{{{OUT}}}SessionId")
    assert session_id
    callback: Any = Salesforce(
        session_id=session_id, instance_url=sandbox.url, session=HttpsRewriteSession(sandbox.url)
    )
    assert callback.Opportunity.get(deal)["StageName"] == "Closed Won"


def test_auto_delivery_sends_messages_in_the_background(
    make_sandbox: Callable[..., SalesforceSandbox], receiver: Receiver
) -> None:
    sandbox = make_sandbox()
    sandbox.stop()
    sandbox.start(auto_deliver=True)
    won_rule(sandbox, receiver)
    new_deal(login(sandbox), stage="Closed Won")
    assert receiver.received.wait(timeout=10)
    assert len(receiver.notifications(0)) == 1
