"""Webhooks: service endpoints and their steps, and the ``RemoteExecutionContext`` they POST.

Registration is data, as in Dataverse (what the Plugin Registration Tool writes): a
``serviceendpoint`` row with ``contract`` 8 (Webhook), its ``url`` and ``authtype`` (4
WebhookKey → ``?code=<authvalue>``; 5 HttpHeader and 6 HttpQueryString → the
``<settings><setting name=".." value=".."/></settings>`` of ``authvalue`` as headers or query
parameters), and ``sdkmessageprocessingstep`` rows naming a message (``sdkmessageid``), a
table (``sdkmessagefilterid``), optional ``filteringattributes`` and the endpoint
(``eventhandler``). When a message runs on a matching row, each enabled step queues one
notification; ``deliver`` POSTs them. A 2xx answer completes it; a 4xx fails it (Dataverse
fails the system job); no answer or a 5xx is retried on later deliveries, up to
``max_attempts`` times. The sandbox does the POSTs, outside its lock (``take``/``settle``).
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from . import jsonio
from .store import Change, Store
from .values import Ref

EMPTY = "00000000-0000-0000-0000-000000000000"
CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
WEBHOOK_CONTRACT = 8
AUTH_WEBHOOK_KEY, AUTH_HTTP_HEADER, AUTH_QUERY_STRING = 4, 5, 6


@dataclass
class Delivery:
    url: str
    body: bytes
    headers: dict[str, str]
    step_id: str
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


def _date(value: datetime) -> str:
    return f"/Date({int(value.timestamp() * 1000)})/"


def _reference(table: str, record_id: str, name: str | None = None) -> dict[str, Any]:
    return {
        "__type": f"EntityReference:{CONTRACTS}",
        "Id": record_id,
        "KeyAttributes": [],
        "LogicalName": table,
        "Name": name,
        "RowVersion": None,
    }


def _entity(table: str, record_id: str, attributes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "__type": f"Entity:{CONTRACTS}",
        "Attributes": attributes,
        "EntityState": None,
        "FormattedValues": [],
        "Id": record_id,
        "KeyAttributes": [],
        "LogicalName": table,
        "RelatedEntities": [],
        "RowVersion": None,
    }


def _settings(authvalue: str) -> dict[str, str]:
    """``<settings><setting name="k" value="v" /></settings>`` → {k: v}."""
    try:
        root = ET.fromstring(authvalue)  # noqa: S314 - the admin's own registration value
    except ET.ParseError:
        return {}
    return {
        str(s.get("name")): str(s.get("value") or "") for s in root.iter("setting") if s.get("name")
    }


class Webhooks:
    def __init__(
        self,
        store: Store,
        now: Callable[[], datetime],
        *,
        organization_id: str,
        organization_name: str,
        business_unit_id: str,
        user_id: Callable[[], str],
        max_attempts: int = 5,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.now = now
        self.organization_id = organization_id
        self.organization_name = organization_name
        self.business_unit_id = business_unit_id
        self.user_id = user_id
        self.max_attempts = max_attempts
        self.on_queued = on_queued
        self.queue: list[Delivery] = []
        self.failed: list[Delivery] = []
        store.listeners.append(self.on_change)

    # ------------------------------------------------------------------ matching

    def _steps(self, change: Change) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        found = []
        for step in self.store.all("sdkmessageprocessingstep"):
            if step.get("statecode") not in (0, None):
                continue
            message = self.store.resolve(step.get("sdkmessageid"))
            if message is None or message.get("name") != change.message:
                continue
            step_filter = self.store.resolve(step.get("sdkmessagefilterid"))
            if step_filter is not None and step_filter.get("primaryobjecttypecode") != change.table:
                continue
            endpoint = self.store.resolve(step.get("eventhandler"))
            if endpoint is None or endpoint.get("contract") != WEBHOOK_CONTRACT:
                continue
            filtering = {
                a.strip()
                for a in str(step.get("filteringattributes") or "").split(",")
                if a.strip()
            }
            if change.message == "Update" and filtering and not filtering & set(change.changed):
                continue
            found.append((step, endpoint))
        return found

    def on_change(self, change: Change) -> None:
        for step, endpoint in self._steps(change):
            context = self.context(change, step)
            self.queue.append(self._delivery(endpoint, step, change, context))
        if self.queue and self.on_queued is not None:
            self.on_queued()

    def _delivery(
        self,
        endpoint: Mapping[str, Any],
        step: Mapping[str, Any],
        change: Change,
        context: Mapping[str, Any],
    ) -> Delivery:
        url = str(endpoint.get("url") or "")
        headers = {
            "Content-Type": "application/json",
            "x-ms-dynamics-organization": f"{self.organization_name}.crm.dynamics.com",
            "x-ms-dynamics-entity-name": change.table,
            "x-ms-dynamics-request-name": change.message,
            "x-ms-correlation-request-id": str(context["CorrelationId"]),
        }
        authvalue = str(endpoint.get("authvalue") or "")
        parts = urlsplit(url)
        query = parts.query
        if endpoint.get("authtype") == AUTH_WEBHOOK_KEY:
            query = "&".join(q for q in (query, f"code={quote(authvalue, safe='')}") if q)
        elif endpoint.get("authtype") == AUTH_QUERY_STRING:
            query = "&".join(q for q in (query, urlencode(_settings(authvalue))) if q)
        elif endpoint.get("authtype") == AUTH_HTTP_HEADER:
            headers.update(_settings(authvalue))
        body = jsonio.dumps(context).encode("utf-8")
        return Delivery(
            urlunsplit((parts.scheme, parts.netloc, parts.path, query, "")),
            body,
            headers,
            str(step["sdkmessageprocessingstepid"]),
        )

    # ------------------------------------------------------------------ the context

    def _value(self, table: str, column: str, value: Any) -> Any:
        """A column value as the DataContract JSON of the SDK writes it."""
        definition = self.store.schema.tables[table].column(column)
        if isinstance(value, Ref):
            return _reference(value.table, value.id)
        if definition is None or value is None:
            return value
        if definition.kind == "Money":
            return {"__type": f"Money:{CONTRACTS}", "Value": value}
        if definition.kind in ("Picklist", "State", "Status"):
            return {"__type": f"OptionSetValue:{CONTRACTS}", "Value": value}
        if definition.kind == "MultiSelectPicklist":
            return [
                {"__type": f"OptionSetValue:{CONTRACTS}", "Value": int(v)}
                for v in str(value).split(",")
            ]
        if definition.kind == "DateTime":
            moment = datetime.fromisoformat(
                value + "T00:00:00+00:00" if len(value) == 10 else value.replace("Z", "+00:00")
            )
            return _date(moment)
        return value

    def context(self, change: Change, step: Mapping[str, Any]) -> dict[str, Any]:
        table = self.store.schema.tables[change.table]
        now = self.now().astimezone(UTC)
        user = self.user_id()
        primary_id = change.record_id
        post_images: list[dict[str, Any]] = []
        outputs: list[dict[str, Any]] = []
        if change.message in ("Win", "Lose"):
            close_attributes: list[dict[str, Any]] = [
                {"key": "opportunityid", "value": _reference("opportunity", change.record_id)},
                {"key": "subject", "value": change.inputs.get("subject")},
            ]
            if change.inputs.get("actualrevenue") is not None:
                close_attributes.append(
                    {
                        "key": "actualrevenue",
                        "value": {
                            "__type": f"Money:{CONTRACTS}",
                            "Value": change.inputs["actualrevenue"],
                        },
                    }
                )
            if change.inputs.get("actualend"):
                day = datetime.fromisoformat(f"{change.inputs['actualend']}T00:00:00+00:00")
                close_attributes.append({"key": "actualend", "value": _date(day)})
            inputs: list[dict[str, Any]] = [
                {
                    "key": "OpportunityClose",
                    "value": _entity("opportunityclose", EMPTY, close_attributes),
                },
                {
                    "key": "Status",
                    "value": {
                        "__type": f"OptionSetValue:{CONTRACTS}",
                        "Value": change.inputs.get("status"),
                    },
                },
            ]
            primary_id = EMPTY  # as Dataverse sends it for Win and Lose
        elif change.message == "Delete":
            inputs = [{"key": "Target", "value": _reference(change.table, change.record_id)}]
        else:
            written: list[dict[str, Any]] = [
                {"key": k, "value": self._value(change.table, k, v)}
                for k, v in change.changed.items()
                if k not in (table.primary_key, "modifiedon", "versionnumber", "createdon")
            ]
            attributes = [
                *written,
                {"key": table.primary_key, "value": change.record_id},
                {"key": "modifiedon", "value": _date(now)},
                {"key": "modifiedby", "value": _reference("systemuser", user)},
            ]
            inputs = [
                {"key": "Target", "value": _entity(change.table, change.record_id, attributes)},
                {"key": "SuppressDuplicateDetection", "value": False},
            ]
            if change.message == "Create":
                outputs = [{"key": "id", "value": change.record_id}]
            if table.primary_name:
                image: list[dict[str, Any]] = [
                    {"key": table.primary_name, "value": change.image.get(table.primary_name)},
                    {"key": table.primary_key, "value": change.record_id},
                ]
                image_entity = _entity(change.table, change.record_id, image)
                image_entity.pop("__type")
                post_images = [{"key": "AsynchronousStepPrimaryName", "value": image_entity}]
        mode = step.get("mode")
        return {
            "BusinessUnitId": self.business_unit_id,
            "CorrelationId": str(uuid.uuid4()),
            "Depth": 1,
            "InitiatingUserAzureActiveDirectoryObjectId": EMPTY,
            "InitiatingUserId": user,
            "InputParameters": inputs,
            "IsExecutingOffline": False,
            "IsInTransaction": False,
            "IsOfflinePlayback": False,
            "IsolationMode": 1,
            "MessageName": change.message,
            "Mode": 1 if mode is None else mode,
            "OperationCreatedOn": f"/Date({int(now.timestamp() * 1000)}+0000)/",
            "OperationId": str(uuid.uuid4()),
            "OrganizationId": self.organization_id,
            "OrganizationName": self.organization_name,
            "OutputParameters": outputs,
            "OwningExtension": {
                "Id": step["sdkmessageprocessingstepid"],
                "KeyAttributes": [],
                "LogicalName": "sdkmessageprocessingstep",
                "Name": step.get("name"),
                "RowVersion": None,
            },
            "ParentContext": None,
            "PostEntityImages": post_images,
            "PreEntityImages": [],
            "PrimaryEntityId": primary_id,
            "PrimaryEntityName": change.table,
            "RequestId": None,
            "SecondaryEntityName": "none",
            "SharedVariables": [],
            "Stage": step.get("stage") or 40,
            "UserId": user,
        }

    # ------------------------------------------------------------------ delivery

    def take(self) -> list[Delivery]:
        pending, self.queue = self.queue, []
        return pending

    def settle(self, delivery: Delivery, status: int | None, error: str | None) -> bool:
        """Record one attempt's outcome; True when it was delivered."""
        delivery.attempts += 1
        if status is not None and 200 <= status < 300:
            return True
        delivery.errors.append(error or f"HTTP {status}")
        retry = status is None or status >= 500 or status in (408, 429)
        if retry and delivery.attempts < self.max_attempts:
            self.queue.append(delivery)
        else:
            self.failed.append(delivery)
        return False
