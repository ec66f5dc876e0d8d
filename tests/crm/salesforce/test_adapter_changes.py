"""What the poll asks of Salesforce: closed deals and accounts changed since a cursor,
through the real adapter and simple-salesforce against the Salesforce sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from simple_salesforce.api import Salesforce

from connector.crm.salesforce.adapter import SalesforceAdapter
from sandboxes.salesforce import SalesforceSandbox
from tests.crm.salesforce.conftest import SettableClock, login, make_adapter


@pytest.fixture
def sf(empty_org: SalesforceSandbox) -> Salesforce:
    return login(empty_org)


@pytest.fixture
def adapter(empty_org: SalesforceSandbox) -> SalesforceAdapter:
    return make_adapter(empty_org)


START = datetime(2026, 11, 21, 9, 0, 0, tzinfo=UTC)


def won_deal(sf: Salesforce, name: str) -> str:
    account_id = sf.Account.create({"Name": f"{name} Inc"})["id"]
    return str(
        sf.Opportunity.create(
            {"Name": name, "AccountId": account_id, "StageName": "Closed Won",
             "CloseDate": "2026-11-21"}
        )["id"]
    )  # fmt: skip


def test_only_closed_deals_are_reported(sf: Salesforce, adapter: SalesforceAdapter) -> None:
    won = won_deal(sf, "Acme")
    open_id = sf.Opportunity.create(
        {"Name": "Open", "StageName": "Prospecting", "CloseDate": "2026-12-01"}
    )["id"]
    ids = adapter.changed_deals(None).ids
    assert won in ids
    assert open_id not in ids


def test_the_cursor_is_the_newest_change_in_whole_seconds(
    sf: Salesforce, adapter: SalesforceAdapter, sf_clock: SettableClock
) -> None:
    sf_clock.now = START + timedelta(milliseconds=250)
    won_deal(sf, "Acme")
    assert adapter.changed_deals(None).cursor == "2026-11-21T09:00:00Z"


def test_a_deal_saved_again_in_the_cursors_second_has_a_new_version(
    sf: Salesforce, adapter: SalesforceAdapter, sf_clock: SettableClock
) -> None:
    sf_clock.now = START + timedelta(milliseconds=200)
    deal = won_deal(sf, "Acme")
    first = adapter.changed_deals(None)
    sf_clock.now = START + timedelta(milliseconds=700)
    sf.Opportunity.update(deal, {"Description": "signed copy attached"})
    second = adapter.changed_deals(first.cursor)
    assert second.ids == [deal]
    assert second.cursor == first.cursor
    assert first.versions[deal] == "2026-11-21T09:00:00.200+00:00"
    assert second.versions[deal] == "2026-11-21T09:00:00.700+00:00"


def test_an_unchanged_deal_seen_again_keeps_its_version(
    sf: Salesforce, adapter: SalesforceAdapter, sf_clock: SettableClock
) -> None:
    sf_clock.now = START + timedelta(milliseconds=200)
    deal = won_deal(sf, "Acme")
    first = adapter.changed_deals(None)
    again = adapter.changed_deals(first.cursor)
    assert again.versions[deal] == first.versions[deal]


def test_accounts_changed_in_the_cursors_second_are_reported_with_versions(
    sf: Salesforce, adapter: SalesforceAdapter, sf_clock: SettableClock
) -> None:
    sf_clock.now = START + timedelta(milliseconds=100)
    account_id = sf.Account.create({"Name": "Initech"})["id"]
    first = adapter.changed_accounts(None)
    sf_clock.now = START + timedelta(milliseconds=900)
    sf.Account.update(account_id, {"Credit_Hold__c": True})
    second = adapter.changed_accounts(first.cursor)
    assert account_id in second.ids
    assert second.versions[account_id] != first.versions[account_id]


def test_a_pushed_contact_names_its_account(sf: Salesforce, adapter: SalesforceAdapter) -> None:
    account_id = sf.Account.create({"Name": "Acme Inc"})["id"]
    contact_id = sf.Contact.create({"LastName": "Whitfield", "AccountId": account_id})["id"]
    loose = sf.Contact.create({"LastName": "Nobody"})["id"]
    assert adapter.accounts_of_contact(contact_id) == [account_id]
    assert adapter.accounts_of_contact(loose) == []
