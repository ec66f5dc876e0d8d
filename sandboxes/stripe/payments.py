"""The payments behind invoices: PaymentIntents, charges, invoice payments and refunds.

As in Stripe, finalizing an invoice with an amount due creates a PaymentIntent for it and a
default InvoicePayment (``/v1/invoice_payments``) linking the two. Each payment attempt on
the PaymentIntent creates a charge (succeeded or failed); a payment that needs 3-D Secure
leaves the PaymentIntent ``requires_action`` without a charge. Refunds take money back from
a succeeded charge, in full or in part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import payment_methods
from .call import Call
from .errors import StripeError, invalid_param, invalid_request, no_such
from .params import metadata_patch
from .state import State
from .store import created_filter, random_token

JSON = dict[str, Any]

REFUND_REASONS = ["duplicate", "fraudulent", "requested_by_customer"]


@dataclass
class Outcome:
    """One payment attempt: ``status`` is succeeded, declined, requires_action or
    no_payment_method; ``decline_code`` is set when declined."""

    status: str
    decline_code: str | None = None
    payment_method: str | None = None


# -- PaymentIntents and invoice payments --------------------------------------------------------


def new_invoice_payment_intent(state: State, invoice: JSON, at: int) -> JSON:
    """The PaymentIntent that collects ``invoice`` and its default InvoicePayment."""
    intent_id = state.store.new_id("pi_")
    types = (invoice.get("payment_settings") or {}).get("payment_method_types") or ["card"]
    intent: JSON = {
        "id": intent_id,
        "object": "payment_intent",
        "allowed_payment_method_types": None,
        "amount": invoice["amount_remaining"],
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": f"{intent_id}_secret_{random_token(24)}",
        "confirmation_method": "automatic",
        "created": at,
        "currency": invoice["currency"],
        "customer": invoice["customer"],
        "customer_account": None,
        "description": "Subscription creation"
        if invoice["billing_reason"] == "subscription_create"
        else ("Subscription update" if invoice["_subscription"] else None),
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "managed_payments": None,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": None,
        "payment_method_types": list(types),
        "payment_record": None,
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "requires_payment_method",
        "transfer_data": None,
        "transfer_group": None,
        "_invoice": invoice["id"],
    }
    state.store.add(intent)
    state.emit("payment_intent.created", intent, at=at)
    payment: JSON = {
        "id": state.store.new_id("inpay_"),
        "object": "invoice_payment",
        "amount_paid": None,
        "amount_requested": invoice["amount_remaining"],
        "created": at,
        "currency": invoice["currency"],
        "invoice": invoice["id"],
        "is_default": True,
        "livemode": False,
        "payment": {"payment_intent": intent_id, "type": "payment_intent"},
        "status": "open",
        "status_transitions": {"canceled_at": None, "paid_at": None},
    }
    state.store.add(payment)
    invoice["_payment_intent"] = intent_id
    invoice["_invoice_payment"] = payment["id"]
    return intent


def intent_of(state: State, invoice: JSON) -> JSON | None:
    return state.store.objects.get(invoice.get("_payment_intent") or "")


def _charge(state: State, intent: JSON, source: JSON, at: int, failure: str | None) -> JSON:
    card = payment_methods.card_of(state, source)
    is_pm = source["object"] == "payment_method"
    details: JSON
    if is_pm and source["type"] == "us_bank_account":
        bank = source["us_bank_account"]
        details = {
            "type": "us_bank_account",
            "us_bank_account": {
                "account_holder_type": bank["account_holder_type"],
                "account_type": bank["account_type"],
                "bank_name": bank["bank_name"],
                "fingerprint": bank["fingerprint"],
                "last4": bank["last4"],
                "mandate": None,
                "payment_reference": None,
                "routing_number": bank["routing_number"],
            },
        }
    else:
        shown = source["card"] if is_pm else source
        details = {
            "type": "card",
            "card": {
                "amount_authorized": intent["amount"] if failure is None else None,
                "authorization_code": None,
                "brand": (card.brand if card else "visa"),
                "checks": {
                    "address_line1_check": None,
                    "address_postal_code_check": None,
                    "cvc_check": "pass",
                },
                "country": shown["country"],
                "electronic_commerce_indicator": None,
                "exp_month": shown["exp_month"],
                "exp_year": shown["exp_year"],
                "fingerprint": shown.get("fingerprint"),
                "funding": shown["funding"],
                "installments": None,
                "last4": shown["last4"],
                "mandate": None,
                "network": card.brand if card else "visa",
                "network_token": {"used": False},
                "network_transaction_id": None,
                "regulated_status": "unregulated",
                "three_d_secure": None,
                "transaction_link_id": None,
                "wallet": None,
            },
        }
    charge_id = state.store.new_id("ch_")
    customer = state.store.objects.get(intent["customer"] or "") or {}
    message = payment_methods.decline_error(failure).message if failure else None
    charge: JSON = {
        "id": charge_id,
        "object": "charge",
        "amount": intent["amount"],
        "amount_captured": intent["amount"] if failure is None else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": None if failure else "txn_" + random_token(24),
        "billing_details": (source.get("billing_details") if is_pm else None)
        or {"address": None, "email": None, "name": None, "phone": None, "tax_id": None},
        "calculated_statement_descriptor": "DEALBRIDGE SANDBOX",
        "captured": failure is None,
        "created": at,
        "currency": intent["currency"],
        "customer": intent["customer"],
        "description": intent["description"],
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": "card_declined" if failure else None,
        "failure_message": message,
        "fraud_details": {},
        "livemode": False,
        "metadata": {},
        "on_behalf_of": None,
        "outcome": {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "declined_by_network" if failure else "approved_by_network",
            "reason": failure,
            "risk_level": "normal",
            "seller_message": "The bank did not return any further details with this decline."
            if failure
            else "Payment complete.",
            "type": "issuer_declined" if failure else "authorized",
        },
        "paid": failure is None,
        "payment_intent": intent["id"],
        "payment_method": source["id"] if is_pm else None,
        "payment_method_details": details,
        "receipt_email": customer.get("email"),
        "receipt_number": None,
        "receipt_url": f"{state.base_url}/receipts/{charge_id}",
        "refunded": False,
        "review": None,
        "shipping": None,
        "source": None if is_pm else state.store.render(source),
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "failed" if failure else "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }
    state.store.add(charge)
    intent["latest_charge"] = charge_id
    return charge


def attempt(
    state: State, invoice: JSON, at: int, source: JSON | None, *, off_session: bool
) -> Outcome:
    """Try to collect the invoice's PaymentIntent with ``source`` (a PaymentMethod or card)."""
    intent = intent_of(state, invoice)
    if intent is None:
        intent = new_invoice_payment_intent(state, invoice, at)
    intent["amount"] = invoice["amount_remaining"]
    if source is None:
        intent["last_payment_error"] = None
        return Outcome("no_payment_method")
    is_pm = source["object"] == "payment_method"
    intent["payment_method"] = source["id"] if is_pm else None
    intent["source"] = None if is_pm else source["id"]
    card = payment_methods.card_of(state, source)
    if card is not None and card.authentication == "always":
        intent["status"] = "requires_action"
        intent["next_action"] = {
            "type": "use_stripe_sdk",
            "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": ""},
        }
        intent["last_payment_error"] = None
        state.emit("payment_intent.requires_action", intent, at=at)
        return Outcome("requires_action", payment_method=source["id"])
    failure = card.charge_decline if card is not None else None
    charge = _charge(state, intent, source, at, failure)
    if failure is not None:
        error = payment_methods.decline_error(failure)
        intent["status"] = "requires_payment_method"
        intent["next_action"] = None
        intent["last_payment_error"] = {**error.body()["error"], "charge": charge["id"]}
        if is_pm:
            intent["last_payment_error"]["payment_method"] = state.store.render(source)
            intent["last_payment_error"]["payment_method_type"] = source["type"]
        else:
            intent["last_payment_error"]["source"] = state.store.render(source)
        intent["payment_method"] = None
        state.emit("charge.failed", charge, at=at)
        state.emit("payment_intent.payment_failed", intent, at=at)
        return Outcome("declined", failure, source["id"])
    intent["status"] = "succeeded"
    intent["amount_received"] = intent["amount"]
    intent["next_action"] = None
    intent["last_payment_error"] = None
    state.emit("charge.succeeded", charge, at=at)
    state.emit("payment_intent.succeeded", intent, at=at)
    return Outcome("succeeded", payment_method=source["id"])


