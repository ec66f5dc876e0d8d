"""The Stripe customer follows the CRM: company name and address, billing contact (item 4)."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import World


def _activate(world: World, deal_ref: str) -> dict[str, Any]:
    plan = world.plan_for(deal_ref)
    response = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert response.status_code == 200, response.get_json()
    world.sync()
    return world.plan_for(deal_ref)


def _customer(world: World, customer_id: str) -> Any:
    return world.stripe_client().v1.customers.retrieve(customer_id)


def test_a_billing_contacts_new_email_reaches_the_customer_on_the_next_poll(
    world: World,
) -> None:
    """Salesforce: the contact poll. Dynamics 365: the contact webhook step, and the poll."""
    world.sync()
    plan = _activate(world, "acme_platform")
    world.clock.advance(seconds=2)
    world.crm.update_contact("acme_ap", email="billing@acmerobotics.example")
    updates = world.stripe_count("POST", "/v1/customers/:id")
    world.sync()
    assert _customer(world, plan["stripe_customer_id"]).email == "billing@acmerobotics.example"
    world.sync()  # read again: nothing more to change
    assert world.stripe_count("POST", "/v1/customers/:id") == updates + 1


def test_the_accounts_new_name_and_address_reach_the_customer(world: World) -> None:
    world.sync()
    plan = _activate(world, "acme_platform")
    world.clock.advance(seconds=2)
    world.crm.update_account(
        "acme", name="Acme Robotics Holdings", city="Oakland", postal_code="94607"
    )
    world.sync()
    customer = _customer(world, plan["stripe_customer_id"])
    assert customer.name == "Acme Robotics Holdings"
    assert customer.address is not None
    assert (customer.address.city, customer.address.postal_code) == ("Oakland", "94607")
    assert customer.address.line1 == "500 Howard Street, Suite 300"
