"""The list of Stripe event types and the handler registry that checks names against it."""

from __future__ import annotations

from typing import Any

import pytest

from connector.billing.event_types import (
    HANDLED_STRIPE_EVENTS,
    STRIPE_API_VERSION,
    STRIPE_EVENT_TYPES,
    installed_event_types,
)
from connector.services.inbox import EventHandlers
from tests.support.stripe_events import fixture_names, load_event


def _registry() -> EventHandlers:
    return EventHandlers(
        "stripe", known_types=STRIPE_EVENT_TYPES, handled_types=HANDLED_STRIPE_EVENTS
    )


def _noop(_runtime: Any, _event: dict[str, Any]) -> str | None:
    return None


def test_the_list_is_the_installed_stripe_python_list() -> None:
    assert installed_event_types() == STRIPE_EVENT_TYPES


def test_the_list_has_the_billing_events_dealbridge_relies_on() -> None:
    assert {
        "invoice.paid",
        "invoice.payment_failed",
        "invoice.marked_uncollectible",
        "customer.subscription.paused",
        "customer.subscription.resumed",
        "customer.deleted",
        "charge.succeeded",
        "checkout.session.completed",
    } <= STRIPE_EVENT_TYPES


def test_every_handled_event_is_a_stripe_event() -> None:
    assert HANDLED_STRIPE_EVENTS <= STRIPE_EVENT_TYPES
    assert len(HANDLED_STRIPE_EVENTS) == 27


def test_every_handled_event_has_a_payload_fixture_of_the_pinned_api_version() -> None:
    covered = {name.split("__")[0] for name in fixture_names()}
    assert covered >= HANDLED_STRIPE_EVENTS
    for name in fixture_names():
        event = load_event(name)
        assert event["type"] == name.split("__")[0]
        assert event["api_version"] == STRIPE_API_VERSION
        assert event["id"].startswith("evt_")


def test_fixture_event_ids_are_unique() -> None:
    ids = [load_event(name)["id"] for name in fixture_names()]
    assert len(ids) == len(set(ids))


def test_a_misspelt_event_type_is_refused_at_registration() -> None:
    with pytest.raises(ValueError, match=r"'invoice\.payed' is not a stripe event type"):
        _registry().on("invoice.payed")(_noop)


def test_a_stripe_type_dealbridge_does_not_subscribe_to_is_refused_at_registration() -> None:
    with pytest.raises(ValueError, match="does not subscribe"):
        _registry().on("charge.succeeded")(_noop)


def test_registration_is_all_or_nothing_when_one_name_is_wrong() -> None:
    registry = _registry()
    with pytest.raises(ValueError):
        registry.on("invoice.paid", "invoice.payed")(_noop)
    assert registry.types() == frozenset()


def test_one_decorator_registers_a_handler_for_several_types() -> None:
    registry = _registry()

    @registry.on("invoice.paid", "invoice.voided")
    def handler(_runtime: Any, _event: dict[str, Any]) -> str | None:
        return "ok"

    assert registry.handler_for("invoice.paid") is handler
    assert registry.handler_for("invoice.voided") is handler
    assert "invoice.paid" not in registry.missing()


def test_a_second_handler_for_the_same_type_is_refused() -> None:
    registry = _registry()
    registry.on("invoice.paid")(_noop)
    with pytest.raises(ValueError, match="already has a handler"):
        registry.on("invoice.paid")(lambda _rt, _ev: None)