def settle_invoice_payment(state: State, invoice: JSON, at: int, *, paid: bool) -> None:
    """The default InvoicePayment follows the invoice: paid (through its PaymentIntent) or
    canceled (paid out of band, voided); an unneeded PaymentIntent is canceled."""
    payment = state.store.objects.get(invoice.get("_invoice_payment") or "")
    intent = intent_of(state, invoice)
    if payment is not None and payment["status"] == "open":
        if paid and intent is not None and intent["status"] == "succeeded":
            payment["status"] = "paid"
            payment["amount_paid"] = intent["amount_received"]
            payment["status_transitions"]["paid_at"] = at
            state.emit("invoice_payment.paid", payment, at=at)
        else:
            payment["status"] = "canceled"
            payment["status_transitions"]["canceled_at"] = at
    if intent is not None and intent["status"] not in ("succeeded", "canceled"):
        intent["status"] = "canceled"
        intent["canceled_at"] = at
        intent["cancellation_reason"] = "void_invoice" if not paid else "automatic"
        intent["next_action"] = None
        state.emit("payment_intent.canceled", intent, at=at)


# -- HTTP: PaymentIntents, charges, invoice payments --------------------------------------------


def retrieve_payment_intent(call: Call) -> JSON:
    intent = call.store.get(call.arg(), "payment_intent")
    if intent is None:
        raise no_such("payment_intent", call.arg())
    return call.store.render(intent)


