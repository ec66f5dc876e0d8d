"""Credit policy: may this deal be activated, and should non-payment put the account on hold?

Two questions, both answered from figures the caller gathers (open balance, invoices, the
account's hold and limit as kept in the CRM), never by looking anything up here:

* ``decide_activation``: a hold always stops activation; otherwise the new exposure (what the
  customer already owes plus what the first invoice will bill) must not exceed the limit.
* ``evaluate_non_payment``: set a hold when a policy trigger fires, and release only a hold
  dealbridge set itself, once nothing triggers any more. A hold a person set is theirs to lift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

from connector.domain.money import format_money

__all__ = [
    "CreditDecision",
    "CreditState",
    "CreditStatus",
    "HoldChange",
    "HoldSource",
    "InvoiceStanding",
    "NonPaymentPolicy",
    "credit_state",
    "decide_activation",
    "evaluate_non_payment",
]

HoldSource = Literal["person", "dealbridge"]
CreditState = Literal["ok", "on_hold", "over_limit"]

# Stripe invoice statuses that still expect money from the customer.
UNPAID_STATUSES = frozenset({"open"})
UNCOLLECTIBLE = "uncollectible"


@dataclass(frozen=True)
class CreditStatus:
    """The account's credit standing as recorded in the CRM.

    ``credit_limit`` is in minor units of the deal's currency; ``None`` or 0 means no limit
    (unless the caller's policy says zero means zero). A hold with no recorded source is
    treated as a person's hold: dealbridge never lifts a hold it cannot prove it set.
    """

    on_hold: bool
    hold_source: HoldSource | None
    credit_limit: int | None


@dataclass(frozen=True)
class CreditDecision:
    allowed: bool
    reason: CreditState
    exposure: int
    credit_limit: int | None
    message: str


def decide_activation(
    status: CreditStatus,
    open_balance: int,
    first_invoice_amount: int,
    currency: str,
    *,
    zero_limit_means_no_limit: bool = True,
) -> CreditDecision:
    """May a deal whose first invoice bills ``first_invoice_amount`` be activated now?

    Exposure = open balance + first invoice. Activation waits when the account is on hold
    (whoever set it), or when exposure is *over* the limit; reaching the limit exactly is
    allowed, since a limit is the most the customer may owe. ``credit_limit`` in the decision
    is the limit that applied, ``None`` when there was none.
    """
    if status.credit_limit is not None and status.credit_limit < 0:
        raise ValueError(f"a credit limit cannot be negative, got {status.credit_limit}")
    exposure = open_balance + first_invoice_amount
    limit = status.credit_limit
    if limit == 0 and zero_limit_means_no_limit:
        limit = None

    def money(amount: int) -> str:
        return format_money(amount, currency)

    breakdown = (
        f"exposure to {money(exposure)} (open balance {money(open_balance)} "
        f"+ first invoice {money(first_invoice_amount)})"
    )
    if status.on_hold:
        who = "by dealbridge" if status.hold_source == "dealbridge" else "by a person"
        return CreditDecision(
            allowed=False,
            reason="on_hold",
            exposure=exposure,
            credit_limit=limit,
            message=(
                f"The account is on credit hold (set {who}); nothing can be activated until "
                "the hold is released."
            ),
        )
    if limit is not None and exposure > limit:
        return CreditDecision(
            allowed=False,
            reason="over_limit",
            exposure=exposure,
            credit_limit=limit,
            message=(
                f"Activation would raise {breakdown}, over the credit limit of {money(limit)}."
            ),
        )
    within = (
        f"within the credit limit of {money(limit)}" if limit is not None else "no credit limit"
    )
    return CreditDecision(
        allowed=True,
        reason="ok",
        exposure=exposure,
        credit_limit=limit,
        message=f"Activation would raise {breakdown}; {within}.",
    )


def credit_state(status: CreditStatus, decision: CreditDecision | None) -> CreditState:
    """One word for the account's credit standing, for display: a hold outranks a limit."""
    if status.on_hold:
        return "on_hold"
    if decision is not None and decision.reason == "over_limit":
        return "over_limit"
    return "ok"


# --------------------------------------------------------------------------------------------
# Non-payment.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvoiceStanding:
    """What dealbridge knows about one of the customer's Stripe invoices."""

    invoice_id: str
    status: str
    due_date: date | None
    amount_remaining: int
    payment_failures: int


@dataclass(frozen=True)
class NonPaymentPolicy:
    """When dealbridge may put an account on credit hold by itself; every trigger is opt-in.

    ``hold_when_overdue_days=N`` holds when an open invoice is overdue by *more than* N days,
    i.e. ``due_date + N days < today``: with N = 30 and a due date of 1 March, 31 March is
    still fine and 1 April holds. N = 0 holds the day after the due date.
    """

    hold_when_overdue_days: int | None = None
    hold_when_uncollectible: bool = False
    hold_after_payment_failures: int | None = None
    release_when_paid: bool = True

    def __post_init__(self) -> None:
        if self.hold_when_overdue_days is not None and self.hold_when_overdue_days < 0:
            raise ValueError("hold_when_overdue_days cannot be negative")
        if self.hold_after_payment_failures is not None and self.hold_after_payment_failures < 1:
            raise ValueError("hold_after_payment_failures must be at least 1")


@dataclass(frozen=True)
class HoldChange:
    action: Literal["hold", "release"]
    invoice_id: str | None
    note: str


@dataclass(frozen=True)
class _Trigger:
    invoice: InvoiceStanding
    reason: str
    severity: int  # lower sorts first: uncollectible, overdue, failed payments


def _triggers(
    policy: NonPaymentPolicy, invoices: Sequence[InvoiceStanding], today: date
) -> list[_Trigger]:
    found: list[_Trigger] = []
    for inv in invoices:
        if policy.hold_when_uncollectible and inv.status == UNCOLLECTIBLE:
            found.append(_Trigger(inv, f"invoice {inv.invoice_id} is uncollectible", 0))
            continue
        unpaid = inv.status in UNPAID_STATUSES and inv.amount_remaining > 0
        if not unpaid:
            continue
        if policy.hold_when_overdue_days is not None and inv.due_date is not None:
            days_overdue = (today - inv.due_date).days
            if days_overdue > policy.hold_when_overdue_days:
                found.append(
                    _Trigger(
                        inv,
                        f"invoice {inv.invoice_id} is {days_overdue} days overdue "
                        f"(policy: {policy.hold_when_overdue_days} days)",
                        1,
                    )
                )
                continue
        threshold = policy.hold_after_payment_failures
        if threshold is not None and inv.payment_failures >= threshold:
            found.append(
                _Trigger(
                    inv,
                    f"payment of invoice {inv.invoice_id} failed {inv.payment_failures} "
                    f"time(s) (policy: {threshold})",
                    2,
                )
            )
    # The note names one invoice: the most serious cause, oldest due date first, then by id,
    # so the same facts always give the same note.
    found.sort(key=lambda t: (t.severity, t.invoice.due_date or date.max, t.invoice.invoice_id))
    return found


def evaluate_non_payment(
    policy: NonPaymentPolicy,
    status: CreditStatus,
    invoices: Sequence[InvoiceStanding],
    today: date,
) -> HoldChange | None:
    """Should the account's hold change because of how its invoices stand today?

    * Not on hold and a trigger fires → ``hold``, naming the causing invoice.
    * Already on hold (by anyone) → never a second hold.
    * On hold set by dealbridge, ``release_when_paid`` on, and no trigger fires → ``release``.
    * A person's hold (or one of unknown source) is never released by dealbridge.
    """
    triggers = _triggers(policy, invoices, today)
    if status.on_hold:
        if status.hold_source == "dealbridge" and policy.release_when_paid and not triggers:
            return HoldChange(
                action="release",
                invoice_id=None,
                note=(
                    "Credit hold released by dealbridge: no invoice is overdue, "
                    "uncollectible or failing payment any more."
                ),
            )
        return None
    if not triggers:
        return None
    first = triggers[0]
    others = len({t.invoice.invoice_id for t in triggers} - {first.invoice.invoice_id})
    more = f"; {others} other invoice(s) also past the policy" if others else ""
    return HoldChange(
        action="hold",
        invoice_id=first.invoice.invoice_id,
        note=f"Credit hold set by dealbridge: {first.reason}{more}.",
    )
