"""What changed on a deal after activation, one row per kind of change."""

from __future__ import annotations

from typing import Any

import pytest

from connector.domain.deal_changes import (
    Difference,
    describe,
    differences,
    differences_from_json,
    differences_to_json,
)
from tests.domain.builders import deal_json, line_item

SEATS = line_item(product="Seats", product_id="p_seats", quantity=1, unit_amount=4500)
SETUP = line_item(product="Setup", sku="SET-1", pricing_schedule="one_time", unit_amount=9000)
ACTIVATED = deal_json(line_items=[SEATS, SETUP])


def _with_lines(*lines: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return deal_json(line_items=list(lines), **changes)


@pytest.mark.parametrize(
    ("now", "closed", "expected"),
    [
        pytest.param(ACTIVATED, True, (), id="the same deal: nothing"),
        pytest.param(
            _with_lines({**SEATS, "quantity": 3}, SETUP),
            True,
            (Difference("line_items[Seats].quantity", 1, 3),),
            id="a quantity from 1 to 3",
        ),
        pytest.param(
            _with_lines({**SEATS, "unit_amount": 4000}, SETUP),
            True,
            (Difference("line_items[Seats].unit_amount", 4500, 4000),),
            id="an amount",
        ),
        pytest.param(
            _with_lines(SEATS, SETUP, contract_start="2025-04-01", contract_months=24),
            True,
            (
                Difference("contract_start", "2025-03-01", "2025-04-01"),
                Difference("contract_months", 12, 24),
            ),
            id="the dates",
        ),
        pytest.param(
            _with_lines(SEATS),
            True,
            (
                Difference(
                    "line_items[Setup]",
                    {
                        "product": "Setup",
                        "quantity": 1,
                        "unit_amount": 9000,
                        "pricing_schedule": "one_time",
                    },
                    None,
                ),
            ),
            id="a line removed",
        ),
        pytest.param(
            ACTIVATED,
            False,
            (Difference("closed", True, False),),
            id="lost or reopened",
        ),
        pytest.param(
            _with_lines({**SEATS, "discount_amount": 0}, {**SETUP, "discount_percent": "0"}),
            True,
            (),
            id="a discount of 0 read where none was stored: nothing",
        ),
        pytest.param(
            _with_lines({**SEATS, "discount_amount": 500}, SETUP),
            True,
            (Difference("line_items[Seats].discount_amount", None, 500),),
            id="a line discount amount given",
        ),
        pytest.param(
            {**ACTIVATED, "discount_amount": 50_000},
            True,
            (Difference("discount_amount", None, 50_000),),
            id="a deal discount amount given",
        ),
        pytest.param(
            {**ACTIVATED, "discount_amount": 0},
            True,
            (),
            id="a deal discount amount of 0 read where none was stored: nothing",
        ),
    ],
)
def test_differences(now: dict[str, Any], closed: bool, expected: tuple[Difference, ...]) -> None:
    assert differences(ACTIVATED, now, closed=closed) == expected


def test_an_added_line_is_named_with_what_it_bills() -> None:
    extra = line_item(product="Analytics", product_id="p_an", quantity=2)
    (found,) = differences(ACTIVATED, _with_lines(SEATS, SETUP, extra), closed=True)
    assert found.field == "line_items[Analytics]" and found.before is None
    assert describe(found).startswith("line_items[Analytics] added: product Analytics, quantity 2")


def test_lines_are_matched_by_product_not_by_position() -> None:
    assert differences(ACTIVATED, _with_lines(SETUP, SEATS), closed=True) == ()


def test_descriptions_read_as_before_and_after() -> None:
    assert describe(Difference("line_items[Seats].quantity", 1, 3)) == (
        "line_items[Seats].quantity: 1 → 3"
    )
    assert "no longer Closed Won" in describe(Difference("closed", True, False))


def test_json_round_trips() -> None:
    found = differences(ACTIVATED, _with_lines({**SEATS, "quantity": 3}), closed=False)
    assert differences_from_json(differences_to_json(found)) == found
