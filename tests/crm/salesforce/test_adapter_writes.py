"""Invoice records written to Salesforce through the real adapter and simple-salesforce
against the Salesforce sandbox: a refused record reports Salesforce's own status code,
whether it went by sObject Collections or by a Bulk API 2.0 job."""

from __future__ import annotations

from datetime import date

import pytest

from connector.crm.base import InvoiceRecord
from sandboxes.salesforce import SalesforceSandbox
from tests.crm.salesforce.conftest import login, make_adapter

#: A well-formed Account id that no record has.
MISSING_ACCOUNT = "001000000000000AAA"


def invoice(stripe_id: str, account_id: str) -> InvoiceRecord:
    return InvoiceRecord(
        stripe_invoice_id=stripe_id, account_id=account_id, deal_id=None, number="ACME-0001",
        status="open", amount_due=120_050, amount_paid=0, amount_remaining=120_050,
        currency="usd", issue_date=date(2026, 11, 21), due_date=date(2026, 12, 21),
        paid_date=None, hosted_invoice_url=None, invoice_pdf=None, subscription_id=None,
        billing_reason="manual", last_payment_error=None, stripe_customer_id="cus_Acme",
    )  # fmt: skip


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
