"""POST /webhooks/stripe: verified events are stored once and acknowledged; nothing else is."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event as sa_event

from connector.config import config_for_tests
from connector.runtime import Runtime
from connector.secrets import Secret
from connector.services.inbox import move_spooled
from connector.store.db import Database
from connector.store.intake_spool import IntakeSpool
from connector.store.models import InboxEvent
from connector.web.app import create_app
from tests.support import TEST_SECRETS, FrozenClock
from tests.support.stripe_events import load_event, raw_event, stripe_signature

PAID = "invoice.paid__ach.json"


def _now(clock: FrozenClock) -> int:
    return int(clock().timestamp())


def _post(client: Any, body: str | bytes, signature: str | None, **kwargs: Any) -> Any:
    headers = {"Stripe-Signature": signature} if signature is not None else {}
    kwargs.setdefault("content_type", "application/json")
    return client.post("/webhooks/stripe", data=body, headers=headers, **kwargs)


def _stored(db: Database) -> list[InboxEvent]:
    """The inbox as the worker sees it: on SQLite, once it has moved what the web process
    spooled (``store/intake_spool.py``)."""
    move_spooled(Runtime(config_for_tests({"database": {"url": db.url}}, **TEST_SECRETS), db=db))
    with db.session() as session:
        return list(session.scalars(sa.select(InboxEvent).order_by(InboxEvent.id)))


def _client_with(db: Database, clock: FrozenClock, sections: dict[str, Any], **secrets: Any) -> Any:
    config = config_for_tests(
        {"database": {"url": db.url}, **sections}, **{**TEST_SECRETS, **secrets}
    )
    app = create_app(runtime=Runtime(config, db=db, clock=clock))
    app.testing = True
    return app.test_client()


def test_a_validly_signed_event_is_stored_raw_and_acknowledged(
    store_client: Any, db: Database, clock: FrozenClock
) -> None:
    body = raw_event(PAID)
    response = _post(store_client, body, stripe_signature(body, _now(clock)))
    assert response.status_code == 200
    assert response.get_json()["outcome"] == "stored"
    (row,) = _stored(db)
    assert (row.source, row.event_id, row.event_type, row.status) == (
        "stripe",
        load_event(PAID)["id"],
        "invoice.paid",
        "pending",
    )
    assert row.payload == body
    assert row.received_at == clock()


@pytest.mark.postgresql(reason="a redelivery is recognised by the unique key on each store")
def test_a_redelivered_event_is_acknowledged_and_not_stored_again(
    store_client: Any, db: Database, clock: FrozenClock
) -> None:
    body = raw_event(PAID)
    _post(store_client, body, stripe_signature(body, _now(clock)))
    clock.advance(minutes=1)
    again = _post(store_client, body, stripe_signature(body, _now(clock)))
    assert again.status_code == 200
    assert again.get_json()["outcome"] == "duplicate"
    assert len(_stored(db)) == 1


@pytest.mark.postgresql(reason="the unique key decides between two concurrent inserts")
def test_racing_duplicate_deliveries_store_the_event_once(
    store_runtime: Runtime, db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(runtime=store_runtime)
    app.testing = True
    body = raw_event(PAID)
    signature = stripe_signature(body, _now(clock))
    # Hold both requests just before their INSERT (into the intake spool on SQLite, the
    # inbox on PostgreSQL), so neither sees the other's row committed.
    both_inserting = threading.Barrier(2, timeout=20)
    held: list[int] = []
    spool_put = IntakeSpool.put

    def put_when_both_are_here(spool: IntakeSpool, *args: Any, **kwargs: Any) -> bool:
        held.append(both_inserting.wait())
        return spool_put(spool, *args, **kwargs)

    def insert_when_both_are_here(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("INSERT INTO inbox_events"):
            held.append(both_inserting.wait())

    monkeypatch.setattr(IntakeSpool, "put", put_when_both_are_here)
    answers: list[tuple[int, str]] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            response = _post(app.test_client(), body, signature)
            answers.append((response.status_code, response.get_json()["outcome"]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    sa_event.listen(db.engine, "before_cursor_execute", insert_when_both_are_here)
    try:
        threads = [threading.Thread(target=deliver) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", insert_when_both_are_here)
    assert errors == []
    assert sorted(held) == [0, 1]  # both requests were held just before inserting
    assert sorted(answers) == [(200, "duplicate"), (200, "stored")]
    assert len(_stored(db)) == 1


def test_an_event_type_dealbridge_does_not_handle_is_stored_as_ignored_and_acknowledged(
    store_client: Any, db: Database, clock: FrozenClock
) -> None:
    body = json.dumps({"id": "evt_plan1", "object": "event", "type": "plan.created", "data": {}})
    response = _post(store_client, body, stripe_signature(body, _now(clock)))
    assert response.status_code == 200
    assert response.get_json()["outcome"] == "ignored"
    (row,) = _stored(db)
    assert (row.status, row.processed_at) == ("ignored", clock())


def test_a_missing_signature_is_refused_and_nothing_is_stored(
    store_client: Any, db: Database
) -> None:
    response = _post(store_client, raw_event(PAID), None)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "missing_signature"
    assert _stored(db) == []


def test_a_signature_made_with_another_secret_is_refused(
    store_client: Any, db: Database, clock: FrozenClock
) -> None:
    body = raw_event(PAID)
    forged = stripe_signature(body, _now(clock), secret="whsec_attackerGuess")
    response = _post(store_client, body, forged)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_signature"
    assert _stored(db) == []


def test_a_signature_over_a_different_body_is_refused(
    store_client: Any, db: Database, clock: FrozenClock
) -> None:
    body = raw_event(PAID)
    signature = stripe_signature(body, _now(clock))
    tampered = body.replace('"amount_paid": 1350000', '"amount_paid": 1')
    response = _post(store_client, tampered, signature)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_signature"
    assert _stored(db) == []


def test_a_signature_older_than_the_tolerance_is_refused(
    store_client: Any, db: Database, clock: FrozenClock
) -> None:
    body = raw_event(PAID)
    response = _post(store_client, body, stripe_signature(body, _now(clock) - 301))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "stale_signature"
    assert _stored(db) == []


def test_an_old_signature_with_a_fresh_timestamp_added_is_still_refused_as_stale(
    store_client: Any, db: Database, clock: FrozenClock
) -> None:
    body = raw_event(PAID)
    old = stripe_signature(body, _now(clock) - 45 * 86_400)  # t=<old>,v1=<signature>
    forged = f"v0=x, t={_now(clock)},{old}"  # a fresher " t" the signature does not cover
    response = _post(store_client, body, forged)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "stale_signature"
    assert _stored(db) == []


def test_a_malformed_extra_timestamp_item_is_not_a_server_error(
    store_client: Any, db: Database, clock: FrozenClock
) -> None:
    body = raw_event(PAID)
    response = _post(store_client, body, f" t=abc,{stripe_signature(body, _now(clock))}")
    assert response.status_code == 200  # the signed " t=abc" is not Stripe's "t": ignored
    assert len(_stored(db)) == 1


def test_a_signature_within_the_configured_tolerance_is_accepted(
    db: Database, clock: FrozenClock
) -> None:
    client = _client_with(db, clock, {"stripe": {"webhook_tolerance_seconds": 600}})
    body = raw_event(PAID)
    response = _post(client, body, stripe_signature(body, _now(clock) - 599))
    assert response.status_code == 200


def test_a_signature_dated_beyond_the_tolerance_in_the_future_is_refused(
    store_client: Any, db: Database, clock: FrozenClock
) -> None:
    body = raw_event(PAID)
    response = _post(store_client, body, stripe_signature(body, _now(clock) + 301))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "stale_signature"


def test_an_event_signed_with_the_second_secret_during_rotation_is_accepted(
    db: Database, clock: FrozenClock
) -> None:
    client = _client_with(
        db,
        clock,
        {},
        stripe_webhook_secrets=(Secret("whsec_oldSecretStillActive"), Secret("whsec_newSecret")),
    )
    body = raw_event(PAID)
    response = _post(client, body, stripe_signature(body, _now(clock), secret="whsec_newSecret"))
    assert response.status_code == 200
    assert len(_stored(db)) == 1


def test_without_a_configured_secret_events_are_refused_with_a_retryable_status(
    db: Database, clock: FrozenClock
) -> None:
    client = _client_with(db, clock, {}, stripe_webhook_secrets=())
    body = raw_event(PAID)
    response = _post(client, body, stripe_signature(body, _now(clock)))
    assert response.status_code == 503
    assert _stored(db) == []


def test_malformed_json_with_a_valid_signature_is_refused(
    store_client: Any, db: Database, clock: FrozenClock
) -> None:
    body = '{"id": "evt_1", "type": "invoice.paid",'
    response = _post(store_client, body, stripe_signature(body, _now(clock)))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed_json"
    assert _stored(db) == []


def test_a_body_that_is_not_a_json_object_is_refused(store_client: Any, clock: FrozenClock) -> None:
    body = '["evt_1"]'
    response = _post(store_client, body, stripe_signature(body, _now(clock)))
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ({"object": "event", "type": "invoice.paid"}, "missing_id"),
        ({"id": "", "type": "invoice.paid"}, "missing_id"),
        ({"id": "evt_1", "object": "event"}, "missing_type"),
    ],
)
def test_an_event_without_an_id_or_type_is_refused(
    store_client: Any, db: Database, clock: FrozenClock, event: dict[str, Any], code: str
) -> None:
    body = json.dumps(event)
    response = _post(store_client, body, stripe_signature(body, _now(clock)))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == code
    assert _stored(db) == []


def test_a_body_that_is_not_json_by_content_type_is_refused_with_415(
    store_client: Any, db: Database, clock: FrozenClock
) -> None:
    body = raw_event(PAID)
    response = _post(
        store_client, body, stripe_signature(body, _now(clock)), content_type="text/plain"
    )
    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"
    assert _stored(db) == []


def test_a_body_over_the_size_limit_is_refused_with_413_as_json(
    db: Database, clock: FrozenClock
) -> None:
    client = _client_with(db, clock, {"web": {"max_webhook_bytes": 1024}})
    body = json.dumps({"id": "evt_big", "type": "invoice.paid", "padding": "x" * 2000})
    response = _post(client, body, stripe_signature(body, _now(clock)))
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert _stored(db) == []


def test_outcomes_are_counted_by_source_and_outcome(
    store_client: Any, store_runtime: Runtime, clock: FrozenClock
) -> None:
    body = raw_event(PAID)
    _post(store_client, body, stripe_signature(body, _now(clock)))
    _post(store_client, body, stripe_signature(body, _now(clock)))
    _post(store_client, body, None)
    registry = store_runtime.metrics.registry

    def count(outcome: str) -> float | None:
        return registry.get_sample_value(
            "dealbridge_webhooks_total", {"source": "stripe", "outcome": outcome}
        )

    assert (count("stored"), count("duplicate"), count("bad_signature")) == (1.0, 1.0, 1.0)
