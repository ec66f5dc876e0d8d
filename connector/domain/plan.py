"""Billing plan: how a closed deal will be billed in Stripe, suggested and then adjusted.

``suggest_plan`` derives a plan from the deal alone (plus defaults and today's date) and says
what it could not derive (``needs_confirmation``) and why it chose what it chose (``notes``),
so that a person on the review page confirms a suggestion instead of building a plan from
scratch. Whatever that person changes arrives as ``PlanOverrides`` and is applied by calling
``suggest_plan`` again: there is one code path for the figures, never two that could disagree.

The rules are explained for RevOps in ``docs/billing-rules.md``.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal, get_args

from connector.domain.charging import (
    CollectionDecision,
    CollectionMethod,
    CustomerPayment,
    PaymentMethodOnFile,
    decide_collection,
    percent_off_lines,
)
from connector.domain.deal import (
    PAYMENT_METHOD_TYPES,
    SCHEDULE_MONTHS,
    Deal,
    InvalidDeal,
    LineItem,
    Problem,
    parse_date,
    parse_payment_method,
    parse_payment_terms,
)
from connector.domain.money import format_money, minor_units_exponent, round_half_up
from connector.domain.stored_fields import as_choice, as_text, as_whole_number

__all__ = [
    "FREQUENCY_MONTHS",
    "BillingPlan",
    "Collection",
    "Interval",
    "InvalidOverrides",
    "InvoiceType",
    "PlanDefaults",
    "PlanLine",
    "PlanOverrides",
    "ScheduledInvoice",
    "SubscriptionTiming",
    "add_months",
    "catch_up_lines",
    "catch_up_periods",
    "decimal_unit_amount",
    "interval_months",
    "overrides_from_json",
    "overrides_to_json",
    "period_boundaries",
    "plan_from_json",
    "plan_to_json",
    "subscription_timing",
    "suggest_plan",
    "validate_overrides",
]

InvoiceType = Literal["recurring", "one_time"]
Interval = Literal["month", "year"]
Collection = Literal["stripe", "manual"]
LineKind = Literal["recurring", "one_time"]

INVOICE_TYPES: tuple[InvoiceType, ...] = get_args(InvoiceType)
INTERVALS: tuple[Interval, ...] = get_args(Interval)
COLLECTIONS: tuple[Collection, ...] = get_args(Collection)

# The billing frequencies dealbridge offers, as Stripe (interval, interval_count), and the
# months each one covers. They are exactly the recurring pricing schedules of a deal.
FREQUENCY_MONTHS: Mapping[tuple[Interval, int], int] = {
    ("month", 1): 1,
    ("month", 3): 3,
    ("month", 6): 6,
    ("year", 1): 12,
}
_FREQUENCY_BY_MONTHS: Mapping[int, tuple[Interval, int]] = {
    months: frequency for frequency, months in FREQUENCY_MONTHS.items()
}
_FREQUENCY_WORDS: Mapping[int, tuple[str, str]] = {  # months -> (adverb, period noun)
    1: ("monthly", "month"),
    3: ("quarterly", "quarter"),
    6: ("every 6 months", "half-year"),
    12: ("yearly", "year"),
}
_ALLOWED_FREQUENCIES = "month/1, month/3, month/6 or year/1"
#: What ``needs_confirmation`` may name, and so what ``confirmed`` may list.
CONFIRMABLE: tuple[str, ...] = (
    "payment_method_types", "days_until_due", "start_date", "interval", "invoice_type",
    "amount", "collection_method", "discount_amount", "cancel_credit",
)  # fmt: skip
MAX_DAYS_UNTIL_DUE = 365


@dataclass(frozen=True)
class PlanDefaults:
    """What to use when the deal does not say (configured per installation)."""

    payment_method_types: tuple[str, ...] = ("card",)
    days_until_due: int = 30


@dataclass(frozen=True)
class PlanLine:
    """One line of the plan.

    ``unit_amount`` is minor units per *billing* period for recurring lines (after converting
    from the item's pricing period), or the one-time amount per unit.
    """

    product: str
    sku: str | None
    product_id: str | None
    quantity: int
    unit_amount: int
    kind: LineKind
    description: str
    #: Stripe's ``unit_amount_decimal`` (minor units, up to 12 decimals) when the exact unit
    #: price is not a whole minor unit; ``unit_amount`` is then only its rounded display.
    unit_amount_decimal: str | None = None
    #: Minor units taken off each time the line is billed (a CRM line discount), billed as a
    #: Stripe amount-off coupon on the line; ``discount_note`` names it.
    discount_amount: int = 0
    discount_note: str | None = None

    @property
    def gross_amount(self) -> int:
        """What this line bills each time before its discount (Stripe's arithmetic: the
        decimal unit price times the quantity, rounded once)."""
        if self.unit_amount_decimal is not None:
            return round_half_up(Fraction(Decimal(self.unit_amount_decimal)) * self.quantity)
        return self.unit_amount * self.quantity

    @property
    def amount(self) -> int:
        """What this line bills each time it is billed, after its discount."""
        return self.gross_amount - self.discount_amount


@dataclass(frozen=True)
class ScheduledInvoice:
    """One invoice the plan will produce: when, how much, and what it covers."""

    date: date
    amount: int
    description: str


@dataclass(frozen=True)
class PlanOverrides:
    """What a person changed on the review page or through the API; ``None`` = not changed."""

    invoice_type: InvoiceType | None = None
    interval: Interval | None = None
    interval_count: int | None = None
    payment_method_types: tuple[str, ...] | None = None
    days_until_due: int | None = None
    send_date: date | None = None
    start_date: date | None = None
    collection: Collection | None = None
    #: Confirmations a person gave without changing a value (``["amount", "interval"]``).
    confirmed: tuple[str, ...] | None = None


@dataclass(frozen=True)
class BillingPlan:
    deal_id: str
    invoice_type: InvoiceType
    interval: Interval | None
    interval_count: int | None
    periods: int
    start_date: date
    end_date: date
    send_date: date | None
    days_until_due: int
    payment_method_types: tuple[str, ...]
    currency: str
    recurring_amount: int
    one_time_amount: int
    total_amount: int
    first_invoice_amount: int
    lines: tuple[PlanLine, ...]
    collection: Collection
    needs_confirmation: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())
    #: The end of the last billed period (the subscription's ``cancel_at``): the contract end,
    #: or later when the last period is a full period beyond it (confirmed by a person).
    billed_through: date | None = None
    #: Periods of a contract that started in the past billed at once on the first invoice.
    catch_up_periods: int = 0
    #: Every invoice the plan produces; their amounts add up to ``total_amount``.
    invoices: tuple[ScheduledInvoice, ...] = field(default=())
    #: Stripe's ``collection_method``, and the payment method charged when it is
    #: ``charge_automatically`` (``docs/billing-rules.md``, rule 7).
    collection_method: CollectionMethod = "send_invoice"
    payment_method: PaymentMethodOnFile | None = None
    #: Why invoices are sent although the deal asks to charge automatically (None otherwise).
    collection_fallback: str | None = None
    #: A free trial of this many days from ``start_date``; paid periods start at
    #: ``trial_end`` (None without a trial).
    trial_days: int = 0
    trial_end: date | None = None
    #: The deal discount in percent (a Stripe percent-off coupon on every invoice) and what it
    #: takes off the contract in all; ``total_amount`` and ``invoices`` are after it.
    discount_percent: Decimal | None = None
    discount_total: int = 0
    #: The deal discount as an amount off the contract in minor units (a Stripe amount-off
    #: coupon of duration ``once``: the first invoice only, capped at what it bills), and
    #: what it actually takes off (less than the amount when the first invoice is smaller).
    discount_amount: int | None = None
    discount_amount_taken: int = 0

    @property
    def billing_start(self) -> date:
        """Where the paid periods start: the trial's end, or the start date."""
        return self.trial_end or self.start_date


class InvalidOverrides(ValueError):
    """Overrides that cannot be applied; ``problems`` names each bad field."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(f"{p.field}: {p.message}" for p in self.problems))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,))


def add_months(d: date, months: int) -> date:
    """``d`` plus calendar months, clamping the day: Jan 31 + 1 month = Feb 28 (or 29).

    Contracts are sold in months, not days, and the end of a contract that starts on the 31st
    must still fall inside the right month.
    """
    month_index = d.year * 12 + (d.month - 1) + months
    year, month = divmod(month_index, 12)
    last_day = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(d.day, last_day))


def interval_months(interval: Interval, interval_count: int) -> int:
    """Months covered by one Stripe billing period (``("month", 3)`` → 3, ``("year", 1)`` → 12)."""
    return interval_count * (12 if interval == "year" else 1)


# --------------------------------------------------------------------------------------------
# Validating overrides.
# --------------------------------------------------------------------------------------------


def validate_overrides(overrides: PlanOverrides) -> tuple[Problem, ...]:
    """Problems with override values that make sense on their own (no deal, no today needed).

    ``suggest_plan`` calls this too, so overrides built in code get the same checks as
    overrides that came in as JSON.
    """
    problems: list[Problem] = []
    o = overrides
    if o.invoice_type is not None and o.invoice_type not in INVOICE_TYPES:
        problems.append(
            Problem("invoice_type", f"{o.invoice_type!r} is not allowed; use recurring or one_time")
        )
    if o.interval is None and o.interval_count is not None:
        problems.append(
            Problem("interval", f"is needed with interval_count; use {_ALLOWED_FREQUENCIES}")
        )
    elif o.interval is not None and o.interval not in INTERVALS:
        problems.append(
            Problem("interval", f"{o.interval!r} is not allowed; use {_ALLOWED_FREQUENCIES}")
        )
    elif o.interval is not None:
        count = 1 if o.interval_count is None else o.interval_count
        if _is_int(count) and (o.interval, count) in FREQUENCY_MONTHS:
            pass
        else:
            problems.append(
                Problem(
                    "interval_count",
                    f"every {count} {o.interval}(s) is not a frequency dealbridge bills at; "
                    f"use {_ALLOWED_FREQUENCIES}",
                )
            )
    if o.payment_method_types is not None:
        problems.extend(_payment_method_problems(o.payment_method_types))
    if o.days_until_due is not None and not (
        _is_int(o.days_until_due) and 0 <= o.days_until_due <= MAX_DAYS_UNTIL_DUE
    ):
        problems.append(
            Problem(
                "days_until_due",
                f"must be a whole number of days from 0 to {MAX_DAYS_UNTIL_DUE}, "
                f"got {o.days_until_due!r}",
            )
        )
    for name in ("send_date", "start_date"):
        value = getattr(o, name)
        if value is not None and not _is_plain_date(value):
            problems.append(Problem(name, f"must be a date, got {value!r}"))
    if o.collection is not None and o.collection not in COLLECTIONS:
        problems.append(
            Problem("collection", f"{o.collection!r} is not allowed; use stripe or manual")
        )
    if o.confirmed is not None:
        unknown = [c for c in o.confirmed if c not in CONFIRMABLE]
        if unknown:
            problems.append(
                Problem(
                    "confirmed",
                    f"{', '.join(repr(c) for c in unknown)} cannot be confirmed; "
                    f"use {', '.join(CONFIRMABLE)}",
                )
            )
    return tuple(problems)


def _payment_method_problems(types: object) -> list[Problem]:
    allowed = ", ".join(PAYMENT_METHOD_TYPES)
    if not isinstance(types, tuple | list) or not types:
        return [Problem("payment_method_types", f"choose at least one of {allowed}")]
    unknown = [t for t in types if t not in PAYMENT_METHOD_TYPES]
    if unknown:
        listed = ", ".join(repr(t) for t in unknown)
        return [Problem("payment_method_types", f"{listed} not allowed; choose from {allowed}")]
    return []


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_plain_date(value: object) -> bool:
    return isinstance(value, date) and type(value) is date


# --------------------------------------------------------------------------------------------
# The suggestion.
# --------------------------------------------------------------------------------------------


@dataclass
class _Draft:
    """Mutable scratchpad while deriving a plan; frozen into a ``BillingPlan`` at the end."""

    notes: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)

    def confirm(self, attribute: str, note: str) -> None:
        if attribute not in self.needs:
            self.needs.append(attribute)
        self.notes.append(note)


def suggest_plan(
    deal: Deal,
    defaults: PlanDefaults,
    today: date,
    overrides: PlanOverrides | None = None,
    payment: CustomerPayment | None = None,
) -> BillingPlan:
    """Derive the billing plan for ``deal``, applying ``overrides`` if a person made changes.

    ``payment`` is what Stripe said of the customer's payment methods (automatic charging
    needs one; unknown until the customer is linked).

    Raises ``InvalidOverrides`` for overrides that cannot apply to this deal and
    ``InvalidDeal`` for deal values no rule can read (payment terms or method), unless an
    override supplies that value instead.
    """
    o = overrides if overrides is not None else PlanOverrides()
    problems = list(validate_overrides(o))
    if problems:
        raise InvalidOverrides(problems)
    if not deal.line_items:
        raise InvalidDeal([Problem("line_items", "the deal has no products to bill")])

    draft = _Draft()
    payment_method_types, days_until_due = _payment_settings(deal, defaults, o, draft)
    currency = deal.currency
    contract = deal.contract_months

    # Rule 1: which items are billed on a schedule, and how often.
    scheduled = [i for i in deal.line_items if SCHEDULE_MONTHS[i.pricing_schedule] is not None]
    shorter_than_contract = [i for i in scheduled if _months(i) < contract]
    if o.invoice_type == "recurring" or (
        o.interval is not None and o.invoice_type is None and not shorter_than_contract
    ):
        # A person asked for recurring billing (explicitly, or by choosing a frequency for a
        # deal that would otherwise bill once): every item priced on a schedule recurs.
        billed = scheduled
        if not billed:
            name = "invoice_type" if o.invoice_type == "recurring" else "interval"
            raise InvalidOverrides(
                [
                    Problem(
                        name,
                        "nothing on this deal is priced on a schedule, so there is nothing "
                        "to bill on a recurring basis",
                    )
                ]
            )
    else:
        billed = shorter_than_contract

    frequency_months: int | None = None
    reason = ""
    if billed and o.interval is not None:
        count = 1 if o.interval_count is None else o.interval_count
        frequency_months = FREQUENCY_MONTHS[(o.interval, count)]
        reason = "as chosen on the review page."
    elif billed:
        frequency_months = min(_months(i) for i in billed)
        if o.invoice_type == "recurring":
            reason = "recurring billing was chosen on the review page; this is the shortest "
            reason += "pricing schedule among the items."
        elif len({i.pricing_schedule for i in billed}) > 1:
            reason = "the shortest pricing schedule among the recurring items."
        else:
            reason = f"{billed[0].pricing_schedule} pricing on a {contract}-month contract, "
            reason += "which is longer than one pricing period."

    # Rule 1, overrides: rolling the whole contract into one bill.
    roll_up = o.invoice_type == "one_time" and frequency_months is not None
    invoice_type: InvoiceType = (
        "recurring" if frequency_months is not None and not roll_up else "one_time"
    )
    periods = 1
    if frequency_months is not None:
        adverb, noun = _FREQUENCY_WORDS[frequency_months]
        periods = -(-contract // frequency_months)  # ceiling division, integers only
        if roll_up:
            draft.notes.append(
                f"Recurring charges for {periods} {noun}(s), counted {adverb} ({reason[:-1]}), "
                "are rolled into a single bill, as chosen on the review page."
            )
        else:
            draft.notes.append(f"Billed {adverb}: {reason}")
    elif o.invoice_type == "one_time":
        draft.notes.append("The deal already bills once; nothing to roll up.")

    billed_ids = {id(i) for i in billed}
    lines: list[PlanLine] = []
    remainders: list[PlanLine] = []
    for item in deal.line_items:
        if frequency_months is not None and id(item) in billed_ids:
            if roll_up:
                lines.append(_rolled_up_line(item, frequency_months, periods, currency, draft))
            else:
                line, remainder = _recurring_line(item, frequency_months, periods, currency, draft)
                lines.append(line)
                if remainder is not None:
                    remainders.append(remainder)
        else:
            lines.append(_one_time_line(item, contract, currency, draft))
    lines.extend(remainders)
    _price_period_questions(deal, billed_ids, frequency_months, roll_up, draft)

    start_date = o.start_date if o.start_date is not None else deal.contract_start
    if o.start_date is not None:
        draft.notes.append(f"Start date {start_date.isoformat()} as chosen on the review page.")
    trial_end = _trial(deal, start_date, today, frequency_months, roll_up, draft)
    if trial_end is not None and deal.discount_amount:
        raise InvalidDeal(
            [
                Problem(
                    "discount_amount",
                    "an amount off the contract is taken off the first invoice, which with a "
                    "trial is the trial's own invoice; a trial and a deal discount amount "
                    "together are not supported: remove one in the CRM",
                )
            ]
        )
    # The paid periods start when the trial ends; without a trial, at the start date.
    paid_start = trial_end or start_date
    end_date = add_months(paid_start, contract)

    if frequency_months is not None and contract % frequency_months:
        adverb, noun = _FREQUENCY_WORDS[frequency_months]
        covered = contract - (periods - 1) * frequency_months
        through = add_months(paid_start, periods * frequency_months)
        draft.confirm(
            "interval",
            f"A {contract}-month contract {'counted' if roll_up else 'billed'} {adverb} "
            f"gives {periods} {noun}s; the last one covers only {covered} month(s) of the "
            f"contract but {'counts' if roll_up else 'bills'} a full {noun}"
            + ("" if roll_up else f" (billing runs until {through.isoformat()})")
            + ". Confirm the frequency or choose another.",
        )

    recurring_amount = sum(line.amount for line in lines if line.kind == "recurring")
    one_time_amount = sum(line.amount for line in lines if line.kind == "one_time")
    send_date: date | None = None
    billed_through: date | None = None
    catch_up = 0
    invoices: list[ScheduledInvoice] = []

    if invoice_type == "recurring":
        assert frequency_months is not None
        interval, interval_count = _FREQUENCY_BY_MONTHS[frequency_months]
        total_amount = recurring_amount * periods + one_time_amount
        if o.send_date is not None:
            draft.notes.append(
                "The send date chosen on the review page applies only to one-time bills; "
                "recurring invoices follow the billing schedule."
            )
        billed_through = add_months(paid_start, periods * frequency_months)
        if billed_through <= today:
            raise InvalidOverrides(
                [
                    Problem(
                        "start_date",
                        f"the contract started on {start_date.isoformat()} and its last "
                        f"billing period ended on {billed_through.isoformat()}, before today "
                        f"({today.isoformat()}): there is nothing left to bill on a schedule. "
                        "Bill it once (invoice type one-time) or choose a later start date.",
                    )
                ]
            )
        catch_up = catch_up_periods(paid_start, frequency_months, periods, today)
        boundaries = period_boundaries(paid_start, frequency_months, periods, today)
        billed_through = boundaries[-1]
        invoices = _recurring_invoices(
            boundaries, frequency_months, catch_up, today, lines, deal.discount_percent,
            currency, trial_start=start_date if trial_end is not None else None,
        )  # fmt: skip
        if billed_through != add_months(paid_start, periods * frequency_months):
            draft.notes.append(
                f"Stripe renews on the day of the month of its billing cycle anchor "
                f"({boundaries[catch_up + 1].isoformat()}), which this start day does not "
                f"have in every month: the periods run as the schedule shows, all full, "
                f"until {billed_through.isoformat()}."
            )
        if start_date < today:
            noun = _FREQUENCY_WORDS[frequency_months][1]
            current = add_months(start_date, catch_up * frequency_months)
            caught = (
                f"{catch_up} {noun}(s) from {start_date.isoformat()} to {current.isoformat()} "
                f"have already passed and are billed on the first invoice as catch-up "
                f"({format_money(catch_up * recurring_amount, currency)}), with the current "
                f"{noun} from {current.isoformat()}"
                if catch_up
                else f"the first invoice bills the {noun} from {start_date.isoformat()} in full"
            )
            draft.confirm(
                "start_date",
                f"The contract started on {start_date.isoformat()}, before today "
                f"({today.isoformat()}): {caught}; no period is dropped. Confirm, or move the "
                f"start to today (the contract then ends "
                f"{add_months(today, contract).isoformat()}).",
            )
    else:
        interval, interval_count, periods = None, None, 1
        one_time_amount = sum(line.amount for line in lines)
        recurring_amount = 0
        total_amount = one_time_amount - percent_off_lines(
            (line.amount for line in lines), deal.discount_percent
        )
        if o.send_date is not None:
            if o.send_date < today:
                raise InvalidOverrides(
                    [
                        Problem(
                            "send_date",
                            f"{o.send_date.isoformat()} is in the past; choose today "
                            f"({today.isoformat()}) or a later date",
                        )
                    ]
                )
            send_date = o.send_date
            draft.notes.append(
                f"The bill will be sent on {send_date.isoformat()}, as chosen on the review page."
            )
        else:
            send_date = today
            draft.notes.append(f"The bill will be sent today ({today.isoformat()}).")
        invoices = [ScheduledInvoice(send_date, total_amount, "One invoice for the contract")]
    taken = _amount_off_first_invoice(invoices, deal.discount_amount, currency, draft)
    total_amount = sum(i.amount for i in invoices)
    discount_total = recurring_amount * periods + one_time_amount - total_amount
    if deal.discount_percent is not None:
        draft.notes.append(
            f"Deal discount {deal.discount_percent}% off every invoice (a Stripe percent-off "
            f"coupon, taken off each line after its own discount and rounded half up per "
            f"line, as Stripe does): {format_money(discount_total, currency)} off the "
            f"contract, which bills {format_money(total_amount, currency)}."
        )
    first_invoice_amount = invoices[0].amount
    assert sum(i.amount for i in invoices) == total_amount

    zero = [line for line in lines if line.amount == 0]
    if zero or total_amount == 0:
        named = ", ".join(dict.fromkeys(line.product for line in zero)) or "the deal"
        draft.confirm(
            "amount",
            f"{named} bill(s) nothing (amount {format_money(0, currency)}); the contract "
            f"total is {format_money(total_amount, currency)}. Confirm that this is meant "
            "(a free item or a zero-price deal), or fix the price in the CRM.",
        )

    collection: Collection = o.collection if o.collection is not None else "stripe"
    charging = _collection_method(deal, payment or CustomerPayment(), payment_method_types, draft)
    if collection == "manual":
        draft.notes.append(
            "Collected manually: dealbridge links the Stripe customer but creates no "
            "subscription or invoice; the figures above are for reference."
        )

    supplied = {
        "payment_method_types": o.payment_method_types is not None,
        "days_until_due": o.days_until_due is not None,
        "start_date": o.start_date is not None,
        "interval": o.interval is not None,
        "invoice_type": o.invoice_type is not None,
        "send_date": o.send_date is not None,
        "collection": o.collection is not None,
        "collection_method": collection == "manual",
    }
    confirmed = set(o.confirmed or ())
    needs = tuple(a for a in draft.needs if not supplied.get(a, False) and a not in confirmed)

    return BillingPlan(
        deal_id=deal.id,
        invoice_type=invoice_type,
        interval=interval,
        interval_count=interval_count,
        periods=periods,
        start_date=start_date,
        end_date=end_date,
        send_date=send_date,
        days_until_due=days_until_due,
        payment_method_types=payment_method_types,
        currency=currency,
        recurring_amount=recurring_amount,
        one_time_amount=one_time_amount,
        total_amount=total_amount,
        first_invoice_amount=first_invoice_amount,
        lines=tuple(lines),
        collection=collection,
        needs_confirmation=needs,
        notes=tuple(draft.notes),
        billed_through=billed_through,
        catch_up_periods=catch_up,
        invoices=tuple(invoices),
        collection_method=charging.collection_method,
        payment_method=charging.payment_method,
        collection_fallback=charging.note if charging.needs_confirmation else None,
        trial_days=(deal.trial_days or 0) if trial_end is not None else 0,
        trial_end=trial_end,
        discount_percent=deal.discount_percent,
        discount_total=discount_total,
        discount_amount=deal.discount_amount,
        discount_amount_taken=taken,
    )


def _amount_off_first_invoice(
    invoices: list[ScheduledInvoice], amount: int | None, currency: str, draft: _Draft
) -> int:
    """Rule 9b: the deal's amount off the contract, as Stripe bills an amount-off coupon of
    duration ``once`` on the subscription (or the one invoice): taken off the first
    invoice's subtotal after the line discounts, never more than that invoice bills (Stripe
    caps it; an invoice is never below zero), and gone after it. What the cap leaves out is
    not given later, so it is shown and a person confirms it. Returns what is taken off."""
    if not amount:
        return 0
    first = invoices[0]
    taken = min(amount, first.amount)
    invoices[0] = ScheduledInvoice(
        first.date,
        first.amount - taken,
        f"{first.description}, less {format_money(taken, currency)} deal discount",
    )
    draft.notes.append(
        f"Deal discount {format_money(amount, currency)} off the contract (a Stripe amount-off "
        f"coupon of duration once, taken off the first invoice after its line discounts): "
        f"{format_money(taken, currency)} off the invoice of {first.date.isoformat()}."
    )
    if taken < amount:
        draft.confirm(
            "discount_amount",
            f"The deal discount {format_money(amount, currency)} is more than the first "
            f"invoice bills ({format_money(first.amount, currency)}): Stripe takes off "
            f"{format_money(taken, currency)} (the invoice bills "
            f"{format_money(0, currency)}) and the remaining "
            f"{format_money(amount - taken, currency)} is not given on later invoices. "
            "Confirm, or fix the discount in the CRM.",
        )
    return taken


def _trial(
    deal: Deal,
    start_date: date,
    today: date,
    frequency_months: int | None,
    roll_up: bool,
    draft: _Draft,
) -> date | None:
    """Rule 8: a trial of the deal's days from the start date, before the paid periods.

    Only a subscription can have a trial; one that would already be over is refused rather
    than dropped (the rep fixes the deal or moves the start on the review page).
    """
    if not deal.trial_days:
        return None
    if frequency_months is None or roll_up:
        raise InvalidDeal(
            [
                Problem(
                    "trial_days",
                    "a trial needs a subscription, but this deal bills once; remove the trial "
                    "in the CRM or bill it on a schedule",
                )
            ]
        )
    trial_end = start_date + timedelta(days=deal.trial_days)
    if trial_end <= today:
        raise InvalidDeal(
            [
                Problem(
                    "trial_days",
                    f"the {deal.trial_days}-day trial from {start_date.isoformat()} ended on "
                    f"{trial_end.isoformat()}, before today ({today.isoformat()}); remove it in "
                    "the CRM or move the start date on the review page",
                )
            ]
        )
    draft.notes.append(
        f"Free trial of {deal.trial_days} day(s) from {start_date.isoformat()} to "
        f"{trial_end.isoformat()} (Stripe trial_end); the paid periods start then and the "
        f"contract runs {deal.contract_months} month(s) from it."
    )
    return trial_end


def _collection_method(
    deal: Deal,
    payment: CustomerPayment,
    payment_method_types: tuple[str, ...],
    draft: _Draft,
) -> CollectionDecision:
    """Rule 7: charge the payment method on file when the deal asks and one can be charged."""
    try:
        decision = decide_collection(deal.payment_collection, payment, payment_method_types)
    except ValueError as exc:
        raise InvalidDeal([Problem("payment_collection", str(exc))]) from exc
    if decision.note is not None:
        if decision.needs_confirmation:
            draft.confirm("collection_method", decision.note)
        else:
            draft.notes.append(decision.note)
    return decision


# --------------------------------------------------------------------------------------------
# The invoice schedule: every period a full period, a past start billed, not dropped.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionTiming:
    """Where a subscription created on a given day starts, renews and ends, in whole
    periods counted from the contract start (all at midnight UTC)."""

    catch_up_periods: int  # elapsed periods, billed as catch-up lines on the first invoice
    current_start: date  # start of the period containing the day: the backdated start
    anchor: date  # the next period boundary: Stripe's billing_cycle_anchor
    billed_through: date  # end of the last period: Stripe's cancel_at


def subscription_timing(plan: BillingPlan, today: date) -> SubscriptionTiming:
    """The timing of ``plan``'s subscription if it is created on ``today``."""
    assert plan.interval is not None and plan.interval_count is not None
    months = interval_months(plan.interval, plan.interval_count)
    start = plan.billing_start  # after a trial, the paid periods start at its end
    passed = catch_up_periods(start, months, plan.periods, today)
    boundaries = period_boundaries(start, months, plan.periods, today)
    return SubscriptionTiming(
        catch_up_periods=passed,
        current_start=boundaries[passed],
        anchor=boundaries[passed + 1],
        # Plans frozen before ``billed_through`` existed stop at the contract end.
        billed_through=boundaries[-1] if plan.billed_through is not None else plan.end_date,
    )


