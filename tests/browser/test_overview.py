"""The billing overview in a real browser: finance sees the figures and can act; a sales
rep is refused with the role it needs."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from connector.demo.world import LocalWorld
from connector.services import activation, plans
from connector.web.auth import Identity, issue_session_token


def _activate(world: LocalWorld, ref: str) -> None:
    assert world.runtime is not None
    deal_id = world.salesforce_sandbox.ids_by_ref()[ref]
    with world.runtime.db.session() as session:
        plan = plans.plan_for_deal(session, deal_id)
        assert plan is not None
        plan_id = plan.id
    plans.approve(world.runtime, plan_id, actor="browser-test")
    activation.activate(world.runtime, plan_id)
    world.sync()


def _open_as(world: LocalWorld, page: Page, role: str, path: str = "/overview") -> int:
    token = issue_session_token(world.secret_key, Identity(user=f"{role}@acme.example",
                                                           role=role, via="launch"))  # fmt: skip
    response = page.goto(f"{world.app_url}{path}?t={token}")
    assert response is not None
    return response.status


def test_finance_sees_the_figures_and_can_act(served_world: LocalWorld, page: Page) -> None:
    _activate(served_world, "acme_platform")
    assert _open_as(served_world, page, "finance") == 200
    expect(page.locator("h1")).to_have_text("Billing overview")
    expect(page.locator("#mrr-usd")).to_contain_text("USD")
    expect(page.locator("#active-subscriptions")).to_have_text("1")
    expect(page.locator("#mrr-trend")).to_be_visible()
    row = page.locator("#customers tr.customer").first
    expect(row).to_contain_text("USD")
    row.locator("td a").first.click()  # the customer's subscriptions
    expect(page.locator("h1")).to_have_text("Subscriptions")
    page.get_by_role("button", name="Cancel at period end").click()
    expect(page.locator("#message")).to_contain_text("will end at the end of its period")


def test_a_sales_rep_is_told_it_needs_the_finance_role(
    served_world: LocalWorld, page: Page
) -> None:
    assert _open_as(served_world, page, "sales_rep") == 403
    expect(page.get_by_role("alert")).to_contain_text("needs the finance role")
    expect(page.locator("#figures")).to_have_count(0)
