"""Amendment rules: how a later deal changes the live subscription, one row per behaviour."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest

from connector.domain.amendment import (
    AmendmentChoices,
    LiveItem,
    LiveSubscription,
    amendment_from_json,
    amendment_summary,
    amendment_to_json,
    cancel_choice_problems,
    change_kind,
    choices_from_json,
    live_from_json,
    live_to_json,
    phase_items,
    plan_overrides_for,
    propose_amendment,
    schedule_phase_end,
    split_overrides,
    subscription_items,
)
from connector.domain.deal import parse_deal
from connector.domain.plan import InvalidOverrides, PlanDefaults, overrides_from_json, suggest_plan
from tests.domain.builders import deal_json, line_item

TODAY = date(2025, 3, 1)

LIVE = LiveSubscription(
    subscription_id="sub_1",
    plan_id="plan-1",
    deal_id="006A",
    currency="usd",
    interval="month",
    interval_count=1,
    items=(
        LiveItem("si_platform", "price_p", "prod_platform", "Platform", 1, 120000),
        LiveItem("si_seats", "price_s", "prod_seats", "Seats", 25, 4500),
    ),
    cancel_at=date(2026, 3, 1),
)


def _plan(lines: list[dict[str, Any]], **deal: Any) -> Any:
    parsed = parse_deal(deal_json(line_items=lines, **deal))
    overrides = overrides_from_json(plan_overrides_for({}, LIVE, True))
    return suggest_plan(parsed, PlanDefaults(), TODAY, overrides)


def _seats(quantity: int, unit_amount: int = 4500, schedule: str = "monthly") -> dict[str, Any]:
    return line_item(
        product="Seats",
        product_id="prod_seats",
        quantity=quantity,
        unit_amount=unit_amount,
        pricing_schedule=schedule,
    )


def _propose(lines: list[dict[str, Any]], kind: Any = "upgrade", **deal: Any) -> Any:
    plan = _plan(lines, **deal)
    keys = [line.product_id or line.product for line in plan.lines]
    return propose_amendment(
        kind, LIVE, plan, keys, "create_prorations", proration_chosen=False, today=TODAY
    )


def _actions(amendment: Any) -> list[tuple[str, str, int, int]]:
    return [(c.product, c.action, c.quantity_before, c.quantity_after) for c in amendment.changes]


@pytest.mark.parametrize(
    ("kind", "lines", "expected"),
    [
        pytest.param(
            "upgrade",
            [_seats(40)],
            [("Platform", "unchanged", 1, 1), ("Seats", "quantity", 25, 40)],
            id="a seat increase changes the item's quantity, the rest stays",
        ),
        pytest.param(
            "upgrade",
            [_seats(25, 4200)],
            [("Platform", "unchanged", 1, 1), ("Seats", "price", 25, 25)],
            id="a new price for a product on the subscription swaps the item's price",
        ),
        pytest.param(
            "upgrade",
            [line_item(product="Analytics", product_id="prod_analytics", quantity=2)],
            [
                ("Platform", "unchanged", 1, 1),
                ("Seats", "unchanged", 25, 25),
                ("Analytics", "added", 0, 2),
            ],
            id="a product not on the subscription becomes a new item",
        ),
        pytest.param(
            "downgrade",
            [_seats(10)],
            [("Platform", "unchanged", 1, 1), ("Seats", "quantity", 25, 10)],
            id="a downgrade lowers the quantity and keeps what the deal does not name",
        ),
        pytest.param(
            "replacement",
            [line_item(product="Platform v2", product_id="prod_v2", unit_amount=150000)],
            [
                ("Platform", "removed", 1, 0),
                ("Seats", "removed", 25, 0),
                ("Platform v2", "added", 0, 1),
            ],
            id="a replacement removes what the deal no longer lists",
        ),
    ],
)
def test_item_changes(kind: Any, lines: list[dict[str, Any]], expected: list[Any]) -> None:
    assert _actions(_propose(lines, kind)) == expected


def test_the_amounts_before_and_after_are_exact_per_billing_period() -> None:
    amendment = _propose([_seats(40, 4200)])
    assert amendment.recurring_before == 120000 + 25 * 4500
    assert amendment.recurring_after == 120000 + 40 * 4200


def test_a_price_on_another_schedule_is_converted_to_the_subscriptions_frequency() -> None:
    same = _propose([_seats(25, 54000, "annual")])  # 540.00 a year is 45.00 a month
    lower = _propose([_seats(25, 50400, "annual")])  # 504.00 a year is 42.00 a month
    assert [(c.action, c.unit_amount_after) for c in same.changes if c.product == "Seats"] == [
        ("unchanged", 4500)
    ]
    assert [(c.action, c.unit_amount_after) for c in lower.changes if c.product == "Seats"] == [
        ("price", 4200)
    ]


def test_stripe_items_carry_only_what_changes() -> None:
    amendment = _propose(
        [_seats(40, 4200), line_item(product="Analytics", product_id="prod_analytics")],
        "replacement",
    )
    items = subscription_items(amendment, {0: "price_new_seats", 1: "price_analytics"})
    assert items == [
        {"id": "si_platform", "deleted": True},
        {"id": "si_seats", "price": "price_new_seats", "quantity": 40},
        {"price": "price_analytics", "quantity": 1},
    ]


def test_a_quantity_change_keeps_the_price() -> None:
    items = subscription_items(_propose([_seats(30)]), {})
    assert items == [{"id": "si_seats", "quantity": 30}]


@pytest.mark.parametrize(
    ("lines", "deal", "field", "words"),
    [
        pytest.param(
            [_seats(3), _seats(4)],
            {},
            "line_items[1]",
            "on the deal twice",
            id="a product twice is ambiguous",
        ),
        pytest.param(
            [_seats(3)],
            {"currency": "eur"},
            "currency",
            "one currency",
            id="another currency cannot change the subscription",
        ),
    ],
)
def test_deals_that_cannot_change_the_subscription_say_why(
    lines: list[dict[str, Any]], deal: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidOverrides) as raised:
        _propose(lines, **deal)
    assert [p.field for p in raised.value.problems] == [field]
    assert words in raised.value.problems[0].message


@pytest.mark.parametrize(
    ("kind", "lines", "needs"),
    [
        pytest.param("upgrade", [_seats(10)], ("change",), id="an upgrade that lowers the amount"),
        pytest.param("downgrade", [_seats(40)], ("change",), id="a downgrade that raises it"),
        pytest.param("upgrade", [_seats(25)], ("change",), id="a change that changes nothing"),
        pytest.param("upgrade", [_seats(40)], (), id="a plain upgrade needs no confirmation"),
    ],
)
def test_contradictions_ask_a_person(kind: Any, lines: list[Any], needs: tuple[str, ...]) -> None:
    assert _propose(lines, kind).needs_confirmation == needs


@pytest.mark.parametrize(
    ("start", "effective", "note"),
    [
        ("2025-03-01", date(2025, 3, 1), None),
        ("2025-04-15", date(2025, 4, 15), "The change starts on 2025-04-15"),
        ("2025-01-10", TODAY, "applies from today"),
    ],
)
def test_the_change_applies_from_its_start_never_backwards(
    start: str, effective: date, note: str | None
) -> None:
    amendment = _propose([_seats(40)], contract_start=start)
    assert amendment.effective_date == effective
    if note is not None:
        assert any(note in n for n in amendment.notes)


def test_a_change_starting_later_is_a_schedule_phase_and_one_starting_now_is_not() -> None:
    assert _propose([_seats(40)], contract_start="2025-04-15").starts_later
    assert not _propose([_seats(40)], contract_start="2025-03-01").starts_later
    assert not _propose([_seats(40)], contract_start="2025-01-10").starts_later


def test_a_change_starting_when_the_subscription_has_ended_is_refused() -> None:
    with pytest.raises(InvalidOverrides) as raised:
        _propose([_seats(40)], contract_start="2026-03-01")
    assert [p.field for p in raised.value.problems] == ["start_date"]
    assert "has ended (2026-03-01)" in raised.value.problems[0].message


def test_a_phase_lists_every_item_after_the_change() -> None:
    amendment = _propose(
        [_seats(40, 4200), line_item(product="Analytics", product_id="prod_analytics")],
        "replacement",
    )
    assert phase_items(amendment, LIVE, {0: "price_new_seats", 1: "price_analytics"}) == [
        {"price": "price_new_seats", "quantity": 40},
        {"price": "price_analytics", "quantity": 1},
    ]
    kept = _propose([_seats(30)], contract_start="2025-04-15")
    assert phase_items(kept, LIVE, {}) == [
        {"price": "price_p", "quantity": 1},
        {"price": "price_s", "quantity": 30},
    ]


@pytest.mark.parametrize(
    ("live", "kind", "expected"),
    [
        pytest.param(LIVE, "upgrade", (date(2026, 3, 1), "cancel"), id="the contract end stays"),
        pytest.param(
            replace(LIVE, cancel_at=None),
            "upgrade",
            (date(2025, 5, 15), "release"),
            id="no end: one period, then released",
        ),
        pytest.param(LIVE, "renewal", (date(2027, 3, 1), "cancel"), id="a renewal's new end"),
    ],
)
def test_the_phase_with_the_change_ends_where_the_contract_does(
    live: LiveSubscription, kind: Any, expected: tuple[date, str]
) -> None:
    lines = [PLATFORM, _seats(25, 4800)]
    plan = _plan(lines, contract_start="2025-04-15" if kind != "renewal" else "2026-03-01")
    keys = [line.product_id or line.product for line in plan.lines]
    amendment = propose_amendment(
        kind, live, plan, keys, "create_prorations", proration_chosen=False, today=TODAY
    )
    assert schedule_phase_end(amendment, live) == expected


def test_the_proration_note_says_where_the_choice_came_from() -> None:
    plan = _plan([_seats(40)])
    keys = ["prod_seats"]
    chosen = propose_amendment(
        "upgrade", LIVE, plan, keys, "always_invoice", proration_chosen=True, today=TODAY
    )
    assert chosen.proration_behavior == "always_invoice"
    assert any("as chosen on the review page" in n for n in chosen.notes)


@pytest.mark.parametrize(
    ("deal_data", "choices", "kind"),
    [
        ({"change_type": "upgrade"}, AmendmentChoices(), "upgrade"),
        ({"change_type": None}, AmendmentChoices(), "new"),
        ({}, AmendmentChoices(change="replacement"), "replacement"),
        ({"change_type": "upgrade"}, AmendmentChoices(change="new"), "new"),
        ({"change_type": "something else"}, AmendmentChoices(), "new"),
    ],
)
def test_the_kind_is_the_persons_choice_else_the_deal_type(
    deal_data: dict[str, Any], choices: AmendmentChoices, kind: str
) -> None:
    assert change_kind(deal_data, choices) == kind


def test_unknown_choices_are_refused_by_name() -> None:
    with pytest.raises(InvalidOverrides) as raised:
        choices_from_json({"change": "upsell", "proration_behavior": "sometimes"})
    assert [p.field for p in raised.value.problems] == ["change", "proration_behavior"]


def test_stored_overrides_split_into_plan_overrides_choices_and_the_snapshot() -> None:
    stored = {
        "days_until_due": 15,
        "change": "upgrade",
        "proration_behavior": "none",
        "amendment_target": live_to_json(LIVE),
        "amendment_preview": {"anything": 1},
    }
    base, choices, target = split_overrides(stored)
    assert base == {"days_until_due": 15}
    assert choices == AmendmentChoices("upgrade", "none")
    assert target == LIVE


def test_json_round_trips() -> None:
    amendment = _propose([_seats(40, 4200)])
    assert amendment_from_json(amendment_to_json(amendment)) == amendment
    assert live_from_json(live_to_json(LIVE)) == LIVE


def _renewal(lines: list[dict[str, Any]], live: LiveSubscription = LIVE, **deal: Any) -> Any:
    plan = _plan(lines, **deal)
    keys = [line.product_id or line.product for line in plan.lines]
    return propose_amendment(
        "renewal", live, plan, keys, "create_prorations", proration_chosen=False, today=TODAY
    )


PLATFORM = line_item(product="Platform", product_id="prod_platform", unit_amount=120000)


@pytest.mark.parametrize(
    ("lines", "effective", "actions"),
    [
        pytest.param(
            [PLATFORM, _seats(25)],
            TODAY,
            ["unchanged", "unchanged"],
            id="the same items: the end moves at once",
        ),
        pytest.param(
            [PLATFORM, _seats(25, 4800)],
            date(2026, 2, 2),
            ["unchanged", "price"],
            id="new prices: changed the day after the last period of the term starts",
        ),
        pytest.param(
            [_seats(25)],
            date(2026, 2, 2),
            ["removed", "unchanged"],
            id="a product not renewed is removed at the new term",
        ),
    ],
)
def test_a_renewal_moves_the_end_and_changes_items_for_the_new_term(
    lines: list[dict[str, Any]], effective: date, actions: list[str]
) -> None:
    renewal = _renewal(lines, contract_start="2026-03-01", contract_months=12)
    assert renewal.new_end == date(2027, 3, 1)
    assert renewal.effective_date == effective
    assert [c.action for c in renewal.changes] == actions
    assert renewal.proration_behavior == "none"
    assert renewal.needs_confirmation == ()


def test_a_renewal_that_does_not_continue_the_term_asks_to_confirm_the_dates() -> None:
    renewal = _renewal([PLATFORM, _seats(25)], contract_start="2026-04-01")
    assert renewal.needs_confirmation == ("start_date",)
    assert renewal.new_end == date(2027, 4, 1)


def test_a_subscription_without_an_end_cannot_be_renewed() -> None:
    open_ended = LiveSubscription(**{**LIVE.__dict__, "cancel_at": None})
    with pytest.raises(InvalidOverrides) as raised:
        _renewal([PLATFORM], open_ended, contract_start="2026-03-01")
    assert [p.field for p in raised.value.problems] == ["change"]


def test_a_renewal_ending_before_the_current_end_is_refused() -> None:
    with pytest.raises(InvalidOverrides) as raised:
        _renewal([PLATFORM], contract_start="2025-03-01", contract_months=6)
    assert [p.field for p in raised.value.problems] == ["contract_months"]


def test_a_one_time_line_is_left_out_of_the_change_and_a_person_confirms() -> None:
    setup = line_item(product="Setup", product_id="p_s", pricing_schedule="one_time")
    amendment = _propose([_seats(40), setup])
    assert [c.product for c in amendment.changes] == ["Platform", "Seats"]
    assert amendment.needs_confirmation == ("line_items",)
    assert any("Setup is billed once and left out" in n for n in amendment.notes)


def test_a_cancellation_ends_the_subscription_at_period_end_whatever_the_deal_lists() -> None:
    plan = _plan([_seats(3)])
    cancellation = propose_amendment(
        "cancellation", LIVE, plan, ["prod_seats"], "create_prorations",
        proration_chosen=False, today=TODAY,
    )  # fmt: skip
    assert cancellation.cancel_at_period_end is True
    assert [c.action for c in cancellation.changes] == ["removed", "removed"]
    assert cancellation.recurring_after == 0
    assert cancellation.effective_date == TODAY
    assert amendment_from_json(amendment_to_json(cancellation)) == cancellation


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        pytest.param({"cancel_when": "now", "cancel_credit": "refund"}, [], id="now and a credit"),
        pytest.param({"cancel_when": "period_end"}, [], id="period end alone"),
        pytest.param({"cancel_when": "tomorrow"}, ["cancel_when"], id="an unknown moment"),
        pytest.param(
            {"cancel_when": "now", "cancel_credit": "cash"}, ["cancel_credit"], id="unknown credit"
        ),
        pytest.param({"cancel_credit": "refund"}, ["cancel_credit"], id="a credit without now"),
        pytest.param(
            {"cancel_when": "period_end", "cancel_credit": "none"},
            ["cancel_credit"],
            id="a credit at period end",
        ),
    ],
)
def test_cancel_choices_are_checked_by_name(data: dict[str, Any], fields: list[str]) -> None:
    if not fields:
        choices_from_json(data)
        return
    with pytest.raises(InvalidOverrides) as raised:
        choices_from_json(data)
    assert [p.field for p in raised.value.problems] == fields


@pytest.mark.parametrize(
    ("kind", "choices", "fields"),
    [
        pytest.param("cancellation", AmendmentChoices(), [], id="cancellation, default"),
        pytest.param(
            "cancellation",
            AmendmentChoices(cancel_when="now", cancel_credit="customer_balance"),
            [],
            id="cancellation now with a credit",
        ),
        pytest.param(
            "cancellation",
            AmendmentChoices(cancel_when="now"),
            ["cancel_credit"],
            id="now needs the credit chosen",
        ),
        pytest.param(
            "upgrade",
            AmendmentChoices(cancel_when="now", cancel_credit="refund"),
            ["cancel_when", "cancel_credit"],
            id="an upgrade refuses both",
        ),
        pytest.param(
            "new", AmendmentChoices(cancel_when="period_end"), ["cancel_when"], id="new business"
        ),
    ],
)
def test_cancel_choices_belong_to_a_cancellation(
    kind: Any, choices: AmendmentChoices, fields: list[str]
) -> None:
    assert [p.field for p in cancel_choice_problems(kind, choices)] == fields


def _cancel_now(credit: Any, confirmed: bool) -> Any:
    plan = _plan([_seats(3)])
    return propose_amendment(
        "cancellation", LIVE, plan, ["prod_seats"], "create_prorations",
        proration_chosen=False, today=TODAY, cancel_credit=credit, credit_confirmed=confirmed,
    )  # fmt: skip


@pytest.mark.parametrize("credit", ["customer_balance", "refund", "none"])
def test_a_cancellation_now_asks_to_confirm_its_credit_until_confirmed(credit: Any) -> None:
    now = _cancel_now(credit, confirmed=False)
    assert now.cancels_now and not now.cancel_at_period_end
    assert now.cancel_credit == credit
    assert now.needs_confirmation == ("cancel_credit",)
    assert "now, on approval" in now.notes[0]
    assert _cancel_now(credit, confirmed=True).needs_confirmation == ()
    assert amendment_from_json(amendment_to_json(now)) == now


def test_a_cancellation_now_summary_shows_the_exact_credit_and_its_rounding() -> None:
    preview = {
        "invoice_id": "in_1",
        "as_of": "2025-03-01T10:00:00+00:00",
        "credit_amount": 8710,
        "credit_amount_text": "USD 87.10",
        "exact_text": "USD 87.096774…",
        "rounding_minor_units": "3/31",
        "rule": "per whole UTC day",
        "lines": [
            {"description": "Seats", "unused_days": 20, "period_days": 31, "net": 13500,
             "credit": 8710, "exact_text": "USD 87.096774…"},
        ],
        "actions": {"credit_amount": 8710},
    }  # fmt: skip
    lines = amendment_summary(_cancel_now("customer_balance", True), preview)
    assert "USD 87.10 (exact USD 87.096774…, rounding 3/31 minor units" in lines[1]
    assert "20 of 31 days" in lines[2]
    assert lines[-1].startswith("  credit amount: ")
