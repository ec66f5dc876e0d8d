"""Automatic charging, trials and deal discounts: the rules, apart from the plan's arithmetic.

Whether a plan charges the customer automatically depends on two things: what the deal asks
(``Deal.payment_collection``) and whether the Stripe customer has a payment method dealbridge
may charge. The second is a fact read from Stripe by the services (``PaymentMethodOnFile``)
and handed in; the decision, and the words that explain it, are here, so they can be tested
by tables of cases. A deal that asks to be charged automatically but cannot be is billed by
sending invoices, and the plan says so and asks a person to confirm: money is never taken
from a card nobody agreed on, and a request is never dropped silently.

A deal discount is a Stripe percent-off coupon on the whole subscription or invoice. Stripe
takes it off each invoice line after the line's own discount and rounds half up per line
(the sandbox does the same: ``sandboxes/stripe/invoices.recompute``); ``percent_off_line``
is that rule, so the plan's invoice schedule is what Stripe bills, to the minor unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from connector.domain.deal import Deal, PaymentCollection, Problem, parse_payment_collection
from connector.domain.money import round_half_up

__all__ = [
    "CHARGEABLE_TYPES",
    "CollectionDecision",
    "CollectionMethod",
    "CustomerPayment",
    "PaymentMethodOnFile",
    "amendment_problems",
    "customer_payment_from_json",
    "customer_payment_from_stripe",
    "customer_payment_to_json",
    "decide_collection",
    "percent_off_line",
    "percent_off_lines",
]

CollectionMethod = Literal["charge_automatically", "send_invoice"]


@dataclass(frozen=True)
class PaymentMethodOnFile:
    """The payment method Stripe would charge: the customer's
    ``invoice_settings.default_payment_method``, or its only attached one."""

    id: str
    type: str  # Stripe's PaymentMethod type: card, us_bank_account, ...
    label: str  # for people: "visa •••• 4242", "STRIPE TEST BANK •••• 6789"
    source: Literal["default", "only_attached"] = "default"


@dataclass(frozen=True)
class CustomerPayment:
    """What dealbridge knows of the customer's payment methods when the plan is computed.

    ``checked`` is False until a Stripe customer is linked and asked; ``method`` is None when
    it was asked and has none dealbridge may charge (none, or several without a default).
    """

    checked: bool = False
    method: PaymentMethodOnFile | None = None
    #: Why there is no method although some are attached (several, none the default).
    why_none: str | None = None


@dataclass(frozen=True)
class CollectionDecision:
    collection_method: CollectionMethod
    payment_method: PaymentMethodOnFile | None
    note: str | None
    #: True when a person must confirm (the deal asked for automatic charging and got
    #: invoices instead).
    needs_confirmation: bool = False


#: Payment method types dealbridge charges automatically: a card or a US bank account.
CHARGEABLE_TYPES = ("card", "us_bank_account")


def decide_collection(
    asked: str | None, payment: CustomerPayment, payment_method_types: tuple[str, ...]
) -> CollectionDecision:
    """How the plan's invoices are collected.

    ``asked`` is the deal's payment collection text; it raises ``ValueError`` when that text
    cannot be read (the plan reports it on the deal's field). Charging automatically needs a
    chargeable method on file whose type is one of the plan's payment method types (Stripe
    refuses to charge a card on an invoice that only accepts bank transfers).
    """
    wanted: PaymentCollection | None = parse_payment_collection(asked)
    if wanted != "charge_automatically":
        return CollectionDecision("send_invoice", None, None)
    fallback = "invoices are emailed for payment instead (send_invoice)"
    method = payment.method
    if not payment.checked:
        why = (
            "The deal asks to charge automatically, but the Stripe customer is not linked yet, "
            "so dealbridge cannot see a payment method on file; " + fallback + ". This is "
            "checked again when the plan is refreshed or approved."
        )
        return CollectionDecision("send_invoice", None, why, needs_confirmation=True)
    if method is None:
        reason = payment.why_none or "the Stripe customer has no payment method on file"
        why = (
            f"The deal asks to charge automatically, but {reason}; {fallback}. Add a card or "
            "US bank account as the customer's default payment method in Stripe and refresh, "
            "or confirm."
        )
        return CollectionDecision("send_invoice", None, why, needs_confirmation=True)
    if method.type not in CHARGEABLE_TYPES:
        why = (
            f"The deal asks to charge automatically, but the customer's payment method "
            f"({method.label}) is a {method.type}, which dealbridge does not charge; "
            f"{fallback}. Confirm, or set a card or US bank account as the default in Stripe."
        )
        return CollectionDecision("send_invoice", None, why, needs_confirmation=True)
    if method.type not in payment_method_types:
        why = (
            f"The deal asks to charge automatically, but the customer's payment method "
            f"({method.label}, a {method.type}) is not one of the plan's payment methods "
            f"({', '.join(payment_method_types)}); {fallback}. Confirm, or add {method.type} "
            "to the payment methods."
        )
        return CollectionDecision("send_invoice", None, why, needs_confirmation=True)
    source = (
        "the customer's default payment method"
        if method.source == "default"
        else "the only payment method attached to the customer"
    )
    note = (
        f"Charged automatically (charge_automatically) to {method.label}, {source}, as the "
        "deal asks; a decline or a request for authentication shows on the CRM invoice record."
    )
    return CollectionDecision("charge_automatically", method, note)


def percent_off_line(amount: int, percent: Decimal) -> int:
    """What a percent-off discount takes off one invoice line of ``amount`` minor units:
    rounded half up, per line, as Stripe does."""
    if amount <= 0:
        return 0
    return round_half_up(Fraction(amount) * Fraction(percent) / 100)


def percent_off_lines(amounts: Iterable[int], percent: Decimal | None) -> int:
    """The discount of an invoice whose lines bill ``amounts`` (after their own discounts)."""
    if percent is None:
        return 0
    return sum(percent_off_line(amount, percent) for amount in amounts)


def _label(method: Mapping[str, Any]) -> str:
    kind = str(method.get("type") or "payment method")
    details = method.get(kind) if isinstance(method.get(kind), Mapping) else {}
    assert isinstance(details, Mapping)
    last4 = details.get("last4")
    name = details.get("brand") or details.get("bank_name") or kind.replace("_", " ")
    return f"{name} •••• {last4}" if last4 else str(name)


def customer_payment_from_stripe(
    default_id: str | None, attached: Iterable[Mapping[str, Any]]
) -> CustomerPayment:
    """The method Stripe charges for this customer: its invoice default, else its only
    attached payment method; none when several are attached and none is the default (which
    one the customer meant is a person's question, not a guess)."""
    methods = [m for m in attached if isinstance(m.get("id"), str)]
    by_id = {str(m["id"]): m for m in methods}
    if default_id is not None and default_id in by_id:
        chosen = by_id[default_id]
        return CustomerPayment(
            True, PaymentMethodOnFile(default_id, str(chosen.get("type")), _label(chosen))
        )
    if len(methods) == 1:
        only = methods[0]
        return CustomerPayment(
            True,
            PaymentMethodOnFile(
                str(only["id"]), str(only.get("type")), _label(only), source="only_attached"
            ),
        )
    if methods:
        return CustomerPayment(
            True,
            None,
            f"the Stripe customer has {len(methods)} payment methods and none is the default",
        )
    return CustomerPayment(True, None)


def customer_payment_to_json(payment: CustomerPayment) -> dict[str, Any]:
    method = payment.method
    return {
        "checked": payment.checked,
        "why_none": payment.why_none,
        "method": None
        if method is None
        else {"id": method.id, "type": method.type, "label": method.label, "source": method.source},
    }


def customer_payment_from_json(data: object) -> CustomerPayment:
    """Read what ``customer_payment_to_json`` stored; anything else is "not checked"."""
    if not isinstance(data, Mapping) or data.get("checked") is not True:
        return CustomerPayment()
    raw = data.get("method")
    method = None
    if isinstance(raw, Mapping):
        source: Literal["default", "only_attached"] = (
            "only_attached" if raw.get("source") == "only_attached" else "default"
        )
        method = PaymentMethodOnFile(
            str(raw.get("id")), str(raw.get("type")), str(raw.get("label")), source
        )
    why = data.get("why_none")
    return CustomerPayment(True, method, why if isinstance(why, str) else None)


def amendment_problems(deal: Deal) -> tuple[Problem, ...]:
    """A trial or a deal discount on a deal that changes a live subscription: not billed yet
    (the change is a subscription update, which carries neither), so refused by name rather
    than dropped. The live subscription keeps its own collection method."""
    problems = []
    if deal.trial_days:
        problems.append(
            Problem(
                "trial_days",
                "a trial on a change to a live subscription is not supported yet; clear it on "
                "this deal (the subscription is already running)",
            )
        )
    if deal.discount_percent is not None:
        problems.append(
            Problem(
                "discount_percent",
                "a deal discount on a change to a live subscription is not supported yet; "
                "clear it on this deal, or use line discounts",
            )
        )
    if deal.discount_amount:
        problems.append(
            Problem(
                "discount_amount",
                "a deal discount amount on a change to a live subscription is not supported "
                "yet; clear it on this deal, or use line discounts",
            )
        )
    return tuple(problems)
