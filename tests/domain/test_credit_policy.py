"""Credit policy: activation against hold and limit, and holds for non-payment."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from connector.domain.credit import (
    CreditDecision,
    CreditState,
    CreditStatus,
    HoldChange,
    InvoiceStanding,
    NonPaymentPolicy,
    credit_state,
    decide_activation,
    evaluate_non_payment,
)

NO_HOLD = CreditStatus(on_hold=False, hold_source=None, credit_limit=None)


def limit(amount: int | None) -> CreditStatus:
    return CreditStatus(on_hold=False, hold_source=None, credit_limit=amount)


def held(source: str | None, amount: int | None = None) -> CreditStatus:
    return CreditStatus(on_hold=True, hold_source=source, credit_limit=amount)  # type: ignore[arg-type]


# --- activation ------------------------------------------------------------------------------

ACTIVATION_ROWS = [
    pytest.param(NO_HOLD, 10_000_00, 2_500_00, True, True, "ok", None,
                 id="no-limit-allows-anything"),
    pytest.param(limit(0), 10_000_00, 2_500_00, True, True, "ok", None,
                 id="zero-limit-means-no-limit-by-default"),
    pytest.param(limit(0), 0, 1, False, False, "over_limit", 0,
                 id="zero-limit-means-zero-when-policy-says-so"),
    pytest.param(limit(0), 0, 0, False, True, "ok", 0,
                 id="zero-limit-allows-a-free-deal-when-zero-means-zero"),
    pytest.param(limit(None), 10_000_00, 2_500_00, False, True, "ok", None,
                 id="none-limit-is-no-limit-even-when-zero-means-zero"),
    pytest.param(limit(12_000_00), 9_000_00, 2_500_00, True, True, "ok", 12_000_00,
                 id="under-limit-allowed"),
    pytest.param(limit(12_000_00), 9_500_00, 2_500_00, True, True, "ok", 12_000_00,
                 id="exactly-at-limit-allowed"),
    pytest.param(limit(12_000_00), 9_500_01, 2_500_00, True, False, "over_limit", 12_000_00,
                 id="one-cent-over-limit-waits"),
    pytest.param(limit(12_000_00), 0, 12_000_01, True, False, "over_limit", 12_000_00,
                 id="first-invoice-alone-over-limit-waits"),
    pytest.param(limit(12_000_00), -1_000_00, 13_000_00, True, True, "ok", 12_000_00,
                 id="customer-credit-balance-lowers-exposure"),
    pytest.param(held("person"), 0, 1_00, True, False, "on_hold", None,
                 id="person-hold-blocks"),
    pytest.param(held("dealbridge"), 0, 1_00, True, False, "on_hold", None,
                 id="dealbridge-hold-blocks"),
    pytest.param(held(None), 0, 1_00, True, False, "on_hold", None,
                 id="hold-of-unknown-source-blocks"),
    pytest.param(held("person", 1_000_000_00), 0, 1_00, True, False, "on_hold", 1_000_000_00,
                 id="hold-blocks-even-far-under-limit"),
    pytest.param(held("person"), 0, 0, True, False, "on_hold", None,
                 id="hold-blocks-even-a-free-deal"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "open_balance", "first_invoice", "zero_is_none", "allowed", "reason", "limit_"),
    ACTIVATION_ROWS,
)
def test_decide_activation(
    status: CreditStatus,
    open_balance: int,
    first_invoice: int,
    zero_is_none: bool,
    allowed: bool,
    reason: str,
    limit_: int | None,
) -> None:
    decision = decide_activation(
        status, open_balance, first_invoice, "usd", zero_limit_means_no_limit=zero_is_none
    )
    assert (decision.allowed, decision.reason, decision.credit_limit) == (allowed, reason, limit_)
    assert decision.exposure == open_balance + first_invoice


def test_over_limit_message_shows_the_figures() -> None:
    decision = decide_activation(limit(12_000_00), 10_000_00, 2_500_00, "usd")
    assert decision.message == (
        "Activation would raise exposure to USD 12,500.00 (open balance USD 10,000.00 "
        "+ first invoice USD 2,500.00), over the credit limit of USD 12,000.00."
    )


def test_allowed_message_shows_the_figures() -> None:
    decision = decide_activation(limit(12_000_00), 1_000_00, 2_500_00, "usd")
    assert decision.message == (
        "Activation would raise exposure to USD 3,500.00 (open balance USD 1,000.00 "
        "+ first invoice USD 2,500.00); within the credit limit of USD 12,000.00."
    )


@pytest.mark.parametrize(
    ("source", "who"),
    [
        pytest.param("person", "set by a person", id="person"),
        pytest.param("dealbridge", "set by dealbridge", id="dealbridge"),
    ],
)
def test_hold_message_says_who_set_the_hold(source: str, who: str) -> None:
    assert who in decide_activation(held(source), 0, 100, "usd").message


def test_messages_use_the_deal_currency() -> None:
    assert "JPY 12,500" in decide_activation(limit(10_000), 0, 12_500, "jpy").message


def test_negative_credit_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        decide_activation(limit(-1), 0, 0, "usd")


def _decision(reason: CreditState) -> CreditDecision:
    return CreditDecision(
        allowed=reason == "ok",
        reason=reason,
        exposure=0,
        credit_limit=None,
        message="",
    )


@pytest.mark.parametrize(
    ("status", "decision", "state"),
    [
        pytest.param(NO_HOLD, None, "ok", id="no-decision-ok"),
        pytest.param(NO_HOLD, _decision("ok"), "ok", id="allowed-ok"),
        pytest.param(NO_HOLD, _decision("over_limit"), "over_limit", id="over-limit"),
        pytest.param(held("person"), None, "on_hold", id="on-hold"),
        pytest.param(held("dealbridge"), _decision("over_limit"), "on_hold",
                     id="hold-outranks-limit"),
    ],
)  # fmt: skip
def test_credit_state(status: CreditStatus, decision: CreditDecision | None, state: str) -> None:
    assert credit_state(status, decision) == state


# --- non-payment -----------------------------------------------------------------------------

TODAY = date(2025, 4, 1)
DUE_1_MARCH = date(2025, 3, 1)  # 31 days before TODAY


def inv(
    invoice_id: str = "in_123",
    status: str = "open",
    due: date | None = DUE_1_MARCH,
    remaining: int = 1000_00,
    failures: int = 0,
) -> InvoiceStanding:
    return InvoiceStanding(
        invoice_id=invoice_id,
        status=status,
        due_date=due,
        amount_remaining=remaining,
        payment_failures=failures,
    )


OVERDUE_30 = NonPaymentPolicy(hold_when_overdue_days=30)
UNCOLLECTIBLE = NonPaymentPolicy(hold_when_uncollectible=True)
THREE_FAILURES = NonPaymentPolicy(hold_after_payment_failures=3)
ALL_TRIGGERS = NonPaymentPolicy(
    hold_when_overdue_days=30, hold_when_uncollectible=True, hold_after_payment_failures=3
)

NON_PAYMENT_ROWS = [
    # overdue: hold when due_date + N days < today
    pytest.param(OVERDUE_30, NO_HOLD, [inv(due=TODAY - timedelta(days=31))], "hold", "in_123",
                 id="overdue-31-days-with-30-day-policy-holds"),
    pytest.param(OVERDUE_30, NO_HOLD, [inv(due=TODAY - timedelta(days=30))], None, None,
                 id="overdue-exactly-30-days-does-not-hold"),
    pytest.param(OVERDUE_30, NO_HOLD, [inv(due=TODAY)], None, None,
                 id="due-today-does-not-hold"),
    pytest.param(NonPaymentPolicy(hold_when_overdue_days=0), NO_HOLD,
                 [inv(due=TODAY - timedelta(days=1))], "hold", "in_123",
                 id="zero-day-policy-holds-the-day-after-due"),
    pytest.param(NonPaymentPolicy(hold_when_overdue_days=0), NO_HOLD, [inv(due=TODAY)],
                 None, None, id="zero-day-policy-not-on-the-due-date"),
    pytest.param(OVERDUE_30, NO_HOLD, [inv(status="paid", remaining=0)], None, None,
                 id="paid-invoice-never-overdue"),
    pytest.param(OVERDUE_30, NO_HOLD, [inv(status="void")], None, None,
                 id="void-invoice-ignored"),
    pytest.param(OVERDUE_30, NO_HOLD, [inv(status="draft")], None, None,
                 id="draft-invoice-ignored"),
    pytest.param(OVERDUE_30, NO_HOLD, [inv(remaining=0)], None, None,
                 id="open-invoice-with-nothing-remaining-ignored"),
    pytest.param(OVERDUE_30, NO_HOLD, [inv(due=None)], None, None,
                 id="invoice-without-due-date-never-overdue"),
    pytest.param(NonPaymentPolicy(), NO_HOLD, [inv(due=date(2020, 1, 1))], None, None,
                 id="overdue-trigger-off-by-default"),
    # uncollectible
    pytest.param(UNCOLLECTIBLE, NO_HOLD, [inv(status="uncollectible", due=TODAY)], "hold",
                 "in_123", id="uncollectible-holds"),
    pytest.param(NonPaymentPolicy(), NO_HOLD, [inv(status="uncollectible")], None, None,
                 id="uncollectible-trigger-off-by-default"),
    # payment failures
    pytest.param(THREE_FAILURES, NO_HOLD, [inv(due=TODAY, failures=3)], "hold", "in_123",
                 id="failures-at-threshold-hold"),
    pytest.param(THREE_FAILURES, NO_HOLD, [inv(due=TODAY, failures=2)], None, None,
                 id="failures-below-threshold-do-not-hold"),
    pytest.param(THREE_FAILURES, NO_HOLD, [inv(status="paid", remaining=0, failures=5)],
                 None, None, id="failures-on-a-paid-invoice-do-not-hold"),
    # already on hold: no new hold
    pytest.param(ALL_TRIGGERS, held("person"), [inv()], None, None,
                 id="no-new-hold-over-a-person-hold"),
    pytest.param(ALL_TRIGGERS, held("dealbridge"), [inv()], None, None,
                 id="no-new-hold-over-a-dealbridge-hold-still-triggered"),
    # release
    pytest.param(ALL_TRIGGERS, held("dealbridge"), [inv(status="paid", remaining=0)],
                 "release", None, id="dealbridge-hold-released-when-paid"),
    pytest.param(ALL_TRIGGERS, held("dealbridge"), [], "release", None,
                 id="dealbridge-hold-released-with-no-invoices"),
    pytest.param(ALL_TRIGGERS, held("dealbridge"), [inv(due=TODAY - timedelta(days=10))],
                 "release", None, id="dealbridge-hold-released-when-back-within-policy"),
    pytest.param(NonPaymentPolicy(hold_when_overdue_days=30, release_when_paid=False),
                 held("dealbridge"), [], None, None,
                 id="no-release-when-release-when-paid-is-off"),
    pytest.param(ALL_TRIGGERS, held("person"), [], None, None,
                 id="person-hold-never-released"),
    pytest.param(ALL_TRIGGERS, held(None), [], None, None,
                 id="hold-of-unknown-source-never-released"),
    pytest.param(ALL_TRIGGERS, NO_HOLD, [inv(status="paid", remaining=0)], None, None,
                 id="nothing-to-release-when-not-on-hold"),
]  # fmt: skip


@pytest.mark.parametrize(("policy", "status", "invoices", "action", "invoice_id"), NON_PAYMENT_ROWS)
def test_evaluate_non_payment(
    policy: NonPaymentPolicy,
    status: CreditStatus,
    invoices: list[InvoiceStanding],
    action: str | None,
    invoice_id: str | None,
) -> None:
    change = evaluate_non_payment(policy, status, invoices, TODAY)
    if action is None:
        assert change is None
    else:
        assert change is not None
        assert (change.action, change.invoice_id) == (action, invoice_id)


@pytest.mark.parametrize(
    ("policy", "invoice", "note"),
    [
        pytest.param(OVERDUE_30, inv(), "Credit hold set by dealbridge: invoice in_123 is 31 "
                     "days overdue (policy: 30 days).", id="overdue-note"),
        pytest.param(UNCOLLECTIBLE, inv(status="uncollectible"), "Credit hold set by "
                     "dealbridge: invoice in_123 is uncollectible.", id="uncollectible-note"),
        pytest.param(THREE_FAILURES, inv(due=TODAY, failures=4), "Credit hold set by "
                     "dealbridge: payment of invoice in_123 failed 4 time(s) (policy: 3).",
                     id="failures-note"),
    ],
)  # fmt: skip
def test_hold_note_names_the_invoice_and_the_policy(
    policy: NonPaymentPolicy, invoice: InvoiceStanding, note: str
) -> None:
    assert evaluate_non_payment(policy, NO_HOLD, [invoice], TODAY) == HoldChange(
        action="hold", invoice_id="in_123", note=note
    )


def test_the_most_serious_and_oldest_cause_is_named_and_the_others_counted() -> None:
    invoices = [
        inv("in_late", due=date(2025, 2, 1)),
        inv("in_later", due=date(2025, 1, 1)),
        inv("in_gone", status="uncollectible", due=date(2025, 3, 25)),
    ]
    change = evaluate_non_payment(ALL_TRIGGERS, NO_HOLD, invoices, TODAY)
    assert change is not None
    assert change.invoice_id == "in_gone"
    assert change.note.endswith("; 2 other invoice(s) also past the policy.")


def test_among_overdue_invoices_the_oldest_is_named() -> None:
    invoices = [inv("in_b", due=date(2025, 2, 1)), inv("in_a", due=date(2025, 1, 1))]
    change = evaluate_non_payment(OVERDUE_30, NO_HOLD, invoices, TODAY)
    assert change is not None and change.invoice_id == "in_a"


def test_release_note() -> None:
    change = evaluate_non_payment(ALL_TRIGGERS, held("dealbridge"), [], TODAY)
    assert change == HoldChange(
        action="release",
        invoice_id=None,
        note="Credit hold released by dealbridge: no invoice is overdue, uncollectible or "
        "failing payment any more.",
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"hold_when_overdue_days": -1}, id="negative-days"),
        pytest.param({"hold_after_payment_failures": 0}, id="zero-failures"),
    ],
)
def test_nonsensical_policies_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        NonPaymentPolicy(**kwargs)  # type: ignore[arg-type]
