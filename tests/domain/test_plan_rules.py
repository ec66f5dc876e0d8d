"""The billing plan rules, one row per behaviour (see docs/billing-rules.md)."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from connector.domain.deal import (
    AccountRef,
    BillingContact,
    Deal,
    InvalidDeal,
    LineItem,
    PricingSchedule,
)
from connector.domain.money import round_half_up
from connector.domain.plan import (
    BillingPlan,
    InvalidOverrides,
    PlanDefaults,
    PlanOverrides,
    add_months,
    catch_up_lines,
    decimal_unit_amount,
    overrides_from_json,
    overrides_to_json,
    period_boundaries,
    plan_from_json,
    plan_to_json,
    suggest_plan,
)

TODAY = date(2025, 3, 1)
DEFAULTS = PlanDefaults()
ACH = ("us_bank_account", "customer_balance")


def item(
    schedule: PricingSchedule,
    unit_amount: int,
    quantity: int = 1,
    product: str | None = None,
) -> LineItem:
    return LineItem(
        product=product or f"{schedule} item",
        sku=None,
        quantity=quantity,
        unit_amount=unit_amount,
        pricing_schedule=schedule,
    )


def deal(
    *items: LineItem,
    months: int = 12,
    start: date = TODAY,
    terms: str | None = "Net 30",
    method: str | None = "Credit Card",
) -> Deal:
    return Deal(
        id="006D",
        currency="usd",
        contract_start=start,
        contract_months=months,
        payment_terms=terms,
        payment_method=method,
        billing_contact=BillingContact("Ada", "ap@acme.example"),
        account=AccountRef("001A", "Acme"),
        line_items=items,
    )


MONTHLY = item("monthly", 10000)
ANNUAL = item("annual", 120000)
SETUP = item("one_time", 50000, product="Setup fee")


def plan(d: Deal, overrides: PlanOverrides | None = None, today: date = TODAY) -> BillingPlan:
    return suggest_plan(d, DEFAULTS, today, overrides)


def subset(p: BillingPlan, expected: dict[str, Any]) -> dict[str, Any]:
    return {name: getattr(p, name) for name in expected}


# --- Rule 1: invoice type, frequency, periods, conversions, totals ----------------------------

RULE_ROWS = [
    pytest.param(
        deal(ANNUAL, months=36),
        None,
        {
            "invoice_type": "recurring",
            "interval": "year",
            "interval_count": 1,
            "periods": 3,
            "recurring_amount": 120000,
            "one_time_amount": 0,
            "total_amount": 360000,
            "first_invoice_amount": 120000,
            "send_date": None,
            "needs_confirmation": (),
        },
        id="annual-on-36-months-bills-yearly-three-times",
    ),
    pytest.param(
        deal(ANNUAL, months=12),
        None,
        {
            "invoice_type": "one_time",
            "interval": None,
            "interval_count": None,
            "periods": 1,
            "recurring_amount": 0,
            "one_time_amount": 120000,
            "total_amount": 120000,
            "first_invoice_amount": 120000,
            "send_date": TODAY,
        },
        id="annual-on-12-months-is-one-one-time-invoice",
    ),
    pytest.param(
        deal(ANNUAL, months=6),
        None,
        {
            "invoice_type": "one_time",
            "total_amount": 120000,
            "needs_confirmation": ("invoice_type",),
        },
        id="annual-on-shorter-contract-is-one-time-at-full-price-and-asks",
    ),
    pytest.param(
        deal(MONTHLY, months=12),
        None,
        {
            "invoice_type": "recurring",
            "interval": "month",
            "interval_count": 1,
            "periods": 12,
            "recurring_amount": 10000,
            "total_amount": 120000,
            "first_invoice_amount": 10000,
        },
        id="monthly-on-12-months-bills-monthly",
    ),
    pytest.param(
        deal(MONTHLY, months=1),
        None,
        {"invoice_type": "one_time", "total_amount": 10000},
        id="monthly-on-1-month-contract-is-one-time",
    ),
    pytest.param(
        deal(item("quarterly", 30000), months=12),
        None,
        {"interval": "month", "interval_count": 3, "periods": 4, "total_amount": 120000},
        id="quarterly-bills-every-3-months",
    ),
    pytest.param(
        deal(item("quarterly", 30000), months=3),
        None,
        {"invoice_type": "one_time", "total_amount": 30000},
        id="quarterly-on-3-months-is-one-time",
    ),
    pytest.param(
        deal(item("semiannual", 60000), months=24),
        None,
        {"interval": "month", "interval_count": 6, "periods": 4, "total_amount": 240000},
        id="semiannual-bills-every-6-months",
    ),
    pytest.param(
        deal(item("monthly", 10000, quantity=5), months=12),
        None,
        {"recurring_amount": 50000, "total_amount": 600000},
        id="quantity-multiplies-the-unit-amount",
    ),
    pytest.param(
        deal(MONTHLY, ANNUAL, months=24),
        None,
        {
            "interval": "month",
            "periods": 24,
            "recurring_amount": 20000,
            "total_amount": 480000,
            "needs_confirmation": (),
        },
        id="mixed-schedules-bill-at-the-shortest-annual-converted-exactly",
    ),
    pytest.param(
        deal(item("quarterly", 30000), ANNUAL, months=36),
        None,
        {"interval": "month", "interval_count": 3, "periods": 12, "recurring_amount": 60000},
        id="mixed-quarterly-and-annual-bill-quarterly",
    ),
    pytest.param(
        deal(MONTHLY, ANNUAL, months=12),
        None,
        {
            "invoice_type": "recurring",
            "interval": "month",
            "recurring_amount": 10000,
            "one_time_amount": 120000,
            "first_invoice_amount": 130000,
            "total_amount": 240000,
        },
        id="annual-item-as-long-as-contract-is-billed-up-front-beside-monthly",
    ),
    pytest.param(
        deal(MONTHLY, item("annual", 100000), months=24),
        None,
        {
            "recurring_amount": 10000 + 8333,
            "one_time_amount": 8,
            "total_amount": 440000,
            "needs_confirmation": (),
        },
        id="inexact-conversion-bills-the-remainder-on-the-first-invoice",
    ),
    pytest.param(
        deal(MONTHLY, item("annual", 100002), months=24),
        None,
        {
            "recurring_amount": 10000 + 8333,
            "one_time_amount": 12,
            "total_amount": 240000 + 200004,
            "needs_confirmation": (),
        },
        id="conversion-rounds-down-and-the-remainder-makes-the-total-exact",
    ),
    pytest.param(
        deal(item("quarterly", 30000), months=10),
        None,
        {"periods": 4, "total_amount": 120000, "needs_confirmation": ("interval",)},
        id="partial-last-period-asks-to-confirm-interval",
    ),
    pytest.param(
        deal(ANNUAL, months=18),
        None,
        {"interval": "year", "periods": 2, "needs_confirmation": ("interval",)},
        id="annual-on-18-months-two-invoices-last-partial",
    ),
    pytest.param(
        deal(MONTHLY, SETUP, months=12),
        None,
        {
            "invoice_type": "recurring",
            "recurring_amount": 10000,
            "one_time_amount": 50000,
            "first_invoice_amount": 60000,
            "total_amount": 170000,
        },
        id="setup-fee-goes-on-the-first-invoice",
    ),
    pytest.param(
        deal(SETUP, months=12),
        None,
        {"invoice_type": "one_time", "one_time_amount": 50000, "total_amount": 50000},
        id="setup-fee-only-is-a-one-time-bill",
    ),
    pytest.param(
        deal(ANNUAL, SETUP, months=12),
        None,
        {"invoice_type": "one_time", "total_amount": 170000, "first_invoice_amount": 170000},
        id="setup-fee-added-to-the-one-time-bill",
    ),
    # Overrides: another frequency.
    pytest.param(
        deal(MONTHLY, months=24),
        PlanOverrides(interval="year", interval_count=1),
        {"interval": "year", "periods": 2, "recurring_amount": 120000, "total_amount": 240000},
        id="override-monthly-to-yearly",
    ),
    pytest.param(
        deal(ANNUAL, months=36),
        PlanOverrides(interval="month", interval_count=3),
        {"interval": "month", "interval_count": 3, "periods": 12, "recurring_amount": 30000},
        id="override-annual-to-quarterly",
    ),
    pytest.param(
        deal(MONTHLY, months=24),
        PlanOverrides(interval="year"),
        {"interval": "year", "interval_count": 1},
        id="override-interval-without-count-means-count-1",
    ),
    pytest.param(
        deal(ANNUAL, months=12),
        PlanOverrides(interval="month", interval_count=1),
        {"invoice_type": "recurring", "periods": 12, "recurring_amount": 10000},
        id="override-frequency-on-a-one-time-deal-makes-it-recurring",
    ),
    pytest.param(
        deal(MONTHLY, ANNUAL, months=12),
        PlanOverrides(interval="month", interval_count=3),
        {"recurring_amount": 30000, "one_time_amount": 120000},
        id="override-frequency-converts-only-the-recurring-lines",
    ),
    pytest.param(
        deal(MONTHLY, item("annual", 100000), months=24),
        PlanOverrides(interval="month", interval_count=1),
        {"needs_confirmation": ()},
        id="override-interval-removes-interval-from-needs-confirmation",
    ),
    # Overrides: invoice type.
    pytest.param(
        deal(ANNUAL, months=12),
        PlanOverrides(invoice_type="recurring"),
        {"invoice_type": "recurring", "interval": "year", "periods": 1, "total_amount": 120000},
        id="override-recurring-bills-a-contract-long-schedule-on-a-schedule",
    ),
    pytest.param(
        deal(ANNUAL, months=36),
        PlanOverrides(invoice_type="one_time"),
        {
            "invoice_type": "one_time",
            "interval": None,
            "periods": 1,
            "recurring_amount": 0,
            "one_time_amount": 360000,
            "total_amount": 360000,
            "first_invoice_amount": 360000,
            "send_date": TODAY,
        },
        id="override-roll-up-36-month-annual-into-one-bill",
    ),
    pytest.param(
        deal(MONTHLY, SETUP, months=24),
        PlanOverrides(invoice_type="one_time"),
        {"invoice_type": "one_time", "total_amount": 240000 + 50000},
        id="override-roll-up-includes-setup-fees",
    ),
    pytest.param(
        deal(MONTHLY, item("annual", 100000), months=24),
        PlanOverrides(invoice_type="one_time"),
        {"total_amount": 240000 + 200000, "needs_confirmation": ()},
        id="override-roll-up-uses-exact-prices-so-nothing-is-rounded",
    ),
    pytest.param(
        deal(item("quarterly", 30000), months=10),
        PlanOverrides(invoice_type="one_time"),
        {"total_amount": 120000, "needs_confirmation": ("interval",)},
        id="override-roll-up-of-partial-period-still-asks-to-confirm-interval",
    ),
    pytest.param(
        deal(MONTHLY, months=24),
        PlanOverrides(invoice_type="one_time", interval="year"),
        {"invoice_type": "one_time", "interval": None, "total_amount": 240000},
        id="override-roll-up-with-another-frequency-same-total",
    ),
    pytest.param(
        deal(ANNUAL, months=12),
        PlanOverrides(invoice_type="one_time"),
        {"invoice_type": "one_time", "total_amount": 120000},
        id="override-roll-up-of-a-one-time-deal-changes-nothing",
    ),
    # Manual collection keeps the figures.
    pytest.param(
        deal(MONTHLY, SETUP, months=12),
        PlanOverrides(collection="manual"),
        {"collection": "manual", "invoice_type": "recurring", "total_amount": 170000},
        id="manual-collection-keeps-the-figures",
    ),
    pytest.param(
        deal(MONTHLY, months=12),
        None,
        {"collection": "stripe"},
        id="collection-defaults-to-stripe",
    ),
]


@pytest.mark.parametrize(("d", "overrides", "expected"), RULE_ROWS)
def test_invoice_type_frequency_and_totals(
    d: Deal, overrides: PlanOverrides | None, expected: dict[str, Any]
) -> None:
    assert subset(plan(d, overrides), expected) == expected


def test_converted_line_amounts_are_per_billing_period() -> None:
    p = plan(deal(MONTHLY, item("annual", 120000, quantity=2, product="Seats"), months=24))
    seats = next(line for line in p.lines if line.product == "Seats")
    assert (seats.kind, seats.unit_amount, seats.quantity) == ("recurring", 10000, 2)


def test_rolled_up_lines_are_one_time_lines_for_the_whole_contract() -> None:
    p = plan(deal(ANNUAL, months=36), PlanOverrides(invoice_type="one_time"))
    assert [(line.kind, line.unit_amount) for line in p.lines] == [("one_time", 360000)]


def test_setup_fee_is_a_one_time_line_of_a_recurring_plan() -> None:
    p = plan(deal(MONTHLY, SETUP, months=12))
    assert [line.kind for line in p.lines] == ["recurring", "one_time"]


def test_a_note_explains_an_inexact_conversion() -> None:
    p = plan(deal(MONTHLY, item("annual", 100000, product="License"), months=24))
    assert any(
        "License" in n and "USD 83.33 per month" in n and "remaining USD 0.08" in n for n in p.notes
    )


def test_a_note_explains_a_partial_last_period() -> None:
    p = plan(deal(item("quarterly", 30000), months=10))
    assert any("the last one covers only 1 month(s)" in n for n in p.notes)


# --- Rules 2 and 3: payment methods and terms ------------------------------------------------

PAYMENT_ROWS = [
    pytest.param(deal(MONTHLY, method="ACH"), None,
                 {"payment_method_types": ACH, "needs_confirmation": ()}, id="method-ach"),
    pytest.param(deal(MONTHLY, method="Credit Card"), None,
                 {"payment_method_types": ("card",)}, id="method-credit-card"),
    pytest.param(deal(MONTHLY, method="ACH;Credit Card"), None,
                 {"payment_method_types": ("card", *ACH)}, id="method-both"),
    pytest.param(deal(MONTHLY, method=None), None,
                 {"payment_method_types": ("card",),
                  "needs_confirmation": ("payment_method_types",)},
                 id="method-absent-uses-default-and-asks"),
    pytest.param(deal(MONTHLY, method=None),
                 PlanOverrides(payment_method_types=("customer_balance", "card")),
                 {"payment_method_types": ("card", "customer_balance"),
                  "needs_confirmation": ()},
                 id="method-override-in-canonical-order-and-confirmed"),
    pytest.param(deal(MONTHLY, terms="Net 45"), None,
                 {"days_until_due": 45, "needs_confirmation": ()}, id="terms-net-45"),
    pytest.param(deal(MONTHLY, terms="Due on receipt"), None,
                 {"days_until_due": 0}, id="terms-due-on-receipt"),
    pytest.param(deal(MONTHLY, terms=None), None,
                 {"days_until_due": 30, "needs_confirmation": ("days_until_due",)},
                 id="terms-absent-uses-default-and-asks"),
    pytest.param(deal(MONTHLY, terms=None), PlanOverrides(days_until_due=10),
                 {"days_until_due": 10, "needs_confirmation": ()},
                 id="terms-override-confirmed"),
    pytest.param(deal(MONTHLY, terms="Net 30 EOM"), PlanOverrides(days_until_due=30),
                 {"days_until_due": 30}, id="terms-override-replaces-unreadable-terms"),
    pytest.param(deal(MONTHLY, method="Check"), PlanOverrides(payment_method_types=("card",)),
                 {"payment_method_types": ("card",)},
                 id="method-override-replaces-unknown-method"),
]  # fmt: skip


@pytest.mark.parametrize(("d", "overrides", "expected"), PAYMENT_ROWS)
def test_payment_methods_and_terms(
    d: Deal, overrides: PlanOverrides | None, expected: dict[str, Any]
) -> None:
    assert subset(plan(d, overrides), expected) == expected


def test_defaults_come_from_plan_defaults() -> None:
    defaults = PlanDefaults(payment_method_types=("us_bank_account",), days_until_due=15)
    p = suggest_plan(deal(MONTHLY, terms=None, method=None), defaults, TODAY)
    assert (p.payment_method_types, p.days_until_due) == (("us_bank_account",), 15)


@pytest.mark.parametrize(
    ("d", "fields"),
    [
        pytest.param(deal(MONTHLY, terms="Net 30 EOM"), ["payment_terms"], id="bad-terms"),
        pytest.param(deal(MONTHLY, method="Check"), ["payment_method"], id="bad-method"),
        pytest.param(
            deal(MONTHLY, terms="soon", method="Bitcoin"),
            ["payment_method", "payment_terms"],
            id="both-reported-at-once",
        ),
        pytest.param(deal(months=12), ["line_items"], id="no-line-items"),
    ],
)
def test_unreadable_deal_values_raise_invalid_deal(d: Deal, fields: list[str]) -> None:
    with pytest.raises(InvalidDeal) as caught:
        plan(d)
    assert [p.field for p in caught.value.problems] == fields


# --- Rule 4: dates ----------------------------------------------------------------------------

DATE_ROWS = [
    pytest.param(deal(MONTHLY, start=date(2025, 4, 1), months=12), None, TODAY,
                 {"start_date": date(2025, 4, 1), "end_date": date(2026, 4, 1),
                  "send_date": None, "needs_confirmation": ()},
                 id="recurring-starts-at-contract-start-ends-after-contract-months"),
    pytest.param(deal(MONTHLY, start=date(2025, 1, 31), months=1 + 12), None, date(2025, 1, 1),
                 {"end_date": date(2026, 2, 28)},
                 id="end-date-clamps-to-month-end"),
    pytest.param(deal(MONTHLY, start=date(2025, 2, 1)), None, TODAY,
                 {"start_date": date(2025, 2, 1), "needs_confirmation": ("start_date",)},
                 id="recurring-backdated-start-kept-and-asks-to-confirm"),
    pytest.param(deal(MONTHLY, start=date(2025, 2, 1)),
                 PlanOverrides(start_date=date(2025, 3, 15)), TODAY,
                 {"start_date": date(2025, 3, 15), "end_date": date(2026, 3, 15),
                  "needs_confirmation": ()},
                 id="start-date-override-moves-the-end-and-is-confirmed"),
    pytest.param(deal(ANNUAL, start=date(2025, 2, 1)), None, TODAY,
                 {"send_date": TODAY, "start_date": date(2025, 2, 1),
                  "end_date": date(2026, 2, 1), "needs_confirmation": ()},
                 id="one-time-sends-today-and-a-past-start-needs-nothing"),
    pytest.param(deal(ANNUAL), PlanOverrides(send_date=date(2025, 3, 20)), TODAY,
                 {"send_date": date(2025, 3, 20)},
                 id="one-time-send-date-override"),
    pytest.param(deal(ANNUAL), PlanOverrides(send_date=TODAY), TODAY,
                 {"send_date": TODAY}, id="one-time-send-date-today-is-allowed"),
    pytest.param(deal(MONTHLY), PlanOverrides(send_date=date(2025, 3, 20)), TODAY,
                 {"send_date": None}, id="send-date-ignored-for-recurring-plans"),
]  # fmt: skip


@pytest.mark.parametrize(("d", "overrides", "today", "expected"), DATE_ROWS)
def test_dates(
    d: Deal, overrides: PlanOverrides | None, today: date, expected: dict[str, Any]
) -> None:
    assert subset(plan(d, overrides, today), expected) == expected


def test_a_past_start_note_says_what_is_caught_up() -> None:
    p = plan(deal(MONTHLY, start=date(2025, 1, 1)))
    assert any(
        "2 month(s) from 2025-01-01 to 2025-03-01 have already passed" in n
        and "catch-up (USD 200.00)" in n
        for n in p.notes
    )


# --- needs_confirmation as a whole -----------------------------------------------------------


def test_needs_confirmation_lists_everything_not_derived_in_a_stable_order() -> None:
    d = deal(item("quarterly", 30000), months=10, start=date(2025, 1, 1), terms=None, method=None)
    assert plan(d).needs_confirmation == (
        "payment_method_types",
        "days_until_due",
        "interval",
        "start_date",
    )


def test_a_fully_specified_deal_needs_no_confirmation() -> None:
    assert plan(deal(MONTHLY, ANNUAL, SETUP, months=24)).needs_confirmation == ()


def test_supplied_overrides_clear_every_confirmation() -> None:
    d = deal(item("quarterly", 30000), months=10, start=date(2025, 1, 1), terms=None, method=None)
    overrides = PlanOverrides(
        interval="month",
        interval_count=3,
        payment_method_types=("card",),
        days_until_due=30,
        start_date=TODAY,
    )
    assert plan(d, overrides).needs_confirmation == ()


# --- overrides that cannot apply -------------------------------------------------------------


@pytest.mark.parametrize(
    ("d", "overrides", "field"),
    [
        pytest.param(deal(ANNUAL), PlanOverrides(send_date=date(2025, 2, 28)), "send_date",
                     id="send-date-in-the-past"),
        pytest.param(deal(SETUP), PlanOverrides(invoice_type="recurring"), "invoice_type",
                     id="recurring-with-nothing-scheduled"),
        pytest.param(deal(SETUP), PlanOverrides(interval="month"), "interval",
                     id="frequency-with-nothing-scheduled"),
        pytest.param(deal(MONTHLY), PlanOverrides(interval="month", interval_count=2),
                     "interval_count", id="unsupported-frequency-built-in-code"),
        pytest.param(deal(MONTHLY), PlanOverrides(days_until_due=400), "days_until_due",
                     id="days-until-due-too-long-built-in-code"),
        pytest.param(deal(MONTHLY), PlanOverrides(payment_method_types=()),
                     "payment_method_types", id="no-payment-methods-built-in-code"),
    ],
)  # fmt: skip
def test_overrides_that_cannot_apply_raise_invalid_overrides(
    d: Deal, overrides: PlanOverrides, field: str
) -> None:
    with pytest.raises(InvalidOverrides) as caught:
        plan(d, overrides)
    assert [p.field for p in caught.value.problems] == [field]


# --- overrides JSON --------------------------------------------------------------------------


def test_overrides_from_json_reads_every_field() -> None:
    assert overrides_from_json(
        {
            "invoice_type": "one_time",
            "interval": "month",
            "interval_count": 3,
            "payment_method_types": ["customer_balance", "us_bank_account"],
            "days_until_due": 45,
            "send_date": "2025-03-20",
            "start_date": "2025-04-01",
            "collection": "manual",
        }
    ) == PlanOverrides(
        invoice_type="one_time",
        interval="month",
        interval_count=3,
        payment_method_types=("us_bank_account", "customer_balance"),
        days_until_due=45,
        send_date=date(2025, 3, 20),
        start_date=date(2025, 4, 1),
        collection="manual",
    )


@pytest.mark.parametrize(
    "data",
    [pytest.param({}, id="empty"), pytest.param({"days_until_due": None}, id="nulls")],
)
def test_absent_or_null_overrides_change_nothing(data: dict[str, Any]) -> None:
    assert overrides_from_json(data) == PlanOverrides()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        pytest.param({"invoice_type": "weekly"}, "invoice_type", "use recurring or one_time",
                     id="unknown-invoice-type"),
        pytest.param({"interval": "week"}, "interval", "use month or year",
                     id="unknown-interval"),
        pytest.param({"interval": "month", "interval_count": 2}, "interval_count",
                     "month/1, month/3, month/6 or year/1", id="month-2-not-allowed"),
        pytest.param({"interval": "year", "interval_count": 2}, "interval_count",
                     "not a frequency dealbridge bills at", id="year-2-not-allowed"),
        pytest.param({"interval_count": 3}, "interval", "is needed with interval_count",
                     id="count-without-interval"),
        pytest.param({"interval": "month", "interval_count": "3"}, "interval_count",
                     "must be a whole number", id="count-as-text"),
        pytest.param({"days_until_due": -1}, "days_until_due", "from 0 to 365",
                     id="negative-days"),
        pytest.param({"days_until_due": 366}, "days_until_due", "from 0 to 365",
                     id="days-over-a-year"),
        pytest.param({"days_until_due": 30.5}, "days_until_due", "must be a whole number",
                     id="fractional-days"),
        pytest.param({"days_until_due": True}, "days_until_due", "must be a whole number",
                     id="boolean-days"),
        pytest.param({"payment_method_types": []}, "payment_method_types",
                     "choose at least one", id="no-payment-methods"),
        pytest.param({"payment_method_types": ["card", "paypal"]}, "payment_method_types",
                     "'paypal' not allowed", id="unknown-payment-method"),
        pytest.param({"payment_method_types": "card"}, "payment_method_types",
                     "must be a list", id="payment-methods-not-a-list"),
        pytest.param({"send_date": "03/20/2025"}, "send_date", "expected YYYY-MM-DD",
                     id="send-date-wrong-format"),
        pytest.param({"start_date": "2025-02-30"}, "start_date", "not a real calendar date",
                     id="start-date-impossible"),
        pytest.param({"start_date": 20250401}, "start_date", "expected YYYY-MM-DD",
                     id="start-date-number"),
        pytest.param({"collection": "auto"}, "collection", "use stripe or manual",
                     id="unknown-collection"),
        pytest.param({"days_due": 30}, "days_due", "is not something that can be changed",
                     id="unknown-field-refused"),
    ],
)  # fmt: skip
def test_each_bad_override_is_named(data: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidOverrides) as caught:
        overrides_from_json(data)
    assert [p.field for p in caught.value.problems] == [field]
    assert message in caught.value.problems[0].message


def test_all_bad_overrides_are_reported_at_once() -> None:
    with pytest.raises(InvalidOverrides) as caught:
        overrides_from_json({"invoice_type": "x", "days_until_due": -1, "collection": "y"})
    assert [p.field for p in caught.value.problems] == [
        "invoice_type",
        "days_until_due",
        "collection",
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(PlanOverrides(), id="nothing"),
        pytest.param(
            PlanOverrides(
                invoice_type="recurring",
                interval="month",
                interval_count=6,
                payment_method_types=("card",),
                days_until_due=0,
                send_date=date(2025, 3, 2),
                start_date=date(2025, 3, 3),
                collection="stripe",
            ),
            id="everything",
        ),
    ],
)
def test_overrides_json_round_trip(overrides: PlanOverrides) -> None:
    assert overrides_from_json(overrides_to_json(overrides)) == overrides


def test_overrides_to_json_omits_unchanged_fields() -> None:
    assert overrides_to_json(PlanOverrides(days_until_due=10)) == {"days_until_due": 10}


# --- plan JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("d", "overrides"),
    [
        pytest.param(deal(MONTHLY, ANNUAL, SETUP, months=24), None, id="recurring"),
        pytest.param(deal(ANNUAL), None, id="one-time"),
        pytest.param(deal(MONTHLY, terms=None, method=None, start=date(2025, 1, 1)), None,
                     id="with-confirmations"),
        pytest.param(deal(MONTHLY), PlanOverrides(collection="manual"), id="manual"),
    ],
)  # fmt: skip
def test_plan_json_round_trip(d: Deal, overrides: PlanOverrides | None) -> None:
    p = plan(d, overrides)
    assert plan_from_json(plan_to_json(p)) == p


def test_plan_json_dates_are_iso_strings() -> None:
    data = plan_to_json(plan(deal(ANNUAL)))
    assert (data["start_date"], data["send_date"]) == ("2025-03-01", "2025-03-01")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"total_amount": "170000"}, id="amount-as-text"),
        pytest.param({"invoice_type": "weekly"}, id="unknown-invoice-type"),
        pytest.param({"start_date": "soon"}, id="bad-date"),
    ],
)
def test_plan_from_json_refuses_malformed_plans(change: dict[str, Any]) -> None:
    data = plan_to_json(plan(deal(MONTHLY))) | change
    with pytest.raises(ValueError):
        plan_from_json(data)


def test_plan_from_json_refuses_missing_fields() -> None:
    data = plan_to_json(plan(deal(MONTHLY)))
    del data["currency"]
    with pytest.raises(ValueError, match="not a billing plan"):
        plan_from_json(data)


# --- add_months ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        pytest.param(date(2025, 1, 31), 1, date(2025, 2, 28), id="jan-31-to-feb-28"),
        pytest.param(date(2024, 1, 31), 1, date(2024, 2, 29), id="leap-year-feb-29"),
        pytest.param(date(2025, 3, 31), 1, date(2025, 4, 30), id="31-to-30-day-month"),
        pytest.param(date(2025, 8, 31), 6, date(2026, 2, 28), id="across-year-clamped"),
        pytest.param(date(2025, 11, 15), 2, date(2026, 1, 15), id="december-wrap"),
        pytest.param(date(2025, 3, 1), 12, date(2026, 3, 1), id="one-year"),
        pytest.param(date(2025, 3, 1), 36, date(2028, 3, 1), id="three-years"),
        pytest.param(date(2025, 3, 1), 0, date(2025, 3, 1), id="zero"),
        pytest.param(date(2025, 3, 31), -1, date(2025, 2, 28), id="negative"),
    ],
)
def test_add_months(start: date, months: int, end: date) -> None:
    assert add_months(start, months) == end


# --- invariants over many deals (property-style, no hypothesis) ------------------------------

SCHEDULES: list[PricingSchedule] = ["one_time", "monthly", "quarterly", "semiannual", "annual"]
AMOUNTS = [0, 1, 9999, 100000]


def _grid() -> list[tuple[Deal, PlanOverrides | None]]:
    cases: list[tuple[Deal, PlanOverrides | None]] = []
    for months in (1, 3, 5, 12, 13, 24, 36):
        for first, second in itertools.combinations_with_replacement(SCHEDULES, 2):
            for amount in AMOUNTS:
                d = deal(item(first, amount, 3), item(second, amount + 7), months=months)
                cases.append((d, None))
                cases.append((d, PlanOverrides(invoice_type="one_time")))
    return cases


def test_plan_invariants_hold_for_many_deals() -> None:
    for d, overrides in _grid():
        p = plan(d, overrides)
        recurring = sum(line.amount for line in p.lines if line.kind == "recurring")
        one_time = sum(line.amount for line in p.lines if line.kind == "one_time")
        context = (d, overrides, p)
        assert p.recurring_amount == recurring, context
        assert p.one_time_amount == one_time, context
        if p.invoice_type == "recurring":
            assert p.interval is not None and p.interval_count is not None, context
            assert p.total_amount == recurring * p.periods + one_time, context
            assert p.first_invoice_amount == recurring + one_time, context
            assert len(p.invoices) == p.periods, context
            assert p.send_date is None, context
        else:
            assert (p.interval, p.interval_count, p.periods, p.recurring_amount) == (
                None,
                None,
                1,
                0,
            ), context
            assert p.total_amount == p.first_invoice_amount == one_time, context
            assert p.send_date == TODAY, context
        assert p.end_date == add_months(p.start_date, d.contract_months), context
        assert len(set(p.needs_confirmation)) == len(p.needs_confirmation), context
        assert sum(i.amount for i in p.invoices) == p.total_amount, context
        assert plan_from_json(plan_to_json(p)) == p, context


def test_rolling_up_an_exact_plan_keeps_the_contract_total() -> None:
    for d, overrides in _grid():
        if overrides is not None:
            continue
        p = plan(d)
        if p.invoice_type != "recurring" or "interval" in p.needs_confirmation:
            continue
        rolled = plan(d, PlanOverrides(invoice_type="one_time"))
        assert rolled.total_amount == p.total_amount, (d, p, rolled)


def test_plans_are_frozen() -> None:
    p = plan(deal(MONTHLY))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.total_amount = 0  # type: ignore[misc]


# --- issue 14: the stated total is the billed total ------------------------------------------


def _jpy(d: Deal) -> Deal:
    return dataclasses.replace(d, currency="jpy")


#: (deal, overrides, today, expected figures): the figures of issue 14's "Why", each billed
#: to the minor unit over the whole contract.
EXACT_ROWS = [
    pytest.param(
        deal(item("monthly", 100000), months=2), None, TODAY,
        {"total_amount": 200000, "invoice_amounts": [100000, 100000],
         "billed_through": date(2025, 5, 1), "needs_confirmation": ()},
        id="2-months-at-1000-bill-2000",
    ),
    pytest.param(
        deal(item("annual", 120000), months=24), None, TODAY,
        {"total_amount": 240000, "invoice_amounts": [120000, 120000],
         "billed_through": date(2027, 3, 1), "needs_confirmation": ()},
        id="24-months-annual-1200-bill-2400",
    ),
    pytest.param(
        deal(item("annual", 100000, quantity=10), months=24), PlanOverrides(interval="month"),
        TODAY,
        {"total_amount": 2000000, "invoice_amounts": [83333 + 8] + [83333] * 23,
         "needs_confirmation": ()},
        id="annual-1000-x10-monthly-over-24-months-bills-20000",
    ),
    pytest.param(
        deal(item("annual", 10006), months=24), PlanOverrides(interval="month"), TODAY,
        {"total_amount": 20012, "invoice_amounts": [833 + 20] + [833] * 23,
         "needs_confirmation": ()},
        id="annual-100.06-monthly-over-24-months-bills-200.12",
    ),
    pytest.param(
        _jpy(deal(item("annual", 100000), months=36)), PlanOverrides(interval="month"), TODAY,
        {"total_amount": 300000, "invoice_amounts": [8333 + 12] + [8333] * 35,
         "needs_confirmation": ()},
        id="jpy-100000-annual-monthly-over-36-months-bills-300000",
    ),
    pytest.param(
        deal(item("monthly", 10000), months=12, start=date(2025, 1, 1)), None, TODAY,
        {"total_amount": 120000, "catch_up_periods": 2,
         "invoice_amounts": [30000] + [10000] * 9, "needs_confirmation": ("start_date",)},
        id="started-two-months-ago-bills-all-12-months-and-asks",
    ),
    pytest.param(
        deal(item("monthly", 10000), months=12, start=date(2025, 1, 1)),
        PlanOverrides(start_date=TODAY), TODAY,
        {"total_amount": 120000, "catch_up_periods": 0, "end_date": date(2026, 3, 1),
         "invoice_amounts": [10000] * 12, "needs_confirmation": ()},
        id="started-in-the-past-moved-to-today-by-the-rep",
    ),
    pytest.param(
        deal(item("monthly", 10000), months=12, start=date(2025, 1, 1)),
        PlanOverrides(confirmed=("start_date",)), TODAY,
        {"catch_up_periods": 2, "needs_confirmation": ()},
        id="started-in-the-past-backdating-confirmed",
    ),
    pytest.param(
        deal(item("monthly", 10000), months=12, start=date(2025, 2, 15)), None, TODAY,
        {"catch_up_periods": 0, "invoice_amounts": [10000] * 12,
         "needs_confirmation": ("start_date",)},
        id="started-within-the-first-month-bills-it-in-full-and-asks",
    ),
    pytest.param(
        deal(item("quarterly", 30000), months=10), None, TODAY,
        {"periods": 4, "total_amount": 120000, "billed_through": date(2026, 3, 1),
         "needs_confirmation": ("interval",)},
        id="partial-last-quarter-bills-a-full-quarter-until-its-end-and-asks",
    ),
    pytest.param(
        deal(item("monthly", 10000), item("quarterly", 30000), months=7), None, TODAY,
        {"total_amount": 140000, "needs_confirmation": ("interval",)},
        id="term-not-a-whole-number-of-price-periods-asks",
    ),
    pytest.param(
        deal(item("annual", 120000), months=6), None, TODAY,
        {"total_amount": 120000, "needs_confirmation": ("invoice_type",)},
        id="price-period-longer-than-the-contract-asks",
    ),
    pytest.param(
        deal(item("annual", 120000), months=6), PlanOverrides(confirmed=("invoice_type",)),
        TODAY, {"total_amount": 120000, "needs_confirmation": ()},
        id="price-period-longer-than-the-contract-confirmed",
    ),
    pytest.param(
        deal(item("monthly", 0), months=12), None, TODAY,
        {"total_amount": 0, "needs_confirmation": ("amount",)},
        id="zero-amount-asks",
    ),
    pytest.param(
        deal(item("monthly", 10000), item("one_time", 0, product="Free onboarding"), months=12),
        None, TODAY,
        {"total_amount": 120000, "needs_confirmation": ("amount",)},
        id="a-zero-line-asks",
    ),
    pytest.param(
        deal(item("monthly", 10000), SETUP, months=12), None, TODAY,
        {"total_amount": 170000, "invoice_amounts": [60000] + [10000] * 11},
        id="setup-fee-on-the-first-invoice-of-the-schedule",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("d", "overrides", "today", "expected"), EXACT_ROWS)
def test_the_invoice_schedule_bills_the_stated_total(
    d: Deal, overrides: PlanOverrides | None, today: date, expected: dict[str, Any]
) -> None:
    p = plan(d, overrides, today)
    got = {
        name: [i.amount for i in p.invoices] if name == "invoice_amounts" else getattr(p, name)
        for name in expected
    }
    assert got == expected
    assert sum(i.amount for i in p.invoices) == p.total_amount
    assert p.first_invoice_amount == p.invoices[0].amount


def test_a_past_start_bills_its_catch_up_on_the_first_invoice_dated_today() -> None:
    p = plan(deal(item("monthly", 10000), months=12, start=date(2025, 1, 10)), today=TODAY)
    assert p.catch_up_periods == 1
    assert [(i.date, i.amount) for i in p.invoices[:2]] == [
        (TODAY, 20000),
        (date(2025, 3, 10), 10000),
    ]
    assert p.invoices[-1].date == date(2025, 12, 10)


def test_a_contract_already_over_cannot_be_a_subscription() -> None:
    with pytest.raises(InvalidOverrides) as caught:
        plan(deal(item("monthly", 10000), months=2, start=date(2024, 12, 1)))
    assert [p.field for p in caught.value.problems] == ["start_date"]
    assert "nothing left to bill on a schedule" in caught.value.problems[0].message


def test_a_unit_price_that_is_not_whole_uses_unit_amount_decimal() -> None:
    p = plan(deal(item("annual", 100000, quantity=10), months=24), PlanOverrides(interval="month"))
    line = p.lines[0]
    assert (line.unit_amount_decimal, line.quantity, line.amount) == ("8333.3", 10, 83333)
    remainder = p.lines[1]
    assert (remainder.kind, remainder.amount) == ("one_time", 8)
    assert remainder.product == "annual item: rounding remainder"


@pytest.mark.parametrize(
    ("amount", "quantity"), [(100, 3), (83333, 10), (1, 7), (999_999_999, 13), (5, 5)]
)
def test_decimal_unit_prices_give_back_the_line_amount(amount: int, quantity: int) -> None:
    text = decimal_unit_amount(Fraction(amount, quantity))
    assert len(text.partition(".")[2]) <= 12
    assert round_half_up(Fraction(Decimal(text)) * quantity) == amount


def test_a_crm_line_discount_is_a_stripe_discount_not_a_fractional_price() -> None:
    discounted = dataclasses.replace(item("monthly", 9999), discount_percent=Decimal("10"))
    p = plan(deal(discounted, months=12))
    line = p.lines[0]
    assert (line.unit_amount, line.unit_amount_decimal) == (9999, None)
    assert (line.discount_amount, line.amount) == (1000, 8999)
    assert p.total_amount == 107989  # 12 x 89.991 = 1,079.892, rounded once
    assert p.needs_confirmation == ("amount",)
    assert line.discount_note is not None and "10% line discount" in line.discount_note


@pytest.mark.parametrize(
    ("line", "off", "interval", "billed", "discount", "total"),
    [
        # Dynamics 365's manualdiscountamount: an amount off the whole line per pricing period.
        pytest.param(item("monthly", 9999), 1000, None, 8999, 1000, 12 * 8999,
                     id="monthly-line-10.00-off-each-month"),
        pytest.param(item("monthly", 10000, quantity=3), 2500, None, 27500, 2500, 12 * 27500,
                     id="the-amount-is-for-the-whole-line-not-each-unit"),
        # 1,200.00 a year less 100.00 a year, billed monthly: 91.666… a month, 91.66 billed
        # with the remaining 0.08 of 12 months on the first invoice: exactly 1,100.00.
        pytest.param(item("annual", 120000), 10000, "month", 9166, 834, 110000,
                     id="an-annual-discount-converted-with-its-line"),
        pytest.param(item("one_time", 230000), 23000, None, 207000, 23000, 207000,
                     id="a-setup-fee-less-230.00"),
    ],
)  # fmt: skip
def test_a_crm_line_discount_amount_is_a_stripe_discount_billed_exactly(
    line: LineItem, off: int, interval: str | None, billed: int, discount: int, total: int
) -> None:
    discounted = dataclasses.replace(line, discount_amount=off)
    p = plan(deal(discounted, months=12), PlanOverrides(interval=interval))
    first = p.lines[0]
    assert (first.amount, first.discount_amount) == (billed, discount)
    assert sum(i.amount for i in p.invoices) == p.total_amount == total
    assert "amount" not in p.needs_confirmation
    assert first.discount_note is not None and "line discount from the CRM" in first.discount_note


def test_a_line_discount_amount_is_named_as_the_crm_gave_it() -> None:
    discounted = dataclasses.replace(item("annual", 120000), discount_amount=10000)
    p = plan(deal(discounted, months=24), PlanOverrides(interval="month"))
    note = p.lines[0].discount_note
    assert note is not None
    assert note.startswith("annual item: USD 100.00 per annual period line discount from the CRM")


def test_catch_up_lines_bill_the_elapsed_periods_of_each_recurring_line() -> None:
    discounted = dataclasses.replace(item("monthly", 9999, quantity=3), discount_percent=10)
    p = plan(deal(discounted, SETUP, months=12, start=date(2025, 1, 1)))
    (line,) = catch_up_lines(p, 2)
    assert (line.kind, line.quantity, line.gross_amount) == ("one_time", 3, 2 * 3 * 9999)
    assert line.discount_amount == 2 * p.lines[0].discount_amount
    assert "catch-up" in line.product
    assert catch_up_lines(p, 0) == ()


def test_confirming_an_unknown_name_is_refused() -> None:
    with pytest.raises(InvalidOverrides) as caught:
        overrides_from_json({"confirmed": ["everything"]})
    assert [p.field for p in caught.value.problems] == ["confirmed"]


@pytest.mark.parametrize(
    ("start", "today", "expected"),
    [
        pytest.param(date(2025, 1, 31), date(2025, 1, 1),
                     [date(2025, 1, 31), date(2025, 2, 28), date(2025, 3, 31), date(2025, 4, 30)],
                     id="a-schedule-counts-every-boundary-from-the-start"),
        pytest.param(date(2025, 1, 31), date(2025, 1, 31),
                     [date(2025, 1, 31), date(2025, 2, 28), date(2025, 3, 28), date(2025, 4, 28)],
                     id="a-subscription-renews-on-its-anchors-day"),
        pytest.param(date(2025, 1, 15), date(2025, 3, 1),
                     [date(2025, 1, 15), date(2025, 2, 15), date(2025, 3, 15), date(2025, 4, 15)],
                     id="elapsed-and-anchor-from-the-start"),
    ],
)  # fmt: skip
def test_period_boundaries_are_the_ones_stripe_bills_on(
    start: date, today: date, expected: list[date]
) -> None:
    assert period_boundaries(start, 1, 3, today) == expected


def test_a_month_end_start_bills_full_periods_until_stripes_last_boundary() -> None:
    p = plan(deal(item("monthly", 10000), months=12, start=date(2025, 1, 31)),
             today=date(2025, 1, 31))  # fmt: skip
    assert p.billed_through == date(2026, 1, 28)
    assert [i.date for i in p.invoices[:3]] == [
        date(2025, 1, 31),
        date(2025, 2, 28),
        date(2025, 3, 28),
    ]
    assert p.total_amount == sum(i.amount for i in p.invoices) == 120000
    assert any("renews on the day of the month" in n for n in p.notes)