def catch_up_periods(start: date, frequency_months: int, periods: int, today: date) -> int:
    """Billing periods of a contract starting ``start`` that ended on or before ``today``.

    They are billed at once on the first invoice; the period containing today is billed by
    the (backdated) subscription itself. Boundaries are computed from ``start``, never
    chained, as Stripe computes them from the billing cycle anchor.
    """
    passed = 0
    while passed < periods and add_months(start, (passed + 1) * frequency_months) <= today:
        passed += 1
    return passed


def period_boundaries(start: date, frequency_months: int, periods: int, today: date) -> list[date]:
    """The ``periods + 1`` period boundaries Stripe will bill on, as Stripe counts them.

    A schedule (a start after today) counts every boundary from the start. A subscription
    created today counts the elapsed boundaries and the next one (its billing cycle anchor)
    from the start, and the later ones from the anchor, as Stripe does: a start on the 31st
    anchored on 28 February then renews on the 28th.
    """
    if start > today:
        return [add_months(start, i * frequency_months) for i in range(periods + 1)]
    passed = catch_up_periods(start, frequency_months, periods, today)
    anchor = add_months(start, (passed + 1) * frequency_months)
    early = [add_months(start, i * frequency_months) for i in range(passed + 2)]
    later = [add_months(anchor, j * frequency_months) for j in range(1, periods - passed)]
    return early + later


