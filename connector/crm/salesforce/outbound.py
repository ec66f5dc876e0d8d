"""Salesforce Outbound Messages: authenticate, parse, and answer with the SOAP Ack.

Salesforce cannot add headers to an Outbound Message, so the endpoint URL carries a
shared token (``/webhooks/crm?token=...``), compared in constant time, and the message's
OrganizationId must match the configured org when one is set. Parsing uses defusedxml:
the body is untrusted XML.
"""

from __future__ import annotations

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from connector.crm.base import PushBatch, PushNotice, PushRejected
from connector.secrets import Secret

NS = {
    "soap": "http://schemas.xmlsoap.org/soap/envelope/",
    "om": "http://soap.sforce.com/2005/09/outbound",
    "sf": "urn:sobject.enterprise.soap.sforce.com",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
ACK = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<soapenv:Body>"
    b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    b"<Ack>true</Ack></notificationsResponse>"
    b"</soapenv:Body></soapenv:Envelope>"
)


#: Salesforce notification ids are 18 characters; anything near the inbox's 255-character
#: event id column is not one (and would overflow it on PostgreSQL).
MAX_NOTIFICATION_ID = 64


def _org_matches(expected: str, actual: str) -> bool:
    # Org ids come as 15 or 18 characters; the first 15 identify the org.
    return expected[:15] == actual[:15]


def parse_outbound_message(
    body: bytes,
    *,
    token: str | None,
    expected_token: Secret | None,
    organization_id: str | None,
    deal_object: str,
    account_object: str,
) -> PushBatch:
    if expected_token is None:
        raise PushRejected(403, "Outbound Messages are not enabled: set SALESFORCE_OUTBOUND_TOKEN")
    if not token or not expected_token.matches(token):
        raise PushRejected(401, "missing or wrong token in the Outbound Message URL")
    try:
        root = ElementTree.fromstring(body)
    except (ElementTree.ParseError, DefusedXmlException, ValueError) as exc:
        raise PushRejected(400, f"the body is not a SOAP Outbound Message: {exc}") from exc
    notifications = root.find("soap:Body/om:notifications", NS)
    if notifications is None:
        raise PushRejected(400, "the SOAP body has no notifications element")
    org = (notifications.findtext("om:OrganizationId", default="", namespaces=NS)).strip()
    if organization_id and not _org_matches(organization_id, org):
        raise PushRejected(403, f"Outbound Message from an unexpected org {org!r}")
    kinds = {deal_object: "deal", account_object: "account"}
    notices: list[PushNotice] = []
    for note in notifications.findall("om:Notification", NS):
        note_id = (note.findtext("om:Id", default="", namespaces=NS)).strip()
        sobject = note.find("om:sObject", NS)
        if sobject is None or not note_id:
            raise PushRejected(400, "a Notification lacks its Id or sObject")
        if len(note_id) > MAX_NOTIFICATION_ID or not note_id.isascii():
            raise PushRejected(
                400,
                f"a Notification Id is not a Salesforce id (longer than "
                f"{MAX_NOTIFICATION_ID} characters or not ASCII)",
            )
        xsi_type = sobject.get(f"{{{NS['xsi']}}}type", "")
        object_name = xsi_type.split(":")[-1]
        record_id = (sobject.findtext("sf:Id", default="", namespaces=NS)).strip()
        kind = kinds.get(object_name)
        if kind is None or not record_id:
            continue  # another object's message: acknowledge, don't act
        notices.append(PushNotice(kind=kind, record_id=record_id, event_id=f"sfom:{note_id}"))
    return PushBatch(notices=notices, ack_body=ACK, ack_content_type="text/xml; charset=utf-8")
