"""How cancel-now's credit note takes the credit: Stripe's pre-payment part first on an open
invoice, then the person's choice; invoices Stripe cannot credit are refused at preview."""

from __future__ import annotations

from typing import Any

import pytest

from connector.services.cancel_now import credit_allocation
from connector.services.lifecycle_operations import LifecycleError


def _invoice(status: str, total: int = 10_000, remaining: int = 0, credited: int = 0) -> Any:
    return {"id": "in_1", "currency": "usd", "status": status, "total": total,
            "amount_remaining": remaining, "pre_payment_credit_notes_amount": 0,
            "post_payment_credit_notes_amount": credited}  # fmt: skip


@pytest.mark.parametrize(
    ("invoice", "total", "credit", "actions"),
    [
        (_invoice("paid"), 6_000, "customer_balance", {"credit_amount": 6_000}),
        (_invoice("paid"), 6_000, "refund", {"refund_amount": 6_000}),
        (_invoice("open", remaining=10_000), 6_000, "refund", {"reduce_amount_due": 6_000}),
        # partly paid open invoice: what remains due is lowered, the rest goes to the choice
        (_invoice("open", remaining=2_500), 6_000, "customer_balance",
         {"reduce_amount_due": 2_500, "credit_amount": 3_500}),
        (_invoice("paid"), 6_000, "none", {}),
        (_invoice("paid"), 0, "customer_balance", {}),  # the last day: nothing to credit
        (_invoice("draft"), 0, "refund", {}),
        (_invoice("paid", credited=4_000), 6_000, "customer_balance", {"credit_amount": 6_000}),
    ],
)  # fmt: skip
def test_allocation(invoice: Any, total: int, credit: str, actions: dict[str, int]) -> None:
    assert credit_allocation(invoice, total, credit) == actions


@pytest.mark.parametrize(
    ("invoice", "message"),
    [
        (_invoice("draft"), "is draft; Stripe credits only open or paid"),
        (_invoice("void"), "is void"),
        (_invoice("paid", credited=4_001), "exceeds what remains creditable"),
    ],
)
def test_invoices_that_cannot_take_the_credit_are_refused(invoice: Any, message: str) -> None:
    with pytest.raises(LifecycleError, match=message):
        credit_allocation(invoice, 6_000, "customer_balance")
