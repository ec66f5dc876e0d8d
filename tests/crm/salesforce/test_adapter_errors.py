"""What a person reads when Salesforce refuses the login, and where deal links point."""

from __future__ import annotations

from simple_salesforce.exceptions import SalesforceAuthenticationFailed

from connector.bundled import default_mapping
from connector.crm.base import CrmAuthError
from connector.crm.salesforce.adapter import SalesforceAdapter, classify
from connector.mappings import load_mapping


def test_a_refused_login_says_what_salesforce_said_without_placeholders() -> None:
    error = classify(
        SalesforceAuthenticationFailed("INVALID_LOGIN", "Invalid username, password; or locked")
    )

    assert isinstance(error, CrmAuthError)
    assert "{" not in str(error)
    assert "INVALID_LOGIN: Invalid username, password; or locked" in str(error)
    assert "login_url" in str(error)


def test_a_refused_login_without_a_reason_still_reads_as_a_sentence() -> None:
    error = classify(SalesforceAuthenticationFailed(None, None))

    assert "{" not in str(error) and "no reason given" in str(error)


def test_a_plain_http_sandbox_record_is_linked_over_http() -> None:
    adapter = SalesforceAdapter(
        load_mapping(default_mapping("salesforce"), "salesforce"), lambda: None,  # type: ignore[arg-type, return-value]
        instance_url="http://127.0.0.1:8123/",
    )  # fmt: skip

    assert adapter.record_url("deal", "006000000000001AAA") == (
        "http://127.0.0.1:8123/006000000000001AAA"
    )
