"""Coupons (``/v1/coupons``), promotion codes (``/v1/promotion_codes``) and the discounts
that apply them to customers, subscriptions, subscription items, invoices and invoice items.

A discount (``di_…``) is one application of a coupon. ``once`` discounts apply to one
invoice and are then removed; ``repeating`` ones end ``duration_in_months`` after they
start; ``forever`` ones never end. Since API 2025-09-30 the ``coupon`` and
``promotion_code`` parameters of customers and subscriptions are gone (``discounts[]``
replaces them); requests pinned to an older version may still send them.
"""

from __future__ import annotations

import copy
import re
import string
from fractions import Fraction
from typing import Any

from . import money
from .call import Call
from .errors import StripeError, invalid_param, invalid_request, no_such
from .params import Params, metadata_patch
from .state import State
from .store import created_filter, random_token, strip_private
from .timeutil import add_interval

JSON = dict[str, Any]

DURATIONS = ["forever", "once", "repeating"]
_CODE = re.compile(r"^[a-zA-Z0-9_-]{1,500}$")


# -- coupons ------------------------------------------------------------------------------------


def percent(coupon: JSON) -> Fraction | None:
    value = coupon.get("_percent_off")
    return Fraction(value) if value is not None else None


def is_valid(coupon: JSON, at: int) -> bool:
    if coupon.get("_deleted"):
        return False
    if coupon["redeem_by"] is not None and at > coupon["redeem_by"]:
        return False
    limit = coupon["max_redemptions"]
    return limit is None or coupon["times_redeemed"] < limit


def create_coupon(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        ["id", "amount_off", "currency", "percent_off", "duration", "duration_in_months",
         "max_redemptions", "redeem_by", "name", "metadata", "applies_to", "currency_options"]
    )  # fmt: skip
    coupon_id = p.get_str("id") or random_token(8)
    if call.store.objects.get(coupon_id) is not None:
        raise StripeError(400, "Coupon already exists.", code="resource_already_exists", param="id")
    amount_off = p.get_int("amount_off", minimum=1)
    percent_text = p.get_str("percent_off")
    percent_off: Fraction | None = None
    if percent_text is not None:
        percent_off = money.parse_decimal(percent_text)
        if percent_off is None or not 0 < percent_off <= 100:
            raise invalid_param(
                "percent_off", "Invalid percent_off: must be between 0 and 100.", None
            )
    if (amount_off is None) == (percent_off is None):
        raise StripeError(
            400,
            "You must set either `percent_off` or `amount_off` and `currency`.",
            param="percent_off" if amount_off is None else "amount_off",
        )
    currency = p.get_str("currency")
    if amount_off is not None and currency is None:
        raise StripeError(
            400,
            "You must pass `currency` when passing `amount_off`.",
            code="parameter_missing",
            param="currency",
        )
    duration = p.get_enum("duration", DURATIONS) or "once"
    months = p.get_int("duration_in_months", minimum=1)
    if duration == "repeating" and months is None:
        raise StripeError(
            400,
            "You must pass `duration_in_months` when `duration` is `repeating`.",
            code="parameter_missing",
            param="duration_in_months",
        )
    if duration != "repeating" and months is not None:
        raise invalid_param(
            "duration_in_months",
            "You can only pass `duration_in_months` when `duration` is `repeating`.",
            None,
        )
    applies = p.sub("applies_to")
    products: list[str] | None = None
    if applies is not None:
        applies.reject_unknown(["products"])
        products = applies.str_list("products") or []
    coupon: JSON = {
        "id": coupon_id,
        "object": "coupon",
        "amount_off": amount_off,
        "created": int(call.state.now()),
        "currency": currency.lower() if currency else None,
        "duration": duration,
        "duration_in_months": months,
        "livemode": False,
        "max_redemptions": p.get_int("max_redemptions", minimum=1),
        "metadata": {},
        "name": p.get_str("name"),
        "percent_off": money.json_number(percent_off) if percent_off is not None else None,
        "redeem_by": p.get_int("redeem_by", minimum=0),
        "times_redeemed": 0,
        "valid": True,
        "_percent_off": str(percent_off) if percent_off is not None else None,
    }
    if products is not None:
        coupon["applies_to"] = {"products": products}
    metadata_patch(p, coupon["metadata"])
    call.store.add(coupon)
    call.state.emit("coupon.created", coupon)
    return call.store.render(coupon)


def _coupon(call: Call) -> JSON:
    coupon = call.store.get(call.arg(), "coupon")
    if coupon is None:
        raise no_such("coupon", call.arg())
    return coupon


def retrieve_coupon(call: Call) -> JSON:
    return call.store.render(_coupon(call))


