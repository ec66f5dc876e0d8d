"""Outbound events for downstream systems (ERP, data warehouse, provisioning), signed.

``emit(session, runtime, event_type, account_id, data)`` queues one outbox message per
subscriber whose ``events`` filter matches, in the caller's transaction, so an event is sent
if and only if the change it announces commits. The worker delivers it (messages of kind
``subscriber.deliver``, sent by ``default_delivery`` below): at least once, retried with
backoff, in order per subscriber and account (ordering key
``subscriber:<name>:<account_id>``). The event id is fixed at emit time, so a
receiver deduplicates retries by ``id``. The wire format and signature scheme are
documented for receivers in ``docs/webhooks.md``.

Destinations are checked at every delivery, because DNS can change between two attempts:
the scheme must be in ``outbound.allowed_schemes``, the host in ``outbound.allowed_hosts``
(when that list is not empty), and every address the host resolves to must be public --
private, loopback, link-local (cloud metadata at 169.254.169.254), multicast, reserved,
shared, unspecified and site-local (``fec0::/10``) addresses are refused unless
``outbound.allow_private_addresses`` is true. An IPv6 address that stands for an IPv4 one
(IPv4-mapped or -compatible, 6to4 ``2002::/16``, Teredo, NAT64 ``64:ff9b::/96`` and
``64:ff9b:1::/48``) is judged by the IPv4 address it embeds. The connection then goes to
the address that was checked (TLS still verifies the certificate against the host name),
so a second DNS answer cannot redirect it; environment proxies are ignored for the same
reason, and redirects are never followed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from sqlalchemy.orm import Session

from connector import __version__
from connector.config import Config
from connector.runtime import Runtime
from connector.services.outbox import PermanentError, RetryableError, enqueue

log = logging.getLogger(__name__)

DELIVER = "subscriber.deliver"
SIGNATURE_HEADER = "Dealbridge-Signature"
TIMEOUT_SECONDS = 10

#: Every event type dealbridge emits; a subscriber's ``events`` filter may name only these.
SUBSCRIBER_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "invoice.status_changed",
        "subscription.activated",
        "account.credit_state_changed",
    }
)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Subscriber:
    name: str
    url: str
    events: frozenset[str]

    def wants(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events


class SubscriberConfigError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def subscriber_problems(config: Config) -> list[str]:
    """What is wrong with ``outbound.subscribers`` (for `dealbridge check` and first use)."""
    problems = []
    known = SUBSCRIBER_EVENT_TYPES
    for index, entry in enumerate(config.section("outbound")["subscribers"]):
        for event_type in entry["events"]:
            if event_type != "*" and event_type not in SUBSCRIBER_EVENT_TYPES:
                problems.append(
                    f"outbound.subscribers[{index}].events: {event_type!r} is not an event "
                    f"dealbridge emits; use '*' or some of {', '.join(sorted(known))}"
                )
        if entry["name"] not in config.secrets.subscriber_secrets:
            problems.append(
                f"outbound.subscribers[{index}]: set DEALBRIDGE_SUBSCRIBER_"
                f"{entry['name'].upper()}_SECRET to the secret that signs its events"
            )
    return problems


def configured_subscribers(config: Config) -> list[Subscriber]:
    problems = subscriber_problems(config)
    if problems:
        raise SubscriberConfigError(problems)
    return [
        Subscriber(name=e["name"], url=e["url"], events=frozenset(e["events"]))
        for e in config.section("outbound")["subscribers"]
    ]


# --------------------------------------------------------------------------- emitting


def emit(
    session: Session,
    runtime: Runtime,
    event_type: str,
    account_id: str,
    data: Mapping[str, Any],
) -> str | None:
    """Queue ``event_type`` for every subscriber that wants it; returns the event id.

    None when no subscriber wants it (nothing is queued).
    """
    if event_type not in SUBSCRIBER_EVENT_TYPES:
        raise ValueError(f"{event_type!r} is not a subscriber event type; add it first")
    wanting = [s for s in configured_subscribers(runtime.config) if s.wants(event_type)]
    if not wanting:
        return None
    now = runtime.clock()
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": event_type,
        "created": int(now.timestamp()),
        "account_id": account_id,
        "data": dict(data),
    }
    json.dumps(event)  # refuse what cannot be sent now, inside the caller's transaction
    for subscriber in wanting:
        enqueue(
            session,
            DELIVER,
            f"subscriber:{subscriber.name}:{account_id}",
            {"subscriber": subscriber.name, "event": event},
            dedupe_key=f"subscriber:{subscriber.name}:{event['id']}",
            now=now,
        )
    return str(event["id"])


# --------------------------------------------------------------------------- signing


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Dealbridge-Signature`` value: HMAC-SHA256 over ``"{timestamp}.{body}"``."""
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


# --------------------------------------------------------------------------- destinations

