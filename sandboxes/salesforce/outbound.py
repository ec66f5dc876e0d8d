"""Workflow outbound messages: SOAP ``notifications`` POSTed to an endpoint until acknowledged.

Behaviour modelled on Salesforce's:

* a rule fires when a record of its object is created, or edited, and then meets the criteria
  (``evaluation="created_and_every_edit"``, the default); ``"created_and_edited_to_meet_criteria"``
  fires on edits only when the record did not meet the criteria before; ``"created"`` fires
  on creation only;
* the message carries the record's field values *at delivery time* (Salesforce sends the
  latest data, not a snapshot), fields with no value are left out;
* up to 100 notifications of one rule go in one SOAP message;
* the receiver must answer HTTP 200 with a ``notificationsResponse`` whose ``Ack`` is ``true``;
  otherwise the message is retried, first after 15 seconds, the interval doubling up to two
  hours, and dropped 24 hours after it was queued.

Delivery is synchronous through :meth:`OutboundMessages.prepare_due` / :meth:`complete`
so tests can drive it with an injected clock; the HTTP POST happens outside the sandbox lock.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from xml.sax.saxutils import escape

from .auth import Sessions
from .ids import OUTBOUND_ACTION_PREFIX, OUTBOUND_NOTIFICATION_PREFIX, IdGenerator
from .store import Change, Record, Store, same_value
from .values import coerce, xml_text

OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
MAX_NOTIFICATIONS_PER_MESSAGE = 100
FIRST_RETRY = timedelta(seconds=15)
MAX_RETRY_INTERVAL = timedelta(hours=2)
MESSAGE_LIFETIME = timedelta(hours=24)

Evaluation = Literal["created_and_every_edit", "created_and_edited_to_meet_criteria", "created"]


@dataclass
class OutboundRule:
    action_id: str
    name: str
    sobject: str
    fields: list[str]
    endpoint_url: str
    criteria: dict[str, Any]
    evaluation: Evaluation
    send_session_id: bool


@dataclass
class Notification:
    notification_id: str
    rule: OutboundRule
    record_id: str
    queued_at: datetime
    next_attempt: datetime
    attempts: int = 0
    last_error: str | None = None


@dataclass
class Delivery:
    """One SOAP message ready to POST."""

    rule: OutboundRule
    notifications: list[Notification]
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class OutboundMessages:
    def __init__(
        self,
        store: Store,
        id_generator: IdGenerator,
        now: Callable[[], datetime],
        org_id: str,
        sessions: Sessions,
        api_version: str,
    ) -> None:
        self.store = store
        self._ids = id_generator
        self._now = now
        self.org_id = org_id
        self.sessions = sessions
        self.api_version = api_version
        self.rules: list[OutboundRule] = []
        self.queue: list[Notification] = []
        self.base_url = "http://127.0.0.1"
        self.on_queued: Callable[[], None] | None = None
        store.listeners.append(self.on_changes)

    def add_rule(
        self,
        name: str,
        sobject: str,
        fields: list[str],
        endpoint_url: str,
        criteria: dict[str, Any] | None = None,
        *,
        evaluation: Evaluation = "created_and_every_edit",
        send_session_id: bool = False,
    ) -> str:
        obj = self.store.object(sobject)
        canonical: list[str] = []
        for name_ in fields:
            f = obj.field(name_)
            if f is None:
                raise ValueError(f"{obj.name} has no field {name_!r}")
            if f.name != "Id" and f.name not in canonical:
                canonical.append(f.name)
        coerced: dict[str, Any] = {}
        for key, value in (criteria or {}).items():
            f = obj.field(key)
            if f is None:
                raise ValueError(f"{obj.name} has no field {key!r}")
            coerced[f.name] = coerce(f, value)
        rule = OutboundRule(
            action_id=self._ids.new(OUTBOUND_ACTION_PREFIX),
            name=name,
            sobject=obj.name,
            fields=canonical,
            endpoint_url=endpoint_url,
            criteria=coerced,
            evaluation=evaluation,
            send_session_id=send_session_id,
        )
        self.rules.append(rule)
        return rule.action_id

    # -------------------------------------------------------------- firing

    def _meets(self, rule: OutboundRule, record: Record | None) -> bool:
        if record is None:
            return False
        obj = self.store.object(rule.sobject)
        return all(
            same_value(obj.fields[name], record.get(name), expected)
            if record.get(name) is not None and expected is not None
            else record.get(name) is expected
            for name, expected in rule.criteria.items()
        )

    def on_changes(self, changes: list[Change]) -> None:
        queued = False
        for change in changes:
            if change.after is None:
                continue
            for rule in self.rules:
                if rule.sobject != change.sobject or not self._meets(rule, change.after):
                    continue
                if change.before is not None:
                    if rule.evaluation == "created":
                        continue
                    if rule.evaluation == "created_and_edited_to_meet_criteria" and self._meets(
                        rule, change.before
                    ):
                        continue
                now = self._now()
                self.queue.append(
                    Notification(
                        notification_id=self._ids.new(OUTBOUND_NOTIFICATION_PREFIX),
                        rule=rule,
                        record_id=change.record_id,
                        queued_at=now,
                        next_attempt=now,
                    )
                )
                queued = True
        if queued and self.on_queued is not None:
            self.on_queued()

    # ------------------------------------------------------------ delivery

    def prepare_due(self) -> list[Delivery]:
        """Due notifications grouped into SOAP messages (call under the sandbox lock)."""
        now = self._now()
        self.queue = [n for n in self.queue if now - n.queued_at <= MESSAGE_LIFETIME]
        deliveries: list[Delivery] = []
        for rule in self.rules:
            due: list[Notification] = []
            for notification in list(self.queue):
                if notification.rule is not rule or notification.next_attempt > now:
                    continue
                if self.store.get(rule.sobject, notification.record_id) is None:
                    self.queue.remove(notification)  # record deleted meanwhile: nothing to send
                    continue
                due.append(notification)
            for start in range(0, len(due), MAX_NOTIFICATIONS_PER_MESSAGE):
                batch = due[start : start + MAX_NOTIFICATIONS_PER_MESSAGE]
                deliveries.append(
                    Delivery(
                        rule=rule,
                        notifications=batch,
                        body=self.render(rule, batch).encode("utf-8"),
                        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
                    )
                )
        return deliveries

    def render(self, rule: OutboundRule, batch: list[Notification]) -> str:
        org15 = self.org_id[:15]
        session = (
            f"<SessionId>{escape(self.sessions.issue())}</SessionId>"
            if rule.send_session_id
            else '<SessionId xsi:nil="true"/>'
        )
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
            " <soapenv:Body>\n"
            f'  <notifications xmlns="{OUTBOUND_NS}">\n'
            f"   <OrganizationId>{self.org_id}</OrganizationId>\n"
            f"   <ActionId>{rule.action_id}</ActionId>\n"
            f"   {session}\n"
            f"   <EnterpriseUrl>{escape(self.base_url)}/services/Soap/c/{self.api_version}/"
            f"{org15}</EnterpriseUrl>\n"
            f"   <PartnerUrl>{escape(self.base_url)}/services/Soap/u/{self.api_version}/"
            f"{org15}</PartnerUrl>\n"
        ]
        for notification in batch:
            record = self.store.get(rule.sobject, notification.record_id)
            assert record is not None
            parts.append(
                "   <Notification>\n"
                f"    <Id>{notification.notification_id}</Id>\n"
                f'    <sObject xsi:type="sf:{rule.sobject}" '
                'xmlns:sf="urn:sobject.enterprise.soap.sforce.com">\n'
                f"     <sf:Id>{record['Id']}</sf:Id>\n"
            )
            for name in rule.fields:
                value = record.get(name)
                if value is None:
                    continue
                parts.append(f"     <sf:{name}>{escape(xml_text(value))}</sf:{name}>\n")
            parts.append("    </sObject>\n   </Notification>\n")
        parts.append("  </notifications>\n </soapenv:Body>\n</soapenv:Envelope>\n")
        return "".join(parts)

    def complete(self, delivery: Delivery, acknowledged: bool, error: str | None) -> int:
        """Record the outcome of one POST; returns how many notifications were acknowledged."""
        if acknowledged:
            done = {id(n) for n in delivery.notifications}
            self.queue = [n for n in self.queue if id(n) not in done]
            return len(delivery.notifications)
        now = self._now()
        for notification in delivery.notifications:
            notification.attempts += 1
            notification.last_error = error
            interval = min(FIRST_RETRY * (2 ** (notification.attempts - 1)), MAX_RETRY_INTERVAL)
            notification.next_attempt = now + interval
        return 0

    def pending(self) -> list[dict[str, Any]]:
        return [
            {
                "notification_id": n.notification_id,
                "action_id": n.rule.action_id,
                "name": n.rule.name,
                "record_id": n.record_id,
                "attempts": n.attempts,
                "next_attempt": n.next_attempt,
                "last_error": n.last_error,
            }
            for n in self.queue
        ]


def is_ack(status: int, body: bytes) -> tuple[bool, str | None]:
    """Whether a receiver's answer acknowledges the message, and why not."""
    if status != 200:
        return False, f"HTTP {status}"
    try:
        root = ET.fromstring(body)  # noqa: S314 - the receiver's small SOAP answer
    except ET.ParseError as exc:
        return False, f"unparseable response: {exc}"
    for element in root.iter(f"{{{OUTBOUND_NS}}}Ack"):
        if (element.text or "").strip().lower() == "true":
            return True, None
        return False, "Ack was not true"
    return False, "no notificationsResponse Ack in the response"
