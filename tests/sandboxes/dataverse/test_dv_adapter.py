"""The sandbox through dealbridge's real Dynamics adapter (msal + requests over loopback):
what it answers is what the adapter reads, so these tests pin the behaviours the end-to-end
scenarios rely on."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connector.crm.base import (
    CrmNotFound,
    CrmUnavailable,
    InvoiceRecord,
    PriceEntryRecord,
    ProductRecord,
)
from connector.crm.dynamics.adapter import DynamicsAdapter
from connector.crm.dynamics.auth import ClientSecretCredential
from connector.crm.https_rewrite import HttpsRewriteSession
from connector.demo.dataverse import catalog_options
from connector.mappings import load_mapping
from connector.secrets import Secret
from sandboxes.dataverse import DataverseSandbox, Ref

REPO = Path(__file__).resolve().parents[3]


class Sleeps:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def refs(sandbox: DataverseSandbox) -> dict[str, str]:
    return sandbox.ids_by_ref()


def _adapter(sandbox: DataverseSandbox, sleeps: Sleeps, **options: Any) -> DynamicsAdapter:
    mapping = load_mapping(REPO / "mappings" / "dynamics.yaml", "dynamics")
    if "page_size" in options:
        mapping.options["page_size"] = options.pop("page_size")
    return DynamicsAdapter(
        mapping,
        environment_url=sandbox.environment_url,
        tenant_id=sandbox.tenant_id,
        client_id=sandbox.client_id,
        credential=ClientSecretCredential(Secret(sandbox.client_secret)),
        session=HttpsRewriteSession(sandbox.url),
        instance_discovery=False,
        clock=sleeps.clock,
        sleeper=sleeps.sleep,
        **options,
    )


def test_the_sample_org_reads_as_the_same_deal_as_in_salesforce(
    sandbox: DataverseSandbox, refs: dict[str, str], sleeps: Sleeps
) -> None:
    deal = _adapter(sandbox, sleeps).get_deal(refs["globex_licence"])
    assert deal.closed
    assert deal.data["currency"] == "eur"
    assert deal.data["contract_start"] == "2026-12-05"  # today+14d
    assert deal.data["billing_contact"] == {
        "name": "Greta Hoffmann",
        "email": "Greta.Hoffmann@Globex.example",
    }  # the Salesforce "Billing Contact" role, as Dynamics' billing contact lookup
    items = [
        (i["sku"], i["unit_amount"], i["discount_amount"], i["pricing_schedule"])
        for i in deal.data["line_items"]
    ]
    assert items == [
        ("LIC-A", 2200000, None, "annual"),
        ("ANL-S", 275000, None, "semiannual"),
        ("SETUP-01", 230000, 23000, "one_time"),  # the 10 % line discount: 230.00 off the line
    ]


def test_line_items_come_in_pages_through_the_next_link(
    sandbox: DataverseSandbox, refs: dict[str, str], sleeps: Sleeps
) -> None:
    items = (
        _adapter(sandbox, sleeps, page_size=1).get_deal(refs["acme_platform"]).data["line_items"]
    )
    assert len(items) == 4
    assert sandbox.request_count("GET", f"opportunities({refs['acme_platform']})/") == 4


def test_change_tracking_answers_only_what_changed_since_the_delta_link(
    sandbox: DataverseSandbox, refs: dict[str, str], sleeps: Sleeps
) -> None:
    adapter = _adapter(sandbox, sleeps)
    first = adapter.changed_deals(None)
    assert set(first.ids) == {
        refs[r] for r in ("acme_platform", "globex_licence", "umbrella_support", "initech_renewal")
    }
    assert adapter.changed_deals(first.cursor).ids == []
    sandbox.win(refs["stark_pilot"])
    assert adapter.changed_deals(first.cursor).ids == [refs["stark_pilot"]]


def test_without_change_tracking_the_adapter_falls_back_to_modifiedon(
    sandbox: DataverseSandbox, refs: dict[str, str], sleeps: Sleeps
) -> None:
    sandbox.set_change_tracking("opportunity", False)
    changes = _adapter(sandbox, sleeps).changed_deals(None)
    assert changes.cursor == "modifiedon:2026-11-21T09:00:00Z"
    assert len(changes.ids) == 4


def test_an_expired_delta_link_restarts_tracking_with_a_full_read(
    sandbox: DataverseSandbox, refs: dict[str, str], sleeps: Sleeps
) -> None:
    adapter = _adapter(sandbox, sleeps)
    cursor = adapter.changed_deals(None).cursor
    sandbox.expire_delta_links()
    again = adapter.changed_deals(cursor)
    assert len(again.ids) == 4
    assert again.cursor != cursor


def test_writes_in_a_batch_succeed_or_fail_one_by_one(
    sandbox: DataverseSandbox, refs: dict[str, str], sleeps: Sleeps
) -> None:
    def invoice(number: str, account: str) -> InvoiceRecord:
        return InvoiceRecord(
            f"in_{number}", account, refs["acme_platform"], number, "open", 1050, 0, 1050,
            "usd", date(2026, 11, 21), None, None, None, None, None, None, None, "cus_1",
        )  # fmt: skip

    missing = "0e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b"
    results = _adapter(sandbox, sleeps).upsert_invoices(
        [invoice("1", refs["acme"]), invoice("2", missing), invoice("3", refs["acme"])]
    )
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error == f"account With Id = {missing} Does Not Exist (0x80040217)"
    rows = {r["db_invoiceid"]: r for r in sandbox.rows("db_stripeinvoice")}
    assert sorted(rows) == ["in_1", "in_3"]
    assert rows["in_1"]["db_amountdue"] == Decimal("10.50")
    assert rows["in_1"]["db_accountid"] == Ref("account", refs["acme"])
    assert sandbox.request_count("POST", "$batch") == 1


def test_an_invoice_row_takes_the_invoices_currency_and_its_precision(
    sandbox: DataverseSandbox, refs: dict[str, str], sleeps: Sleeps
) -> None:
    """The seed's currencies (USD base, EUR, JPY without decimals) are what the adapter binds:
    a JPY invoice is a JPY row, its Currency columns formatted in yen."""
    currencies = {r["isocurrencycode"]: r for r in sandbox.rows("transactioncurrency")}
    assert {c: r["currencyprecision"] for c, r in currencies.items()} == {
        "USD": 2, "EUR": 2, "JPY": 0,
    }  # fmt: skip
    record = InvoiceRecord(
        "in_jpy", refs["stark"], None, "ST-1", "uncollectible", 33333, 0, 33333,
        "jpy", date(2026, 11, 21), None, None, None, None, None, None, None, "cus_1",
    )  # fmt: skip
    [result] = _adapter(sandbox, sleeps).upsert_invoices([record])
    assert result.ok, result.error
    [row] = sandbox.rows("db_stripeinvoice")
    jpy = currencies["JPY"]["transactioncurrencyid"]
    assert row["transactioncurrencyid"] == Ref("transactioncurrency", jpy)
    assert row["db_amountdue"] == Decimal("33333")
    shown = sandbox.call(
        "GET",
        f"db_stripeinvoices({row['db_stripeinvoiceid']})",
        headers={"Prefer": 'odata.include-annotations="*"'},
        params={"$select": "db_amountdue"},
    )
    assert b"\xc2\xa533,333" in shown.body  # "¥33,333"


def test_an_invoice_in_a_deactivated_currency_is_refused_by_name(
    sandbox: DataverseSandbox, refs: dict[str, str], sleeps: Sleeps
) -> None:
    [jpy] = sandbox.find("transactioncurrency", isocurrencycode="JPY")
    sandbox.update("transactioncurrency", jpy["transactioncurrencyid"], {"statecode": 1})
    record = InvoiceRecord(
        "in_jpy", refs["stark"], None, "ST-1", "open", 33333, 0, 33333,
        "jpy", date(2026, 11, 21), None, None, None, None, None, None, None, "cus_1",
    )  # fmt: skip
    [result] = _adapter(sandbox, sleeps).upsert_invoices([record])
    assert not result.ok
    assert result.error is not None and "no active currency JPY" in result.error
    assert sandbox.rows("db_stripeinvoice") == []


def test_updating_a_deleted_deal_is_not_found_never_an_upsert(
    sandbox: DataverseSandbox, refs: dict[str, str], sleeps: Sleeps
) -> None:
    sandbox.delete("opportunity", refs["acme_platform"])
    with pytest.raises(CrmNotFound, match="Does Not Exist"):
        _adapter(sandbox, sleeps).update_deal(refs["acme_platform"], {"plan_status": "Active"})
    assert sandbox.find("opportunity", opportunityid=refs["acme_platform"]) == []


def test_a_429_is_waited_out_for_the_time_retry_after_asks(
    sandbox: DataverseSandbox, refs: dict[str, str], sleeps: Sleeps
) -> None:
    sandbox.throttle(times=2, retry_after=7)
    account = _adapter(sandbox, sleeps).get_account(refs["initech"])
    assert account.credit_hold
    assert sleeps.pauses == [7, 7]


def test_an_outage_is_retried_then_reported_unavailable(
    sandbox: DataverseSandbox, refs: dict[str, str], sleeps: Sleeps
) -> None:
    sandbox.set_down(True)
    with pytest.raises(CrmUnavailable, match="HTTP 503"):
        _adapter(sandbox, sleeps).get_account(refs["initech"])
    assert sleeps.pauses == [1.0, 2.0, 4.0]


def test_a_revoked_token_is_renewed_once(
    sandbox: DataverseSandbox, refs: dict[str, str], sleeps: Sleeps
) -> None:
    adapter = _adapter(sandbox, sleeps)
    adapter.get_account(refs["acme"])
    sandbox.revoke_tokens()
    assert adapter.get_account(refs["acme"]).name == "Acme Robotics Inc."


def test_a_column_the_table_lacks_is_refused_like_dataverse_does(
    sandbox: DataverseSandbox, refs: dict[str, str], sleeps: Sleeps
) -> None:
    sandbox.drop_column("opportunity", "db_planstatus")
    problems = _adapter(sandbox, sleeps).check_schema()
    assert [p.split(":")[0] for p in problems] == ["deal.writeback.plan_status"]
    with pytest.raises(Exception, match="Invalid property 'db_planstatus'"):
        _adapter(sandbox, sleeps).update_deal(refs["acme_platform"], {"plan_status": "Active"})


def _with_options(
    sandbox: DataverseSandbox, sleeps: Sleeps, options: dict[str, Any]
) -> DynamicsAdapter:
    adapter = _adapter(sandbox, sleeps)
    adapter.options = {**adapter.options, **options}
    return adapter


def test_a_product_without_a_unit_group_is_refused_like_dataverse_does(
    sandbox: DataverseSandbox, refs: dict[str, str], sleeps: Sleeps
) -> None:
    [result] = _adapter(sandbox, sleeps).upsert_products(
        [ProductRecord(stripe_product_id="prod_Seats", name="Seats", sku=None, active=True)]
    )

    assert not result.ok
    assert result.error == "The unit schedule id is missing. (0x80043b0a)"
    assert sandbox.find("product", db_stripeproductid="prod_Seats") == []


def test_a_price_list_item_takes_its_unit_group_and_currency_and_is_updated_in_place(
    sandbox: DataverseSandbox, refs: dict[str, str], sleeps: Sleeps
) -> None:
    adapter = _with_options(sandbox, sleeps, catalog_options(sandbox))
    adapter.upsert_products(
        [ProductRecord(stripe_product_id="prod_Seats", name="Seats", sku=None, active=True)]
    )
    entry = PriceEntryRecord("price_Seat", "prod_Seats", "usd", 900, True)

    adapter.upsert_price_entries([entry])
    [result] = adapter.upsert_price_entries(
        [PriceEntryRecord("price_Seat", "prod_Seats", "usd", 950, True)]
    )

    assert result.ok
    [item] = sandbox.find("productpricelevel", db_stripepriceid="price_Seat")
    assert item["amount"] == Decimal("9.5000")
    assert item["uomscheduleid"] == Ref(
        "uomschedule", catalog_options(sandbox)["product_unit_group_id"]
    )
    usd = sandbox.find("transactioncurrency", isocurrencycode="USD")[0]
    assert item["transactioncurrencyid"] == Ref("transactioncurrency", usd["transactioncurrencyid"])
    assert item["pricingmethodcode"] == 1  # Currency Amount


def test_a_second_price_for_the_same_product_and_unit_is_refused(
    sandbox: DataverseSandbox, refs: dict[str, str], sleeps: Sleeps
) -> None:
    adapter = _with_options(sandbox, sleeps, catalog_options(sandbox))
    adapter.upsert_products(
        [ProductRecord(stripe_product_id="prod_Seats", name="Seats", sku=None, active=True)]
    )

    first, second = adapter.upsert_price_entries(
        [
            PriceEntryRecord("price_Monthly", "prod_Seats", "usd", 900, True),
            PriceEntryRecord("price_Yearly", "prod_Seats", "usd", 9000, True),
        ]
    )

    assert first.ok
    assert not second.ok
    assert "has a price for this price list" in (second.error or "")
    assert len(sandbox.find("productpricelevel")) == 1