Resolver = Callable[[str, int], Sequence[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class DestinationRefused(PermanentError):
    """The subscriber's URL may not be called (scheme, host or address policy)."""


#: NAT64 prefixes that embed an IPv4 address in their last 32 bits (RFC 6052, RFC 8215).
NAT64_PREFIXES = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for: IPv4-mapped, IPv4-compatible, 6to4,
    Teredo (server and client) and NAT64 forms each reach an IPv4 host."""
    embedded: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        embedded.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        embedded.append(address.sixtofour)
    if address.teredo is not None:
        embedded.extend(address.teredo)
    if any(address in prefix for prefix in NAT64_PREFIXES):
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if int(address) >> 32 == 0 and int(address) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        embedded.append(ipaddress.IPv4Address(int(address)))
    return embedded


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded:
            return all(_is_public(inner) for inner in embedded)
        if address.is_site_local:  # fec0::/10, deprecated but still routed by some stacks
            return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


@dataclass(frozen=True)
class Destination:
    url: str
    host: str
    port: int
    address: str


def check_destination(url: str, outbound: Mapping[str, Any], resolver: Resolver) -> Destination:
    """Where a delivery may go, or DestinationRefused saying why not."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    allowed_schemes = [s.lower() for s in outbound["allowed_schemes"]]
    if scheme not in allowed_schemes:
        raise DestinationRefused(
            f"scheme {scheme!r} is not in outbound.allowed_schemes ({', '.join(allowed_schemes)})"
        )
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise DestinationRefused("the URL names no host")
    if parts.username or parts.password:
        raise DestinationRefused("credentials in the URL are not allowed; use the signature")
    allowed_hosts = {h.lower().rstrip(".") for h in outbound["allowed_hosts"]}
    if allowed_hosts and host not in allowed_hosts:
        raise DestinationRefused(f"host {host!r} is not in outbound.allowed_hosts")
    port = parts.port or (443 if scheme == "https" else 80)
    try:
        addresses = list(resolver(host, port))
    except OSError as exc:
        raise RetryableError(f"cannot resolve {host!r}: {exc}") from exc
    if not addresses:
        raise RetryableError(f"{host!r} resolves to no address")
    parsed = []
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if not outbound["allow_private_addresses"] and not _is_public(address):
            raise DestinationRefused(
                f"{host!r} resolves to {address}, a private, loopback, link-local, multicast "
                "or reserved address; set outbound.allow_private_addresses only if this "
                "subscriber is meant to be on your own network"
            )
        parsed.append(address)
    return Destination(url=url, host=host, port=port, address=str(parsed[0]))


class _PinnedHTTPS(HTTPAdapter):
    """Connects to a checked address while TLS (SNI, certificate) uses the host name."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        super().__init__(max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **kw: Any
    ) -> None:
        kw["server_hostname"] = self._hostname
        kw["assert_hostname"] = self._hostname
        super().init_poolmanager(connections, maxsize, block, **kw)


def pinned_request(destination: Destination) -> tuple[str, dict[str, str], requests.Session]:
    """The URL to call (the checked address), the Host header and a session for it."""
    parts = urlsplit(destination.url)
    address = destination.address
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{destination.port}"
    host_header = destination.host
    default_port = 443 if parts.scheme.lower() == "https" else 80
    if destination.port != default_port:
        host_header = f"{host_header}:{destination.port}"
    session = requests.Session()
    session.trust_env = False  # a proxy from the environment would bypass the address check
    if parts.scheme.lower() == "https":
        session.mount("https://", _PinnedHTTPS(destination.host))
    else:
        session.mount("http://", HTTPAdapter(max_retries=0))
    url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    return url, {"Host": host_header}, session


# --------------------------------------------------------------------------- delivery


class SubscriberDelivery:
    """The ``subscriber.deliver`` sender. ``resolver`` and ``verify`` are injectable."""

    def __init__(
        self,
        resolver: Resolver = system_resolver,
        *,
        verify: bool | str = True,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.resolver = resolver
        self.verify = verify
        self.timeout = timeout

    def __call__(self, runtime: Runtime, payload: dict[str, Any]) -> None:
        name, event = payload["subscriber"], payload["event"]
        subscriber = next(
            (s for s in configured_subscribers(runtime.config) if s.name == name), None
        )
        if subscriber is None:
            raise PermanentError(f"subscriber {name!r} is no longer configured")
        secret = runtime.config.secrets.subscriber_secrets.get(name)
        if secret is None:
            raise PermanentError(f"subscriber {name!r} has no signing secret")
        destination = check_destination(
            subscriber.url, runtime.config.section("outbound"), self.resolver
        )
        body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
        timestamp = int(runtime.clock().timestamp())
        url, headers, session = pinned_request(destination)
        headers.update(
            {
                "Content-Type": "application/json",
                "User-Agent": f"dealbridge/{__version__}",
                SIGNATURE_HEADER: sign(secret.reveal(), timestamp, body),
                "Dealbridge-Event-Id": str(event["id"]),
                "Dealbridge-Event-Type": str(event["type"]),
            }
        )
        try:
            with session:
                response = session.post(
                    url,
                    data=body,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                    verify=self.verify,
                )
        except requests.RequestException as exc:
            raise RetryableError(
                f"could not deliver to subscriber {name!r}: {type(exc).__name__}"
            ) from exc
        status = response.status_code
        if 200 <= status < 300:
            log.info("event %s delivered to subscriber %s", event["id"], name)
            return
        if 300 <= status < 400:
            raise PermanentError(
                f"subscriber {name!r} answered {status} (a redirect); redirects are not "
                "followed -- configure the final URL"
            )
        raise RetryableError(
            f"subscriber {name!r} answered HTTP {status}",
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


#: The sender the worker delivers ``subscriber.deliver`` messages with.
default_delivery = SubscriberDelivery()