def _recurring_invoices(
    boundaries: list[date],
    frequency_months: int,
    catch_up: int,
    today: date,
    lines: list[PlanLine],
    discount_percent: Decimal | None,
    currency: str,
    *,
    trial_start: date | None = None,
) -> list[ScheduledInvoice]:
    """The subscription's invoices, each after the deal discount as Stripe takes it off (per
    line: the recurring lines, the catch-up lines of elapsed periods and the one-time items).

    With a trial, Stripe's first invoice is the trial's, at its start: it bills the one-time
    items only, and the first period is billed when the trial ends.
    """
    noun = _FREQUENCY_WORDS[frequency_months][1]
    periods = len(boundaries) - 1
    recurring = [line.amount for line in lines if line.kind == "recurring"]
    one_time = [line.amount for line in lines if line.kind == "one_time"]
    per_period = sum(recurring) - percent_off_lines(recurring, discount_percent)
    one_time_net = sum(one_time) - percent_off_lines(one_time, discount_percent)
    less = f", less {discount_percent}% deal discount" if discount_percent is not None else ""
    invoices: list[ScheduledInvoice] = []
    if trial_start is not None:
        invoices.append(
            ScheduledInvoice(
                max(trial_start, today),
                one_time_net,
                f"Trial from {trial_start.isoformat()} to {boundaries[0].isoformat()}: "
                + (
                    f"one-time items {format_money(sum(one_time), currency)}{less}"
                    if one_time
                    else "nothing billed"
                ),
            )
        )
    covers = f"{noun} 1 of {periods}" if not catch_up else f"{noun}s 1 to {catch_up + 1}"
    parts = [f"{covers}, {boundaries[0].isoformat()} to {boundaries[catch_up + 1].isoformat()}"]
    first_amount = per_period
    if catch_up:
        caught = [amount * catch_up for amount in recurring]
        first_amount += sum(caught) - percent_off_lines(caught, discount_percent)
    if one_time and trial_start is None:
        parts.append(f"one-time items {format_money(sum(one_time), currency)}")
        first_amount += one_time_net
    invoices.append(
        ScheduledInvoice(
            max(boundaries[0], today),
            first_amount,
            ("First invoice: " if trial_start is None else "First paid invoice: ")
            + "; ".join(parts)
            + less,
        )
    )
    for index in range(catch_up + 1, periods):
        invoices.append(
            ScheduledInvoice(
                boundaries[index],
                per_period,
                f"{noun} {index + 1} of {periods}, {boundaries[index].isoformat()} to "
                f"{boundaries[index + 1].isoformat()}{less}",
            )
        )
    return invoices


