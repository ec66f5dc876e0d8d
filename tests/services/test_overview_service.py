"""Mirrors -> overview: which stored rows count towards which figure.

The metric definitions themselves are pinned in tests/domain/test_metrics.py; these tests
pin the mapping from dealbridge's mirror tables to those definitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from connector.crm.base import CrmAccount, CrmUnavailable
from connector.runtime import Runtime
from connector.services import account_metrics, overview
from connector.services.customer_table import customer_table
from connector.services.overview import CustomerRow
from connector.store.models import (
    AccountCredit,
    AccountMetrics,
    CreditNoteMirror,
    CustomerLink,
    InvoiceMirror,
    OutboxMessage,
    PriceMirror,
    ProductMirror,
    RefundMirror,
    SubscriptionMirror,
)

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def _sub(
    sid: str, customer: str, status: str, items: list[tuple[int, int, str, str, int]]
) -> SubscriptionMirror:
    data: dict[str, Any] = {
        "id": sid,
        "customer": customer,
        "status": status,
        "start_date": int(T0.timestamp()),
        "items": {
            "data": [
                {
                    "quantity": qty,
                    "price": {
                        "unit_amount": amount,
                        "currency": currency,
                        "recurring": {"interval": interval, "interval_count": count},
                    },
                }
                for amount, qty, currency, interval, count in items
            ]
        },
    }
    return SubscriptionMirror(
        id=sid, stripe_customer_id=customer, status=status, data=data, created=T0
    )


def _invoice(iid: str, customer: str, status: str, total: int, currency: str = "usd", **kw: Any):  # type: ignore[no-untyped-def]
    remaining = kw.pop("remaining", total if status == "open" else 0)
    return InvoiceMirror(
        id=iid, stripe_customer_id=customer, status=status, currency=currency,
        amount_due=total, amount_paid=total - remaining, amount_remaining=remaining,
        total_excluding_tax=total, created=T0, **kw,
    )  # fmt: skip


def _price(pid: str, **kw: Any) -> PriceMirror:
    return PriceMirror(id=pid, product_id="prod_1", currency="usd", **kw)


class AccountCurrencies:
    """The CRM as account metrics sees it: each account's own currency."""

    def __init__(self, currencies: dict[str, str | None]) -> None:
        self.currencies = currencies
        self.reads: list[str] = []
        #: The ids of each ``get_accounts`` call.
        self.batches: list[list[str]] = []
        self.down = False

    def get_accounts(self, account_ids: Sequence[str]) -> dict[str, CrmAccount]:
        self.batches.append(list(account_ids))
        if self.down:
            raise CrmUnavailable("the CRM is down")
        return {i: self.get_account(i) for i in account_ids if i in self.currencies}

    def get_account(self, account_id: str) -> CrmAccount:
        self.reads.append(account_id)
        return CrmAccount(
            id=account_id, name=account_id, address=None, credit_hold=False, credit_limit=None,
            credit_hold_source=None, stripe_customer_id=None,
            currency=self.currencies[account_id],
        )  # fmt: skip


@pytest.fixture
def crm() -> AccountCurrencies:
    return AccountCurrencies({"acc_a": "usd", "acc_b": "eur", "acc_c": "usd"})


@pytest.fixture
def stored(runtime: Runtime, crm: AccountCurrencies) -> Runtime:
    runtime = Runtime(runtime.config, db=runtime.db, clock=runtime.clock, crm=crm)  # type: ignore[arg-type]
    with runtime.db.session() as s:
        s.add_all(
            [
                CustomerLink(crm_account_id="acc_a", stripe_customer_id="cus_a", source="created"),
                CustomerLink(crm_account_id="acc_b", stripe_customer_id="cus_b", source="created"),
                CustomerLink(crm_account_id="acc_c", stripe_customer_id="cus_c", source="found"),
                # yearly 1,200.00 x 2 -> 200.00/month; quarterly 300.00 -> 100.00/month
                _sub("sub_1", "cus_a", "active", [(120000, 2, "usd", "year", 1)]),
                _sub("sub_2", "cus_a", "past_due", [(30000, 1, "usd", "month", 3)]),
                _sub("sub_3", "cus_b", "canceled", [(99900, 1, "usd", "month", 1)]),
                _sub("sub_4", "cus_b", "active", [(5200, 1, "eur", "week", 1)]),  # 225.33
                _sub("sub_x", "cus_unlinked", "active", [(100, 1, "usd", "month", 1)]),
                _invoice("in_1", "cus_a", "paid", 50000),
                _invoice("in_2", "cus_a", "open", 20000),
                _invoice("in_3", "cus_a", "void", 70000),
                _invoice("in_4", "cus_a", "draft", 80000),
                _invoice("in_5", "cus_b", "uncollectible", 10000, "eur", remaining=10000),
                _invoice("in_6", "cus_b", "paid", 5000, "eur", deleted=True),
                CreditNoteMirror(
                    id="cn_1",
                    stripe_customer_id="cus_a",
                    status="issued",
                    currency="usd",
                    total_excluding_tax=1500,
                    created=T0,
                ),
                CreditNoteMirror(
                    id="cn_2",
                    stripe_customer_id="cus_a",
                    status="void",
                    currency="usd",
                    total_excluding_tax=9999,
                    created=T0,
                ),
                ProductMirror(id="prod_1", name="Platform", active=True),
                ProductMirror(id="prod_2", name="Old", active=False),
                _price("p1", active=True, type="recurring"),
                _price("p2", active=True, type="one_time"),
                _price("p3", active=False, type="recurring"),
            ]
        )
    return runtime


