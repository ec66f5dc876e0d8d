"""A rep clicks the plan URL dealbridge wrote to the CRM, with no dealbridge session, and lands
on the plan signed in as themselves (issue 17's Done-when)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests

from sandboxes.dataverse import DEMO_USERS
from tests.e2e.conftest import World
from tests.support.html_forms import forms_of

REP = DEMO_USERS[0]


@pytest.mark.crm(
    "dynamics",
    reason="signing in through Microsoft Entra ID is Dynamics' own; Salesforce's OAuth "
    "web-server flow is covered in tests/web/test_crm_signin.py",
)
def test_a_rep_opening_the_plan_url_from_dynamics_lands_on_the_plan_signed_in(
    world: World,
) -> None:
    world.sync()
    plan_url = world.crm.deal("acme_platform")["plan_url"]
    world.dataverse.sign_in_browser_as(REP.username)  # signed in to Microsoft 365 already

    with requests.Session() as browser:
        at_entra = browser.get(plan_url, headers={"Accept": "text/html"}, timeout=10)
        assert urlsplit(at_entra.url).netloc == urlsplit(world.dataverse.url).netloc
        [answer] = forms_of(at_entra.text)  # Entra's form_post page submits itself
        page = browser.post(answer.action, data=answer.fields, timeout=10)

    assert page.status_code == 200
    assert urlsplit(page.url).path == urlsplit(plan_url).path
    assert f"signed in as {REP.username} (sales rep)" in page.text


@pytest.mark.crm(
    "salesforce",
    reason="the OAuth web-server flow through the connected app is Salesforce's own; "
    "Dynamics signs in through Entra ID above",
)
def test_a_rep_opening_the_plan_url_from_salesforce_lands_on_the_plan_signed_in(
    world: World,
) -> None:
    world.sync()
    plan_url = world.crm.deal("acme_platform")["plan_url"]

    with requests.Session() as browser:  # signed in to Salesforce, not to dealbridge
        page = browser.get(plan_url, headers={"Accept": "text/html"}, timeout=10)

    hops = [urlsplit(r.url).netloc for r in page.history]
    assert urlsplit(world.crm_url).netloc in hops  # through Salesforce's authorize page
    assert page.status_code == 200
    assert urlsplit(page.url).path == urlsplit(plan_url).path
    assert "signed in as" in page.text