def catch_up_lines(plan: BillingPlan, periods: int) -> tuple[PlanLine, ...]:
    """One-time lines billing ``periods`` elapsed periods of each recurring line, named as
    catch-up, with the line's discount carried over: what a backdated start adds to the
    first invoice."""
    if periods <= 0 or plan.interval is None or plan.interval_count is None:
        return ()
    noun = _FREQUENCY_WORDS[interval_months(plan.interval, plan.interval_count)][1]
    result = []
    for line in plan.lines:
        if line.kind != "recurring":
            continue
        gross = line.gross_amount * periods
        unit_amount, unit_decimal = _unit_price(gross, line.quantity)
        result.append(
            PlanLine(
                product=f"{line.product}: catch-up for past periods",
                sku=None,
                product_id=None,
                quantity=line.quantity,
                unit_amount=unit_amount,
                kind="one_time",
                description=f"{line.product}, catch-up for {periods} past {noun}(s)",
                unit_amount_decimal=unit_decimal,
                discount_amount=line.discount_amount * periods,
                discount_note=line.discount_note,
            )
        )
    return tuple(result)


def decimal_unit_amount(value: Fraction) -> str:
    """``value`` minor units as Stripe's ``unit_amount_decimal``: at most 12 decimals,
    rounded half up at the 12th (``Fraction(100, 3)`` → ``"33.333333333333"``)."""
    scaled = round_half_up(value * 10**12)
    text = format(Decimal(scaled).scaleb(-12).normalize(), "f")
    return text


