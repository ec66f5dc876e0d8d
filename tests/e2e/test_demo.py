"""The README's first command does the whole main job and says what it did, on either CRM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.cli.demo import ROLES, new_plan_links
from tests.e2e.conftest import World


@pytest.mark.parametrize("crm", ["salesforce", "dynamics"])
def test_demo_once_activates_the_sample_orgs_deals_and_exits_cleanly(
    tmp_path: Path, crm: str
) -> None:
    database = tmp_path / "demo.sqlite3"
    result = CliRunner().invoke(main, ["demo", "--crm", crm, "--once", "--database", str(database)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary[f"{crm}_sandbox"].startswith("http://127.0.0.1:")
    deals = {deal["deal"]: deal for deal in summary["deals"]}
    acme = deals["Acme Robotics - Platform 2027"]
    assert acme["status"] == "active"
    assert acme["stripe_customer"].startswith("cus_")
    assert acme["subscription"].startswith("sub_")
    [first_invoice] = acme["invoices"]  # setup fee and the first month, sent for payment
    assert (first_invoice["status"], first_invoice["currency"]) == ("open", "usd")
    assert first_invoice["amount_due"] == 532_500  # 2,500 + 1,200 + 25 x 45 + 1,500 (quarter)
    globex = deals["Globex - Enterprise Licence"]
    assert globex["status"] == "active"
    assert globex["subscription_schedule"].startswith("sub_sched_")
    assert deals["Umbrella Health - Platform and Support"]["status"] == "in_review"
    initech = deals["Initech - Renewal 2027"]
    assert initech["status"] == "awaiting_credit"
    assert "credit hold" in initech["reason"]
    assert all(
        deal["review_page"].startswith(summary["app"] + "/launch?") for deal in deals.values()
    )
    links = acme["review_page_by_role"]
    assert set(links) == {"sales_rep", "finance", "admin"}
    assert all(f"role={role}&" in link for role, link in links.items())
    assert database.exists()


@pytest.mark.crm("salesforce", reason="the demo's links do not depend on the CRM")
def test_a_deal_closed_while_the_demo_runs_gets_launch_links_for_each_role(world: World) -> None:
    world.sync()
    seen: set[str] = set()
    assert new_plan_links(world, seen)  # the sample org's plans, once
    assert new_plan_links(world, seen) == []

    world.crm.update_deal(
        "acme_expansion", closed=True, contract_start=world.clock().date(),
        billing_contact="acme_ap",
    )  # fmt: skip
    world.sync()
    lines = new_plan_links(world, seen)

    deal_id = world.crm.ref("acme_expansion")
    assert lines[0].strip().startswith("New plan:")
    links = [line.split(": ", 1)[1] for line in lines[1:]]
    assert [f"role={role}&" in link for role, link in zip(ROLES, links, strict=True)] == [
        True,
        True,
        True,
    ]
    assert all(f"deal={deal_id}&" in link for link in links)
    assert new_plan_links(world, seen) == []
