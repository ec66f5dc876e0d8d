"""``services/payment_on_file``: what Stripe says of the customer's payment methods is kept on
the plan, read only for deals that ask to be charged automatically, and a Stripe failure keeps
the last answer; ``plans.compute`` decides with it."""

from __future__ import annotations

from typing import Any

import pytest

from connector.billing.gateway import StripeUnavailable
from connector.domain.amendment import PAYMENT_KEY
from connector.domain.plan import InvalidOverrides
from connector.domain.plan_status import Status
from connector.runtime import Runtime
from connector.services import payment_on_file
from connector.services.plans import adjust, compute
from connector.store.db import Database
from connector.store.models import Plan
from tests.conftest import make_config
from tests.domain.builders import deal_json
from tests.support import FrozenClock

VISA = {"id": "pm_1", "type": "card", "card": {"brand": "visa", "last4": "4242"}}


class FakeStripe:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.answer: tuple[str | None, list[dict[str, Any]]] | Exception = ("pm_1", [VISA])

    def customer_payment_methods(self, customer_id: str) -> tuple[str | None, list[dict[str, Any]]]:
        self.calls.append(customer_id)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def stripe() -> FakeStripe:
    return FakeStripe()


@pytest.fixture
def rt(sqlite_db: Database, clock: FrozenClock, stripe: FakeStripe) -> Runtime:
    return Runtime(make_config(sqlite_db.url), db=sqlite_db, clock=clock, stripe=stripe)  # type: ignore[arg-type]


def _plan(rt: Runtime, **deal: Any) -> str:
    today = rt.today().isoformat()
    with rt.db.session() as session:
        session.add(
            Plan(
                id="p1",
                deal_id="d1",
                status=Status.IN_REVIEW,
                overrides={},
                deal_data=deal_json(**{"contract_start": today, **deal}),
                stripe_customer_id="cus_1",
                created_at=rt.clock(),
            )
        )
    return "p1"


def _computed(rt: Runtime) -> Any:
    with rt.db.session() as session:
        row = session.get(Plan, "p1")
        assert row is not None
        return compute(rt, row).plan, dict(row.overrides or {})


def test_a_deal_that_asks_is_charged_to_the_default_method(rt: Runtime, stripe: FakeStripe) -> None:
    _plan(rt, payment_collection="Charge automatically")
    payment_on_file.refresh(rt, "p1")
    plan, overrides = _computed(rt)
    assert stripe.calls == ["cus_1"]
    assert overrides[PAYMENT_KEY]["method"]["id"] == "pm_1"
    assert (plan.collection_method, plan.payment_method.label) == (
        "charge_automatically",
        "visa •••• 4242",
    )


def test_a_deal_that_does_not_ask_costs_no_stripe_call(rt: Runtime, stripe: FakeStripe) -> None:
    _plan(rt)
    payment_on_file.refresh(rt, "p1")
    plan, overrides = _computed(rt)
    assert stripe.calls == [] and PAYMENT_KEY not in overrides
    assert plan.collection_method == "send_invoice" and plan.collection_fallback is None


def test_a_removed_card_falls_back_on_the_next_refresh(rt: Runtime, stripe: FakeStripe) -> None:
    _plan(rt, payment_collection="Charge automatically")
    payment_on_file.refresh(rt, "p1")
    stripe.answer = (None, [])
    payment_on_file.refresh(rt, "p1")
    plan, _ = _computed(rt)
    assert plan.collection_method == "send_invoice"
    assert "no payment method on file" in plan.collection_fallback


def test_stripe_down_keeps_the_last_answer(rt: Runtime, stripe: FakeStripe) -> None:
    _plan(rt, payment_collection="Charge automatically")
    payment_on_file.refresh(rt, "p1")
    stripe.answer = StripeUnavailable("down")
    payment_on_file.refresh(rt, "p1")
    plan, _ = _computed(rt)
    assert len(stripe.calls) == 2 and plan.collection_method == "charge_automatically"


def test_a_person_cannot_set_the_payment_fact_through_the_page(rt: Runtime) -> None:
    _plan(rt, payment_collection="Charge automatically")
    with pytest.raises(InvalidOverrides, match=PAYMENT_KEY):
        adjust(rt, "p1", {PAYMENT_KEY: {"checked": True, "method": VISA}}, actor="rep")
