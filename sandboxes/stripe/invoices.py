"""Invoices and invoice items: the invoice state machine and its money fields.

Statuses follow Stripe: draft -> open (finalize) -> paid | void | uncollectible, and
uncollectible -> paid. Every transition emits the matching ``invoice.*`` event.
"""

from __future__ import annotations

import copy
from typing import Any

from . import catalog, discounts, money, payment_methods, payments, tax_rates
from .call import Call
from .errors import StripeError, invalid_param, invalid_request, no_such
from .params import Params, metadata_patch
from .state import State
from .store import created_filter
from .timeutil import DAY

JSON = dict[str, Any]

AUTO_FINALIZE_DELAY = 3600
COLLECTION_METHODS = ["charge_automatically", "send_invoice"]
STATUSES = ["draft", "open", "paid", "uncollectible", "void"]
#: Days after the previous failed attempt at which automatic collection is retried.
RETRY_DAYS = (3, 5, 7)


# -- construction -------------------------------------------------------------------------------


def new_invoice(
    state: State,
    customer: JSON,
    *,
    at: int,
    collection_method: str,
    days_until_due: int | None,
    auto_advance: bool,
    billing_reason: str,
    currency: str,
    subscription: JSON | None = None,
    description: str | None = None,
    payment_method_types: list[str] | None = None,
    period: tuple[int, int] | None = None,
) -> JSON:
    invoice_id = state.store.new_id("in_")
    start, end = period or (at, at)
    invoice: JSON = {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "dealbridge Stripe sandbox",
        "account_tax_ids": None,
        "amount_due": 0,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": auto_advance,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": billing_reason,
        "collection_method": collection_method,
        "confirmation_secret": None,
        "created": at,
        "currency": currency,
        "custom_fields": None,
        "customer": customer["id"],
        "customer_account": None,
        "customer_address": None,
        "customer_email": None,
        "customer_name": None,
        "customer_phone": None,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discounts": [],
        "due_date": None,
        "effective_at": None,
        "ending_balance": None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": None,
        "on_behalf_of": None,
        "parent": None,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": payment_method_types,
        },
        "period_end": end,
        "period_start": start,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subtotal": 0,
        "subtotal_excluding_tax": 0,
        "test_clock": customer.get("test_clock"),
        "total": 0,
        "total_discount_amounts": [],
        "total_excluding_tax": 0,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": None,
    }
    if subscription is not None:
        invoice["_subscription"] = subscription["id"]
        invoice["parent"] = {
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(subscription["metadata"]),
                "subscription": subscription["id"],
            },
            "type": "subscription_details",
        }
    if collection_method == "send_invoice" and days_until_due is not None:
        invoice["due_date"] = at + days_until_due * DAY
    invoice["_days_until_due"] = days_until_due
    invoice.setdefault("_subscription", None)
    invoice["_line_tax_rates"] = {}
    invoice["starting_balance"] = int(customer.get("balance") or 0)
    _snapshot_customer(invoice, customer)
    _set_auto_advance(invoice, auto_advance)
    if customer.get("currency") is None:
        customer["currency"] = currency
    state.store.add(invoice)
    return invoice


def _snapshot_customer(invoice: JSON, customer: JSON) -> None:
    invoice["customer_address"] = copy.deepcopy(customer.get("address"))
    invoice["customer_email"] = customer.get("email")
    invoice["customer_name"] = customer.get("name")
    invoice["customer_phone"] = customer.get("phone")
    invoice["customer_shipping"] = copy.deepcopy(customer.get("shipping"))
    invoice["customer_tax_exempt"] = customer.get("tax_exempt", "none")


def _set_auto_advance(invoice: JSON, auto_advance: bool) -> None:
    invoice["auto_advance"] = auto_advance
    if invoice["status"] == "draft":
        invoice["automatically_finalizes_at"] = (
            invoice["created"] + AUTO_FINALIZE_DELAY if auto_advance else None
        )


