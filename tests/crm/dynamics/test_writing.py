"""Writes: deal and account writeback, invoice and product upserts by alternate key, $batch."""

from __future__ import annotations

import json
from datetime import date
from email import message_from_bytes
from typing import Any

import pytest
import responses

from connector.crm.base import CrmNotFound, CrmUnavailable, InvoiceRecord, Money, ProductRecord
from connector.crm.dynamics.batch import parse_batch_response
from tests.crm.dynamics.support import (
    ACCOUNT_ID,
    API,
    OPPORTUNITY_ID,
    FakeTime,
    api_requests,
    fixture_bytes,
    make_adapter,
    odata,
    query_of,
    shipped_mapping,
)

BATCH = f"{API}/$batch"
CURRENCIES = f"{API}/transactioncurrencies"
USD_ID = "6b1c2d3e-4f50-4a61-8b72-93a4b5c6d7e8"
JPY_ID = "8d3e4f50-6172-4c83-8d94-b5c6d7e8f90a"


@pytest.fixture(autouse=True)
def _currencies(rsps: responses.RequestsMock) -> None:
    """The organisation's currencies (USD, EUR, JPY with no decimals, KWD with three), which
    invoice upserts read to bind each row's currency."""
    rsps.add(responses.GET, CURRENCIES, **odata("transactioncurrencies.json"))


def writes(rsps: responses.RequestsMock) -> list[Any]:
    """The calls to the Web API other than reading the organisation's currencies."""
    return [c for c in api_requests(rsps) if not str(c.request.url).startswith(CURRENCIES)]


OTHER_ACCOUNT = "d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70"
GONE_ACCOUNT = "0e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b"


def serve_batch(rsps: responses.RequestsMock, name: str) -> None:
    """Answer $batch with a fixture; its first line names the response boundary."""
    boundary = fixture_bytes(name).split(b"\r\n", 1)[0].decode().removeprefix("--")
    rsps.add(
        responses.POST,
        BATCH,
        body=fixture_bytes(name),
        content_type=f"multipart/mixed; boundary={boundary}",
    )


def sent_parts(call: Any) -> list[tuple[str, dict[str, str], Any]]:
    """(request line, headers, JSON body) of each operation in a sent $batch."""
    content_type = call.request.headers["Content-Type"]
    raw = call.request.body
    message = message_from_bytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    parts = []
    for part in message.get_payload():  # type: ignore[union-attr]
        assert part.get_content_type() == "application/http"
        assert part["Content-Transfer-Encoding"] == "binary"
        inner = part.get_payload(decode=False)
        head, _, body = inner.replace("\r\n", "\n").partition("\n\n")
        request_line, *header_lines = head.split("\n")
        headers = dict(line.split(": ", 1) for line in header_lines)
        parts.append((request_line, headers, json.loads(body) if body.strip() else None))
    return parts


def invoice(stripe_id: str, account_id: str = ACCOUNT_ID, **changes: Any) -> InvoiceRecord:
    values: dict[str, Any] = {
        "stripe_invoice_id": stripe_id,
        "account_id": account_id,
        "deal_id": OPPORTUNITY_ID,
        "number": "NW-0042",
        "status": "open",
        "amount_due": 120050,
        "amount_paid": 0,
        "amount_remaining": 120050,
        "currency": "usd",
        "issue_date": date(2027, 2, 1),
        "due_date": date(2027, 3, 3),
        "paid_date": None,
        "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1/test_YWNjdF8x",
        "invoice_pdf": "https://pay.stripe.com/invoice/acct_1/test_YWNjdF8x/pdf",
        "subscription_id": "sub_1QwErTy",
        "billing_reason": "subscription_create",
        "last_payment_error": None,
        "stripe_customer_id": "cus_R2d2C3po4Bb8",
    }
    values.update(changes)
    return InvoiceRecord(**values)


