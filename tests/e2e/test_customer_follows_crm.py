"""The Stripe customer follows the CRM: company name and address, billing contact (item 4)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import World


def _activate(world: World, deal_ref: str) -> dict[str, Any]:
    plan = world.plan_for(deal_ref)
    response = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert response.status_code == 200, response.get_json()
    world.sync()
    return world.plan_for(deal_ref)


def _customer(world: World, customer_id: str) -> Any:
    return world.stripe_client().v1.customers.retrieve(customer_id)


@pytest.mark.crm("salesforce", reason="contacts are polled on Salesforce only (docs 5.3)")
def test_a_billing_contacts_new_email_reaches_the_customer_on_the_next_poll(
    world: World,
) -> None:
    world.sync()
    plan = _activate(world, "acme_platform")
    world.clock.advance(seconds=2)
    world.crm.client.restful(  # type: ignore[attr-defined]
        f"sobjects/Contact/{world.crm.ref('acme_ap')}",
        method="PATCH",
        json={"Email": "billing@acmerobotics.example"},
    )
    updates = world.stripe_count("POST", "/v1/customers/:id")
    world.sync()
    assert _customer(world, plan["stripe_customer_id"]).email == "billing@acmerobotics.example"
    world.sync()  # read again: nothing more to change
    assert world.stripe_count("POST", "/v1/customers/:id") == updates + 1


@pytest.mark.crm("salesforce", reason="edits the account through the Salesforce REST API")
def test_the_accounts_new_name_and_address_reach_the_customer(world: World) -> None:
    world.sync()
    plan = _activate(world, "acme_platform")
    world.clock.advance(seconds=2)
    world.crm.client.restful(  # type: ignore[attr-defined]
        f"sobjects/Account/{world.crm.ref('acme')}",
        method="PATCH",
        json={
            "Name": "Acme Robotics Holdings",
            "BillingCity": "Oakland",
            "BillingPostalCode": "94607",
        },
    )
    world.sync()
    customer = _customer(world, plan["stripe_customer_id"])
    assert customer.name == "Acme Robotics Holdings"
    assert customer.address is not None
    assert (customer.address.city, customer.address.postal_code) == ("Oakland", "94607")
    assert customer.address.line1 == "500 Howard Street, Suite 300"
