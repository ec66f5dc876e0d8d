"""Bill again bills what is still owed: the original lines less their credit notes."""

from __future__ import annotations

from typing import Any

import pytest

from connector.services.bill_again import OwedLine, still_owed


def line(line_id: str, amount: int, quantity: int = 1, **pricing: str) -> dict[str, Any]:
    return {
        "id": line_id, "amount": amount, "currency": "eur", "quantity": quantity,
        "description": f"Line {line_id}", "pricing": {"price_details": dict(pricing)},
    }  # fmt: skip


def note(
    *lines: dict[str, Any], status: str = "issued", number: str = "CN-1", amount: int = 0
) -> Any:
    subtotal = amount or sum(int(entry["amount"]) for entry in lines)
    head = {"id": f"cn_{number}", "number": number, "status": status, "subtotal": subtotal}
    return (head, list(lines))


def on_line(line_id: str, amount: int) -> dict[str, Any]:
    return {"type": "invoice_line_item", "invoice_line_item": line_id, "amount": amount}


def custom(amount: int) -> dict[str, Any]:
    return {"type": "custom_line_item", "invoice_line_item": None, "amount": amount}


ROWS = [
    pytest.param([line("il_1", 10000)], [], [(10000, 0)], id="no-credit-notes-bills-in-full"),
    pytest.param([line("il_1", 10000), line("il_2", 5000)], [note(on_line("il_1", 2500))],
                 [(7500, 2500), (5000, 0)], id="a-lines-credit-lowers-that-line"),
    pytest.param([line("il_1", 10000), line("il_2", 5000)], [note(on_line("il_2", 5000))],
                 [(10000, 0)], id="a-fully-credited-line-is-dropped"),
    pytest.param([line("il_1", 10000)], [note(on_line("il_1", 2500), status="void")],
                 [(10000, 0)], id="a-void-credit-note-credits-nothing"),
    pytest.param([line("il_1", 10000)], [note(custom(1200), number="CN-7")],
                 [(10000, 0), (-1200, 1200)], id="a-credit-on-no-line-is-a-negative-line"),
    pytest.param([line("il_1", 10000)],
                 [note(on_line("il_1", 1000)), note(on_line("il_1", 2000), number="CN-2")],
                 [(7000, 3000)], id="several-notes-add-up"),
    pytest.param([line("il_1", 10000)], [note(amount=2501)], [(10000, 0), (-2501, 2501)],
                 id="an-amount-without-lines-credits-the-whole-invoice"),
]  # fmt: skip


@pytest.mark.parametrize(("lines", "notes", "expected"), ROWS)
def test_still_owed(
    lines: list[dict[str, Any]], notes: list[Any], expected: list[tuple[int, int]]
) -> None:
    owed = still_owed(lines, notes)
    assert [(o.amount, o.credited) for o in owed] == expected


def test_a_negative_line_names_its_credit_notes() -> None:
    owed = still_owed([line("il_1", 100)], [note(custom(50), number="CN-9")])
    assert owed[-1] == OwedLine(-50, "eur", 1, "Credited on credit note CN-9", credited=50)