def _unit_price(amount: int, quantity: int) -> tuple[int, str | None]:
    """The unit price that makes ``quantity`` units bill exactly ``amount`` in Stripe:
    a whole ``unit_amount`` when it divides, else a ``unit_amount_decimal`` (Stripe multiplies
    by the quantity and rounds once, which gives back ``amount``)."""
    if amount % quantity == 0:
        return amount // quantity, None
    exact = Fraction(amount, quantity)
    text = decimal_unit_amount(exact)
    assert round_half_up(Fraction(Decimal(text)) * quantity) == amount
    return round_half_up(exact), text


def _price_period_questions(
    deal: Deal,
    billed_ids: set[int],
    frequency_months: int | None,
    roll_up: bool,
    draft: _Draft,
) -> None:
    """Rule 1b: ask where an item's pricing period and the contract disagree."""
    contract = deal.contract_months
    for item in deal.line_items:
        months = SCHEDULE_MONTHS[item.pricing_schedule]
        if months is None:
            continue
        price = format_money(item.unit_amount, deal.currency)
        if months > contract and id(item) not in billed_ids:
            draft.confirm(
                "invoice_type",
                f"{item.product}: the {item.pricing_schedule} price {price} covers {months} "
                f"months but the contract lasts {contract}; it is billed in full, once (not "
                "prorated to the contract). Confirm, or fix the deal in the CRM.",
            )
        elif contract % months and (id(item) in billed_ids or months <= contract):
            draft.confirm(
                "interval",
                f"{item.product}: the {contract}-month contract is not a whole number of "
                f"{item.pricing_schedule} pricing periods ({months} months each); it is "
                f"billed {'in one bill' if roll_up or frequency_months is None else 'per period'}"
                " at the price converted exactly to the billing period. Confirm, or fix the "
                "deal in the CRM.",
            )