def render_coupon(state: State, coupon: JSON) -> JSON:
    """A coupon with ``valid`` as of now (redeem_by and max_redemptions decide it)."""
    body: JSON = strip_private(coupon)
    body["valid"] = is_valid(coupon, int(state.now()))
    return body


def update_coupon(call: Call) -> JSON:
    coupon = _coupon(call)
    p = call.params
    p.reject_unknown(["metadata", "name", "currency_options"])
    before = call.store.render(coupon)
    given, name = p.get_nullable_str("name")
    if given:
        coupon["name"] = name
    metadata_patch(p, coupon["metadata"])
    after = call.store.render(coupon)
    if after != before:
        call.state.emit("coupon.updated", coupon, previous=before)
    return after


def delete_coupon(call: Call) -> JSON:
    coupon = _coupon(call)
    snapshot = copy.deepcopy(coupon)
    coupon["_deleted"] = True
    call.state.emit("coupon.deleted", snapshot)
    return {"id": coupon["id"], "object": "coupon", "deleted": True}


def list_coupons(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(["created", "limit", "starting_after", "ending_before"])
    in_range = created_filter(p)
    return call.store.list_kind("coupon", lambda c: in_range(c["created"]), p, "/v1/coupons")


# -- promotion codes ----------------------------------------------------------------------------


def create_promotion_code(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        ["coupon", "promotion", "code", "active", "customer", "expires_at", "max_redemptions",
         "metadata", "restrictions", "customer_account"]
    )  # fmt: skip
    coupon_id = p.get_str("coupon")
    promotion = p.sub("promotion")
    if promotion is not None:
        promotion.reject_unknown(["type", "coupon"])
        promotion.get_enum("type", ["coupon"], required=True)
        coupon_id = promotion.get_str("coupon", required=True)
    if coupon_id is None:
        raise StripeError(
            400,
            "Missing required param: promotion[coupon].",
            code="parameter_missing",
            param="promotion[coupon]",
        )
    param = "coupon" if p.has("coupon") else "promotion[coupon]"
    coupon = call.store.require(coupon_id, "coupon", param=param, status=400)
    code = (
        p.get_str("code")
        or "".join(
            c for c in random_token(12).upper() if c in string.ascii_uppercase + string.digits
        )[:8]
    )
    if not _CODE.match(code):
        raise invalid_param("code", "Invalid code: letters, digits, '-' and '_' only.", None)
    if any(
        pc["code"].lower() == code.lower() and pc["active"]
        for pc in call.store.all("promotion_code")
    ):
        raise invalid_param(
            "code",
            "An active promotion code with `code` already exists.",
            "resource_already_exists",
        )
    customer_id = p.get_str("customer")
    if customer_id is not None:
        call.store.require(customer_id, "customer", param="customer", status=400)
    restrictions = p.sub("restrictions")
    minimum: int | None = None
    minimum_currency: str | None = None
    first_time = False
    if restrictions is not None:
        restrictions.reject_unknown(
            ["first_time_transaction", "minimum_amount", "minimum_amount_currency",
             "currency_options"]
        )  # fmt: skip
        first_time = bool(restrictions.get_bool("first_time_transaction"))
        minimum = restrictions.get_int("minimum_amount", minimum=0)
        minimum_currency = restrictions.get_str("minimum_amount_currency")
    active = p.get_bool("active")
    promo: JSON = {
        "id": call.store.new_id("promo_"),
        "object": "promotion_code",
        "active": True if active is None else active,
        "code": code,
        "created": int(call.state.now()),
        "customer": customer_id,
        "customer_account": None,
        "expires_at": p.get_int("expires_at", minimum=0),
        "livemode": False,
        "max_redemptions": p.get_int("max_redemptions", minimum=1),
        "metadata": {},
        "promotion": {"coupon": coupon["id"], "type": "coupon"},
        "restrictions": {
            "first_time_transaction": first_time,
            "minimum_amount": minimum,
            "minimum_amount_currency": minimum_currency.lower() if minimum_currency else None,
        },
        "times_redeemed": 0,
    }
    metadata_patch(p, promo["metadata"])
    call.store.add(promo)
    call.state.emit("promotion_code.created", promo)
    return call.store.render(promo)


def _promo(call: Call) -> JSON:
    promo = call.store.get(call.arg(), "promotion_code")
    if promo is None:
        raise no_such("promotion_code", call.arg())
    return promo


def retrieve_promotion_code(call: Call) -> JSON:
    return call.store.render(_promo(call))


def update_promotion_code(call: Call) -> JSON:
    promo = _promo(call)
    p = call.params
    p.reject_unknown(["active", "metadata", "restrictions"])
    before = call.store.render(promo)
    active = p.get_bool("active")
    if active is not None:
        promo["active"] = active
    metadata_patch(p, promo["metadata"])
    after = call.store.render(promo)
    if after != before:
        call.state.emit("promotion_code.updated", promo, previous=before)
    return after


def list_promotion_codes(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        ["active", "code", "coupon", "customer", "created", "limit", "starting_after",
         "ending_before"]
    )  # fmt: skip
    active = p.get_bool("active")
    code = p.get_str("code")
    coupon = p.get_str("coupon")
    customer = p.get_str("customer")
    in_range = created_filter(p)
    return call.store.list_kind(
        "promotion_code",
        lambda x: (
            (active is None or x["active"] == active)
            and (code is None or x["code"].lower() == code.lower())
            and (coupon is None or x["promotion"]["coupon"] == coupon)
            and (customer is None or x["customer"] == customer)
            and in_range(x["created"])
        ),
        p,
        "/v1/promotion_codes",
    )


# -- discounts ----------------------------------------------------------------------------------


def new_discount(
    state: State,
    coupon: JSON,
    at: int,
    *,
    customer: str | None,
    promotion_code: JSON | None = None,
    subscription: str | None = None,
    subscription_item: str | None = None,
    invoice: str | None = None,
    invoice_item: str | None = None,
) -> JSON:
    """Redeem ``coupon`` (and ``promotion_code``) once into a new discount."""
    end = None
    if coupon["duration"] == "repeating":
        end = add_interval(at, "month", int(coupon["duration_in_months"]))
    discount: JSON = {
        "id": state.store.new_id("di_"),
        "object": "discount",
        "checkout_session": None,
        "customer": customer,
        "customer_account": None,
        "end": end,
        "invoice": invoice,
        "invoice_item": invoice_item,
        "promotion_code": promotion_code["id"] if promotion_code else None,
        "source": {"coupon": coupon["id"], "type": "coupon"},
        "start": at,
        "subscription": subscription,
        "subscription_item": subscription_item,
    }
    state.store.add(discount)
    coupon["times_redeemed"] += 1
    if promotion_code is not None:
        promotion_code["times_redeemed"] += 1
    return discount


def coupon_of(state: State, discount: JSON) -> JSON:
    return state.store.objects[discount["source"]["coupon"]]


def render_discount(state: State, discount_id: str) -> JSON:
    """A discount as embedded in a customer (``customer.discount``), coupon expanded."""
    body = state.store.render(state.store.objects[discount_id])
    body["source"]["coupon"] = render_coupon(
        state, coupon_of(state, state.store.objects[discount_id])
    )
    return body


def _redeemable(state: State, coupon: JSON, param: str, at: int) -> None:
    if not is_valid(coupon, at):
        raise invalid_request(f"Coupon expired: {coupon['id']}", param=param, code="coupon_expired")


def _promotion(state: State, value: str, param: str, customer: str | None, at: int) -> JSON:
    promo = state.store.get(value, "promotion_code")
    if promo is None:
        raise no_such("promotion code", value, param=param, status=400)
    limit = promo["max_redemptions"]
    expired = promo["expires_at"] is not None and at > promo["expires_at"]
    if not promo["active"] or expired or (limit is not None and promo["times_redeemed"] >= limit):
        raise invalid_request(
            f"This promotion code cannot be redeemed: {promo['code']}.", param=param
        )
    if promo["customer"] is not None and promo["customer"] != customer:
        raise invalid_request(
            "This promotion code cannot be redeemed because the associated customer doesn't "
            "match the one provided.",
            param=param,
        )
    return promo


def parse_discounts(
    state: State,
    p: Params,
    at: int,
    *,
    customer: str | None,
    key: str = "discounts",
    **links: str | None,
) -> list[str] | None:
    """``discounts[]`` (each ``coupon``, ``promotion_code`` or an existing ``discount``) as
    new (or reused) discount ids; ``""`` clears (an empty list); None when not given."""
    if not p.has(key):
        return None
    entries = p.items(key)
    ids: list[str] = []
    for entry in entries:
        entry.reject_unknown(["coupon", "discount", "promotion_code"])
        given = [k for k in ("coupon", "discount", "promotion_code") if entry.has(k)]
        if len(given) != 1:
            raise invalid_param(
                entry.name("coupon"),
                "You must specify exactly one of `coupon`, `discount` or `promotion_code`.",
                None,
            )
        kind = given[0]
        value = entry.get_str(kind, required=True)
        assert value is not None
        if kind == "discount":
            existing = state.store.get(value, "discount")
            if existing is None:
                raise no_such("discount", value, param=entry.name(kind), status=400)
            ids.append(value)
            continue
        promo = None
        if kind == "promotion_code":
            promo = _promotion(state, value, entry.name(kind), customer, at)
            coupon = state.store.objects[promo["promotion"]["coupon"]]
        else:
            coupon = state.store.require(value, "coupon", param=entry.name(kind), status=400)
        _redeemable(state, coupon, entry.name(kind), at)
        discount = new_discount(state, coupon, at, customer=customer, promotion_code=promo, **links)
        ids.append(discount["id"])
    if len(ids) > 20:
        raise invalid_param(key, "You can apply at most 20 discounts.", None)
    return ids


def legacy_coupon(
    state: State, p: Params, at: int, *, customer: str | None, **links: str | None
) -> list[str] | None:
    """``coupon``/``promotion_code`` (API versions before 2025-09-30) as a discount list."""
    if p.has("coupon"):
        value = p.get_str("coupon", allow_empty=True)
        if not value:
            return []
        coupon = state.store.require(value, "coupon", param="coupon", status=400)
        _redeemable(state, coupon, "coupon", at)
        plain = new_discount(state, coupon, at, customer=customer)
        return [_link(plain, links)["id"]]
    if p.has("promotion_code"):
        value = p.get_str("promotion_code", allow_empty=True)
        if not value:
            return []
        promo = _promotion(state, value, "promotion_code", customer, at)
        coupon = state.store.objects[promo["promotion"]["coupon"]]
        _redeemable(state, coupon, "promotion_code", at)
        promoted = new_discount(state, coupon, at, customer=customer, promotion_code=promo)
        return [_link(promoted, links)["id"]]
    return None


def _link(discount: JSON, links: dict[str, str | None]) -> JSON:
    """Record what a discount belongs to (``subscription``, ``invoice_item``...)."""
    for key, value in links.items():
        discount[key] = value
    return discount


def active(state: State, discount_ids: list[str], at: int) -> list[JSON]:
    """The discounts among ``discount_ids`` still in force at ``at``."""
    found = []
    for discount_id in discount_ids:
        discount = state.store.objects.get(discount_id)
        if discount is None or discount.get("_deleted"):
            continue
        if discount["end"] is not None and at >= discount["end"]:
            continue
        found.append(discount)
    return found


def applies_to_line(state: State, discount: JSON, line: JSON, currency: str) -> bool:
    coupon = coupon_of(state, discount)
    if coupon["amount_off"] is not None and coupon["currency"] != currency:
        return False
    products = (coupon.get("applies_to") or {}).get("products")
    if products is not None:
        details = (line.get("pricing") or {}).get("price_details") or {}
        return details.get("product") in products
    return True


def end_once(state: State, discount_ids: list[str], at: int) -> list[str]:
    """After an invoice used them, ``once`` discounts leave their owner (the invoice keeps
    them): the ids kept. A subscription's or customer's discount that ends this way emits
    ``customer.discount.deleted``."""
    kept = []
    for discount_id in discount_ids:
        discount = state.store.objects.get(discount_id)
        if discount is None:
            continue
        if coupon_of(state, discount)["duration"] == "once":
            if discount["invoice"] is None and discount["invoice_item"] is None:
                state.emit("customer.discount.deleted", discount, at=at)
            continue
        kept.append(discount_id)
    return kept


# -- customer.discount --------------------------------------------------------------------------


def set_customer_discount(
    state: State, customer: JSON, discount_ids: list[str], at: int, *, emit: bool = True
) -> None:
    """The customer's discount (one at most), with ``customer.discount.*`` events."""
    old = customer.get("_discount")
    new = discount_ids[0] if discount_ids else None
    if old == new:
        return
    customer["_discount"] = new
    if not emit:
        return
    if old is not None and new is not None:
        previous = {"source": {"coupon": coupon_of(state, state.store.objects[old])["id"]}}
        state.emit("customer.discount.updated", state.store.objects[new], previous=previous, at=at)
    elif new is not None:
        state.emit("customer.discount.created", state.store.objects[new], at=at)
    elif old is not None:
        state.emit("customer.discount.deleted", state.store.objects[old], at=at)


def customer_discount_ids(state: State, customer: JSON) -> list[str]:
    discount = customer.get("_discount")
    return [] if discount is None else [discount]


def delete_customer_discount(call: Call) -> JSON:
    customer = call.store.require(call.arg(), "customer")
    discount_id = customer.get("_discount")
    if discount_id is None:
        raise invalid_request(f"No active discount for customer: '{customer['id']}'")
    body = call.store.render(call.store.objects[discount_id])
    set_customer_discount(call.state, customer, [], call.state.time_for_customer(customer))
    return {**body, "deleted": True, "object": "discount"}