def pricing_of(price: JSON | None, amount: int, quantity: int) -> JSON:
    """A line's or item's ``pricing``. Without a price (an ``amount`` item) there are no
    ``price_details``: Stripe creates a hidden inline price there; the sandbox does not."""
    pricing: JSON = {"type": "price_details", "unit_amount_decimal": None}
    if price is not None:
        pricing["price_details"] = {"price": price["id"], "product": price["product"]}
        pricing["unit_amount_decimal"] = price["unit_amount_decimal"]
    elif quantity:
        pricing["unit_amount_decimal"] = str(amount // quantity) if amount % quantity == 0 else None
    return pricing


def add_line(
    invoice: JSON,
    state: State,
    *,
    amount: int,
    quantity: int,
    description: str | None,
    period: tuple[int, int],
    price: JSON | None,
    parent: JSON,
    subscription_id: str | None,
    metadata: dict[str, str] | None = None,
    discounts: list[str] | None = None,
    tax_rates: list[JSON] | None = None,
    proration: bool = False,
) -> JSON:
    """Append a line; ``discounts`` are the line's own (item) discounts and ``tax_rates``
    its own rates (None: the invoice's ``default_tax_rates`` apply)."""
    line: JSON = {
        "id": state.store.new_id("il_"),
        "object": "line_item",
        "amount": amount,
        "currency": invoice["currency"],
        "description": description,
        "discount_amounts": [],
        "discountable": True,
        "discounts": list(discounts or []),
        "invoice": invoice["id"],
        "livemode": False,
        "metadata": dict(metadata or {}),
        "parent": parent,
        "period": {"end": period[1], "start": period[0]},
        "pretax_credit_amounts": [],
        "pricing": pricing_of(price, amount, quantity),
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "subscription": subscription_id,
        "subtotal": amount,
        "taxes": [],
    }
    invoice["lines"]["data"].append(line)
    if tax_rates is not None:
        invoice["_line_tax_rates"][line["id"]] = [rate["id"] for rate in tax_rates]
    recompute(state, invoice)
    return line


def attach_item(state: State, invoice: JSON, item: JSON) -> None:
    """Put a pending invoice item on a draft invoice as a line."""
    item["invoice"] = invoice["id"]
    sub_id = (item.get("parent") or {}).get("subscription_details", {}).get("subscription")
    price = None
    details = (item.get("pricing") or {}).get("price_details")
    if details and details.get("price"):
        price = state.store.objects.get(details["price"])
    add_line(
        invoice,
        state,
        amount=item["amount"],
        quantity=item["quantity"],
        description=item["description"],
        period=(item["period"]["start"], item["period"]["end"]),
        price=price,
        parent={
            "invoice_item_details": {
                "invoice_item": item["id"],
                "proration": bool(item.get("proration")),
                "proration_details": {"credited_items": None},
                "subscription": sub_id,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        },
        subscription_id=sub_id,
        metadata=item["metadata"],
        discounts=item["discounts"],
        tax_rates=item["tax_rates"] if item["tax_rates"] else None,
        proration=bool(item.get("proration")),
    )


def pending_items(state: State, customer_id: str, subscription_id: str | None = None) -> list[JSON]:
    """Pending items of the customer (for a subscription invoice: its own and unassigned ones)."""
    items = []
    for item in state.store.all("invoiceitem"):
        if item["customer"] != customer_id or item["invoice"] is not None:
            continue
        item_sub = (item.get("parent") or {}).get("subscription_details", {}).get("subscription")
        if item_sub is not None and item_sub != subscription_id:
            continue
        items.append(item)
    return sorted(items, key=lambda i: (i["date"], i["_seq"]), reverse=True)


def recompute(state: State, invoice: JSON) -> None:
    """Every money field of a draft invoice from its lines, as Stripe computes them.

    Per line: its own discounts, then the invoice's, each on what the earlier ones left
    (percent-off rounded half up per line; amount-off split across the lines it applies to
    in proportion to their amounts); then each tax rate on the discounted amount (exclusive:
    added on top; inclusive: contained in it), rounded per line. ``subtotal`` is the lines
    after their own discounts, ``total`` = subtotal - invoice discounts + exclusive tax, and
    the customer's balance (credit or debit) is applied to ``amount_due``.
    """
    lines = invoice["lines"]["data"]
    invoice["lines"]["total_count"] = len(lines)
    at = int(invoice["created"])
    remaining = {line["id"]: int(line["amount"]) for line in lines}
    applied: dict[str, list[JSON]] = {line["id"]: [] for line in lines}
    totals: dict[str, int] = {}

    def take(discount: JSON, targets: list[JSON]) -> None:
        coupon = discounts.coupon_of(state, discount)
        targets = [
            t
            for t in targets
            if t["discountable"]
            and discounts.applies_to_line(state, discount, t, invoice["currency"])
        ]
        percent = discounts.percent(coupon)
        if percent is not None:
            shares = [money.percent_of(max(remaining[t["id"]], 0), percent) for t in targets]
        else:
            weights = [max(remaining[t["id"]], 0) for t in targets]
            shares = money.distribute(min(int(coupon["amount_off"]), sum(weights)), weights)
        for target, share in zip(targets, shares, strict=True):
            remaining[target["id"]] -= share
            applied[target["id"]].append({"amount": share, "discount": discount["id"]})
            totals[discount["id"]] = totals.get(discount["id"], 0) + share

    for line in lines:
        for discount in discounts.active(state, line["discounts"], at):
            take(discount, [line])
    item_discounts = sum(int(line["amount"]) - remaining[line["id"]] for line in lines)
    for discount in discounts.active(state, invoice["discounts"], at):
        take(discount, lines)
    default_rates = [rate["id"] for rate in invoice["default_tax_rates"]]
    tax_totals: dict[tuple[str, str], list[int]] = {}
    exclusive = inclusive = 0
    for line in lines:
        line["discount_amounts"] = applied[line["id"]]
        taxable = remaining[line["id"]]
        line["taxes"] = []
        for rate_id in invoice["_line_tax_rates"].get(line["id"], default_rates):
            rate = state.store.objects[rate_id]
            pct = tax_rates.percentage(rate)
            if rate["inclusive"]:
                amount = money.inclusive_tax(taxable, pct)
                base, behavior = taxable - amount, "inclusive"
                inclusive += amount
            else:
                amount = money.percent_of(taxable, pct)
                base, behavior = taxable, "exclusive"
                exclusive += amount
            line["taxes"].append(
                {
                    "amount": amount,
                    "tax_behavior": behavior,
                    "tax_rate_details": {"tax_rate": rate_id},
                    "taxability_reason": "standard_rated",
                    "taxable_amount": base,
                    "type": "tax_rate_details",
                }
            )
            bucket = tax_totals.setdefault((rate_id, behavior), [0, 0])
            bucket[0] += amount
            bucket[1] += base
    subtotal = sum(int(line["amount"]) for line in lines) - item_discounts
    invoice_discounts = sum(totals.values()) - item_discounts
    invoice["subtotal"] = subtotal
    invoice["subtotal_excluding_tax"] = subtotal - inclusive
    invoice["total"] = subtotal - invoice_discounts + exclusive
    invoice["total_excluding_tax"] = invoice["total"] - exclusive - inclusive
    invoice["total_discount_amounts"] = [
        {"amount": amount, "discount": discount_id} for discount_id, amount in totals.items()
    ]
    invoice["total_taxes"] = [
        {
            "amount": amount,
            "tax_behavior": behavior,
            "tax_rate_details": {"tax_rate": rate_id},
            "taxability_reason": "standard_rated",
            "taxable_amount": base,
            "type": "tax_rate_details",
        }
        for (rate_id, behavior), (amount, base) in tax_totals.items()
    ]
    if invoice["status"] == "draft":
        customer = state.store.objects.get(invoice["customer"]) or {}
        invoice["starting_balance"] = int(customer.get("balance") or 0)
    applied_balance = _applied_balance(invoice["total"], int(invoice["starting_balance"]))
    invoice["amount_due"] = max(invoice["total"] + applied_balance, 0)
    invoice["amount_remaining"] = invoice["amount_due"] - invoice["amount_paid"]


def _applied_balance(total: int, balance: int) -> int:
    """The part of the customer's balance an invoice uses: a credit (negative) up to the
    total; a debit (positive) in full."""
    if balance < 0:
        return max(balance, -max(total, 0))
    return balance


def _settle_balance(state: State, invoice: JSON, at: int) -> None:
    """At finalization the customer's balance is applied (a ``customer_balance_transaction``
    of type ``applied_to_invoice``); a negative total is credited to the balance."""
    customer = state.store.objects[invoice["customer"]]
    starting = int(customer.get("balance") or 0)
    if starting != invoice["starting_balance"]:
        invoice["starting_balance"] = starting
        recompute(state, invoice)
    applied = _applied_balance(invoice["total"], starting)
    ending = starting - applied + min(invoice["total"], 0)
    invoice["ending_balance"] = ending
    if ending == starting:
        return
    before = state.store.render(customer)
    customer["balance"] = ending
    txn: JSON = {
        "id": state.store.new_id("cbtxn_"),
        "object": "customer_balance_transaction",
        "amount": ending - starting,
        "checkout_session": None,
        "created": at,
        "credit_note": None,
        "currency": invoice["currency"],
        "customer": customer["id"],
        "customer_account": None,
        "description": None,
        "ending_balance": ending,
        "invoice": invoice["id"],
        "livemode": False,
        "metadata": None,
        "type": "applied_to_invoice" if invoice["total"] >= 0 else "unapplied_from_invoice",
    }
    state.store.add(txn)
    state.emit("customer.updated", customer, previous=before, at=at)


# -- transitions --------------------------------------------------------------------------------


def finalize(state: State, invoice: JSON, at: int) -> None:
    """draft -> open (or straight to paid when nothing is due), numbering it."""
    customer = state.store.objects[invoice["customer"]]
    invoice["number"] = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
    customer["next_invoice_sequence"] += 1
    _snapshot_customer(invoice, customer)
    _settle_balance(state, invoice, at)
    invoice["status"] = "open"
    invoice["status_transitions"]["finalized_at"] = at
    invoice["effective_at"] = at
    invoice["automatically_finalizes_at"] = None
    invoice["webhooks_delivered_at"] = invoice["webhooks_delivered_at"] or at
    if invoice["collection_method"] == "send_invoice" and invoice["_days_until_due"] is not None:
        invoice["due_date"] = at + invoice["_days_until_due"] * DAY
    if invoice["collection_method"] == "charge_automatically" and invoice["auto_advance"]:
        invoice["next_payment_attempt"] = at
    invoice["hosted_invoice_url"] = f"{state.base_url}/invoice/{invoice['id']}"
    invoice["invoice_pdf"] = f"{state.base_url}/invoice/{invoice['id']}/pdf"
    if invoice["amount_due"] > 0:
        payments.new_invoice_payment_intent(state, invoice, at)
    state.emit("invoice.finalized", invoice, at=at)
    if invoice["amount_due"] == 0:
        invoice["attempted"] = True
        mark_paid(state, invoice, at, out_of_band=False, emit_payment=False)


def send(state: State, invoice: JSON, at: int) -> None:
    state.emit("invoice.sent", invoice, at=at)


def payment_source(state: State, invoice: JSON, payment_method: str | None) -> JSON | None:
    """What a payment attempt charges: ``payment_method`` given to ``/pay`` (a test value
    becomes a new PaymentMethod), else the invoice's default chain."""
    if payment_method is not None:
        if payment_method.startswith(("card_", "src_", "ba_")):
            found = state.store.get(payment_method, "card")
            if found is None:
                raise no_such("source", payment_method, param="source", status=400)
            return found
        return payment_methods.materialize(state, payment_method, "payment_method")
    return payment_methods.default_payment_source(state, invoice)


def attempt_payment(
    state: State,
    invoice: JSON,
    at: int,
    payment_method: str | None = None,
    *,
    automatic: bool = True,
) -> payments.Outcome:
    """One attempt to collect ``invoice``: charges its payment source, emits what Stripe
    emits, and (for automatic collection) schedules Stripe's retries after a failure."""
    source = payment_source(state, invoice, payment_method)
    outcome = payments.attempt(state, invoice, at, source, off_session=automatic)
    invoice["attempted"] = True
    invoice["attempt_count"] += 1
    invoice["next_payment_attempt"] = None
    if outcome.status == "succeeded":
        mark_paid(state, invoice, at, out_of_band=False)
        return outcome
    if outcome.status == "requires_action":
        state.emit("invoice.payment_action_required", invoice, at=at)
    elif automatic:
        _schedule_retry(state, invoice, at)
        state.emit("invoice.payment_failed", invoice, at=at)
    else:
        state.emit("invoice.payment_failed", invoice, at=at)
    from . import subscriptions

    subscriptions.on_payment_failed(state, invoice, at)
    if (
        automatic
        and invoice["next_payment_attempt"] is None
        and invoice["collection_method"] == "charge_automatically"
        and invoice["billing_reason"] != "subscription_create"
        and invoice["attempt_count"] > len(RETRY_DAYS)
    ):
        subscriptions.on_retries_exhausted(state, invoice, at)
    return outcome


def _schedule_retry(state: State, invoice: JSON, at: int) -> None:
    """Stripe retries a failed automatic collection: the sandbox follows the custom schedule
    Stripe offers by default (3, 5 and 7 days after the previous attempt); a subscription's
    first invoice is not retried (the subscription stays incomplete)."""
    if (
        invoice["collection_method"] != "charge_automatically"
        or not invoice["auto_advance"]
        or invoice["billing_reason"] == "subscription_create"
    ):
        return
    count = int(invoice["attempt_count"])
    if count <= len(RETRY_DAYS):
        invoice["next_payment_attempt"] = at + RETRY_DAYS[count - 1] * DAY


def mark_paid(
    state: State, invoice: JSON, at: int, *, out_of_band: bool, emit_payment: bool = True
) -> None:
    invoice["status"] = "paid"
    invoice["amount_paid"] = invoice["amount_due"]
    invoice["amount_remaining"] = 0
    invoice["status_transitions"]["paid_at"] = at
    invoice["next_payment_attempt"] = None
    invoice["auto_advance"] = False
    payments.settle_invoice_payment(state, invoice, at, paid=True)
    state.emit("invoice.paid", invoice, at=at)
    if emit_payment and not out_of_band:
        state.emit("invoice.payment_succeeded", invoice, at=at)
    from . import subscriptions

    subscriptions.on_invoice_paid(state, invoice, at)


def void(state: State, invoice: JSON, at: int) -> None:
    payments.settle_invoice_payment(state, invoice, at, paid=False)
    invoice["status"] = "void"
    invoice["status_transitions"]["voided_at"] = at
    invoice["next_payment_attempt"] = None
    invoice["auto_advance"] = False
    state.emit("invoice.voided", invoice, at=at)


def mark_uncollectible(state: State, invoice: JSON, at: int) -> None:
    invoice["status"] = "uncollectible"
    invoice["status_transitions"]["marked_uncollectible_at"] = at
    invoice["next_payment_attempt"] = None
    invoice["auto_advance"] = False
    state.emit("invoice.marked_uncollectible", invoice, at=at)


def _not_open() -> StripeError:
    return invalid_request("You can only pass in open invoices. This invoice isn't open.")


# -- HTTP handlers --------------------------------------------------------------------------------


def _require(call: Call, param: str = "id") -> JSON:
    invoice = call.store.get(call.arg(), "invoice")
    if invoice is None:
        raise no_such("invoice", call.arg(), param=param)
    return invoice


def _collection(p: Params, *, default: str | None) -> tuple[str | None, int | None]:
    method = p.get_enum("collection_method", COLLECTION_METHODS) or default
    days = p.get_int("days_until_due", minimum=0, maximum=10_000)
    due_date = p.get_int("due_date")
    if method == "send_invoice" and days is None and due_date is None:
        raise StripeError(
            400,
            "If invoice collection method is 'send_invoice', you must specify 'due_date' or "
            "'days_until_due'.",
        )
    if method == "charge_automatically" and (days is not None or due_date is not None):
        raise StripeError(
            400,
            "You can only specify 'due_date' or 'days_until_due' if invoice collection method "
            "is 'send_invoice'.",
        )
    return method, days


def _payment_method_types(p: Params) -> list[str] | None:
    settings = p.sub("payment_settings")
    if settings is None:
        return None
    settings.reject_unknown(["payment_method_types", "payment_method_options", "default_mandate"])
    types = settings.str_list("payment_method_types")
    return types or None


_CREATE = [
    "customer",
    "collection_method",
    "days_until_due",
    "due_date",
    "auto_advance",
    "pending_invoice_items_behavior",
    "payment_settings",
    "metadata",
    "description",
    "currency",
    "footer",
    "subscription",
    "discounts",
    "default_tax_rates",
    "default_payment_method",
    "default_source",
]


def create(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(_CREATE)
    customer_id = p.get_str("customer", required=True)
    assert customer_id is not None
    customer = call.store.require(customer_id, "customer", param="customer", status=400)
    method, days = _collection(p, default="charge_automatically")
    assert method is not None
    auto_advance = p.get_bool("auto_advance")
    behavior = p.get_enum("pending_invoice_items_behavior", ["exclude", "include"]) or "exclude"
    types = _payment_method_types(p)
    description = p.get_str("description")
    due_date = p.get_int("due_date")
    at = call.state.time_for_customer(customer)
    pending = pending_items(call.state, customer_id) if behavior == "include" else []
    currency = (
        p.get_str("currency")
        or customer.get("currency")
        or (pending[0]["currency"] if pending else "usd")
    ).lower()
    invoice = new_invoice(
        call.state,
        customer,
        at=at,
        collection_method=method,
        days_until_due=days,
        auto_advance=bool(auto_advance),
        billing_reason="manual",
        currency=currency,
        description=description,
        payment_method_types=types,
    )
    if due_date is not None:
        invoice["due_date"] = due_date
    given, footer = p.get_nullable_str("footer")
    if given:
        invoice["footer"] = footer
    metadata_patch(p, invoice["metadata"])
    _apply_discounts_and_rates(call, invoice, at)
    if invoice["discounts"] == [] and not p.has("discounts"):
        # A one-off invoice inherits the customer's discount, as in Stripe.
        invoice["discounts"] = discounts.customer_discount_ids(call.state, customer)
    _payment_defaults(call, invoice)
    for item in pending:
        if item["currency"] == currency:
            attach_item(call.state, invoice, item)
    recompute(call.state, invoice)
    if invoice["total_discount_amounts"] and customer.get("_discount") in invoice["discounts"]:
        kept = discounts.end_once(
            call.state, discounts.customer_discount_ids(call.state, customer), at
        )
        if not kept:
            discounts.set_customer_discount(call.state, customer, [], at, emit=False)
    call.state.emit("invoice.created", invoice, at=at)
    return call.store.render(invoice)


def _apply_discounts_and_rates(call: Call, invoice: JSON, at: int) -> None:
    """``discounts[]`` and ``default_tax_rates[]`` of a draft (``""`` clears either)."""
    p = call.params
    chosen = discounts.parse_discounts(
        call.state, p, at, customer=invoice["customer"], invoice=invoice["id"]
    )
    if chosen is not None:
        invoice["discounts"] = chosen
    rates = tax_rates.parse(call.state, p, "default_tax_rates")
    if rates is not None:
        invoice["default_tax_rates"] = [
            call.store.render(call.store.objects[rate]) for rate in rates
        ]


def _payment_defaults(call: Call, invoice: JSON) -> None:
    """``default_payment_method``/``default_source``: the customer's own."""
    p = call.params
    given, method = p.get_nullable_str("default_payment_method")
    if given:
        if method is not None:
            pm = call.store.get(method, "payment_method")
            if pm is None or pm["customer"] != invoice["customer"]:
                raise no_such("PaymentMethod", method, param="default_payment_method", status=400)
        invoice["default_payment_method"] = method
    given, source = p.get_nullable_str("default_source")
    if given:
        if source is not None:
            card = call.store.get(source, "card")
            if card is None or card["customer"] != invoice["customer"]:
                raise no_such("source", source, param="default_source", status=400)
        invoice["default_source"] = source


def retrieve(call: Call) -> JSON:
    return call.store.render(_require(call, "invoice"))


_DRAFT_ONLY = [
    "collection_method",
    "days_until_due",
    "due_date",
    "description",
    "footer",
    "payment_settings",
    "discounts",
    "default_tax_rates",
]


def update(call: Call) -> JSON:
    invoice = _require(call)
    p = call.params
    p.reject_unknown(
        [*_DRAFT_ONLY, "metadata", "auto_advance", "default_payment_method", "default_source"]
    )
    if invoice["status"] != "draft":
        for key in _DRAFT_ONLY:
            if p.has(key):
                raise invalid_param(key, "Finalized invoices can't be updated in this way", None)
        if p.has("auto_advance") and invoice["status"] != "open":
            raise invalid_param(
                "auto_advance", "Finalized invoices can't be updated in this way", None
            )
    before = call.store.render(invoice)
    if invoice["status"] == "draft":
        method = p.get_enum("collection_method", COLLECTION_METHODS)
        days = p.get_int("days_until_due", minimum=0)
        new_method = method or invoice["collection_method"]
        if (
            new_method == "send_invoice"
            and days is None
            and invoice["_days_until_due"] is None
            and invoice["due_date"] is None
            and not p.has("due_date")
        ):
            raise StripeError(
                400,
                "If invoice collection method is 'send_invoice', you must specify 'due_date' "
                "or 'days_until_due'.",
            )
        invoice["collection_method"] = new_method
        if new_method == "charge_automatically":
            invoice["due_date"] = None
            invoice["_days_until_due"] = None
        if days is not None:
            invoice["_days_until_due"] = days
            invoice["due_date"] = invoice["created"] + days * DAY
        due_date = p.get_int("due_date")
        if due_date is not None:
            invoice["due_date"] = due_date
        for key in ("description", "footer"):
            given, value = p.get_nullable_str(key)
            if given:
                invoice[key] = value
        types = _payment_method_types(p)
        if p.has("payment_settings"):
            invoice["payment_settings"]["payment_method_types"] = types
        _apply_discounts_and_rates(call, invoice, call.state.time_for_customer(invoice["customer"]))
        recompute(call.state, invoice)
    if invoice["status"] in ("draft", "open"):
        _payment_defaults(call, invoice)
    auto_advance = p.get_bool("auto_advance")
    if auto_advance is not None:
        _set_auto_advance(invoice, auto_advance)
        if invoice["status"] == "open" and invoice["collection_method"] == "charge_automatically":
            # Automatic collection resumes (or stops) with auto_advance.
            invoice["next_payment_attempt"] = (
                call.state.time_for_customer(invoice["customer"]) if auto_advance else None
            )
    metadata_patch(p, invoice["metadata"])
    after = call.store.render(invoice)
    if after != before:
        call.state.emit("invoice.updated", invoice, previous=before)
    return after


def delete(call: Call) -> JSON:
    invoice = _require(call, "invoice")
    if invoice["status"] != "draft":
        raise invalid_request("You can only delete draft invoices.")
    snapshot = copy.deepcopy(invoice)
    invoice["_deleted"] = True
    call.state.emit("invoice.deleted", snapshot)
    return {"id": invoice["id"], "object": "invoice", "deleted": True}


def list_(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        [
            "collection_method",
            "created",
            "customer",
            "due_date",
            "ending_before",
            "limit",
            "starting_after",
            "status",
            "subscription",
        ]
    )
    status = p.get_str("status")
    if status is not None and status not in STATUSES:
        raise invalid_param(
            "status",
            "Invalid status: must be one of draft, open, void, paid, or uncollectible",
            None,
        )
    customer = p.get_str("customer")
    subscription = p.get_str("subscription")
    method = p.get_enum("collection_method", COLLECTION_METHODS)
    in_range = created_filter(p)
    due_in_range = created_filter(p, "due_date")
    has_due_date = p.has("due_date")

    def keep(i: JSON) -> bool:
        return (
            (status is None or i["status"] == status)
            and (customer is None or i["customer"] == customer)
            and (subscription is None or i["_subscription"] == subscription)
            and (method is None or i["collection_method"] == method)
            and in_range(i["created"])
            and (not has_due_date or (i["due_date"] is not None and due_in_range(i["due_date"])))
        )

    return call.store.list_kind("invoice", keep, p, "/v1/invoices")


def lines(call: Call) -> JSON:
    invoice = _require(call, "invoice")
    call.params.reject_unknown(["limit", "starting_after", "ending_before"])
    data = invoice["lines"]["data"]
    limit = call.params.get_int("limit", minimum=1, maximum=100) or 10
    start = 0
    after = call.params.get_str("starting_after")
    if after is not None:
        ids = [line["id"] for line in data]
        if after not in ids:
            raise no_such("line_item", after, param="starting_after", status=400)
        start = ids.index(after) + 1
    page = data[start : start + limit]
    return {
        "object": "list",
        "data": copy.deepcopy(page),
        "has_more": len(data) > start + limit,
        "url": f"/v1/invoices/{invoice['id']}/lines",
    }


def finalize_(call: Call) -> JSON:
    invoice = _require(call)
    call.params.reject_unknown(["auto_advance"])
    if invoice["status"] != "draft":
        raise invalid_request(
            "This invoice is already finalized, you can't re-finalize a non-draft invoice."
        )
    auto_advance = call.params.get_bool("auto_advance")
    if auto_advance is not None:
        invoice["auto_advance"] = auto_advance
    at = call.state.time_for_customer(invoice["customer"])
    finalize(call.state, invoice, at)
    if (
        invoice["status"] == "open"
        and invoice["collection_method"] == "send_invoice"
        and invoice["auto_advance"]
    ):
        send(call.state, invoice, at)
    return call.store.render(invoice)


def send_(call: Call) -> JSON:
    invoice = _require(call, "invoice")
    call.params.reject_unknown([])
    at = call.state.time_for_customer(invoice["customer"])
    if invoice["collection_method"] != "send_invoice":
        raise invalid_request(
            "You can only manually send an invoice if its collection method is 'send_invoice'."
        )
    if invoice["status"] == "draft":
        finalize(call.state, invoice, at)
    elif invoice["status"] != "open":
        raise invalid_request(
            "This invoice cannot be sent right now. Please contact us via "
            "https://support.stripe.com/contact with details, so we can help."
        )
    if invoice["status"] == "open":
        send(call.state, invoice, at)
    return call.store.render(invoice)


def pay(call: Call) -> JSON:
    invoice = _require(call)
    p = call.params
    p.reject_unknown(
        ["paid_out_of_band", "payment_method", "source", "forgive", "mandate", "off_session"]
    )
    out_of_band = bool(p.get_bool("paid_out_of_band"))
    payment_method = p.get_str("payment_method") or p.get_str("source")
    p.get_bool("forgive")
    p.get_bool("off_session")
    if invoice["status"] == "paid":
        raise invalid_request("Invoice is already paid")
    if invoice["status"] == "void":
        raise invalid_request("This invoice has been voided and can no longer be paid.")
    at = call.state.time_for_customer(invoice["customer"])
    if invoice["status"] == "draft":
        finalize(call.state, invoice, at)
        if invoice["status"] == "paid":
            return call.store.render(invoice)
    if out_of_band:
        mark_paid(call.state, invoice, at, out_of_band=True)
        return call.store.render(invoice)
    if payment_source(call.state, invoice, payment_method) is None:
        raise invalid_request(
            "This customer has no attached payment source or default payment method. Please "
            "consider adding a default payment method. For more information, visit "
            "https://stripe.com/docs/billing/subscriptions/payment-methods-setting"
            "#payment-method-priority."
        )
    outcome = attempt_payment(call.state, invoice, at, payment_method, automatic=False)
    intent = payments.intent_of(call.state, invoice)
    if outcome.status == "requires_action":
        raise StripeError(
            402,
            "This payment requires additional user action before it can be completed "
            "successfully. Payment can be completed using the PaymentIntent associated with "
            "the invoice. For more details see: "
            "https://stripe.com/docs/billing/subscriptions/overview#requires-action",
            type="card_error",
            code="invoice_payment_intent_requires_action",
            extra={"payment_intent": call.store.render(intent) if intent else None},
        )
    if outcome.status == "declined":
        assert outcome.decline_code is not None
        raise payment_methods.decline_error(
            outcome.decline_code,
            {"payment_intent": call.store.render(intent) if intent else None},
        )
    return call.store.render(invoice)


def void_(call: Call) -> JSON:
    invoice = _require(call)
    call.params.reject_unknown([])
    if invoice["status"] == "paid":
        raise invalid_request("Invoices with `paid` payments cannot be voided.")
    if invoice["status"] != "open":
        raise _not_open()
    void(call.state, invoice, call.state.time_for_customer(invoice["customer"]))
    return call.store.render(invoice)


def mark_uncollectible_(call: Call) -> JSON:
    invoice = _require(call)
    call.params.reject_unknown([])
    if invoice["status"] == "uncollectible":
        raise invalid_request("This invoice has already been marked uncollectible.")
    if invoice["status"] != "open":
        raise _not_open()
    mark_uncollectible(call.state, invoice, call.state.time_for_customer(invoice["customer"]))
    return call.store.render(invoice)


# -- invoice items ----------------------------------------------------------------------------


def new_invoice_item(
    state: State,
    customer: JSON,
    *,
    at: int,
    amount: int,
    currency: str,
    quantity: int,
    price: JSON | None,
    description: str | None,
    subscription_id: str | None,
    metadata: dict[str, str] | None = None,
    period: tuple[int, int] | None = None,
    discounts: list[str] | None = None,
    tax_rates: list[JSON] | None = None,
    proration: bool = False,
    unit_amount_decimal: str | None = None,
) -> JSON:
    start, end = period or (at, at)
    item: JSON = {
        "id": state.store.new_id("ii_"),
        "object": "invoiceitem",
        "amount": amount,
        "currency": currency,
        "customer": customer["id"],
        "customer_account": None,
        "date": at,
        "description": description,
        "discountable": True,
        "discounts": list(discounts or []),
        "invoice": None,
        "livemode": False,
        "metadata": dict(metadata or {}),
        "net_amount": amount,
        "parent": {
            "subscription_details": {"subscription": subscription_id},
            "type": "subscription_details",
        }
        if subscription_id
        else None,
        "period": {"end": end, "start": start},
        "pricing": pricing_of(price, amount, quantity),
        "proration": proration,
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "tax_rates": list(tax_rates or []),
        "test_clock": customer.get("test_clock"),
    }
    if customer.get("currency") is None:
        customer["currency"] = currency
    state.store.add(item)
    return item


def product_name(state: State, price: JSON) -> str:
    product = state.store.objects.get(price["product"]) or {}
    return str(product.get("name") or "")


def create_item(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        [
            "customer",
            "amount",
            "currency",
            "price_data",
            "pricing",
            "quantity",
            "invoice",
            "description",
            "metadata",
            "subscription",
            "period",
            "discountable",
            "unit_amount_decimal",
            "discounts",
            "tax_rates",
        ]
    )
    customer_id = p.get_str("customer", required=True)
    assert customer_id is not None
    customer = call.store.require(customer_id, "customer", param="customer", status=400)
    amount = p.get_int("amount")
    quantity = p.get_int("quantity", minimum=0)
    if amount is not None and quantity is not None:
        raise StripeError(
            400, "You may only specify one of these parameters: amount, quantity.", param="amount"
        )
    quantity = 1 if quantity is None else quantity
    price: JSON | None = None
    currency = p.get_str("currency")
    description = p.get_str("description")
    pricing = p.sub("pricing")
    price_data = p.sub("price_data")
    sources = [
        name
        for name, given in (
            ("amount", amount is not None),
            ("price_data", price_data is not None),
            ("pricing", pricing is not None),
        )
        if given
    ]
    if len(sources) > 1:
        raise StripeError(
            400, f"You may only specify one of these parameters: {', '.join(sources)}."
        )
    if pricing is not None:
        pricing.reject_unknown(["price"])
        price_id = pricing.get_str("price", required=True)
        assert price_id is not None
        price = call.store.require(price_id, "price", param="pricing[price]", status=400)
        if price["type"] != "one_time":
            raise invalid_param(
                "pricing[price]",
                "The price specified is set to `type=recurring` but this field only accepts "
                "prices with `type=one_time`.",
                None,
            )
        currency = price["currency"]
        amount = catalog.price_amount(price, quantity)
        description = description or product_name(call.state, price)
    elif price_data is not None:
        price_data.reject_unknown(
            ["currency", "product", "unit_amount", "unit_amount_decimal", "tax_behavior"]
        )
        currency = price_data.get_str("currency", required=True)
        product_id = price_data.get_str("product", required=True)
        assert product_id is not None
        product = call.store.require(product_id, "product", param="price_data[product]", status=400)
        amount = money.unit_total(catalog.unit_amount_of(price_data), quantity)
        description = description or product["name"]
    elif p.has("unit_amount_decimal"):
        amount = money.unit_total(catalog.unit_amount_of(p), quantity)
        if currency is None:
            raise StripeError(
                400, "Missing required param: currency.", code="parameter_missing", param="currency"
            )
    elif amount is not None:
        if currency is None:
            raise StripeError(
                400, "Missing required param: currency.", code="parameter_missing", param="currency"
            )
    else:
        raise StripeError(
            400,
            "You must specify either `price_data`, `pricing[price]`, or `amount`.",
            param="amount",
        )
    assert currency is not None and amount is not None
    if customer.get("currency") not in (None, currency.lower()):
        raise invalid_request(
            "You cannot combine currencies on a single customer. This customer has had a "
            f"subscription, coupon, or invoice item with currency {customer['currency']}",
            param="currency",
        )
    invoice: JSON | None = None
    invoice_id = p.get_str("invoice")
    if invoice_id is not None:
        invoice = call.store.require(invoice_id, "invoice", param="invoice", status=400)
        if invoice["status"] != "draft":
            raise StripeError(
                400,
                "Invalid invoice: This invoice is no longer editable",
                code="invoice_not_editable",
                param="invoice",
            )
        if invoice["customer"] != customer_id:
            raise invalid_param("invoice", "The invoice belongs to a different customer.", None)
    subscription_id = p.get_str("subscription")
    if subscription_id is not None:
        call.store.require(subscription_id, "subscription", param="subscription", status=400)
    period = p.sub("period")
    bounds: tuple[int, int] | None = None
    if period is not None:
        start = period.get_int("start", required=True)
        end = period.get_int("end", required=True)
        assert start is not None and end is not None
        bounds = (start, end)
    at = call.state.time_for_customer(customer)
    rates = tax_rates.parse(call.state, p, "tax_rates")
    item = new_invoice_item(
        call.state,
        customer,
        at=at,
        amount=amount,
        currency=currency.lower(),
        quantity=quantity,
        price=price,
        description=description,
        subscription_id=subscription_id,
        period=bounds,
        tax_rates=[call.store.render(call.store.objects[r]) for r in rates or []],
    )
    item["discounts"] = (
        discounts.parse_discounts(call.state, p, at, customer=customer_id, invoice_item=item["id"])
        or []
    )
    metadata_patch(p, item["metadata"])
    if invoice is not None:
        attach_item(call.state, invoice, item)
    call.state.emit("invoiceitem.created", item, at=at)
    return call.store.render(item)


def retrieve_item(call: Call) -> JSON:
    return call.store.render(call.store.require(call.arg(), "invoiceitem"))


def delete_item(call: Call) -> JSON:
    item = call.store.require(call.arg(), "invoiceitem")
    if item["invoice"] is not None:
        invoice = call.store.objects[item["invoice"]]
        if invoice["status"] != "draft":
            raise StripeError(
                400,
                "Invalid invoice: This invoice is no longer editable",
                code="invoice_not_editable",
            )
        invoice["lines"]["data"] = [
            line
            for line in invoice["lines"]["data"]
            if ((line.get("parent") or {}).get("invoice_item_details") or {}).get("invoice_item")
            != item["id"]
        ]
        recompute(call.state, invoice)
    snapshot = copy.deepcopy(item)
    item["_deleted"] = True
    call.state.emit("invoiceitem.deleted", snapshot)
    return {"id": item["id"], "object": "invoiceitem", "deleted": True}


def list_items(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        ["created", "customer", "ending_before", "invoice", "limit", "pending", "starting_after"]
    )
    customer = p.get_str("customer")
    invoice = p.get_str("invoice")
    pending = p.get_bool("pending")
    in_range = created_filter(p)
    items = [
        i
        for i in call.store.all("invoiceitem")
        if (customer is None or i["customer"] == customer)
        and (invoice is None or i["invoice"] == invoice)
        and (pending is None or (i["invoice"] is None) == pending)
        and in_range(i["date"])
    ]
    return call.store.list_response(items, p, "/v1/invoiceitems")
