"""``/v1/customers``: create, retrieve, update, delete, list and search."""

from __future__ import annotations

import copy
import secrets
from typing import Any

from . import discounts, payment_methods, versions
from .call import Call
from .errors import invalid_param, no_such
from .params import Params, metadata_patch
from .search import compile_query, decode_page, encode_page
from .state import State
from .store import created_filter, strip_private

JSON = dict[str, Any]

_WRITABLE = [
    "name",
    "email",
    "description",
    "phone",
    "metadata",
    "address",
    "shipping",
    "preferred_locales",
    "invoice_settings",
    "tax_exempt",
    "invoice_prefix",
    "source",
    "balance",
]
_ADDRESS = ["city", "country", "line1", "line2", "postal_code", "state"]
_SEARCH_FIELDS = {"created": "number", "email": "string", "name": "string", "phone": "string"}


def _address(p: Params, key: str) -> tuple[bool, JSON | None]:
    if not p.has(key):
        return False, None
    if p.raw(key) == "":
        return True, None
    sub = p.sub(key)
    assert sub is not None
    sub.reject_unknown(_ADDRESS)
    return True, {k: sub.get_str(k, allow_empty=True) or None for k in _ADDRESS}


def _apply(call: Call, customer: JSON, attached_now: dict[str, str] | None = None) -> None:
    """Apply the writable fields; ``attached_now`` maps a test PaymentMethod value given as
    ``payment_method`` in the same request to the PaymentMethod it became."""
    p = call.params
    for key in ("name", "email", "description", "phone"):
        given, value = p.get_nullable_str(key)
        if given:
            customer[key] = value
    given, address = _address(p, "address")
    if given:
        customer["address"] = address
    if p.has("shipping"):
        shipping = p.sub("shipping") if p.raw("shipping") != "" else None
        if shipping is not None:
            shipping.reject_unknown(["name", "phone", "address"])
            shipping.require("name")
            _, ship_address = _address(shipping, "address")
            customer["shipping"] = {
                "address": ship_address,
                "name": shipping.get_str("name"),
                "phone": shipping.get_str("phone"),
            }
        else:
            customer["shipping"] = None
    locales = p.str_list("preferred_locales")
    if locales is not None:
        customer["preferred_locales"] = locales
    tax_exempt = p.get_enum("tax_exempt", ["exempt", "none", "reverse"])
    if tax_exempt is not None:
        customer["tax_exempt"] = tax_exempt
    prefix = p.get_str("invoice_prefix")
    if prefix is not None:
        customer["invoice_prefix"] = prefix
    settings = p.sub("invoice_settings")
    if settings is not None:
        settings.reject_unknown(
            ["custom_fields", "default_payment_method", "footer", "rendering_options"]
        )
        given, footer = settings.get_nullable_str("footer")
        if given:
            customer["invoice_settings"]["footer"] = footer
        given, method = settings.get_nullable_str("default_payment_method")
        if given:
            payment_methods.set_default_payment_method(
                call.state,
                customer,
                method,
                attached_now or {},
                "invoice_settings[default_payment_method]",
            )
    balance = p.get_int("balance")
    if balance is not None:
        customer["balance"] = balance
    metadata_patch(p, customer["metadata"])


def _attach_payment_method(call: Call, customer: JSON, at: int) -> dict[str, str]:
    """``payment_method`` on create: attach it (a test value becomes a new PaymentMethod)."""
    value = call.params.get_str("payment_method")
    if value is None:
        return {}
    pm = payment_methods.materialize(call.state, value, "payment_method")
    payment_methods.attach(call.state, pm, customer, at)
    return {value: pm["id"]}


def create(call: Call) -> JSON:
    p = call.params
    p.reject_unknown([*_WRITABLE, "test_clock", "payment_method", *_legacy(call)])
    clock_id = p.get_str("test_clock")
    if clock_id is not None:
        call.store.require(clock_id, "test_helpers.test_clock", param="test_clock", status=400)
    created = call.state.clock_time(clock_id)
    customer: JSON = {
        "id": call.store.new_id("cus_", 14),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": created,
        "currency": None,
        "customer_account": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": None,
        "invoice_prefix": secrets.token_hex(4).upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": None,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": clock_id,
        "_indexed_at": int(call.state.now()),
    }
    call.store.add(customer)
    attached = _attach_payment_method(call, customer, created)
    _apply(call, customer, attached)
    source = p.get_str("source")
    if source is not None:
        payment_methods.add_source(call.state, customer, source, created)
    legacy = discounts.legacy_coupon(call.state, p, created, customer=customer["id"])
    call.state.emit("customer.created", customer)
    if legacy:
        discounts.set_customer_discount(call.state, customer, legacy, created)
    return call.store.render(customer)


def _legacy(call: Call) -> list[str]:
    """``coupon``/``promotion_code``: parameters of API versions before 2025-09-30."""
    return ["coupon", "promotion_code"] if call.before(versions.CLOVER) else []


def make_renderer(state: State) -> Any:
    """Customers render their discount (``discount``) with its coupon."""

    def render(customer: JSON) -> JSON:
        body: JSON = strip_private(customer)
        discount = customer.get("_discount")
        body["discount"] = discounts.render_discount(state, discount) if discount else None
        return body

    return render


def retrieve(call: Call) -> JSON:
    customer = call.store.get(call.arg(), "customer", include_deleted=True)
    if customer is None:
        call.store.require(call.arg(), "customer")
    assert customer is not None
    return call.store.render(customer)