def _months(item: LineItem) -> int:
    months = SCHEDULE_MONTHS[item.pricing_schedule]
    assert months is not None, "only called for items priced on a schedule"
    return months


def _payment_settings(
    deal: Deal, defaults: PlanDefaults, o: PlanOverrides, draft: _Draft
) -> tuple[tuple[str, ...], int]:
    """Rules 2 and 3: payment methods and days until due, with both problems reported."""
    problems: list[Problem] = []

    payment_method_types: tuple[str, ...] = defaults.payment_method_types
    if o.payment_method_types is not None:
        payment_method_types = tuple(t for t in PAYMENT_METHOD_TYPES if t in o.payment_method_types)
        draft.notes.append(
            f"Payment methods {', '.join(payment_method_types)} as chosen on the review page."
        )
    else:
        try:
            parsed = parse_payment_method(deal.payment_method)
        except ValueError as exc:
            problems.append(Problem("payment_method", str(exc)))
        else:
            if parsed is None:
                draft.confirm(
                    "payment_method_types",
                    "The deal has no payment method; using the default "
                    f"({', '.join(defaults.payment_method_types)}). Please confirm.",
                )
            else:
                payment_method_types = parsed
                draft.notes.append(
                    f"Payment methods {', '.join(parsed)} from the deal's payment method "
                    f"{deal.payment_method!r}"
                    + (
                        " (ACH debit, plus bank-transfer details on the invoice)."
                        if "us_bank_account" in parsed
                        else "."
                    )
                )

    days_until_due = defaults.days_until_due
    if o.days_until_due is not None:
        days_until_due = o.days_until_due
        draft.notes.append(
            f"Invoices due {days_until_due} days after sending, as chosen on the review page."
        )
    else:
        try:
            terms = parse_payment_terms(deal.payment_terms)
        except ValueError as exc:
            problems.append(Problem("payment_terms", str(exc)))
        else:
            if terms is None:
                draft.confirm(
                    "days_until_due",
                    "The deal has no payment terms; using the default of "
                    f"{defaults.days_until_due} days. Please confirm.",
                )
            else:
                days_until_due = terms
                draft.notes.append(
                    f"Invoices due {terms} days after sending, from the deal's payment terms "
                    f"{deal.payment_terms!r}."
                )

    if problems:
        raise InvalidDeal(problems)
    return payment_method_types, days_until_due


def _discount_fraction(item: LineItem) -> Fraction:
    """What the line bills after its CRM discount, as an exact fraction of the list price: a
    percentage, or an amount off the whole line per pricing period (Dynamics 365), which is
    ``1 - amount / (unit price x quantity)`` so converting the line to another billing
    period converts its discount with it, exactly."""
    if item.discount_amount:
        line = item.unit_amount * item.quantity
        return 1 - Fraction(item.discount_amount, line) if line else Fraction(1)
    if item.discount_percent is None:
        return Fraction(1)
    return 1 - Fraction(item.discount_percent) / 100


def _discount_label(item: LineItem, currency: str) -> str:
    """The CRM's discount as the rep entered it: ``10%``, or ``USD 230.00 per annual period``
    (an amount off the whole line)."""
    if item.discount_amount:
        per = "" if item.pricing_schedule == "one_time" else f" per {item.pricing_schedule} period"
        return f"{format_money(item.discount_amount, currency)}{per}"
    return f"{item.discount_percent}%"


def _discount_note(item: LineItem, amount: int, noun: str, currency: str) -> str | None:
    if not amount:
        return None
    return (
        f"{item.product}: {_discount_label(item, currency)} line discount from the CRM, "
        f"{format_money(amount, currency)} off each {noun} (a Stripe amount-off coupon on "
        "the line)"
    )


def _recurring_line(
    item: LineItem, frequency_months: int, periods: int, currency: str, d: _Draft
) -> tuple[PlanLine, PlanLine | None]:
    """Convert an item's per-pricing-period price to the billing period, exactly.

    The whole line is converted (unit price times quantity, never a rounded unit price
    times the quantity). Stripe bills whole minor units per invoice, so each period bills
    the exact amount rounded down, and what that leaves over the contract goes on a named
    line of the first invoice: the contract bills its exact total, to the minor unit. A unit
    price that is not a whole minor unit is sent as ``unit_amount_decimal``; a CRM line
    discount becomes an amount-off discount on the line.
    """
    item_months = _months(item)
    adverb, noun = _FREQUENCY_WORDS[frequency_months]
    gross_exact = Fraction(item.unit_amount * item.quantity * frequency_months, item_months)
    net_exact = gross_exact * _discount_fraction(item)
    gross = _floor(gross_exact)
    net = _floor(net_exact)
    discount = gross - net
    contract_exact = net_exact * periods
    contract_total = round_half_up(contract_exact)
    remainder = contract_total - net * periods
    unit_amount, unit_decimal = _unit_price(gross, item.quantity)
    price = format_money(item.unit_amount, currency)
    if item_months != frequency_months and gross_exact.denominator == 1:
        d.notes.append(
            f"{item.product}: the {item.pricing_schedule} price {price} is "
            f"{format_money(gross, currency)} per {noun} for the line."
        )
    if contract_exact.denominator != 1:
        d.confirm(
            "interval" if item_months != frequency_months else "amount",
            f"{item.product}: {periods} {noun}(s) at the {item.pricing_schedule} price {price}"
            f" come to {_exact_text(contract_exact, currency)}, not a whole amount; billed "
            f"as {format_money(contract_total, currency)} (rounded half-up once, for the "
            "whole contract). Confirm, or choose another frequency.",
        )
    if remainder:
        d.notes.append(
            f"{item.product}: {_exact_text(net_exact, currency)} per {noun} is billed as "
            f"{format_money(net, currency)} per {noun} and the remaining "
            f"{format_money(remainder, currency)} goes on the first invoice as a named line, "
            f"so the {periods} {noun}(s) bill exactly {format_money(contract_total, currency)}."
        )
    discount_note = _discount_note(item, discount, noun, currency)
    if discount_note:
        d.notes.append(discount_note + ".")
    line = PlanLine(
        product=item.product,
        sku=item.sku,
        product_id=item.product_id,
        quantity=item.quantity,
        unit_amount=unit_amount,
        kind="recurring",
        description=f"{item.product}, billed {adverb}",
        unit_amount_decimal=unit_decimal,
        discount_amount=discount,
        discount_note=discount_note,
    )
    extra = None
    if remainder:
        extra = PlanLine(
            product=f"{item.product}: rounding remainder",
            sku=None,
            product_id=None,
            quantity=1,
            unit_amount=remainder,
            kind="one_time",
            description=(
                f"{item.product}: rounding remainder, so that {periods} {noun}(s) bill exactly "
                f"{format_money(contract_total, currency)}"
            ),
        )
    return line, extra


