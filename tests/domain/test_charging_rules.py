"""Automatic charging, trials and deal discounts (``domain/charging`` and rules 7-9 of
``domain/plan``): tables of cases, no store."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from connector.domain.charging import (
    CustomerPayment,
    PaymentMethodOnFile,
    amendment_problems,
    customer_payment_from_json,
    customer_payment_from_stripe,
    customer_payment_to_json,
    decide_collection,
    percent_off_line,
)
from connector.domain.deal import InvalidDeal, parse_deal, parse_payment_collection
from connector.domain.plan import PlanDefaults, plan_from_json, plan_to_json, suggest_plan
from tests.domain.builders import deal_json, line_item

TODAY = date(2026, 12, 6)
CARD = PaymentMethodOnFile("pm_card", "card", "visa •••• 4242")
BANK = PaymentMethodOnFile("pm_bank", "us_bank_account", "STRIPE TEST BANK •••• 6789")
LINK = PaymentMethodOnFile("pm_link", "link", "link")
CHARGE = "Charge automatically"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("  ", None),
        ("Charge automatically", "charge_automatically"),
        ("AUTOMATIC", "charge_automatically"),
        ("autopay", "charge_automatically"),
        ("Send invoice", "send_invoice"),
        ("invoice", "send_invoice"),
    ],
)
def test_payment_collection_is_read_from_the_crm_text(text: str | None, expected: Any) -> None:
    assert parse_payment_collection(text) == expected


def test_unreadable_payment_collection_is_refused_not_guessed() -> None:
    with pytest.raises(ValueError, match="'Charge when convenient' is not understood"):
        parse_payment_collection("Charge when convenient")


@pytest.mark.parametrize(
    ("asked", "payment", "types", "method", "fallback"),
    [
        pytest.param(
            None, CustomerPayment(True, CARD), ("card",), "send_invoice", None, id="not-asked"
        ),
        pytest.param(
            "Send invoice",
            CustomerPayment(True, CARD),
            ("card",),
            "send_invoice",
            None,
            id="asked-invoice",
        ),
        pytest.param(
            CHARGE, CustomerPayment(True, CARD), ("card",), "charge_automatically", None, id="card"
        ),
        pytest.param(
            CHARGE,
            CustomerPayment(True, BANK),
            ("us_bank_account", "customer_balance"),
            "charge_automatically",
            None,
            id="bank",
        ),
        pytest.param(
            CHARGE, CustomerPayment(), ("card",), "send_invoice", "not linked yet", id="unchecked"
        ),
        pytest.param(
            CHARGE,
            CustomerPayment(True),
            ("card",),
            "send_invoice",
            "no payment method on file",
            id="none",
        ),
        pytest.param(
            CHARGE,
            CustomerPayment(True, None, "it has 2 and none is the default"),
            ("card",),
            "send_invoice",
            "2 and none is the default",
            id="several",
        ),
        pytest.param(
            CHARGE,
            CustomerPayment(True, LINK),
            ("card",),
            "send_invoice",
            "which dealbridge does not charge",
            id="not-chargeable",
        ),
        pytest.param(
            CHARGE,
            CustomerPayment(True, CARD),
            ("us_bank_account",),
            "send_invoice",
            "not one of the plan's payment methods",
            id="type-not-allowed",
        ),
    ],
)
def test_automatic_charging_needs_a_chargeable_method_on_file(
    asked: str | None,
    payment: CustomerPayment,
    types: tuple[str, ...],
    method: str,
    fallback: str | None,
) -> None:
    decision = decide_collection(asked, payment, types)
    assert decision.collection_method == method
    assert decision.needs_confirmation is (fallback is not None)
    if fallback is not None:
        assert decision.note is not None and fallback in decision.note
        assert "send_invoice" in decision.note and decision.payment_method is None
    elif method == "charge_automatically":
        assert decision.payment_method == payment.method


@pytest.mark.parametrize(
    ("default", "attached", "expected_id", "source", "why"),
    [
        (
            "pm_1",
            [
                {"id": "pm_1", "type": "card", "card": {"brand": "visa", "last4": "4242"}},
                {"id": "pm_2", "type": "card"},
            ],
            "pm_1",
            "default",
            None,
        ),
        (
            None,
            [
                {
                    "id": "pm_2",
                    "type": "us_bank_account",
                    "us_bank_account": {"bank_name": "B", "last4": "6789"},
                }
            ],
            "pm_2",
            "only_attached",
            None,
        ),
        (
            None,
            [{"id": "pm_1", "type": "card"}, {"id": "pm_2", "type": "card"}],
            None,
            None,
            "2 payment methods and none is the default",
        ),
        (None, [], None, None, None),
        ("pm_gone", [], None, None, None),  # a default that is no longer attached
    ],
)
def test_the_method_on_file_is_the_default_or_the_only_one(
    default: str | None,
    attached: list[dict[str, Any]],
    expected_id: str | None,
    source: str | None,
    why: str | None,
) -> None:
    payment = customer_payment_from_stripe(default, attached)
    assert payment.checked
    assert (payment.method.id if payment.method else None) == expected_id
    assert (payment.method.source if payment.method else None) == source
    assert payment.why_none == why or (why is not None and why in (payment.why_none or ""))
    assert customer_payment_from_json(customer_payment_to_json(payment)) == payment


def test_the_label_names_the_card_or_bank() -> None:
    card = customer_payment_from_stripe(
        None, [{"id": "pm_1", "type": "card", "card": {"brand": "visa", "last4": "4242"}}]
    )
    assert card.method is not None and card.method.label == "visa •••• 4242"


@pytest.mark.parametrize(
    ("amount", "percent", "off"),
    [(10_000, "20", 2_000), (333, "20", 67), (332, "12.5", 42), (1, "50", 1), (0, "20", 0)],
)
def test_a_percent_discount_is_rounded_half_up_per_line(
    amount: int, percent: str, off: int
) -> None:
    assert percent_off_line(amount, Decimal(percent)) == off


def _plan(payment: CustomerPayment | None = None, **deal: Any) -> Any:
    data = deal_json(**{"contract_start": TODAY.isoformat(), **deal})
    return suggest_plan(parse_deal(data), PlanDefaults(), TODAY, payment=payment)


def test_a_deal_discount_bills_every_invoice_less_the_discount_and_adds_up_exactly() -> None:
    lines = [
        line_item(product="Setup", unit_amount=99_999, pricing_schedule="one_time"),
        line_item(product="Seats", quantity=3, unit_amount=3_333),
        line_item(product="Support", unit_amount=9_999, pricing_schedule="quarterly"),
    ]
    plan = _plan(discount_percent="20", line_items=lines)
    undiscounted = _plan(line_items=lines)
    assert plan.discount_percent == Decimal("20")
    assert [line.amount for line in plan.lines] == [line.amount for line in undiscounted.lines]
    # Per line, rounded half up: seats 9,999 -> 2,000; support 3,333 -> 667; setup 99,999 -> 20,000.
    assert plan.invoices[0].amount == 99_999 + 9_999 + 3_333 - (20_000 + 2_000 + 667)
    assert {i.amount for i in plan.invoices[1:]} == {9_999 + 3_333 - 2_667}
    assert plan.total_amount == sum(i.amount for i in plan.invoices)
    assert plan.discount_total == undiscounted.total_amount - plan.total_amount
    assert "deal discount" in plan.invoices[1].description


def test_a_trial_shifts_the_paid_periods_and_bills_one_time_items_at_its_start() -> None:
    lines = [
        line_item(product="Setup", unit_amount=50_000, pricing_schedule="one_time"),
        line_item(product="Seats", unit_amount=10_000),
    ]
    plan = _plan(trial_days=30, line_items=lines)
    assert plan.trial_end == date(2027, 1, 5) == plan.billing_start
    assert plan.invoices[0].date == TODAY and plan.invoices[0].amount == 50_000
    assert plan.invoices[1].date == date(2027, 1, 5) and plan.invoices[1].amount == 10_000
    assert plan.billed_through == plan.end_date == date(2028, 1, 5)
    assert len(plan.invoices) == 13 and plan.total_amount == 50_000 + 12 * 10_000


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"trial_days": 10, "contract_start": "2026-11-01"}, "trial_days", "ended on 2026-11-11"),
        (
            {"trial_days": 10, "line_items": [line_item(pricing_schedule="one_time")]},
            "trial_days",
            "bills once",
        ),
        ({"payment_collection": "whenever"}, "payment_collection", "not understood"),
    ],
)
def test_what_cannot_be_billed_is_refused_by_field(
    changes: dict[str, Any], field: str, message: str
) -> None:
    data = deal_json(**{"contract_start": TODAY.isoformat(), **changes})
    with pytest.raises(InvalidDeal) as caught:
        suggest_plan(parse_deal(data), PlanDefaults(), TODAY)
    [problem] = caught.value.problems
    assert problem.field == field and message in problem.message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "from 0 to 730"),
        (731, "from 0 to 730"),
        ("soon", "whole number"),
        (1.5, "whole number"),
    ],
)
def test_a_bad_trial_length_is_refused(value: object, message: str) -> None:
    with pytest.raises(InvalidDeal, match=message):
        parse_deal(deal_json(trial_days=value))


def test_a_float_deal_discount_is_refused() -> None:
    with pytest.raises(InvalidDeal, match="discount_percent"):
        parse_deal(deal_json(discount_percent=20.5))


def test_a_fallback_must_be_confirmed_and_is_kept_in_the_plan_json() -> None:
    plan = _plan(CustomerPayment(True), payment_collection="Charge automatically")
    assert plan.collection_method == "send_invoice"
    assert "collection_method" in plan.needs_confirmation
    assert plan.collection_fallback is not None
    assert plan.collection_fallback in plan.notes
    again = plan_from_json(plan_to_json(plan))
    assert again == plan


def test_a_charged_plan_with_trial_and_discount_reads_back_from_json() -> None:
    plan = _plan(
        CustomerPayment(True, CARD),
        payment_collection="Charge automatically",
        trial_days=14,
        discount_percent="12.5",
    )
    assert plan.collection_method == "charge_automatically" and not plan.needs_confirmation
    assert plan_from_json(plan_to_json(plan)) == plan


def test_a_contract_starting_later_is_charged_after_its_trial_with_its_discount() -> None:
    plan = _plan(
        CustomerPayment(True, CARD),
        payment_collection="Charge automatically",
        contract_start="2027-01-01",
        trial_days=10,
        discount_percent="10",
        line_items=[line_item(unit_amount=10_000)],
    )
    assert (plan.collection_method, plan.trial_end) == ("charge_automatically", date(2027, 1, 11))
    assert [(i.date, i.amount) for i in plan.invoices[:3]] == [
        (date(2027, 1, 1), 0),
        (date(2027, 1, 11), 9_000),
        (date(2027, 2, 11), 9_000),
    ]
    assert plan.total_amount == 12 * 9_000 and not plan.needs_confirmation


@pytest.mark.parametrize(("value", "text"), [("20.0", "20"), ("20.00000", "20"), ("12.50", "12.5")])
def test_a_deal_discount_is_written_without_trailing_zeros(value: str, text: str) -> None:
    assert str(parse_deal(deal_json(discount_percent=value)).discount_percent) == text


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({}, []),
        ({"payment_collection": "Charge automatically"}, []),
        ({"trial_days": 7}, ["trial_days"]),
        ({"trial_days": 7, "discount_percent": "10"}, ["trial_days", "discount_percent"]),
    ],
)
def test_a_change_to_a_live_subscription_refuses_a_trial_or_deal_discount(
    changes: dict[str, Any], fields: list[str]
) -> None:
    deal = parse_deal(deal_json(**changes))
    assert [p.field for p in amendment_problems(deal)] == fields
