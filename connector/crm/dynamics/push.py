"""Dataverse webhooks: authenticate the service endpoint's key, read ``RemoteExecutionContext``.

A Web Hook *service endpoint* registered with the Plugin Registration Tool POSTs the JSON of
a ``Microsoft.Xrm.Sdk.RemoteExecutionContext`` for each step it is registered on (here:
opportunity ``Win``/``Update``/``Create``, account ``Update`` of ``creditonhold`` and
``creditlimit``, contact ``Update`` of its email, names and parent account) and only
looks at the HTTP status of the answer (2xx = delivered).

Authentication, per the registration's auth type:

* ``WebhookKey`` - Dataverse appends ``?code=<key>`` to the URL (the recommended setting);
* ``HttpQueryString`` - any query parameters; name one of them ``code``;
* ``HttpHeader`` - any headers; name one ``x-dealbridge-key`` (``options.webhook_key_header``).

Each key offered is compared in constant time with ``DYNAMICS_WEBHOOK_KEY``.

The record id: ``PrimaryEntityId`` for ``Create``/``Update``; for ``Win`` (and ``Lose``) the
opportunity is the ``opportunityid`` lookup of the ``OpportunityClose`` input parameter, so
that is read first. ``event_id`` is unique per notification but stable across Dataverse's
retries of the same asynchronous operation: ``OperationId`` (else ``RequestId``, else
``CorrelationId``), the message and the record id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from connector.crm.base import PushBatch, PushNotice, PushRejected
from connector.crm.dynamics.odata import EMPTY_GUID, is_guid
from connector.domain.untrusted_json import UntrustedJsonError, parse_object
from connector.secrets import Secret

__all__ = ["QUERY_KEY", "parse_remote_execution_context"]

log = logging.getLogger(__name__)

#: The query parameter the WebhookKey auth type sends.
QUERY_KEY = "code"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _authenticate(
    headers: Mapping[str, str], query: Mapping[str, str], key: Secret | None, header_name: str
) -> None:
    if key is None or not key.reveal():
        raise PushRejected(
            401, "DYNAMICS_WEBHOOK_KEY is not set; Dataverse webhooks are refused until it is"
        )
    offered = [v for v in (query.get(QUERY_KEY), _header(headers, header_name)) if v]
    if not offered:
        raise PushRejected(
            401,
            f"no webhook key: register the service endpoint with WebhookKey authentication "
            f"(?{QUERY_KEY}=...) or an HttpHeader named {header_name}",
        )
    matches = [key.matches(candidate) for candidate in offered]  # compare every one
    if not any(matches):
        raise PushRejected(401, "the webhook key does not match DYNAMICS_WEBHOOK_KEY")


def _pairs(value: Any) -> dict[str, Any]:
    """A DataContract ``[{"key": k, "value": v}, ...]`` collection as a dict."""
    if isinstance(value, Mapping):
        return dict(value)
    out: dict[str, Any] = {}
    if isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping) and isinstance(item.get("key"), str):
                out[item["key"]] = item.get("value")
    return out


#: Longer than any Dataverse message or table logical name; keeps the inbox event id (which
#: embeds the message name) within its 255-character column.
MAX_NAME = 100


def _usable_id(value: Any) -> str | None:
    if is_guid(value) and str(value) != EMPTY_GUID:
        return str(value).lower()
    return None


def _record_id(context: Mapping[str, Any]) -> str | None:
    inputs = _pairs(context.get("InputParameters"))
    close = inputs.get("OpportunityClose")
    if isinstance(close, Mapping):
        reference = _pairs(close.get("Attributes")).get("opportunityid")
        if isinstance(reference, Mapping) and _usable_id(reference.get("Id")):
            return _usable_id(reference.get("Id"))
    target = inputs.get("Target")
    if isinstance(target, Mapping) and _usable_id(target.get("Id")):
        return _usable_id(target.get("Id"))
    primary = _usable_id(context.get("PrimaryEntityId"))
    if primary:
        return primary
    for image in _pairs(context.get("PostEntityImages")).values():
        if isinstance(image, Mapping) and _usable_id(image.get("Id")):
            return _usable_id(image.get("Id"))
    return None


def parse_remote_execution_context(
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    *,
    key: Secret | None,
    header_name: str,
    kinds: Mapping[str, str],
) -> PushBatch:
    """Authenticate and read one webhook; ``kinds`` maps table logical names to
    ``"deal"``/``"account"``/``"contact"``. Raises ``PushRejected`` (401 bad key, 400 bad body)."""
    _authenticate(headers, query, key, header_name)
    try:
        context = parse_object(body.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise PushRejected(400, "the body is not JSON (expected a RemoteExecutionContext)") from exc
    except UntrustedJsonError as exc:
        if exc.code == "too_deeply_nested":
            raise PushRejected(400, f"{exc.reason} (expected a RemoteExecutionContext)") from exc
        raise PushRejected(400, "the body is not a JSON RemoteExecutionContext object") from exc
    message = context.get("MessageName")
    entity = context.get("PrimaryEntityName")
    if not isinstance(message, str) or not message or not isinstance(entity, str) or not entity:
        raise PushRejected(400, "the body has no MessageName or PrimaryEntityName")
    if len(message) > MAX_NAME or len(entity) > MAX_NAME:
        raise PushRejected(400, f"MessageName or PrimaryEntityName is over {MAX_NAME} characters")
    ack = PushBatch(notices=[], ack_body=b"", ack_content_type="text/plain; charset=utf-8")
    kind = kinds.get(entity.lower())
    if kind is None:
        log.warning(
            "a Dataverse webhook for %s %s was ignored: dealbridge maps no such table; "
            "remove that step from the service endpoint",
            message,
            entity,
        )
        return ack
    record_id = _record_id(context)
    if record_id is None:
        raise PushRejected(400, f"the {message} notification for {entity} names no record id")
    operation = next(
        (
            _usable_id(context.get(name))
            for name in ("OperationId", "RequestId", "CorrelationId")
            if _usable_id(context.get(name))
        ),
        None,
    )
    event_id = f"{operation or 'no-operation'}:{message}:{record_id}"
    notice = PushNotice(kind=kind, record_id=record_id, event_id=event_id)
    return PushBatch(notices=[notice], ack_body=ack.ack_body, ack_content_type=ack.ack_content_type)