def _floor(value: Fraction) -> int:
    return value.numerator // value.denominator


def _exact_text(value: Fraction, currency: str) -> str:
    """An exact amount in minor units for people: whole, or with its fraction spelt out."""
    if value.denominator == 1:
        return format_money(value.numerator, currency)
    major = value / 10 ** minor_units_exponent(currency)
    shown = Decimal(round_half_up(major * 10**6)).scaleb(-6)
    return f"{currency.strip().upper()} {shown:,f}…"


def _one_time_line(item: LineItem, contract: int, currency: str, d: _Draft) -> PlanLine:
    """A setup fee, or a scheduled item whose pricing period covers the whole contract."""
    months = SCHEDULE_MONTHS[item.pricing_schedule]
    if months is None:
        description = f"{item.product} (one-time)"
        d.notes.append(f"{item.product}: one-time charge on the first invoice.")
    else:
        description = f"{item.product} ({item.pricing_schedule} price, billed once)"
        note = (
            f"{item.product}: {item.pricing_schedule} pricing on a {contract}-month contract "
            "is billed once, up front"
        )
        if months > contract:
            note += (
                f", at the full {item.pricing_schedule} price "
                f"{format_money(item.unit_amount, currency)} (not prorated to the contract)"
            )
        d.notes.append(note + ".")
    gross = item.unit_amount * item.quantity
    net_exact = gross * _discount_fraction(item)
    net = round_half_up(net_exact)
    if net_exact.denominator != 1:
        d.notes.append(
            f"{item.product}: {_discount_label(item, currency)} off "
            f"{format_money(gross, currency)} is "
            f"{_exact_text(net_exact, currency)}; billed as {format_money(net, currency)} "
            "(rounded half-up once)."
        )
    discount_note = _discount_note(item, gross - net, "bill", currency)
    if discount_note:
        d.notes.append(discount_note + ".")
    return PlanLine(
        product=item.product,
        sku=item.sku,
        product_id=item.product_id,
        quantity=item.quantity,
        unit_amount=item.unit_amount,
        kind="one_time",
        description=description,
        discount_amount=gross - net,
        discount_note=discount_note,
    )


def _rolled_up_line(
    item: LineItem, frequency_months: int, periods: int, currency: str, d: _Draft
) -> PlanLine:
    """A recurring item as one charge for all its periods, computed from the exact price.

    Multiplying the exact (unrounded) per-period price of the whole line by the number of
    periods means a price that does not divide into periods (an annual 1,000.00 counted
    monthly) still rolls up to an exact contract amount (24 months = 2,000.00); when it is
    not whole it is rounded once, for the line, and a person confirms.
    """
    item_months = _months(item)
    gross_exact = Fraction(
        item.unit_amount * item.quantity * frequency_months * periods, item_months
    )
    net_exact = gross_exact * _discount_fraction(item)
    gross = round_half_up(gross_exact)
    net = round_half_up(net_exact)
    noun = _FREQUENCY_WORDS[frequency_months][1]
    price = format_money(item.unit_amount, currency)
    if gross_exact.denominator != 1 or net_exact.denominator != 1:
        d.confirm(
            "interval",
            f"{item.product}: the {item.pricing_schedule} price {price} for {periods} {noun}(s) "
            f"is {_exact_text(net_exact, currency)}, not a whole amount; billed as "
            f"{format_money(net, currency)} (rounded half-up once, for the line). "
            "Confirm the frequency or choose another.",
        )
    else:
        d.notes.append(
            f"{item.product}: the {item.pricing_schedule} price {price} for {periods} "
            f"{noun}(s) is {format_money(gross, currency)} for the line."
        )
    unit_amount, unit_decimal = _unit_price(gross, item.quantity)
    discount_note = _discount_note(item, gross - net, "bill", currency)
    if discount_note:
        d.notes.append(discount_note + ".")
    return PlanLine(
        product=item.product,
        sku=item.sku,
        product_id=item.product_id,
        quantity=item.quantity,
        unit_amount=unit_amount,
        kind="one_time",
        description=f"{item.product}, {periods} {noun}(s) in one bill",
        unit_amount_decimal=unit_decimal,
        discount_amount=gross - net,
        discount_note=discount_note,
    )


# --------------------------------------------------------------------------------------------
# JSON.
# --------------------------------------------------------------------------------------------


def plan_to_json(plan: BillingPlan) -> dict[str, Any]:
    """The plan as JSON (dates as ``YYYY-MM-DD``); ``plan_from_json`` reads it back."""
    return {
        "deal_id": plan.deal_id,
        "invoice_type": plan.invoice_type,
        "interval": plan.interval,
        "interval_count": plan.interval_count,
        "periods": plan.periods,
        "start_date": plan.start_date.isoformat(),
        "end_date": plan.end_date.isoformat(),
        "send_date": None if plan.send_date is None else plan.send_date.isoformat(),
        "days_until_due": plan.days_until_due,
        "payment_method_types": list(plan.payment_method_types),
        "currency": plan.currency,
        "recurring_amount": plan.recurring_amount,
        "one_time_amount": plan.one_time_amount,
        "total_amount": plan.total_amount,
        "first_invoice_amount": plan.first_invoice_amount,
        "lines": [
            {
                "product": line.product,
                "sku": line.sku,
                "product_id": line.product_id,
                "quantity": line.quantity,
                "unit_amount": line.unit_amount,
                "kind": line.kind,
                "description": line.description,
                "unit_amount_decimal": line.unit_amount_decimal,
                "amount": line.amount,
                "discount_amount": line.discount_amount,
                "discount_note": line.discount_note,
            }
            for line in plan.lines
        ],
        "collection": plan.collection,
        "needs_confirmation": list(plan.needs_confirmation),
        "notes": list(plan.notes),
        "billed_through": None if plan.billed_through is None else plan.billed_through.isoformat(),
        "catch_up_periods": plan.catch_up_periods,
        "invoices": [
            {"date": i.date.isoformat(), "amount": i.amount, "description": i.description}
            for i in plan.invoices
        ],
        "collection_method": plan.collection_method,
        "payment_method": None
        if plan.payment_method is None
        else {
            "id": plan.payment_method.id,
            "type": plan.payment_method.type,
            "label": plan.payment_method.label,
            "source": plan.payment_method.source,
        },
        "collection_fallback": plan.collection_fallback,
        "trial_days": plan.trial_days,
        "trial_end": None if plan.trial_end is None else plan.trial_end.isoformat(),
        "discount_percent": None if plan.discount_percent is None else str(plan.discount_percent),
        "discount_total": plan.discount_total,
        "discount_amount": plan.discount_amount,
        "discount_amount_taken": plan.discount_amount_taken,
    }


