"""Scenarios moved down from ``tests/e2e/test_customer_follows_crm.py``:
the same bodies, run once on the fake CRM adapter
(``tests/services/scenarios/conftest.py``) instead of once per CRM sandbox."""

from __future__ import annotations

from typing import Any

from connector.crm.base import Changes
from tests.e2e.conftest import World
from tests.e2e.test_customer_follows_crm import _activate, _customer


def test_the_customer_is_the_company_and_the_billing_contact_gets_the_invoices(
    world: World,
) -> None:
    world.sync()
    customer = _customer(world, _activate(world, "acme_platform")["stripe_customer_id"])
    assert customer.name == "Acme Robotics Inc."
    assert customer.email == "AP.Team@AcmeRobotics.example"
    assert (
        customer.metadata is not None
        and customer.metadata["billing_contact_name"] == "Dana Whitfield"
    )


def test_a_new_billing_contact_on_the_deal_becomes_the_invoice_recipient(world: World) -> None:
    world.sync()
    plan = _activate(world, "acme_platform")
    world.crm.update_deal("acme_platform", billing_contact="acme_cto")
    world.sync()
    customer = _customer(world, plan["stripe_customer_id"])
    assert customer.email == "raj.patel@acmerobotics.example"
    assert (
        customer.metadata is not None and customer.metadata["billing_contact_name"] == "Raj Patel"
    )
    assert customer.name == "Acme Robotics Inc."
    assert world.plan_for("acme_platform")["changed_after_activation"] is None


def test_a_pushed_contact_change_reaches_the_customer_without_the_poll(world: World) -> None:
    """The push alone (a Dataverse contact webhook step): the contact poll finds nothing."""
    world.sync()
    plan = _activate(world, "acme_platform")
    fake: Any = world.crm
    fake.crm.changed_contact_accounts = lambda cursor: Changes([], cursor)
    world.crm.update_contact("acme_ap", email="billing@acmerobotics.example", name="Dana Lee")
    world.sync()
    customer = _customer(world, plan["stripe_customer_id"])
    assert customer.email == "billing@acmerobotics.example"
    assert customer.metadata is not None
    assert customer.metadata["billing_contact_name"] == "Dana Lee"
    assert fake.crm.calls.count("accounts_of_contact") == 1
