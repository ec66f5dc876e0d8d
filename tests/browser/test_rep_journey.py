"""A sales rep's journey on the review page, checked for accessibility at each state.

The rep opens the plan URL dealbridge wrote to the deal in Salesforce (signing in through
Salesforce, with no dealbridge session), changes the frequency and sees Stripe's preview
of the first invoice change, activates, and sees what was created with its links. At each
state axe-core (the npm package in package.json, injected into the page) checks the page
against WCAG 2 A/AA: labels, contrast, names of controls, table headers.

Screenshots of each state land in ``docs/screenshots/`` when ``DEALBRIDGE_SCREENSHOTS=1``
(for the docs; the test's assertions do not depend on them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from connector.cli.demo import launch_link
from connector.demo.world import LocalWorld
from connector.web.auth import Identity, issue_session_token

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture
def rep_page(browser: Browser) -> Iterator[Page]:
    """A page whose Content-Security-Policy lets the test inject axe-core (the app's own
    policy refuses inline scripts, as it should)."""
    context = browser.new_context(bypass_csp=True, viewport={"width": 1100, "height": 900})
    yield context.new_page()
    context.close()


def _violations(page: Page) -> list[dict[str, Any]]:
    assert AXE.exists(), f"{AXE} is missing: run `npm ci` (package.json) first"
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => (await axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})).violations"
        ".map(v => ({id: v.id, help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))"
    )
    return list(result)


def _checked(page: Page, state: str) -> None:
    violations = _violations(page)
    assert violations == [], f"{state}: {json.dumps(violations, indent=1)}"
    if os.environ.get("DEALBRIDGE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"review-{state}.png"), full_page=True)


def _deal_id(world: LocalWorld, name: str) -> str:
    return world.salesforce_sandbox.ids_by_ref()[name]


def _plan_url_in_salesforce(world: LocalWorld, name: str) -> str:
    deal_id = _deal_id(world, name)
    [deal] = [r for r in world.salesforce_sandbox.records("Opportunity") if r["Id"] == deal_id]
    return str(deal["Billing_Plan_Url__c"])


def test_a_rep_adjusts_sees_the_preview_change_activates_and_sees_what_was_created(
    served_world: LocalWorld, rep_page: Page
) -> None:
    page = rep_page
    page.goto(_plan_url_in_salesforce(served_world, "acme_platform"))  # clicked in Salesforce
    expect(page.locator("body")).to_contain_text("(sales rep)")
    expect(page.locator("#plan-status")).to_have_text("Awaiting review")
    # Monthly: setup 2,500 + platform 1,200 + 25 seats x 45 + support 1,500 (a quarter)
    expect(page.locator("#invoice-total")).to_have_text("USD 5,325.00")
    _checked(page, "1-in-review")

    page.select_option("#billing", "month/3")
    expect(page.locator("#send_date")).to_be_hidden()  # dependent fields follow the choice
    page.click("#save")
    expect(page.locator("#message")).to_contain_text("Changes saved")
    # Quarterly: setup 2,500 + 3 x (1,200 + 1,125) + 1,500
    expect(page.locator("#invoice-total")).to_have_text("USD 10,975.00")
    expect(page.locator("#billing")).to_have_value("month/3")
    _checked(page, "2-adjusted")

    page.click("#activate")
    expect(page.locator("#plan-status")).to_have_text("Active")
    expect(page.locator("#preview-title")).to_have_text("What was created in Stripe")
    expect(page.locator("#invoice-total")).to_have_text("USD 10,975.00")
    hosted = page.locator("#hosted-invoice").get_attribute("href")
    assert hosted and hosted.startswith(served_world.stripe_url + "/invoice/")
    _checked(page, "3-activated")

    page.click("#hosted-invoice")  # opens in a new tab: the link itself must lead somewhere
    response = page.request.get(hosted)
    assert response.status == 200 and "Invoice" in response.text()


def test_manual_invoicing_asks_first_and_can_be_undone(
    served_world: LocalWorld, rep_page: Page
) -> None:
    page = rep_page
    page.goto(launch_link(served_world, _deal_id(served_world, "acme_platform"), role="sales_rep"))
    page.click("#manual")
    expect(page.locator("#manual-confirm")).to_contain_text("no subscription and no invoice")
    expect(page.locator("#plan-status")).to_have_text("Awaiting review")
    _checked(page, "4-manual-confirm")

    page.click("#manual-yes")
    expect(page.locator("#plan-status")).to_have_text("Manual invoicing")
    expect(page.locator("#needs-confirmation")).to_have_count(0)
    page.click("#manual-undo")
    expect(page.locator("#plan-status")).to_have_text("Awaiting review")


def test_the_overview_and_the_admin_page_pass_the_accessibility_checker(
    served_world: LocalWorld, rep_page: Page
) -> None:
    page = rep_page
    page.goto(launch_link(served_world, _deal_id(served_world, "acme_platform"), role="sales_rep"))
    page.click("#activate")
    expect(page.locator("#plan-status")).to_have_text("Active")
    finance = Identity(user="finance@acme.example", role="finance", via="launch")
    page.goto(
        f"{served_world.app_url}/overview?t={issue_session_token(served_world.secret_key, finance)}"
    )
    expect(page.locator("h1")).to_have_text("Billing overview")
    _checked(page, "5-overview")

    # The admin page (linked from the overview for admins), before and after an action.
    admin = Identity(user="admin@acme.example", role="admin", via="launch")
    page.goto(
        f"{served_world.app_url}/overview?t={issue_session_token(served_world.secret_key, admin)}"
    )
    page.click("#admin")
    expect(page.locator("h1")).to_have_text("Administration")
    _checked(page, "6-admin")
    page.get_by_role("button", name="Prune now").click()
    expect(page.locator("#message")).to_contain_text("Pruned 0 inbox events")
    expect(page.locator("#audit")).to_contain_text("admin.retention.prune")
    _checked(page, "7-admin-pruned")
