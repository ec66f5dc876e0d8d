"""A deal discount as an amount off the contract (rule 9b of ``domain/plan``): a Stripe
amount-off coupon of duration ``once``, taken off the first invoice after its line
discounts and capped at it. Tables of cases, no store."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from connector.domain.charging import amendment_problems
from connector.domain.deal import InvalidDeal, deal_to_json, parse_deal
from connector.domain.plan import (
    BillingPlan,
    PlanDefaults,
    PlanOverrides,
    plan_from_json,
    plan_to_json,
    suggest_plan,
)
from tests.domain.builders import deal_json, line_item

TODAY = date(2026, 12, 6)


def _plan(overrides: PlanOverrides | None = None, **deal: Any) -> BillingPlan:
    data = deal_json(**{"contract_start": TODAY.isoformat(), **deal})
    return suggest_plan(parse_deal(data), PlanDefaults(), TODAY, overrides)


SETUP = line_item(product="Setup", unit_amount=99_999, pricing_schedule="one_time")
SEATS = line_item(product="Seats", quantity=3, unit_amount=3_333)
SUPPORT = line_item(product="Support", unit_amount=9_999, pricing_schedule="quarterly")


@pytest.mark.parametrize(
    ("currency", "lines", "amount", "first", "rest", "stated"),
    [
        pytest.param(
            "usd", [SETUP, SEATS, SUPPORT], 50_000,
            99_999 + 9_999 + 3_333 - 50_000, 9_999 + 3_333,
            99_999 + 12 * (9_999 + 3_333) - 50_000, id="usd-500-off-the-contract",
        ),
        pytest.param(
            "usd", [{**SEATS, "discount_percent": "10"}], 1,
            # 10% of 99.99 per month is 10.00 off; 0.01 rounding remainder on the first.
            9_000 - 1, 8_999, 107_989 - 1, id="after-line-discounts-one-cent",
        ),
        pytest.param(
            "jpy", [line_item(unit_amount=120_000)], 5_000,
            115_000, 120_000, 12 * 120_000 - 5_000, id="jpy-zero-decimal",
        ),
        pytest.param(
            "usd", [SEATS], 9_999, 0, 9_999, 11 * 9_999, id="exactly-the-first-invoice",
        ),
    ],
)  # fmt: skip
def test_the_amount_comes_off_the_first_invoice_and_the_schedule_adds_up(
    currency: str, lines: list[dict[str, Any]], amount: int, first: int, rest: int, stated: int
) -> None:
    plan = _plan(currency=currency, line_items=lines, discount_amount=amount)
    assert plan.invoices[0].amount == plan.first_invoice_amount == first
    assert {i.amount for i in plan.invoices[1:]} == {rest}
    assert plan.total_amount == sum(i.amount for i in plan.invoices) == stated
    assert plan.discount_amount == plan.discount_amount_taken == amount
    undiscounted = _plan(currency=currency, line_items=lines)
    assert undiscounted.total_amount - plan.total_amount == amount
    assert plan.discount_total == undiscounted.discount_total + amount
    assert "discount_amount" not in plan.needs_confirmation
    assert "deal discount" in plan.invoices[0].description
    assert "deal discount" not in plan.invoices[1].description


def test_the_jpy_amount_is_written_in_whole_yen() -> None:
    plan = _plan(currency="jpy", line_items=[line_item(unit_amount=120_000)], discount_amount=5_000)
    assert any("JPY 5,000 off the contract" in note for note in plan.notes)


def test_more_than_the_first_invoice_is_capped_at_it_and_must_be_confirmed() -> None:
    plan = _plan(line_items=[SEATS], discount_amount=25_000)
    assert plan.invoices[0].amount == 0 and plan.discount_amount_taken == 9_999
    assert {i.amount for i in plan.invoices[1:]} == {9_999}
    assert plan.total_amount == sum(i.amount for i in plan.invoices) == 11 * 9_999
    assert "discount_amount" in plan.needs_confirmation
    assert any("remaining USD 150.01 is not given" in note for note in plan.notes)
    confirmed = _plan(
        PlanOverrides(confirmed=("discount_amount",)), line_items=[SEATS], discount_amount=25_000
    )
    assert "discount_amount" not in confirmed.needs_confirmation


def test_one_bill_for_the_contract_is_billed_less_the_amount() -> None:
    plan = _plan(line_items=[{**SEATS, "pricing_schedule": "one_time"}], discount_amount=999)
    assert plan.invoice_type == "one_time"
    assert [i.amount for i in plan.invoices] == [plan.total_amount] == [9_999 - 999]


def test_a_backdated_start_takes_the_amount_off_the_catch_up_invoice() -> None:
    plan = _plan(contract_start="2026-10-06", line_items=[SEATS], discount_amount=20_000)
    assert plan.catch_up_periods == 2
    assert plan.invoices[0].amount == 3 * 9_999 - 20_000
    assert plan.total_amount == sum(i.amount for i in plan.invoices) == 12 * 9_999 - 20_000


def test_the_plan_and_the_deal_read_back_from_json() -> None:
    plan = _plan(line_items=[SEATS], discount_amount=25_000)
    assert plan_from_json(plan_to_json(plan)) == plan
    deal = parse_deal(deal_json(discount_amount="50000"))
    assert deal.discount_amount == 50_000
    assert parse_deal(deal_to_json(deal)) == deal
    assert "discount_amount" not in deal_to_json(parse_deal(deal_json()))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"discount_amount": 500, "discount_percent": "10"}, "give one deal discount"),
        ({"discount_amount": -1}, "cannot be negative"),
        ({"discount_amount": 12.5}, "whole number of minor units"),
        ({"discount_amount": "500.00"}, "whole number of minor units"),
        ({"discount_amount": True}, "whole number of minor units"),
    ],
)
def test_a_bad_deal_discount_amount_is_refused_by_name(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidDeal) as caught:
        parse_deal(deal_json(**changes))
    [problem] = caught.value.problems
    assert problem.field == "discount_amount" and message in problem.message


@pytest.mark.parametrize("value", [0, "0", None, ""])
def test_no_amount_is_no_discount(value: object) -> None:
    deal = parse_deal(deal_json(discount_amount=value, discount_percent="10"))
    assert deal.discount_amount is None


def test_a_trial_and_an_amount_off_together_are_refused() -> None:
    with pytest.raises(InvalidDeal) as caught:
        _plan(trial_days=14, discount_amount=500)
    [problem] = caught.value.problems
    assert problem.field == "discount_amount" and "trial" in problem.message


def test_a_change_to_a_live_subscription_refuses_the_amount() -> None:
    deal = parse_deal(deal_json(discount_amount=500))
    assert [p.field for p in amendment_problems(deal)] == ["discount_amount"]
