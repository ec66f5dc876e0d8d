"""Outbound subscriber events: queued with the change, signed, ordered per account, guarded."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.config import config_for_tests
from connector.jobs.dispatch import OUTBOX_SENDERS
from connector.runtime import Runtime
from connector.secrets import Secret
from connector.services import subscribers
from connector.services.outbox import SingleSender, drain_outbox
from connector.services.subscribers import (
    DELIVER,
    DestinationRefused,
    SubscriberConfigError,
    SubscriberDelivery,
    check_destination,
    emit,
    subscriber_problems,
)
from connector.store.db import Database
from connector.store.models import OutboxMessage
from tests.support import TEST_SECRETS, FrozenClock
from tests.support.receiver import Receiver, run_receiver, self_signed_certificate

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
ERP_SECRET = "erp-signing-secret-0123456789abcdef"
PUBLIC = "93.184.216.34"


def fake_resolver(table: dict[str, Sequence[str]]) -> Callable[[str, int], Sequence[str]]:
    def resolve(host: str, _port: int) -> Sequence[str]:
        if host not in table:
            raise socket.gaierror(f"[Errno -2] Name or service not known: {host}")
        return table[host]

    return resolve


LOCAL = fake_resolver({"127.0.0.1": ["127.0.0.1"]})


def documented_verifier() -> Callable[..., bool]:
    """The verification snippet from docs/webhooks.md, executed as a receiver would paste it."""
    text = DOCS.read_text(encoding="utf-8")
    (code,) = [
        block
        for block in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
        if "def verify_dealbridge_signature" in block
    ]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOCS), "exec"), namespace)  # noqa: S102 - our own documentation
    verifier: Callable[..., bool] = namespace["verify_dealbridge_signature"]
    return verifier


def _runtime(
    db: Database,
    clock: FrozenClock,
    subscribers_: list[dict[str, Any]],
    **outbound: Any,
) -> Runtime:
    section = {
        "allowed_schemes": ["http"],
        "allow_private_addresses": True,
        "subscribers": subscribers_,
        **outbound,
    }
    secrets = {s["name"]: Secret(ERP_SECRET) for s in subscribers_}
    config = config_for_tests(
        {"database": {"url": db.url}, "outbound": section},
        **{**TEST_SECRETS, "subscriber_secrets": secrets},
    )
    return Runtime(config, db=db, clock=clock)


def _erp(url: str, events: list[str] | None = None) -> dict[str, Any]:
    return {"name": "erp", "url": url, "events": events or ["*"]}


def _emit(runtime: Runtime, event_type: str, account_id: str, **data: Any) -> str | None:
    with runtime.db.session() as session:
        return emit(session, runtime, event_type, account_id, data)


def _deliver(runtime: Runtime, resolver: Any = LOCAL, **kwargs: Any) -> int:
    delivery = SubscriberDelivery(resolver, **kwargs)
    return drain_outbox(runtime, {DELIVER: SingleSender(delivery)})


def _messages(db: Database) -> list[OutboxMessage]:
    with db.session() as session:
        return list(session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with run_receiver() as running:
        yield running


# --------------------------------------------------------------------------- emit


def test_emit_queues_the_event_for_each_subscriber_that_wants_it(
    db: Database, clock: FrozenClock
) -> None:
    runtime = _runtime(
        db,
        clock,
        [
            _erp("http://127.0.0.1:9/hooks"),
            {
                "name": "warehouse",
                "url": "http://127.0.0.1:9/w",
                "events": ["invoice.status_changed"],
            },
        ],
    )
    event_id = _emit(runtime, "subscription.activated", "001A", deal_id="006X")
    (message,) = _messages(db)
    assert (message.kind, message.ordering_key) == ("subscriber.deliver", "subscriber:erp:001A")
    assert message.payload == {
        "subscriber": "erp",
        "event": {
            "id": event_id,
            "type": "subscription.activated",
            "created": int(clock().timestamp()),
            "account_id": "001A",
            "data": {"deal_id": "006X"},
        },
    }
    assert event_id is not None and re.fullmatch(r"evt_[0-9a-f]{32}", event_id)


def test_emit_queues_nothing_when_no_subscriber_wants_the_event(
    db: Database, clock: FrozenClock
) -> None:
    runtime = _runtime(db, clock, [_erp("http://127.0.0.1:9/h", ["invoice.status_changed"])])
    assert _emit(runtime, "subscription.activated", "001A") is None
    assert _messages(db) == []


def test_emit_refuses_an_event_type_dealbridge_does_not_define(
    db: Database, clock: FrozenClock
) -> None:
    runtime = _runtime(db, clock, [_erp("http://127.0.0.1:9/h")])
    with pytest.raises(ValueError, match="not a subscriber event type"):
        _emit(runtime, "invoice.paid", "001A")


def test_a_subscriber_filter_naming_an_unknown_event_is_refused_on_first_use(
    db: Database, clock: FrozenClock
) -> None:
    runtime = _runtime(db, clock, [_erp("http://127.0.0.1:9/h", ["invoice.status_change"])])
    assert any(
        "'invoice.status_change' is not an event" in p for p in subscriber_problems(runtime.config)
    )
    with pytest.raises(SubscriberConfigError):
        _emit(runtime, "invoice.status_changed", "001A")


def test_an_emitted_event_is_rolled_back_with_the_change_it_announces(
    db: Database, clock: FrozenClock
) -> None:
    runtime = _runtime(db, clock, [_erp("http://127.0.0.1:9/h")])
    with pytest.raises(RuntimeError), runtime.db.session() as session:
        emit(session, runtime, "subscription.activated", "001A", {})
        raise RuntimeError("activation failed")
    assert _messages(db) == []


# --------------------------------------------------------------------------- delivery


def test_a_delivery_is_signed_so_the_documented_snippet_verifies_it(
    db: Database, clock: FrozenClock, receiver: Receiver
) -> None:
    runtime = _runtime(db, clock, [_erp(receiver.url)])
    _emit(runtime, "invoice.status_changed", "001A", invoice="in_1", status="paid")
    assert _deliver(runtime) == 1
    (request,) = receiver.requests
    header = request.headers["Dealbridge-Signature"]
    assert re.fullmatch(rf"t={int(clock().timestamp())},v1=[0-9a-f]{{64}}", header)
    verify = documented_verifier()
    now = clock().timestamp()
    assert verify(request.body, header, ERP_SECRET, now=now)
    assert not verify(request.body, header, "another-secret", now=now)
    assert not verify(request.body.replace(b"paid", b"void"), header, ERP_SECRET, now=now)
    assert not verify(request.body, header, ERP_SECRET, now=now + 301)


def test_the_delivered_body_is_the_event_as_json(
    db: Database, clock: FrozenClock, receiver: Receiver
) -> None:
    runtime = _runtime(db, clock, [_erp(receiver.url)])
    event_id = _emit(runtime, "invoice.status_changed", "001A", invoice="in_1", status="paid")
    _deliver(runtime)
    (request,) = receiver.requests
    assert request.path == "/hooks"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Dealbridge-Event-Id"] == event_id
    assert json.loads(request.body) == {
        "id": event_id,
        "type": "invoice.status_changed",
        "created": int(clock().timestamp()),
        "account_id": "001A",
        "data": {"invoice": "in_1", "status": "paid"},
    }
    assert _messages(db)[0].status == "done"


def test_a_retry_carries_the_same_event_id_signed_afresh(
    db: Database, clock: FrozenClock, receiver: Receiver
) -> None:
    runtime = _runtime(db, clock, [_erp(receiver.url)])
    _emit(runtime, "invoice.status_changed", "001A")
    receiver.script.append((503, {}))
    _deliver(runtime)
    assert _messages(db)[0].status == "pending"
    clock.advance(seconds=30)
    _deliver(runtime)
    first, second = receiver.requests
    assert json.loads(first.body)["id"] == json.loads(second.body)["id"]
    assert first.headers["Dealbridge-Signature"] != second.headers["Dealbridge-Signature"]
    assert _messages(db)[0].status == "done"


def test_events_of_one_account_arrive_in_order_and_a_failure_holds_back_only_that_account(
    db: Database, clock: FrozenClock, receiver: Receiver
) -> None:
    runtime = _runtime(db, clock, [_erp(receiver.url)])
    _emit(runtime, "invoice.status_changed", "001A", n="a1")
    _emit(runtime, "invoice.status_changed", "001B", n="b1")
    _emit(runtime, "invoice.status_changed", "001A", n="a2")
    receiver.script.append((500, {}))  # a1's first attempt
    _deliver(runtime)
    clock.advance(seconds=30)
    _deliver(runtime)
    assert [json.loads(r.body)["data"]["n"] for r in receiver.requests] == ["a1", "b1", "a1", "a2"]


def test_a_redirect_is_not_followed_and_the_event_is_parked(
    db: Database, clock: FrozenClock, receiver: Receiver
) -> None:
    runtime = _runtime(db, clock, [_erp(receiver.url)])
    _emit(runtime, "invoice.status_changed", "001A")
    receiver.script.append((302, {"Location": f"http://127.0.0.1:{receiver.port}/elsewhere"}))
    _deliver(runtime)
    assert [r.path for r in receiver.requests] == ["/hooks"]
    (message,) = _messages(db)
    assert message.status == "parked"
    assert message.last_error is not None and "redirects are not followed" in message.last_error


def test_proxies_from_the_environment_are_not_used(
    db: Database, clock: FrozenClock, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    runtime = _runtime(db, clock, [_erp(receiver.url)])
    _emit(runtime, "invoice.status_changed", "001A")
    _deliver(runtime)
    assert len(receiver.requests) == 1


def test_https_goes_to_the_checked_address_and_verifies_the_certificate_for_the_host(
    db: Database, clock: FrozenClock, tmp_path: Path
) -> None:
    cert, key = self_signed_certificate("hooks.example.test", tmp_path)
    with run_receiver(tls=(cert, key)) as tls_receiver:
        url = f"https://hooks.example.test:{tls_receiver.port}/hooks"
        runtime = _runtime(db, clock, [_erp(url)], allowed_schemes=["https"])
        _emit(runtime, "invoice.status_changed", "001A")
        resolver = fake_resolver({"hooks.example.test": ["127.0.0.1"]})
        _deliver(runtime, resolver, verify=str(cert))
    (request,) = tls_receiver.requests
    assert request.headers["Host"] == f"hooks.example.test:{tls_receiver.port}"
    assert _messages(db)[0].status == "done"


def test_a_subscriber_removed_from_the_config_parks_its_queued_events(
    db: Database, clock: FrozenClock, receiver: Receiver
) -> None:
    _emit(_runtime(db, clock, [_erp(receiver.url)]), "invoice.status_changed", "001A")
    _deliver(_runtime(db, clock, []))
    (message,) = _messages(db)
    assert message.status == "parked"
    assert receiver.requests == []


def test_the_worker_sends_subscriber_events_with_the_registered_sender() -> None:
    assert isinstance(OUTBOX_SENDERS[DELIVER], SingleSender)
    assert subscribers.DELIVER in OUTBOX_SENDERS


# --------------------------------------------------------------------------- SSRF guard

OUTBOUND = {"allowed_schemes": ["https"], "allowed_hosts": [], "allow_private_addresses": False}


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.5",  # private
        "172.16.3.4",
        "192.168.1.10",
        "127.0.0.1",  # loopback
        "::1",
        "169.254.169.254",  # link-local: cloud metadata
        "fe80::1",
        "224.0.0.1",  # multicast
        "240.0.0.1",  # reserved
        "0.0.0.0",  # unspecified  # noqa: S104
        "100.64.0.1",  # shared (carrier-grade NAT)
        "fd00::1",  # unique local
        "::ffff:10.0.0.1",  # IPv4-mapped private
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254 (cloud metadata)
        "2002:0a00:0001::1",  # 6to4 of 10.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
        "fec0::1",  # site-local
        "fec0:1234::5",
        "::a9fe:a9fe",  # IPv4-compatible 169.254.169.254
    ],
)
def test_a_host_resolving_to_a_non_public_address_is_refused(address: str) -> None:
    resolver = fake_resolver({"hooks.example.com": [address]})
    with pytest.raises(DestinationRefused, match="resolves to"):
        check_destination("https://hooks.example.com/x", OUTBOUND, resolver)


@pytest.mark.parametrize("address", ["2002:0808:0808::1", "64:ff9b::808:808"])
def test_a_6to4_or_nat64_address_of_a_public_ipv4_host_is_allowed(address: str) -> None:
    resolver = fake_resolver({"hooks.example.com": [address]})
    check_destination("https://hooks.example.com/x", OUTBOUND, resolver)


def test_the_cloud_metadata_address_is_refused_when_given_literally() -> None:
    resolver = fake_resolver({"169.254.169.254": ["169.254.169.254"]})
    with pytest.raises(DestinationRefused):
        check_destination("https://169.254.169.254/latest/meta-data/", OUTBOUND, resolver)


def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    resolver = fake_resolver({"hooks.example.com": [PUBLIC, "10.1.2.3"]})
    with pytest.raises(DestinationRefused):
        check_destination("https://hooks.example.com/x", OUTBOUND, resolver)


def test_a_public_address_is_allowed_and_becomes_the_connection_address() -> None:
    resolver = fake_resolver({"hooks.example.com": [PUBLIC]})
    destination = check_destination("https://hooks.example.com/x", OUTBOUND, resolver)
    assert (destination.host, destination.port, destination.address) == (
        "hooks.example.com",
        443,
        PUBLIC,
    )


def test_a_scheme_not_allowed_is_refused() -> None:
    resolver = fake_resolver({"hooks.example.com": [PUBLIC]})
    with pytest.raises(DestinationRefused, match="scheme 'http'"):
        check_destination("http://hooks.example.com/x", OUTBOUND, resolver)


def test_a_host_outside_the_allowlist_is_refused() -> None:
    resolver = fake_resolver({"evil.example.net": [PUBLIC]})
    outbound = {**OUTBOUND, "allowed_hosts": ["hooks.example.com"]}
    with pytest.raises(DestinationRefused, match=r"not in outbound\.allowed_hosts"):
        check_destination("https://evil.example.net/x", outbound, resolver)


def test_a_host_in_the_allowlist_is_allowed() -> None:
    resolver = fake_resolver({"hooks.example.com": [PUBLIC]})
    outbound = {**OUTBOUND, "allowed_hosts": ["Hooks.Example.com"]}
    assert check_destination("https://hooks.example.com/x", outbound, resolver).address == PUBLIC


def test_credentials_in_the_url_are_refused() -> None:
    resolver = fake_resolver({"hooks.example.com": [PUBLIC]})
    with pytest.raises(DestinationRefused, match="credentials"):
        check_destination("https://user:pw@hooks.example.com/x", OUTBOUND, resolver)


def test_private_addresses_are_allowed_with_the_explicit_opt_in() -> None:
    resolver = fake_resolver({"erp.internal": ["10.0.0.5"]})
    outbound = {**OUTBOUND, "allow_private_addresses": True}
    assert check_destination("https://erp.internal/x", outbound, resolver).address == "10.0.0.5"


def test_a_refused_destination_parks_the_event_and_sends_nothing(
    db: Database, clock: FrozenClock, receiver: Receiver
) -> None:
    runtime = _runtime(db, clock, [_erp(receiver.url)], allow_private_addresses=False)
    _emit(runtime, "invoice.status_changed", "001A")
    _deliver(runtime)
    (message,) = _messages(db)
    assert message.status == "parked"
    assert message.last_error is not None and "DestinationRefused" in message.last_error
    assert receiver.requests == []


def test_a_name_that_does_not_resolve_is_retried_later(db: Database, clock: FrozenClock) -> None:
    runtime = _runtime(db, clock, [_erp("http://hooks.example.test/h")])
    _emit(runtime, "invoice.status_changed", "001A")
    _deliver(runtime, fake_resolver({}))
    (message,) = _messages(db)
    assert (message.status, message.attempts) == ("pending", 1)
