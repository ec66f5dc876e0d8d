"""The review page as a rep sees it inside the CRM: adjust, activate, see it in Stripe."""

from __future__ import annotations

import re
from urllib.parse import urlparse

from playwright.sync_api import Page, expect

from connector.cli.demo import launch_link
from connector.demo.world import LocalWorld


def _deal_id(world: LocalWorld, name: str) -> str:
    return world.salesforce_sandbox.ids_by_ref()[name]


def test_a_rep_adjusts_the_terms_and_activates_into_stripe(
    served_world: LocalWorld, page: Page
) -> None:
    page.goto(launch_link(served_world, _deal_id(served_world, "acme_platform"), role="sales_rep"))
    expect(page.locator("#plan-status")).to_have_text("Awaiting review")
    expect(page.locator("#summary")).to_contain_text("due 30 days after sending")

    page.fill("#days_until_due", "45")
    page.click("#save")
    expect(page.locator("#message")).to_contain_text("Changes saved")
    expect(page.locator("#summary")).to_contain_text("due 45 days after sending")

    page.click("#activate")
    expect(page.locator("#plan-status")).to_have_text("Active")
    subscription_id = page.locator("#stripe-subscription").inner_text()
    subscription = served_world.stripe_client().v1.subscriptions.retrieve(subscription_id)
    assert subscription.days_until_due == 45
    assert subscription.collection_method == "send_invoice"


def test_the_page_can_only_be_framed_by_the_configured_crm(
    served_world: LocalWorld, page: Page
) -> None:
    response = page.goto(
        launch_link(served_world, _deal_id(served_world, "acme_platform"), role="sales_rep")
    )
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert re.search(r"frame-ancestors 'self'(;| )", policy)
    assert urlparse(page.url).path.startswith("/plans/")


def test_a_held_account_shows_why_and_cannot_activate(served_world: LocalWorld, page: Page) -> None:
    page.goto(
        launch_link(served_world, _deal_id(served_world, "initech_renewal"), role="sales_rep")
    )
    page.click("#activate")
    expect(page.locator("#plan-status")).to_have_text("Awaiting credit")
    expect(page.locator("#message")).to_contain_text("credit hold")
    expect(page.locator("#activate")).to_be_disabled()
    assert served_world.stripe_sandbox.request_counts().get(("POST", "/v1/subscriptions"), 0) == 0


def test_a_page_about_no_single_deal_asks_to_sign_in(served_world: LocalWorld, page: Page) -> None:
    response = page.goto(f"{served_world.app_url}/overview")
    assert response is not None and response.status == 401
    expect(page.locator("h1")).to_have_text("Please sign in")


def test_the_plan_url_from_the_crm_signs_the_rep_in_through_salesforce(
    served_world: LocalWorld, page: Page
) -> None:
    """No dealbridge session: the page sends the rep to Salesforce's sign-in (where the
    sandbox's browser user is signed in already) and Salesforce sends them back, signed in."""
    deal_id = _deal_id(served_world, "acme_platform")
    [deal] = [r for r in served_world.salesforce_sandbox.records("Opportunity")
              if r["Id"] == deal_id]  # fmt: skip
    plan_url = deal["Billing_Plan_Url__c"]  # what the rep clicks in Salesforce
    assert plan_url
    hops: list[str] = []
    page.on("request", lambda request: hops.append(request.url))
    response = page.goto(plan_url)
    assert response is not None and response.status == 200
    assert any("/services/oauth2/authorize" in url for url in hops)
    assert page.url.split("?")[0].endswith(plan_url.split("/")[-1])
    expect(page.locator("body")).to_contain_text("signed in as")


def test_the_page_shows_the_invoice_schedule_and_a_rep_confirms_a_zero_amount(
    served_world: LocalWorld, page: Page
) -> None:
    deal_id = _deal_id(served_world, "umbrella_support")
    lines = [
        r for r in served_world.salesforce_sandbox.records("OpportunityLineItem")
        if r["OpportunityId"] == deal_id
    ]  # fmt: skip
    served_world.salesforce_client().restful(
        f"sobjects/OpportunityLineItem/{lines[0]['Id']}", method="PATCH", json={"UnitPrice": 0}
    )  # the platform is free: only support (1,500.00 a quarter) is billed
    served_world.salesforce_client().restful(
        f"sobjects/Opportunity/{deal_id}", method="PATCH", json={"Description": "free platform"}
    )  # a deal change, so the next sync reads the deal again
    served_world.sync()
    page.goto(launch_link(served_world, deal_id, role="sales_rep"))
    expect(page.locator("#invoice-schedule tr")).to_have_count(24 + 2)
    expect(page.locator("#schedule-total")).to_have_text("USD 12,000.00")
    expect(page.locator("#needs-confirmation")).to_contain_text("amount")
    page.check("#confirm-amount")
    page.click("#save")
    expect(page.locator("#message")).to_contain_text("Changes saved")
    expect(page.locator("#needs-confirmation")).to_have_count(0)
    expect(page.locator("#confirm-amount")).to_be_checked()
