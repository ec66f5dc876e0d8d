"""A cancellation deal that ends the subscription now, with a credit note for the unused
days, on the fake CRM: the plan shows ``cancel_now``'s exact credit, approval needs it
confirmed, activation confirms that very preview; a new day in between sends nothing."""

from __future__ import annotations

from typing import Any

from connector.services import activation
from connector.services.plans import approve
from tests.e2e.conftest import World
from tests.e2e.test_amendments import _activate, _close_expansion
from tests.e2e.test_invoices import _first_invoice, _pay
from tests.e2e.test_review_page import Rep

NOW = {"change": "cancellation", "cancel_when": "now", "cancel_credit": "customer_balance"}


def _cancellation_now(world: World) -> tuple[dict[str, Any], dict[str, Any]]:
    """acme_platform active and paid, ten days into its period; the expansion deal closed
    and chosen as a cancellation now, credited to the customer's balance."""
    world.sync()
    first = _activate(world, "acme_platform")
    _pay(world, _first_invoice(world, first))
    world.sync()
    world.clock.advance(days=10, hours=3)
    _close_expansion(world)
    plan = world.plan_for("acme_expansion")
    response = world.api("POST", f"/api/plans/{plan['id']}/adjust", json=NOW)
    assert response.status_code == 200, response.get_json()
    return first, response.get_json()


def _notes(world: World) -> list[Any]:
    return list(world.stripe_client().v1.credit_notes.list(params={"limit": 100}).data)


def test_a_cancellation_now_credits_the_figure_shown_once(world: World) -> None:
    first, review = _cancellation_now(world)
    sub_id = first["stripe_subscription_id"]
    amendment = review["amendment"]
    credit = amendment["preview"]
    assert amendment["cancel_credit"] == "customer_balance"
    assert amendment["cancel_at_period_end"] is False
    assert amendment["needs_confirmation"] == ["cancel_credit"]
    assert credit["credit_amount"] == sum(line["credit"] for line in credit["lines"]) > 0
    assert credit["operation_id"] and credit["exact_text"] and credit["lines"]
    page = world.api("GET", f"/plans/{review['id']}").get_data(as_text=True)
    assert f'id="cancel-credit-amount">{credit["credit_amount_text"]}<' in page
    assert 'name="cancel_when"' in page and 'value="cancel_credit"' in page

    adjust = f"/api/plans/{review['id']}/adjust"
    for body, fields in [
        ({**NOW, "change": "upgrade"}, ["cancel_when", "cancel_credit"]),
        ({"change": "cancellation", "cancel_credit": "refund"}, ["cancel_credit"]),
    ]:
        refused = world.api("POST", adjust, json=body)
        assert refused.status_code == 422, refused.get_json()
        assert [p["field"] for p in refused.get_json()["error"]["problems"]] == fields
    assert world.plan_for("acme_expansion")["overrides"]["cancel_credit"] == "customer_balance"

    unconfirmed = world.api("POST", f"/api/plans/{review['id']}/activate")
    assert unconfirmed.status_code == 409, unconfirmed.get_json()
    assert "cancel_credit" in unconfirmed.get_json()["error"]["message"]
    rep = Rep(world, "acme_expansion")  # the page's form keeps the choice and confirms it
    assert rep.post("adjust-form", {"confirmed": "cancel_credit"}).status_code == 200
    confirmed = world.plan_for("acme_expansion")
    assert confirmed["overrides"]["cancel_credit"] == "customer_balance"
    assert confirmed["amendment"]["needs_confirmation"] == []
    assert confirmed["amendment"]["preview"]["operation_id"] == credit["operation_id"]

    done = _activate(world, "acme_expansion")
    assert done["status"] == "active", done["status_reason"]
    subscription = world.stripe_client().v1.subscriptions.retrieve(sub_id)
    assert subscription.status == "canceled"
    notes = _notes(world)
    assert [n.total for n in notes] == [credit["credit_amount"]]
    assert notes[0].id in done["status_reason"]
    again = activation.activate(world.runtime, done["id"])  # a re-run: nothing more
    assert again.status == "active" and len(_notes(world)) == 1


def test_a_credit_that_moved_by_activation_goes_back_to_review(world: World) -> None:
    first, review = _cancellation_now(world)
    world.api(
        "POST", f"/api/plans/{review['id']}/adjust", json={**NOW, "confirmed": ["cancel_credit"]}
    )
    approve(world.runtime, review["id"], actor="rep")
    world.clock.advance(days=1)

    after = activation.activate(world.runtime, review["id"])

    assert after.status == "in_review"
    assert "no longer what was shown" in (after.status_reason or "")
    subscription = world.stripe_client().v1.subscriptions.retrieve(first["stripe_subscription_id"])
    assert subscription.status == "active" and not subscription.cancel_at_period_end
    assert _notes(world) == []
    back = world.plan_for("acme_expansion")
    shown = back["amendment"]["preview"]
    assert shown["operation_id"] != review["amendment"]["preview"]["operation_id"]
    assert shown["credit_amount"] < review["amendment"]["preview"]["credit_amount"]
    # The new figure is confirmed again before anything can be approved.
    assert back["amendment"]["needs_confirmation"] == ["cancel_credit"]
    unconfirmed = world.api("POST", f"/api/plans/{review['id']}/activate")
    assert unconfirmed.status_code == 409, unconfirmed.get_json()
    assert _notes(world) == []

    world.clock.advance(days=1)  # approving on yet another day: previewed again, not sent
    refused = world.api("POST", f"/api/plans/{review['id']}/activate")
    assert refused.status_code == 409, refused.get_json()
    assert "previewed again for today" in refused.get_json()["error"]["message"]
    again = world.plan_for("acme_expansion")["amendment"]["preview"]
    assert again["operation_id"] != shown["operation_id"] and _notes(world) == []


def test_a_cancellation_now_without_credit_shows_the_unused_time_as_not_credited(
    world: World,
) -> None:
    _first, review = _cancellation_now(world)
    response = world.api(
        "POST", f"/api/plans/{review['id']}/adjust", json={**NOW, "cancel_credit": "none"}
    )
    assert response.status_code == 200, response.get_json()
    dropped = response.get_json()["amendment"]["preview"]
    assert dropped["credit_amount"] > 0 and dropped["actions"] == {}

    page = world.api("GET", f"/plans/{review['id']}").get_data(as_text=True)

    assert f'id="cancel-credit-amount">{dropped["credit_amount_text"]}<' in page
    assert "Unused time of cancelling now, <strong>not credited</strong>" in page
    assert "Credit of cancelling now" not in page and ">Not credited (exact" in page