def test_update_deal_patches_the_writeback_columns_and_never_creates(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    entra.add(responses.PATCH, f"{API}/opportunities({OPPORTUNITY_ID})", status=204)
    make_adapter(fake_time).update_deal(
        OPPORTUNITY_ID,
        {
            "plan_status": "ready_for_review",
            "plan_url": "https://db.example/plans/7",
            "subscription_id": None,
        },
    )
    call = writes(entra)[0]
    assert call.request.headers["If-Match"] == "*"
    assert json.loads(call.request.body) == {
        "db_planstatus": "ready_for_review",
        "db_planurl": "https://db.example/plans/7",
        "db_stripesubscriptionid": None,
    }


def test_update_deal_of_a_deleted_opportunity_raises_crm_not_found(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    entra.add(
        responses.PATCH,
        f"{API}/opportunities({OPPORTUNITY_ID})",
        status=404,
        **odata("error__record_not_found.json"),
    )
    with pytest.raises(CrmNotFound):
        make_adapter(fake_time).update_deal(OPPORTUNITY_ID, {"plan_status": "activated"})


def test_invoices_are_upserted_by_alternate_key_with_bound_lookups(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_batch(entra, "batch_response__one_failed.txt")
    make_adapter(fake_time).upsert_invoices(
        [invoice("in_1QAbc"), invoice("in_1QDef", GONE_ACCOUNT), invoice("in_1QGhi", deal_id=None)]
    )
    request_line, headers, body = sent_parts(writes(entra)[0])[0]
    assert request_line == f"PATCH {API}/db_stripeinvoices(db_invoiceid='in_1QAbc') HTTP/1.1"
    assert "If-Match" not in headers
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert body == {
        "db_name": "NW-0042",
        "db_number": "NW-0042",
        "db_status": "open",
        "db_currency": "usd",
        "db_issuedate": "2027-02-01",
        "db_duedate": "2027-03-03",
        "db_paiddate": None,
        "db_hostedinvoiceurl": "https://invoice.stripe.com/i/acct_1/test_YWNjdF8x",
        "db_invoicepdf": "https://pay.stripe.com/invoice/acct_1/test_YWNjdF8x/pdf",
        "db_subscriptionid": "sub_1QwErTy",
        "db_billingreason": "subscription_create",
        "db_lastpaymenterror": None,
        "db_stripecustomerid": "cus_R2d2C3po4Bb8",
        "db_amountdue": 1200.5,
        "db_amountpaid": 0,
        "db_amountremaining": 1200.5,
        "db_amountcredited": 0,
        "transactioncurrencyid@odata.bind": f"/transactioncurrencies({USD_ID})",
        "db_accountid@odata.bind": f"/accounts({ACCOUNT_ID})",
        "db_opportunityid@odata.bind": f"/opportunities({OPPORTUNITY_ID})",
    }
    third = sent_parts(writes(entra)[0])[2][2]
    assert "db_opportunityid@odata.bind" not in third


def test_an_invoice_row_is_in_the_invoices_currency_at_that_currencys_precision(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_batch(entra, "batch_response__one_failed.txt")
    make_adapter(fake_time).upsert_invoices(
        [invoice("in_1QAbc", currency="jpy", amount_due=33333, amount_remaining=33333)]
    )
    [read] = [c for c in api_requests(entra) if str(c.request.url).startswith(CURRENCIES)]
    assert query_of(read) == {
        "$select": ["transactioncurrencyid,isocurrencycode,currencyprecision"],
        "$filter": ["statecode eq 0"],  # an inactive currency cannot be given to a record
    }
    raw = writes(entra)[0].request.body.decode()
    ((_, _, body),) = sent_parts(writes(entra)[0])
    assert body["transactioncurrencyid@odata.bind"] == f"/transactioncurrencies({JPY_ID})"
    assert body["db_currency"] == "jpy"
    assert '"db_amountdue":33333,' in raw  # yen: no decimals (JPY's currencyprecision is 0)


def test_an_invoice_in_a_currency_the_organisation_lacks_is_refused_not_written_in_another(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_batch(entra, "batch_response__all_ok.txt")
    adapter = make_adapter(fake_time)
    results = adapter.upsert_invoices(
        [invoice("in_1QAbc", currency="gbp"), invoice("in_1QDef", currency="eur")]
    )
    assert [r.ok for r in results] == [False, True]
    assert results[0].error == (
        "the Dataverse organisation has no active currency GBP (add or activate it under "
        "Settings > Business Management > Currencies): the invoice is not written in another "
        "currency"
    )
    assert results[0].retryable is False
    assert len(sent_parts(writes(entra)[0])) == 1
    # The currencies are read once, and once more for a code not known (an admin may have
    # just added it); a later write of known currencies reads nothing.
    reads = [c for c in api_requests(entra) if str(c.request.url).startswith(CURRENCIES)]
    assert len(reads) == 2
    adapter.upsert_invoices([invoice("in_1QGhi", currency="usd")])
    reads = [c for c in api_requests(entra) if str(c.request.url).startswith(CURRENCIES)]
    assert len(reads) == 2


def test_without_a_record_currency_invoice_amounts_go_to_decimal_columns_at_their_scale(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    """Tables made before the amounts were Currency columns: no currency lookup to bind."""
    mapping = shipped_mapping()
    del mapping.invoice["fields_"]["record_currency"]
    serve_batch(entra, "batch_response__one_failed.txt")
    make_adapter(fake_time, mapping).upsert_invoices(
        [invoice("in_1QAbc", currency="jpy", amount_due=33333, amount_remaining=33333)]
    )
    assert [c for c in api_requests(entra) if str(c.request.url).startswith(CURRENCIES)] == []
    raw = writes(entra)[0].request.body.decode()
    assert '"db_amountdue":33333,' in raw
    assert '"db_currency":"jpy"' in raw
    assert "transactioncurrencyid" not in raw


def test_money_is_sent_as_exact_json_numbers_never_floats(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_batch(entra, "batch_response__one_failed.txt")
    make_adapter(fake_time).upsert_invoices(
        [invoice("in_1QAbc", amount_due=1_000_000_007, amount_remaining=5, currency="kwd")]
    )
    raw = writes(entra)[0].request.body.decode()
    assert '"db_amountdue":1000000.007' in raw
    assert '"db_amountpaid":0.000' in raw
    assert '"db_amountremaining":0.005' in raw


def test_the_batch_is_multipart_without_a_changeset_and_continues_on_error(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_batch(entra, "batch_response__one_failed.txt")
    make_adapter(fake_time).upsert_invoices(
        [invoice("in_1QAbc"), invoice("in_1QDef"), invoice("x")]
    )
    call = writes(entra)[0]
    assert call.request.headers["Content-Type"].startswith("multipart/mixed; boundary=batch_")
    assert call.request.headers["Prefer"] == "odata.continue-on-error"
    assert b"changeset" not in call.request.body
    assert b"\r\n--batch_" in call.request.body
    assert len(sent_parts(call)) == 3


def test_a_failed_record_in_the_batch_is_reported_and_the_rest_succeed(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_batch(entra, "batch_response__one_failed.txt")
    results = make_adapter(fake_time).upsert_invoices(
        [invoice("in_1QAbc"), invoice("in_1QDef", GONE_ACCOUNT), invoice("in_1QGhi")]
    )
    assert [r.key for r in results] == ["in_1QAbc", "in_1QDef", "in_1QGhi"]
    assert [r.ok for r in results] == [True, False, True]
    assert results[0].crm_id == "8d3c1e7a-0b9f-4c2d-a1e5-6f7a8b9c0d1e"
    assert results[1].error == (f"account With Id = {GONE_ACCOUNT} Does Not Exist (0x80040217)")
    assert results[1].code == "0x80040217"
    assert results[1].retryable is False


def test_records_dataverse_did_not_attempt_are_reported_retryable(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_batch(entra, "batch_response__stopped_at_first_error.txt")
    results = make_adapter(fake_time).upsert_invoices(
        [invoice("in_1QAbc"), invoice("in_1QDef", GONE_ACCOUNT), invoice("in_1QGhi")]
    )
    assert [r.ok for r in results] == [True, False, False]
    assert results[2].retryable is True
    assert results[2].error is not None and "not attempted" in results[2].error


def test_an_invoice_for_an_account_id_that_is_not_a_guid_fails_without_being_sent(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_batch(entra, "batch_response__all_ok.txt")
    results = make_adapter(fake_time).upsert_invoices(
        [invoice("in_1QAbc", account_id="001000000000001"), invoice("in_1QDef"), invoice("in_2")]
    )
    assert results[0].ok is False and results[0].retryable is False
    assert [r.ok for r in results[1:]] == [True, True]
    assert len(sent_parts(writes(entra)[0])) == 2


def test_batches_hold_at_most_batch_size_operations(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_batch(entra, "batch_response__all_ok.txt")
    adapter = make_adapter(fake_time)
    assert adapter.batch_size == 1000
    adapter.batch_size = 2
    results = adapter.upsert_invoices([invoice(f"in_{n}") for n in range(4)])
    assert len(writes(entra)) == 2
    assert [r.ok for r in results] == [True] * 4


def test_account_updates_are_batched_patches_with_money_as_decimals(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_batch(entra, "batch_response__all_ok.txt")
    results = make_adapter(fake_time).update_accounts(
        [
            (
                ACCOUNT_ID,
                {
                    "stripe_customer_id": "cus_R2d2C3po4Bb8",
                    "credit_state": "over_limit",
                    "credit_hold": True,
                    "credit_hold_source": "dealbridge",
                    "open_balance": Money(5_250_075, "usd"),
                    "mrr": Money(1_200_000, "usd"),
                },
            ),
            (OTHER_ACCOUNT, {"credit_note": "Paid in full on 2026-11-20"}),
        ]
    )
    assert [r.ok for r in results] == [True, True]
    assert [r.crm_id for r in results] == [ACCOUNT_ID, OTHER_ACCOUNT]
    call = writes(entra)[0]
    (line, headers, body), (second_line, _, second_body) = sent_parts(call)
    assert line == f"PATCH {API}/accounts({ACCOUNT_ID}) HTTP/1.1"
    assert headers["If-Match"] == "*"
    assert body == {
        "db_stripecustomerid": "cus_R2d2C3po4Bb8",
        "db_creditstate": "over_limit",
        "creditonhold": True,
        "db_creditholdsource": "dealbridge",
        "db_openbalance": 52500.75,
        "db_mrr": 12000,
    }
    assert b'"db_mrr":12000.00' in call.request.body
    assert second_line == f"PATCH {API}/accounts({OTHER_ACCOUNT}) HTTP/1.1"
    assert second_body == {"db_creditnote": "Paid in full on 2026-11-20"}


def test_an_amount_the_currency_column_cannot_hold_is_refused_not_rounded(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    """An organisation whose KWD has 2 decimals (Settings > Currencies, currencyprecision)."""
    two_places = odata("transactioncurrencies.json")
    two_places["body"] = two_places["body"].replace(
        '"currencyprecision": 3', '"currencyprecision": 2'
    )
    entra.replace(responses.GET, CURRENCIES, **two_places)
    serve_batch(entra, "batch_response__all_ok.txt")
    results = make_adapter(fake_time).update_accounts(
        [
            (ACCOUNT_ID, {"mrr": Money(1_005, "kwd")}),
            (OTHER_ACCOUNT, {"mrr": Money(1_010, "kwd")}),
        ]
    )
    assert [r.ok for r in results] == [False, True]
    assert results[0].error is not None
    assert "KWD 1.005 needs 3 decimal places; db_mrr holds 2" in results[0].error
    ((line, _, body),) = sent_parts(writes(entra)[0])
    assert line == f"PATCH {API}/accounts({OTHER_ACCOUNT}) HTTP/1.1"
    assert body == {"db_mrr": 1.01}


def test_account_money_is_written_at_the_precision_of_its_currency(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    """Currency columns follow their row currency's precision: KWD 1.005 fits where the
    organisation gives KWD 3 decimals, yen are whole."""
    serve_batch(entra, "batch_response__all_ok.txt")
    results = make_adapter(fake_time).update_accounts(
        [
            (ACCOUNT_ID, {"mrr": Money(1_005, "kwd")}),
            (OTHER_ACCOUNT, {"mrr": Money(33_333, "jpy"), "net_billing": Money(0, "jpy")}),
        ]
    )
    assert [r.ok for r in results] == [True, True]
    raw = writes(entra)[0].request.body.decode()
    assert '"db_mrr":1.005' in raw and '"db_mrr":33333' in raw


def test_a_batch_refused_as_a_whole_raises_after_retries(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    entra.add(responses.POST, BATCH, status=503)
    with pytest.raises(CrmUnavailable):
        make_adapter(fake_time, max_attempts=2).update_accounts(
            [(ACCOUNT_ID, {"credit_state": "ok"})]
        )


def test_products_are_upserted_by_the_stripe_product_id_key(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    serve_batch(entra, "batch_response__all_ok.txt")
    make_adapter(fake_time).upsert_products(
        [
            ProductRecord("prod_Plat1", "Platform license", "PLAT-1", True, "Per seat"),
            ProductRecord("prod_Work2", "Onboarding workshop", None, False),
        ]
    )
    (line, _, body), (_, _, second) = sent_parts(writes(entra)[0])
    assert line == f"PATCH {API}/products(db_stripeproductid='prod_Plat1') HTTP/1.1"
    assert body == {
        "name": "Platform license",
        "productnumber": "PLAT-1",
        "db_stripeactive": True,
        "description": "Per seat",
    }
    assert second["productnumber"] == "prod_Work2"


def test_changesets_in_a_batch_response_are_flattened_in_order() -> None:
    responses_ = parse_batch_response(
        "multipart/mixed; boundary=batchresponse_7e6d5c4b-3a2f-4e1d-9c8b-7a6f5e4d3c2b",
        fixture_bytes("batch_response__changeset_failed.txt"),
    )
    assert [r.status for r in responses_] == [400, 200]
    assert responses_[0].error() == ("0x80040203", "Invalid argument.")
