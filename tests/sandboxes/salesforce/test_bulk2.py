"""Bulk API 2.0 ingest jobs in the Salesforce sandbox: the lifecycle and shapes Salesforce uses."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import requests
from simple_salesforce.api import Salesforce

from connector.crm.salesforce.bulk import BulkIngest
from sandboxes.salesforce import Processing, SalesforceSandbox
from tests.sandboxes.salesforce.conftest import login
from tests.support import FrozenClock


def _call(sf: Salesforce, method: str, path: str, body: Any = None, csv_body: str | None = None):
    headers = dict(sf.headers)
    if csv_body is not None:
        headers["Content-Type"] = "text/csv"
        return sf.session.request(method, sf.bulk2_url + path, data=csv_body, headers=headers)
    return sf.session.request(method, sf.bulk2_url + path, json=body, headers=headers)


def _job(sf: Salesforce, **definition: Any) -> dict[str, Any]:
    response = _call(sf, "POST", "ingest", {"contentType": "CSV", **definition})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_creating_a_job_answers_the_open_job_with_its_upload_url(sf: Salesforce) -> None:
    job = _job(
        sf, object="Product2", operation="upsert", externalIdFieldName="Stripe_Product_Id__c"
    )
    assert job["id"].startswith("750") and len(job["id"]) == 18
    assert job["state"] == "Open"
    assert job["object"] == "Product2"
    assert job["externalIdFieldName"] == "Stripe_Product_Id__c"
    assert job["contentUrl"] == f"services/data/v59.0/jobs/ingest/{job['id']}/batches"
    assert (job["lineEnding"], job["columnDelimiter"], job["jobType"]) == (
        "LF",
        "COMMA",
        "V2Ingest",
    )


def test_an_upsert_job_creates_then_updates_by_external_id_with_per_row_results(
    sf: Salesforce, sandbox: SalesforceSandbox
) -> None:
    sf.Product2.create({"Name": "Old", "Stripe_Product_Id__c": "prod_2"})
    job = _job(
        sf, object="Product2", operation="upsert", externalIdFieldName="Stripe_Product_Id__c"
    )
    upload = (
        "Stripe_Product_Id__c,Name,IsActive\n"
        "prod_1,Platform,true\nprod_2,Seats,false\nprod_3,,true\n"
    )
    assert _call(sf, "PUT", f"ingest/{job['id']}/batches", csv_body=upload).status_code == 201
    closed = _call(sf, "PATCH", f"ingest/{job['id']}", {"state": "UploadComplete"}).json()
    assert closed["state"] == "UploadComplete"

    info = _call(sf, "GET", f"ingest/{job['id']}").json()
    assert info["state"] == "JobComplete"
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (3, 1)
    ok = _call(sf, "GET", f"ingest/{job['id']}/successfulResults")
    assert ok.text.splitlines()[0] == '"sf__Id","sf__Created",Stripe_Product_Id__c,Name,IsActive'
    assert [(r["Stripe_Product_Id__c"], r["sf__Created"]) for r in _rows(ok.text)] == [
        ("prod_1", "true"),
        ("prod_2", "false"),
    ]
    failed = _rows(_call(sf, "GET", f"ingest/{job['id']}/failedResults").text)
    assert [r["Stripe_Product_Id__c"] for r in failed] == ["prod_3"]
    assert failed[0]["sf__Error"].startswith("REQUIRED_FIELD_MISSING:")
    names = {
        r["Stripe_Product_Id__c"]: (r["Name"], r["IsActive"]) for r in sandbox.records("Product2")
    }
    assert names["prod_1"] == ("Platform", True) and names["prod_2"] == ("Seats", False)


def test_an_empty_cell_leaves_a_field_alone_and_na_clears_it(
    sf: Salesforce, sandbox: SalesforceSandbox
) -> None:
    account = sf.Account.create({"Name": "Acme", "BillingCity": "Austin", "BillingState": "TX"})[
        "id"
    ]
    job = _job(sf, object="Account", operation="update")
    _call(
        sf,
        "PUT",
        f"ingest/{job['id']}/batches",
        csv_body=f"Id,BillingCity,BillingState\n{account},,#N/A\n",
    )
    _call(sf, "PATCH", f"ingest/{job['id']}", {"state": "UploadComplete"})
    record = next(r for r in sandbox.records("Account") if r["Id"] == account)
    assert (record["BillingCity"], record["BillingState"]) == ("Austin", None)


def test_parents_are_referenced_by_external_id_in_the_header(
    sf: Salesforce, sandbox: SalesforceSandbox
) -> None:
    sf.Product2.create({"Name": "Platform", "Stripe_Product_Id__c": "prod_1"})
    pricebook = sandbox.ids_by_ref()["standard_pricebook"]
    job = _job(sf, object="PricebookEntry", operation="insert")
    upload = (
        "Stripe_Price_Id__c,Pricebook2Id,Product2.Stripe_Product_Id__c,UnitPrice,CurrencyIsoCode\n"
        f"price_1,{pricebook},prod_1,1200.50,USD\n"
    )
    _call(sf, "PUT", f"ingest/{job['id']}/batches", csv_body=upload)
    _call(sf, "PATCH", f"ingest/{job['id']}", {"state": "UploadComplete"})
    entries = [r for r in sandbox.records("PricebookEntry") if r.get("Stripe_Price_Id__c")]
    assert [(e["Name"], str(e["UnitPrice"])) for e in entries] == [("Platform", "1200.50")]


def test_a_job_whose_header_names_an_unknown_field_fails_as_a_whole(sf: Salesforce) -> None:
    job = _job(sf, object="Account", operation="insert")
    _call(sf, "PUT", f"ingest/{job['id']}/batches", csv_body="Name,Nope__c\nAcme,1\n")
    _call(sf, "PATCH", f"ingest/{job['id']}", {"state": "UploadComplete"})
    info = _call(sf, "GET", f"ingest/{job['id']}").json()
    assert info["state"] == "Failed"
    assert info["errorMessage"] == "InvalidBatch : Field name not found : Nope__c"


def test_a_job_takes_one_upload_and_refuses_uploads_once_closed(sf: Salesforce) -> None:
    job = _job(sf, object="Account", operation="insert")
    assert _call(sf, "PUT", f"ingest/{job['id']}/batches", csv_body="Name\nA\n").status_code == 201
    second = _call(sf, "PUT", f"ingest/{job['id']}/batches", csv_body="Name\nB\n")
    assert second.status_code == 409 and second.json()[0]["errorCode"] == "INVALIDJOBSTATE"


def test_an_aborted_job_writes_nothing_and_lists_its_rows_as_unprocessed(
    sf: Salesforce, sandbox: SalesforceSandbox
) -> None:
    before = len(sandbox.records("Account"))
    job = _job(sf, object="Account", operation="insert")
    _call(sf, "PUT", f"ingest/{job['id']}/batches", csv_body="Name\nA\n")
    assert (
        _call(sf, "PATCH", f"ingest/{job['id']}", {"state": "Aborted"}).json()["state"] == "Aborted"
    )
    assert len(sandbox.records("Account")) == before
    assert _call(sf, "GET", f"ingest/{job['id']}/unprocessedrecords").text == "Name\nA\n"


def test_unknown_jobs_and_invalid_definitions_are_refused_as_salesforce_does(
    sf: Salesforce,
) -> None:
    assert _call(sf, "GET", "ingest/750000000000000AAA").status_code == 404
    upsert = _call(sf, "POST", "ingest", {"object": "Account", "operation": "upsert"})
    assert upsert.status_code == 400 and upsert.json()[0]["errorCode"] == "INVALIDJOB"


def test_bulk_calls_are_counted_by_template_and_charged_to_the_api_allowance(
    sf: Salesforce, sandbox: SalesforceSandbox
) -> None:
    sandbox.reset_request_counts()
    used = sandbox.usage.used
    job = _job(sf, object="Account", operation="insert")
    _call(sf, "GET", f"ingest/{job['id']}")
    counts = sandbox.request_counts()
    assert counts[("POST", "/services/data/v{version}/jobs/ingest")] == 1
    assert counts[("GET", "/services/data/v{version}/jobs/ingest/{jobId}")] == 1
    assert sandbox.usage.used == used + 2


def test_the_adapters_bulk_client_waits_out_in_progress_and_maps_results_to_its_rows(
    make_sandbox: Callable[..., SalesforceSandbox],
) -> None:
    sf = login(make_sandbox(bulk_processing=Processing(polls=2)))
    sleeps: list[float] = []
    bulk = BulkIngest(lambda fn: fn(sf), sleeper=sleeps.append)
    results = bulk.run(
        "Product2",
        "upsert",
        [
            {"Stripe_Product_Id__c": "prod_1", "Name": "A"},
            {"Stripe_Product_Id__c": "prod_2", "Name": None},
        ],
        "Stripe_Product_Id__c",
        external_id="Stripe_Product_Id__c",
    )
    assert [(r.key, r.ok) for r in results] == [("prod_1", True), ("prod_2", False)]
    assert results[0].crm_id and results[0].crm_id.startswith("01t")
    assert sleeps == [1.0, 2.0]  # two status checks saw InProgress, with growing pauses


def test_a_closed_job_is_in_progress_for_the_status_checks_configured(
    make_sandbox: Callable[..., SalesforceSandbox],
) -> None:
    sandbox = make_sandbox(bulk_processing=Processing(polls=2))
    sf = login(sandbox)
    job = _job(sf, object="Account", operation="insert")
    _call(sf, "PUT", f"ingest/{job['id']}/batches", csv_body="Name\nWayne\n")
    closed = _call(sf, "PATCH", f"ingest/{job['id']}", {"state": "UploadComplete"}).json()
    assert closed["state"] == "UploadComplete"

    states = [_call(sf, "GET", f"ingest/{job['id']}").json() for _ in range(3)]

    assert [s["state"] for s in states] == ["InProgress", "InProgress", "JobComplete"]
    assert states[0]["numberRecordsProcessed"] == 0
    assert states[2]["numberRecordsProcessed"] == 1
    done = _rows(_call(sf, "GET", f"ingest/{job['id']}/successfulResults").text)
    assert [row["Name"] for row in done] == ["Wayne"]


def test_processing_can_take_clock_time_and_results_wait_for_it(
    make_sandbox: Callable[..., SalesforceSandbox], clock: FrozenClock
) -> None:
    sandbox = make_sandbox(bulk_processing=Processing(seconds=30))
    sf = login(sandbox)
    job = _job(sf, object="Account", operation="insert")
    _call(sf, "PUT", f"ingest/{job['id']}/batches", csv_body="Name\nWayne\n")
    _call(sf, "PATCH", f"ingest/{job['id']}", {"state": "UploadComplete"})

    assert _call(sf, "GET", f"ingest/{job['id']}").json()["state"] == "InProgress"
    too_soon = _call(sf, "GET", f"ingest/{job['id']}/successfulResults")
    assert too_soon.status_code == 409
    assert not [a for a in sandbox.records("Account") if a["Name"] == "Wayne"]
    clock.advance(seconds=30)
    assert _call(sf, "GET", f"ingest/{job['id']}").json()["state"] == "JobComplete"
    assert [a["Name"] for a in sandbox.records("Account") if a["Name"] == "Wayne"] == ["Wayne"]


def test_crlf_rows_in_an_lf_job_fail_the_whole_job(
    sf: Salesforce, sandbox: SalesforceSandbox
) -> None:
    before = len(sandbox.records("Account"))
    job = _job(sf, object="Account", operation="insert", lineEnding="LF")
    _call(sf, "PUT", f"ingest/{job['id']}/batches", csv_body="Name\r\nA\r\n")
    _call(sf, "PATCH", f"ingest/{job['id']}", {"state": "UploadComplete"})

    info = _call(sf, "GET", f"ingest/{job['id']}").json()

    assert info["state"] == "Failed"
    assert info["errorMessage"] == (
        "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF"
    )
    assert len(sandbox.records("Account")) == before


def test_requests_without_a_session_are_refused(sandbox: SalesforceSandbox) -> None:
    response = requests.get(f"{sandbox.url}/services/data/v59.0/jobs/ingest", timeout=5)
    assert response.status_code == 401
