"""Invoice records written to Salesforce through the real adapter and simple-salesforce
against the Salesforce sandbox: a refused record reports Salesforce's own status code,
whether it went by sObject Collections or by a Bulk API 2.0 job."""

from __future__ import annotations

import threading
from datetime import date

import pytest

from connector.crm.base import InvoiceRecord, Money
from connector.crm.salesforce.adapter import SalesforceAdapter
from connector.demo import salesforce_sandbox
from connector.mappings import load_mapping
from sandboxes.salesforce import Processing, SalesforceSandbox
from tests.crm.salesforce.conftest import REPO, SettableClock, login, make_adapter

#: A well-formed Account id that no record has.
MISSING_ACCOUNT = "001000000000000AAA"


def invoice(
    stripe_id: str, account_id: str, currency: str = "usd", due: int = 120_050, credited: int = 0
) -> InvoiceRecord:
    return InvoiceRecord(
        stripe_invoice_id=stripe_id, account_id=account_id, deal_id=None, number="ACME-0001",
        status="open", amount_due=due, amount_paid=0, amount_remaining=due,
        currency=currency, issue_date=date(2026, 11, 21), due_date=date(2026, 12, 21),
        paid_date=None, hosted_invoice_url=None, invoice_pdf=None, subscription_id=None,
        billing_reason="manual", last_payment_error=None, stripe_customer_id="cus_Acme",
        amount_credited=credited,
    )  # fmt: skip


def test_an_invoice_record_is_in_the_invoices_currency_with_its_credited_amount(
    empty_org: SalesforceSandbox,
) -> None:
    sf = login(empty_org)
    account_id = str(sf.Account.create({"Name": "Globex", "CurrencyIsoCode": "USD"})["id"])
    results = make_adapter(empty_org).upsert_invoices(
        [invoice("in_Eur", account_id, "eur", due=90_000, credited=12_345)]
    )
    assert [r.ok for r in results] == [True]
    (row,) = sf.query(
        "SELECT CurrencyIsoCode, Amount_Due__c, Amount_Credited__c, Currency__c "
        "FROM Stripe_Invoice__c WHERE Stripe_Invoice_Id__c = 'in_Eur'"
    )["records"]
    assert row["CurrencyIsoCode"] == "EUR"
    assert (row["Amount_Due__c"], row["Amount_Credited__c"]) == (900, 123.45)


def test_an_amount_the_currency_field_cannot_hold_is_refused_not_rounded(
    empty_org: SalesforceSandbox,
) -> None:
    sf = login(empty_org)
    account_id = str(sf.Account.create({"Name": "Acme"})["id"])
    adapter = make_adapter(empty_org)
    results = adapter.upsert_invoices(
        [invoice("in_Kwd", account_id, "kwd", due=1_005), invoice("in_Usd", account_id)]
    )
    assert [(r.key, r.ok) for r in results] == [("in_Kwd", False), ("in_Usd", True)]
    assert results[0].error is not None
    assert "KWD 1.005 needs 3 decimal places; Amount_Due__c holds 2" in results[0].error
    (refused,) = adapter.update_accounts([(account_id, {"mrr": Money(1_005, "kwd")})])
    assert refused.ok is False and "MRR__c holds 2" in (refused.error or "")
    found = sf.query("SELECT Id FROM Stripe_Invoice__c WHERE Stripe_Invoice_Id__c = 'in_Kwd'")
    assert found["records"] == []


@pytest.mark.parametrize("bulk_threshold", [200, 0], ids=["collections", "bulk"])
def test_a_refused_record_carries_salesforces_status_code(
    empty_org: SalesforceSandbox, bulk_threshold: int
) -> None:
    account_id = str(login(empty_org).Account.create({"Name": "Acme"})["id"])
    results = make_adapter(empty_org, bulk_threshold=bulk_threshold).upsert_invoices(
        [invoice("in_Good", account_id), invoice("in_Orphan", MISSING_ACCOUNT)]
    )
    assert [(r.key, r.ok) for r in results] == [("in_Good", True), ("in_Orphan", False)]
    assert results[0].code is None
    assert results[1].code == "INVALID_CROSS_REFERENCE_KEY"
    assert results[1].retryable is False


def test_the_bulk_path_waits_while_salesforce_processes_the_job(
    sf_clock: SettableClock,
) -> None:
    org = salesforce_sandbox(
        seed={"records": {}}, now=sf_clock, bulk_processing=Processing(polls=1)
    ).start()
    try:
        account_id = str(login(org).Account.create({"Name": "Acme"})["id"])
        pauses: list[float] = []
        adapter = SalesforceAdapter(
            load_mapping(REPO / "mappings" / "salesforce.yaml", "salesforce"),
            lambda: login(org),
            sleeper=pauses.append,
            bulk_threshold=0,
        )

        results = adapter.upsert_invoices([invoice("in_Good", account_id)])

        assert [(r.key, r.ok) for r in results] == [("in_Good", True)]
        assert pauses == [1.0]  # one status check answered InProgress
    finally:
        threading.Thread(target=org.stop, daemon=True).start()
