"""Reading accounts through the real adapter and simple-salesforce against the Salesforce
sandbox: several at once (a batch's account figures need their currencies) in one query per
``ACCOUNTS_PER_QUERY``, keyed by the id asked with."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from simple_salesforce.api import Salesforce

from connector.crm.salesforce import soql
from connector.crm.salesforce.adapter import SalesforceAdapter
from connector.demo import salesforce_sandbox
from sandboxes.salesforce import SalesforceSandbox
from tests.crm.salesforce.conftest import login, make_adapter

QUERY = ("GET", "/services/data/v{version}/query")


@pytest.fixture
def sandbox() -> Iterator[SalesforceSandbox]:
    sandbox = salesforce_sandbox(seed=None).start()
    yield sandbox
    threading.Thread(target=sandbox.stop, daemon=True).start()


@pytest.fixture
def sf(sandbox: SalesforceSandbox) -> Salesforce:
    return login(sandbox)


def _accounts(sf: Salesforce, currencies: list[str]) -> list[str]:
    return [
        str(sf.Account.create({"Name": f"Account {n}", "CurrencyIsoCode": code})["id"])
        for n, code in enumerate(currencies)
    ]


def test_several_accounts_are_read_with_one_query(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    ids = _accounts(sf, ["USD", "EUR", "GBP"])
    [deleted] = _accounts(sf, ["USD"])
    sf.Account.delete(deleted)
    adapter = make_adapter(sandbox)
    malformed = "001" + "Z" * 15  # its checksum would be "Y55"
    sandbox.reset_request_counts()

    found = adapter.get_accounts([*ids, deleted, malformed])

    assert sorted(found) == sorted(ids)
    assert [found[i].currency for i in ids] == ["usd", "eur", "gbp"]
    assert found[ids[1]] == adapter.get_account(ids[1])
    assert sandbox.request_counts()[QUERY] == 2  # get_accounts, then get_account


def test_more_accounts_than_one_query_takes_are_read_in_several(
    sandbox: SalesforceSandbox, sf: Salesforce, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _accounts(sf, ["USD"] * 5)
    monkeypatch.setattr(SalesforceAdapter, "ACCOUNTS_PER_QUERY", 2)
    adapter = make_adapter(sandbox)
    sandbox.reset_request_counts()

    found = adapter.get_accounts(ids)

    assert sorted(found) == sorted(ids)
    assert sandbox.request_counts()[QUERY] == 3


def test_an_account_asked_for_by_its_15_character_id_is_keyed_by_that_id(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    [account_id] = _accounts(sf, ["USD"])

    found = make_adapter(sandbox).get_accounts([account_id[:15]])

    assert list(found) == [account_id[:15]]
    assert found[account_id[:15]].id == account_id


@pytest.mark.parametrize(
    ("record_id", "well_formed"),
    [
        ("0015g00004si3T5", True),
        ("0015g00004si3T5AAI", True),
        ("0015g00004si3t5AAI", False),  # a lowercased letter: the checksum no longer holds
        ("0015g00004si3T5AAA", False),
        ("001ZZZZZZZZZZZZY55", True),
        ("001ZZZZZZZZZZZZZZZ", False),
        ("0015g00004si3T", False),
        ("0015g00004si3T5'--", False),
    ],
)
def test_only_well_formed_ids_are_sent(record_id: str, well_formed: bool) -> None:
    assert soql.is_record_id(record_id) is well_formed