def list_payment_intents(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(["customer", "created", "limit", "starting_after", "ending_before"])
    customer = p.get_str("customer")
    in_range = created_filter(p)
    return call.store.list_kind(
        "payment_intent",
        lambda i: (customer is None or i["customer"] == customer) and in_range(i["created"]),
        p,
        "/v1/payment_intents",
    )


def retrieve_charge(call: Call) -> JSON:
    charge = call.store.get(call.arg(), "charge")
    if charge is None:
        raise no_such("charge", call.arg())
    return call.store.render(charge)


def list_charges(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        ["customer", "payment_intent", "created", "limit", "starting_after", "ending_before"]
    )
    customer = p.get_str("customer")
    intent = p.get_str("payment_intent")
    in_range = created_filter(p)
    return call.store.list_kind(
        "charge",
        lambda c: (
            (customer is None or c["customer"] == customer)
            and (intent is None or c["payment_intent"] == intent)
            and in_range(c["created"])
        ),
        p,
        "/v1/charges",
    )


def retrieve_invoice_payment(call: Call) -> JSON:
    payment = call.store.get(call.arg(), "invoice_payment")
    if payment is None:
        raise no_such("invoice_payment", call.arg())
    return call.store.render(payment)


def list_invoice_payments(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        ["invoice", "payment", "status", "created", "limit", "starting_after", "ending_before"]
    )
    invoice = p.get_str("invoice")
    status = p.get_enum("status", ["canceled", "open", "paid"])
    payment = p.sub("payment")
    intent: str | None = None
    if payment is not None:
        payment.reject_unknown(["type", "payment_intent", "payment_record"])
        payment.get_enum("type", ["payment_intent", "payment_record"], required=True)
        intent = payment.get_str("payment_intent")
    in_range = created_filter(p)
    return call.store.list_kind(
        "invoice_payment",
        lambda x: (
            (invoice is None or x["invoice"] == invoice)
            and (status is None or x["status"] == status)
            and (intent is None or x["payment"].get("payment_intent") == intent)
            and in_range(x["created"])
        ),
        p,
        "/v1/invoice_payments",
    )


# -- refunds ------------------------------------------------------------------------------------


def refund_charge(
    state: State,
    charge: JSON,
    amount: int | None,
    at: int,
    *,
    reason: str | None = None,
    metadata: dict[str, str] | None = None,
    param: str = "amount",
) -> JSON:
    """Refund ``amount`` (all that remains when None) of a succeeded charge."""
    if charge["status"] != "succeeded":
        raise invalid_request(
            f"Charge {charge['id']} has not succeeded; only succeeded charges can be refunded.",
            code="charge_not_refundable" if charge["status"] == "failed" else None,
        )
    remaining = int(charge["amount_captured"]) - int(charge["amount_refunded"])
    if remaining <= 0:
        raise invalid_request(
            f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
        )
    amount = remaining if amount is None else amount
    if amount > remaining:
        raise invalid_param(
            param,
            f"Refund amount ({_money(amount, charge['currency'])}) is greater than unrefunded "
            f"amount on charge ({_money(remaining, charge['currency'])})",
            "amount_too_large",
        )
    refund: JSON = {
        "id": state.store.new_id("re_"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": "txn_" + random_token(24),
        "charge": charge["id"],
        "created": at,
        "currency": charge["currency"],
        "customer": charge["customer"],
        "customer_account": None,
        "destination_details": {
            "card": {
                "reference_status": "pending",
                "reference_type": "acquirer_reference_number",
                "type": "refund",
            },
            "type": "card",
        },
        "metadata": dict(metadata or {}),
        "payment_intent": charge["payment_intent"],
        "payment_method": charge["payment_method"],
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }
    state.store.add(refund)
    before = state.store.render(charge)
    charge["amount_refunded"] = int(charge["amount_refunded"]) + amount
    charge["refunded"] = charge["amount_refunded"] == charge["amount_captured"]
    state.emit("refund.created", refund, at=at)
    state.emit("charge.refunded", charge, previous=before, at=at)
    return refund


def _money(amount: int, currency: str) -> str:
    from .timeutil import format_money

    return format_money(amount, currency)


def create_refund(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        ["charge", "payment_intent", "amount", "reason", "metadata", "instructions_email",
         "refund_application_fee", "reverse_transfer", "origin", "customer", "currency"]
    )  # fmt: skip
    charge_id = p.get_str("charge")
    intent_id = p.get_str("payment_intent")
    if charge_id is not None and intent_id is not None:
        raise StripeError(
            400, "You may only specify one of these parameters: charge, payment_intent."
        )
    if charge_id is not None:
        charge = call.store.require(charge_id, "charge", param="charge", status=400)
    elif intent_id is not None:
        intent = call.store.require(intent_id, "payment_intent", param="payment_intent", status=400)
        if intent["status"] != "succeeded" or intent["latest_charge"] is None:
            raise invalid_request(
                f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                code="charge_not_refundable",
            )
        charge = call.store.objects[intent["latest_charge"]]
    else:
        raise StripeError(
            400,
            "One of the following params should be provided for this request: payment_intent "
            "or charge.",
        )
    amount = p.get_int("amount", minimum=1)
    reason = p.get_enum("reason", REFUND_REASONS)
    at = call.state.time_for_customer(charge["customer"])
    refund = refund_charge(
        call.state, charge, amount, at, reason=reason, metadata=p.metadata() or {}
    )
    return call.store.render(refund)


def _refund(call: Call) -> JSON:
    refund = call.store.get(call.arg(), "refund")
    if refund is None:
        raise no_such("refund", call.arg())
    return refund


def retrieve_refund(call: Call) -> JSON:
    return call.store.render(_refund(call))


def update_refund(call: Call) -> JSON:
    refund = _refund(call)
    call.params.reject_unknown(["metadata"])
    before = call.store.render(refund)
    metadata_patch(call.params, refund["metadata"])
    after = call.store.render(refund)
    if after != before:
        call.state.emit("refund.updated", refund, previous=before)
        call.state.emit("charge.refund.updated", refund, previous=before)
    return after


def cancel_refund(call: Call) -> JSON:
    refund = _refund(call)
    call.params.reject_unknown([])
    raise invalid_request(
        f"Refund {refund['id']} has a status of {refund['status']}; only refunds that require "
        "action can be canceled.",
        code="refund_unexpected_state",
    )


def list_refunds(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        ["charge", "payment_intent", "created", "limit", "starting_after", "ending_before"]
    )
    charge = p.get_str("charge")
    intent = p.get_str("payment_intent")
    in_range = created_filter(p)
    return call.store.list_kind(
        "refund",
        lambda r: (
            (charge is None or r["charge"] == charge)
            and (intent is None or r["payment_intent"] == intent)
            and in_range(r["created"])
        ),
        p,
        "/v1/refunds",
    )