def plan_from_json(data: Mapping[str, Any]) -> BillingPlan:
    """Read a plan written by ``plan_to_json``; raise ``ValueError`` if it is malformed."""
    try:
        return BillingPlan(
            deal_id=as_text(data["deal_id"]),
            invoice_type=as_choice(data["invoice_type"], INVOICE_TYPES),
            interval=None if data["interval"] is None else as_choice(data["interval"], INTERVALS),
            interval_count=_opt_int(data["interval_count"]),
            periods=as_whole_number(data["periods"]),
            start_date=parse_date(data["start_date"]),
            end_date=parse_date(data["end_date"]),
            send_date=None if data["send_date"] is None else parse_date(data["send_date"]),
            days_until_due=as_whole_number(data["days_until_due"]),
            payment_method_types=tuple(as_text(t) for t in data["payment_method_types"]),
            currency=as_text(data["currency"]),
            recurring_amount=as_whole_number(data["recurring_amount"]),
            one_time_amount=as_whole_number(data["one_time_amount"]),
            total_amount=as_whole_number(data["total_amount"]),
            first_invoice_amount=as_whole_number(data["first_invoice_amount"]),
            lines=tuple(
                PlanLine(
                    product=as_text(line["product"]),
                    sku=_opt_str(line["sku"]),
                    product_id=_opt_str(line["product_id"]),
                    quantity=as_whole_number(line["quantity"]),
                    unit_amount=as_whole_number(line["unit_amount"]),
                    kind=as_choice(line["kind"], ("recurring", "one_time")),
                    description=as_text(line["description"]),
                    # Plans stored before these fields existed have none of them.
                    unit_amount_decimal=_opt_str(line.get("unit_amount_decimal")),
                    discount_amount=as_whole_number(line.get("discount_amount", 0)),
                    discount_note=_opt_str(line.get("discount_note")),
                )
                for line in data["lines"]
            ),
            collection=as_choice(data["collection"], COLLECTIONS),
            needs_confirmation=tuple(as_text(n) for n in data["needs_confirmation"]),
            notes=tuple(as_text(n) for n in data["notes"]),
            billed_through=(
                None if data.get("billed_through") is None else parse_date(data["billed_through"])
            ),
            catch_up_periods=as_whole_number(data.get("catch_up_periods", 0)),
            invoices=tuple(
                ScheduledInvoice(
                    date=parse_date(i["date"]),
                    amount=as_whole_number(i["amount"]),
                    description=as_text(i["description"]),
                )
                for i in data.get("invoices") or ()
            ),
            # Plans stored before automatic charging, trials and deal discounts have none.
            collection_method=as_choice(
                data.get("collection_method", "send_invoice"), COLLECTION_METHODS
            ),
            payment_method=_payment_method_from_json(data.get("payment_method")),
            collection_fallback=_opt_str(data.get("collection_fallback")),
            trial_days=as_whole_number(data.get("trial_days", 0)),
            trial_end=None if data.get("trial_end") is None else parse_date(data["trial_end"]),
            discount_percent=(
                None
                if data.get("discount_percent") is None
                else Decimal(as_text(data["discount_percent"]))
            ),
            discount_total=as_whole_number(data.get("discount_total", 0)),
            discount_amount=_opt_int(data.get("discount_amount")),
            discount_amount_taken=as_whole_number(data.get("discount_amount_taken", 0)),
        )
    except (KeyError, TypeError, ArithmeticError) as exc:
        raise ValueError(f"not a billing plan: {exc!r}") from exc


COLLECTION_METHODS: tuple[CollectionMethod, ...] = ("charge_automatically", "send_invoice")


def _payment_method_from_json(data: object) -> PaymentMethodOnFile | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise TypeError(f"payment_method must be an object, got {data!r}")
    return PaymentMethodOnFile(
        id=as_text(data["id"]),
        type=as_text(data["type"]),
        label=as_text(data["label"]),
        source=as_choice(data.get("source", "default"), ("default", "only_attached")),
    )


def _opt_str(value: object) -> str | None:
    return None if value is None else as_text(value)


def _opt_int(value: object) -> int | None:
    return None if value is None else as_whole_number(value)


_OVERRIDE_FIELDS = tuple(f.name for f in fields(PlanOverrides))


def overrides_from_json(data: Mapping[str, Any]) -> PlanOverrides:
    """Read overrides from the review page or API; raise ``InvalidOverrides`` naming each field.

    Absent keys and ``null`` mean "not changed". Unknown keys are refused rather than ignored,
    so that a misspelt field ("days_due") cannot silently leave a setting unchanged.
    """
    if not isinstance(data, Mapping):
        raise InvalidOverrides([Problem("overrides", "must be an object")])
    problems: list[Problem] = [
        Problem(key, f"is not something that can be changed; use {', '.join(_OVERRIDE_FIELDS)}")
        for key in data
        if key not in _OVERRIDE_FIELDS
    ]
    values: dict[str, Any] = {}

    def text_choice(key: str, choices: tuple[str, ...]) -> None:
        value = data.get(key)
        if value is None:
            return
        if isinstance(value, str) and value in choices:
            values[key] = value
        else:
            problems.append(Problem(key, f"{value!r} is not allowed; use {' or '.join(choices)}"))

    def whole(key: str) -> None:
        value = data.get(key)
        if value is None:
            return
        if _is_int(value):
            values[key] = value
        else:
            problems.append(Problem(key, f"must be a whole number, got {value!r}"))

    def a_date(key: str) -> None:
        value = data.get(key)
        if value is None:
            return
        if isinstance(value, str):
            try:
                values[key] = parse_date(value)
                return
            except ValueError as exc:
                problems.append(Problem(key, str(exc)))
                return
        problems.append(Problem(key, f"{value!r} is not a date; expected YYYY-MM-DD"))

    text_choice("invoice_type", INVOICE_TYPES)
    text_choice("interval", INTERVALS)
    whole("interval_count")
    whole("days_until_due")
    a_date("send_date")
    a_date("start_date")
    text_choice("collection", COLLECTIONS)

    raw_confirmed = data.get("confirmed")
    if raw_confirmed is not None:
        if isinstance(raw_confirmed, list | tuple) and all(
            isinstance(c, str) for c in raw_confirmed
        ):
            values["confirmed"] = tuple(dict.fromkeys(raw_confirmed))
        else:
            problems.append(Problem("confirmed", f"must be a list of names, got {raw_confirmed!r}"))

    raw_types = data.get("payment_method_types")
    if raw_types is not None:
        if isinstance(raw_types, list | tuple) and all(isinstance(t, str) for t in raw_types):
            type_problems = _payment_method_problems(tuple(raw_types))
            if type_problems:
                problems.extend(type_problems)
            else:
                values["payment_method_types"] = tuple(
                    t for t in PAYMENT_METHOD_TYPES if t in raw_types
                )
        else:
            problems.append(
                Problem("payment_method_types", f"must be a list of names, got {raw_types!r}")
            )

    overrides = PlanOverrides(**values)
    reported = {p.field for p in problems}
    problems.extend(p for p in validate_overrides(overrides) if p.field not in reported)
    if problems:
        order = {name: index for index, name in enumerate(_OVERRIDE_FIELDS)}
        problems.sort(key=lambda p: order.get(p.field, -1))  # unknown keys first, then in order
        raise InvalidOverrides(problems)
    return overrides


def overrides_to_json(o: PlanOverrides) -> dict[str, Any]:
    """Only the fields a person changed; ``overrides_from_json`` reads it back."""
    result: dict[str, Any] = {}
    for name in _OVERRIDE_FIELDS:
        value = getattr(o, name)
        if value is None:
            continue
        if isinstance(value, date):
            result[name] = value.isoformat()
        elif isinstance(value, tuple):
            result[name] = list(value)
        else:
            result[name] = value
    return result