def update(call: Call) -> JSON:
    customer = call.store.require(call.arg(), "customer")
    call.params.reject_unknown([*_WRITABLE, "default_source", *_legacy(call)])
    before = call.store.render(customer)
    _apply(call, customer)
    at = call.state.time_for_customer(customer)
    legacy = discounts.legacy_coupon(call.state, call.params, at, customer=customer["id"])
    if legacy is not None:
        discounts.set_customer_discount(call.state, customer, legacy, at)
    source = call.params.get_str("source")
    if source is not None:
        added = payment_methods.add_source(call.state, customer, source, at)
        customer["default_source"] = added["id"]
    given, default_source = call.params.get_nullable_str("default_source")
    if given:
        if default_source is not None:
            card = call.store.get(default_source, "card")
            if card is None or card["customer"] != customer["id"]:
                raise no_such("source", default_source, param="default_source", status=400)
        customer["default_source"] = default_source
    after = call.store.render(customer)
    if after != before:
        call.state.emit("customer.updated", customer, previous=before)
    return after


def delete(call: Call) -> JSON:
    customer = call.store.require(call.arg(), "customer")
    snapshot = copy.deepcopy(customer)
    customer["_deleted"] = True
    for sub in call.store.all("subscription"):
        if sub["customer"] == customer["id"] and sub["status"] not in (
            "canceled",
            "incomplete_expired",
        ):
            from . import subscriptions

            subscriptions.cancel_now(call.state, sub, reason="cancellation_requested")
    call.state.emit("customer.deleted", snapshot)
    return {"id": customer["id"], "object": "customer", "deleted": True}


def list_(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(["created", "email", "limit", "starting_after", "ending_before", "test_clock"])
    email = p.get_str("email", allow_empty=True)
    clock = p.get_str("test_clock")
    in_range = created_filter(p)

    def keep(c: JSON) -> bool:
        return (
            (email is None or c["email"] == email)
            and (c["test_clock"] == clock)
            and in_range(c["created"])
        )

    return call.store.list_kind("customer", keep, p, "/v1/customers")


def search(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(["query", "limit", "page"])
    query = p.get_str("query", required=True)
    assert query is not None
    limit = p.get_int("limit", minimum=1, maximum=100) or 10
    page = p.get_str("page")
    offset = decode_page(page) if page else 0
    predicate = compile_query(query, _SEARCH_FIELDS)
    indexed_before = int(call.state.now()) - call.state.search_lag_seconds
    matches = sorted(
        (
            c
            for c in call.store.all("customer")
            if c["_indexed_at"] <= indexed_before and predicate(call.store.render(c))
        ),
        key=lambda c: (c["created"], c["_seq"]),
        reverse=True,
    )
    window = matches[offset : offset + limit]
    has_more = len(matches) > offset + limit
    return {
        "object": "search_result",
        "data": [call.store.render(c) for c in window],
        "has_more": has_more,
        "next_page": encode_page(offset + limit) if has_more else None,
        "url": "/v1/customers/search",
    }


# -- /v1/customers/:id/balance_transactions -------------------------------------------------------


def create_balance_transaction(call: Call) -> JSON:
    """An adjustment of the customer's balance (negative: a credit the next invoices use)."""
    customer = call.store.require(call.arg(), "customer")
    p = call.params
    p.reject_unknown(["amount", "currency", "description", "metadata"])
    amount = p.get_int("amount", required=True)
    currency = p.get_str("currency", required=True)
    assert amount is not None and currency is not None
    currency = currency.lower()
    if customer.get("currency") not in (None, currency):
        raise invalid_param(
            "currency",
            f"The currency {currency} does not match the customer's currency "
            f"{customer['currency']}.",
            None,
        )
    at = call.state.time_for_customer(customer)
    before = call.store.render(customer)
    customer["balance"] = int(customer["balance"]) + amount
    customer["currency"] = currency
    txn: JSON = {
        "id": call.store.new_id("cbtxn_"),
        "object": "customer_balance_transaction",
        "amount": amount,
        "checkout_session": None,
        "created": at,
        "credit_note": None,
        "currency": currency,
        "customer": customer["id"],
        "customer_account": None,
        "description": p.get_str("description"),
        "ending_balance": customer["balance"],
        "invoice": None,
        "livemode": False,
        "metadata": {},
        "type": "adjustment",
    }
    metadata_patch(p, txn["metadata"])
    call.store.add(txn)
    call.state.emit("customer.updated", customer, previous=before, at=at)
    return call.store.render(txn)


def _balance_transaction(call: Call) -> JSON:
    customer = call.store.require(call.arg(), "customer")
    txn = call.store.get(call.arg("txn"), "customer_balance_transaction")
    if txn is None or txn["customer"] != customer["id"]:
        raise no_such("customer_balance_transaction", call.arg("txn"))
    return txn


def retrieve_balance_transaction(call: Call) -> JSON:
    return call.store.render(_balance_transaction(call))


def update_balance_transaction(call: Call) -> JSON:
    txn = _balance_transaction(call)
    p = call.params
    p.reject_unknown(["description", "metadata"])
    given, description = p.get_nullable_str("description")
    if given:
        txn["description"] = description
    if txn["metadata"] is None:
        txn["metadata"] = {}
    metadata_patch(p, txn["metadata"])
    return call.store.render(txn)


def list_balance_transactions(call: Call) -> JSON:
    customer = call.store.require(call.arg(), "customer")
    p = call.params
    p.reject_unknown(["created", "invoice", "limit", "starting_after", "ending_before"])
    invoice = p.get_str("invoice")
    in_range = created_filter(p)
    return call.store.list_kind(
        "customer_balance_transaction",
        lambda t: (
            t["customer"] == customer["id"]
            and (invoice is None or t["invoice"] == invoice)
            and in_range(t["created"])
        ),
        p,
        f"/v1/customers/{customer['id']}/balance_transactions",
    )