def test_mrr_counts_active_and_past_due_subscriptions_of_linked_customers(stored: Runtime) -> None:
    figures = overview.overview(stored)
    assert figures.currency["usd"].mrr == 20000 + 10000
    assert figures.currency["eur"].mrr == 22533  # 52.00 x 52 / 12, rounded half-up


def test_net_billing_counts_finalized_invoices_minus_credit_notes(stored: Runtime) -> None:
    figures = overview.overview(stored)
    assert figures.currency["usd"].net_billing == 50000 + 20000 - 1500
    assert figures.currency["eur"].net_billing == 10000  # uncollectible counts; deleted not


def test_average_divides_by_every_linked_customer(stored: Runtime) -> None:
    figures = overview.overview(stored)
    assert figures.total_customers == 3
    assert figures.currency["usd"].average_billing_per_customer == 22833  # 68,500 / 3
    assert figures.currency["eur"].average_billing_per_customer == 3333


def test_counts_of_subscriptions_customers_products_and_prices(stored: Runtime) -> None:
    figures = overview.overview(stored)
    assert figures.active_subscriptions == 3
    assert figures.customers_with_active_subscriptions == 2
    assert (figures.total_products, figures.one_time_prices, figures.recurring_prices) == (1, 1, 1)


def test_each_customer_row_has_its_own_figures(stored: Runtime) -> None:
    rows = {r.crm_account_id: r for r in overview.overview(stored).customers}
    assert rows["acc_a"].mrr == {"usd": 30000}
    assert rows["acc_a"].open_balance == {"usd": 20000}
    assert rows["acc_a"].unpaid_invoices == 1
    assert rows["acc_b"].unpaid_invoices == 1  # uncollectible still owed
    assert rows["acc_c"].mrr == {} and rows["acc_c"].net_billing == {}


def test_account_figures_are_queued_for_the_crm_once_until_they_change(stored: Runtime) -> None:
    assert account_metrics.write_account_metrics(stored) == 2  # acc_c has nothing to write
    assert account_metrics.write_account_metrics(stored) == 0
    with stored.db.session() as s:
        s.get(InvoiceMirror, "in_2").status = "paid"  # type: ignore[union-attr]
    assert account_metrics.write_account_metrics(stored) == 1
    with stored.db.session() as s:
        updates = [m.payload for m in s.query(OutboxMessage).filter_by(kind="crm.update_account")]
    last_a = [u for u in updates if u["account_id"] == "acc_a"][-1]["update"]
    assert last_a["mrr"] == {"amount": 30000, "currency": "usd"}
    assert last_a["open_balance"] == {"amount": 0, "currency": "usd"}


@pytest.mark.parametrize(
    "accounts", [{"acc_a"}, {"acc_b"}, {"acc_c"}, {"acc_a", "acc_b"}, {"acc_unknown"}]
)
def test_a_few_accounts_rows_are_the_overviews_rows_of_those_accounts(
    stored: Runtime, accounts: set[str]
) -> None:
    with stored.db.session() as s:  # a refund, a held account and CRM notes count too
        s.add_all(
            [
                _sub("sub_6", "cus_c", "active", [(1000, 1, "usd", "month", 1)]),
                RefundMirror(id="re_1", stripe_customer_id="cus_a", crm_account_id="acc_a",
                             status="succeeded", currency="usd", amount=700, created=T0),
                AccountCredit(crm_account_id="acc_b", on_hold=True, state="on_hold"),
            ]
        )  # fmt: skip
    account_metrics.write_account_metrics(stored)
    whole = {r.crm_account_id: r for r in overview.overview(stored).customers}

    with stored.db.reading() as session:
        rows = overview.customer_rows(stored, session, accounts)

    assert rows == [whole[a] for a in sorted(accounts) if a in whole]


def test_writing_one_accounts_figures_reads_only_its_own_invoices(stored: Runtime) -> None:
    loaded: list[str] = []

    def record(row: InvoiceMirror, _context: Any) -> None:
        loaded.append(row.id)

    sa.event.listen(InvoiceMirror, "load", record)
    try:
        queued = account_metrics.write_account_metrics(stored, only={"acc_b"})
    finally:
        sa.event.remove(InvoiceMirror, "load", record)
    assert queued == 1
    assert sorted(loaded) == ["in_5"]  # acc_b's one invoice that is not deleted


