"""Bulk API 2.0 query jobs, through simple-salesforce's own ``sf.bulk2.<Object>.query``."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pytest
from simple_salesforce.api import Salesforce

from sandboxes.salesforce import Processing, SalesforceSandbox
from tests.sandboxes.salesforce.conftest import login


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def busy(make_sandbox: Callable[..., SalesforceSandbox]) -> SalesforceSandbox:
    """An org whose Bulk API jobs stay in progress for one status check."""
    return make_sandbox(bulk_processing=Processing(polls=1))


def test_simple_salesforce_inserts_then_queries_in_pages(busy: SalesforceSandbox) -> None:
    sf = login(busy)
    accounts = [
        {"Name": "Acme", "BillingCity": "Austin"},
        {"Name": "Globex", "BillingCity": "Berlin"},
        {"Name": "Initech", "BillingCity": "Austin"},
    ]
    inserted = sf.bulk2.Account.insert(records=accounts, wait=0)
    assert [(r["numberRecordsProcessed"], r["numberRecordsFailed"]) for r in inserted] == [(3, 0)]

    pages = list(
        sf.bulk2.Account.query(
            "SELECT Id, Name, BillingCity FROM Account WHERE BillingCity = 'Austin'",
            max_records=1,
            wait=0,
        )
    )

    assert len(pages) == 2  # one record per set, the header on each
    rows = [row for page in pages for row in _rows(page)]
    assert sorted(r["Name"] for r in rows) == ["Acme", "Initech"]
    assert all(r["Id"].startswith("001") for r in rows)
    assert pages[0].splitlines()[0] == '"Id","Name","BillingCity"'


def test_results_are_quoted_csv_with_parent_fields_and_salesforce_values(sf: Salesforce) -> None:
    account = sf.Account.create({"Name": "Acme, Inc."})["id"]
    sf.Opportunity.create(
        {"Name": "Renewal", "AccountId": account, "StageName": "Prospecting",
         "CloseDate": "2026-12-01", "Contract_Term_Months__c": 12}
    )  # fmt: skip

    [page] = sf.bulk2.Opportunity.query(
        "SELECT Name, Account.Name, IsClosed, Contract_Term_Months__c, Amount, CreatedDate "
        "FROM Opportunity",
        wait=0,
    )

    header, row = page.splitlines()
    assert header == (
        '"Name","Account.Name","IsClosed","Contract_Term_Months__c","Amount","CreatedDate"'
    )
    values = next(csv.reader([row]))
    assert values[:5] == ["Renewal", "Acme, Inc.", "false", "12.0", ""]
    assert values[5].endswith(".000Z")


def test_the_job_reports_in_progress_then_complete_with_its_count(busy: SalesforceSandbox) -> None:
    sf = login(busy)
    created = sf.session.post(
        f"{sf.bulk2_url}query",
        json={"operation": "query", "query": "SELECT Id FROM User"},
        headers=sf.headers,
    ).json()
    assert created["state"] == "UploadComplete"
    assert created["id"].startswith("750")

    first = sf.session.get(f"{sf.bulk2_url}query/{created['id']}", headers=sf.headers).json()
    second = sf.session.get(f"{sf.bulk2_url}query/{created['id']}", headers=sf.headers).json()

    assert (first["state"], second["state"]) == ("InProgress", "JobComplete")
    assert second["jobType"] == "V2Query" and second["numberRecordsProcessed"] == 1


@pytest.mark.parametrize(
    "soql",
    [
        "SELECT COUNT() FROM Account",
        "SELECT Id, (SELECT Id FROM Contacts) FROM Account",
        "SELECT Id FROM Account LIMIT 5 OFFSET 1",
    ],
    ids=["aggregate", "parent-to-child", "offset"],
)
def test_what_bulk_queries_cannot_do_is_refused_when_the_job_is_created(
    sf: Salesforce, soql: str
) -> None:
    response = sf.session.post(
        f"{sf.bulk2_url}query", json={"operation": "query", "query": soql}, headers=sf.headers
    )

    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "INVALIDJOB"


def test_a_bad_query_is_refused_as_the_rest_query_refuses_it(sf: Salesforce) -> None:
    response = sf.session.post(
        f"{sf.bulk2_url}query",
        json={"operation": "query", "query": "SELECT Nope FROM Account"},
        headers=sf.headers,
    )

    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "INVALID_FIELD"


def test_query_all_includes_deleted_records(sf: Salesforce) -> None:
    gone = sf.Account.create({"Name": "Gone"})["id"]
    sf.Account.delete(gone)

    live = [r for page in sf.bulk2.Account.query("SELECT Name FROM Account", wait=0)
            for r in _rows(page)]  # fmt: skip
    everything = [r for page in sf.bulk2.Account.query_all(
        "SELECT Name, IsDeleted FROM Account", wait=0) for r in _rows(page)]  # fmt: skip

    assert "Gone" not in [r["Name"] for r in live]
    assert {"Name": "Gone", "IsDeleted": "true"} in everything


def test_query_jobs_are_counted_in_the_limits(sf: Salesforce) -> None:
    before = sf.limits()["DailyBulkV2QueryJobs"]["Remaining"]
    list(sf.bulk2.Account.query("SELECT Id FROM Account", wait=0))

    assert sf.limits()["DailyBulkV2QueryJobs"]["Remaining"] == before - 1
