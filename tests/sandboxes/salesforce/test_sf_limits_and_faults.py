"""API usage header and daily limit, fault injection, outages and request counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from simple_salesforce.exceptions import (
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from sandboxes.salesforce import SalesforceSandbox

from .conftest import login


def test_every_api_response_reports_usage_in_sforce_limit_info(sf: Any) -> None:
    sf.query("SELECT Id FROM Account")
    first = sf.api_usage["api-usage"]
    sf.query("SELECT Id FROM Account")
    second = sf.api_usage["api-usage"]
    assert (second.used - first.used, second.total) == (1, 15000)


def test_the_limits_resource_reports_daily_api_requests(sf: Any) -> None:
    limits = sf.limits()
    daily = limits["DailyApiRequests"]
    assert daily["Max"] == 15000
    assert daily["Remaining"] == 15000 - sf.api_usage["api-usage"].used


def test_the_limits_resource_lists_every_documented_limit_with_max_and_remaining(
    sf: Any,
) -> None:
    limits = sf.limits()

    assert len(limits) == 35
    for name in (
        "DailyBulkApiBatches",
        "DailyBulkV2QueryJobs",
        "DataStorageMB",
        "HourlyODataCallout",
        "SingleEmail",
        "StreamingApiConcurrentClients",
    ):
        assert set(limits[name]) == {"Max", "Remaining"}, name  # fmt: skip
    assert set(limits["PermissionSets"]["CreateCustom"]) == {"Max", "Remaining"}
    assert all(entry["Remaining"] <= entry["Max"] for entry in limits.values())


def test_calls_past_the_daily_limit_are_refused_with_request_limit_exceeded(
    make_sandbox: Callable[..., SalesforceSandbox],
) -> None:
    sandbox = make_sandbox(daily_api_limit=3)
    sf = login(sandbox)
    for _ in range(3):
        sf.query("SELECT Id FROM Account")
    with pytest.raises(SalesforceRefusedRequest) as failure:
        sf.query("SELECT Id FROM Account")
    assert failure.value.status == 403
    content: Any = failure.value.content
    assert content == [{"message": "TotalRequests Limit exceeded.",
                        "errorCode": "REQUEST_LIMIT_EXCEEDED"}]  # fmt: skip


def test_the_daily_allowance_resets_the_next_day(
    make_sandbox: Callable[..., SalesforceSandbox], clock: Any
) -> None:
    sandbox = make_sandbox(daily_api_limit=1)
    sf = login(sandbox)
    sf.query("SELECT Id FROM Account")
    clock.advance(days=1)
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_injected_faults_fail_the_next_matching_requests_without_effect(
    sandbox: SalesforceSandbox, sf: Any
) -> None:
    sandbox.inject_faults("/sobjects/Account", [("UNABLE_TO_LOCK_ROW", 400),
                                                ("SERVER_UNAVAILABLE", 503)])  # fmt: skip
    with pytest.raises(SalesforceMalformedRequest) as locked:
        sf.Account.create({"Name": "Acme"})
    content: Any = locked.value.content
    assert content[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    with pytest.raises(SalesforceGeneralError) as unavailable:
        sf.Account.create({"Name": "Acme"})
    assert unavailable.value.status == 503
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0
    assert sf.Account.create({"Name": "Acme"})["success"] is True


def test_faults_only_hit_requests_under_their_path_prefix(
    sandbox: SalesforceSandbox, sf: Any
) -> None:
    sandbox.inject_faults("/sobjects/Opportunity", [("UNABLE_TO_LOCK_ROW", 400)])
    assert sf.Account.create({"Name": "Acme"})["success"] is True
    with pytest.raises(SalesforceMalformedRequest):
        sf.Opportunity.create({"Name": "D", "StageName": "Prospecting", "CloseDate": "2026-12-01"})


def test_while_down_every_request_answers_503(sandbox: SalesforceSandbox, sf: Any) -> None:
    sandbox.set_down(True)
    with pytest.raises(SalesforceGeneralError) as failure:
        sf.query("SELECT Id FROM Account")
    assert failure.value.status == 503
    sandbox.set_down(False)
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_request_counts_are_kept_per_method_and_path_template(
    sandbox: SalesforceSandbox, sf: Any
) -> None:
    sandbox.reset_request_counts()
    first = sf.Account.create({"Name": "A"})["id"]
    second = sf.Account.create({"Name": "B"})["id"]
    sf.Account.update(first, {"Phone": "1"})
    sf.Account.update(second, {"Phone": "2"})
    assert sandbox.request_counts() == {
        ("POST", "/services/data/v{version}/sobjects/Account"): 2,
        ("PATCH", "/services/data/v{version}/sobjects/Account/{id}"): 2,
    }


def test_request_counts_can_be_read_over_http_without_being_counted(
    sandbox: SalesforceSandbox, sf: Any
) -> None:
    sandbox.reset_request_counts()
    sf.query("SELECT Id FROM Account")
    body = requests.get(f"{sandbox.url}/_sandbox/requests", timeout=5).json()
    again = requests.get(f"{sandbox.url}/_sandbox/requests", timeout=5).json()
    assert (
        body
        == again
        == {"requests": [{"method": "GET", "path": "/services/data/v{version}/query", "count": 1}]}
    )