def test_an_account_billed_only_in_another_currency_gets_nothing_and_the_overview_says_why(
    stored: Runtime, crm: AccountCurrencies
) -> None:
    crm.currencies["acc_b"] = "usd"  # billed in EUR only
    assert account_metrics.write_account_metrics(stored) == 1  # acc_a only
    with stored.db.session() as s:
        updates = [m.payload for m in s.query(OutboxMessage).filter_by(kind="crm.update_account")]
    assert [u["account_id"] for u in updates] == ["acc_a"]
    rows = {r.crm_account_id: r for r in overview.overview(stored).customers}
    assert (
        rows["acc_b"].crm_note
        == "figures are in EUR, the account is in USD: not written to the CRM"
    )
    assert any("EUR, the account is in USD" in n for n in overview.overview(stored).notes)


def test_an_account_billed_in_two_currencies_gets_its_own(stored: Runtime) -> None:
    with stored.db.session() as s:
        s.add(_sub("sub_5", "cus_a", "active", [(400000, 1, "jpy", "year", 1)]))
    account_metrics.write_account_metrics(stored)
    with stored.db.session() as s:
        last = s.get(AccountMetrics, "acc_a")
        assert last is not None
        assert (last.currency, last.mrr) == ("usd", 30000)
        assert last.note == "also billed in JPY: not written (the account is in USD)"


def test_the_crm_is_read_again_only_when_figures_change(
    stored: Runtime, crm: AccountCurrencies
) -> None:
    account_metrics.write_account_metrics(stored)
    assert sorted(crm.reads) == ["acc_a", "acc_b"]
    account_metrics.write_account_metrics(stored)
    assert sorted(crm.reads) == ["acc_a", "acc_b"]


def test_the_currencies_of_the_accounts_to_write_are_read_in_one_call(
    stored: Runtime, crm: AccountCurrencies
) -> None:
    assert account_metrics.write_account_metrics(stored) == 2

    assert crm.batches == [["acc_a", "acc_b"]]  # acc_c has nothing billed to write


def test_while_the_crm_is_down_nothing_is_written_and_the_next_run_writes_it(
    stored: Runtime, crm: AccountCurrencies
) -> None:
    crm.down = True
    assert account_metrics.write_account_metrics(stored) == 0
    crm.down = False

    assert account_metrics.write_account_metrics(stored) == 2


def test_an_account_the_crm_no_longer_has_gets_nothing_written(
    stored: Runtime, crm: AccountCurrencies
) -> None:
    del crm.currencies["acc_b"]

    assert account_metrics.write_account_metrics(stored) == 1
    with stored.db.session() as s:
        assert s.get(AccountMetrics, "acc_b") is None


@pytest.mark.parametrize(
    ("mrr", "net", "account", "expected"),
    [
        pytest.param({"jpy": 3_333_300}, {}, "usd", None, id="jpy-figures-usd-account"),
        pytest.param({"usd": 5}, {"jpy": 10**9}, "usd", "usd",
                     id="own-currency-whatever-the-other-amounts"),
        pytest.param({"usd": 5, "eur": 6}, {}, None, None, id="unknown-and-several"),
        pytest.param({"eur": 6}, {}, None, "eur", id="unknown-and-one"),
        pytest.param({}, {}, "usd", "usd", id="nothing-billed-writes-zeros-in-its-own"),
    ],
)  # fmt: skip
def test_the_currency_written_is_the_accounts_own(
    mrr: dict[str, int], net: dict[str, int], account: str | None, expected: str | None
) -> None:
    row = CustomerRow(
        crm_account_id="a", stripe_customer_id="cus_a", name="A", mrr=mrr, net_billing=net,
        open_balance={}, unpaid_invoices=0, credit_state="ok", active_subscriptions=0,
    )  # fmt: skip
    assert account_metrics.decide(row, account).currency == expected


def _row(name: str, mrr: dict[str, int], credit: str = "ok") -> CustomerRow:
    return CustomerRow(
        crm_account_id=name, stripe_customer_id=f"cus_{name}", name=name.title(), mrr=mrr,
        net_billing={}, open_balance={}, unpaid_invoices=0, credit_state=credit,
        active_subscriptions=0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ["acme", "globex", "initech"]),
        ({"sort": "mrr", "descending": True, "currency": "usd"}, ["initech", "acme", "globex"]),
        ({"sort": "mrr", "currency": "eur"}, ["acme", "initech", "globex"]),
        ({"query": "GLOB"}, ["globex"]),
        ({"credit_state": "on_hold"}, ["initech"]),
        ({"sort": "no such column"}, ["acme", "globex", "initech"]),
    ],
    ids=["by name", "by usd mrr desc", "by eur mrr", "name filter", "credit filter", "bad sort"],
)
def test_the_customer_table_sorts_by_one_currency_and_filters(
    kwargs: dict[str, Any], expected: list[str]
) -> None:
    rows = [
        _row("globex", {"eur": 900}),
        _row("acme", {"usd": 500}),
        _row("initech", {"usd": 700}, credit="on_hold"),
    ]
    assert [r.crm_account_id for r in customer_table(rows, **kwargs)] == expected
