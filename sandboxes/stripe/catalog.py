"""``/v1/products`` and ``/v1/prices``."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from . import money, versions
from .call import Call
from .errors import StripeError, invalid_param, no_such
from .params import Params, metadata_patch
from .store import created_filter

JSON = dict[str, Any]

_INTERVALS = ["day", "month", "week", "year"]
_MAX_INTERVAL_COUNT = {"day": 1095, "week": 156, "month": 36, "year": 3}
_PRODUCT_FIELDS = [
    "name",
    "description",
    "active",
    "metadata",
    "id",
    "images",
    "shippable",
    "statement_descriptor",
    "tax_code",
    "unit_label",
    "url",
    "default_price_data",
    "marketing_features",
    "package_dimensions",
    "type",
]


# -- products -------------------------------------------------------------------------------


def new_product(call: Call, p: Params, *, custom_id: str | None = None) -> JSON:
    now = int(call.state.now())
    product_id = custom_id or call.store.new_id("prod_", 14)
    if custom_id is not None and call.store.objects.get(custom_id) is not None:
        raise StripeError(
            400, "Product already exists.", code="resource_already_exists", param="id"
        )
    product: JSON = {
        "id": product_id,
        "object": "product",
        "active": True,
        "created": now,
        "default_price": None,
        "description": None,
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": {},
        "name": p.get_str("name", required=True),
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "tax_details": None,
        "type": "service",
        "unit_label": None,
        "updated": now,
        "url": None,
    }
    _apply_product(p, product)
    return product


def _apply_product(p: Params, product: JSON) -> None:
    name = p.get_str("name")
    if name is not None:
        product["name"] = name
    active = p.get_bool("active")
    if active is not None:
        product["active"] = active
    for key in ("description", "statement_descriptor", "unit_label", "url", "tax_code"):
        given, value = p.get_nullable_str(key)
        if given:
            product[key] = value
    images = p.str_list("images")
    if images is not None:
        product["images"] = images
    shippable = p.get_bool("shippable")
    if shippable is not None:
        product["shippable"] = shippable
    metadata_patch(p, product["metadata"])


def create_product(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(_PRODUCT_FIELDS)
    custom_id = p.get_str("id")
    product = new_product(call, p, custom_id=custom_id)
    price_data = p.sub("default_price_data")
    price: JSON | None = None
    if price_data is not None:
        price_data.reject_unknown(
            [
                "currency",
                "unit_amount",
                "recurring",
                "metadata",
                "tax_behavior",
                "unit_amount_decimal",
            ]
        )
        price = _new_price(call, price_data, product["id"])
        product["default_price"] = price["id"]
    call.store.add(product)
    call.state.emit("product.created", product)
    if price is not None:
        call.store.add(price)
        call.state.emit("price.created", price)
    return call.store.render(product)


def retrieve_product(call: Call) -> JSON:
    return call.store.render(call.store.require(call.arg(), "product"))


def update_product(call: Call) -> JSON:
    product = call.store.require(call.arg(), "product")
    p = call.params
    p.reject_unknown(
        [f for f in _PRODUCT_FIELDS if f not in ("id", "default_price_data", "type")]
        + ["default_price"]
    )
    before = call.store.render(product)
    given, default_price = p.get_nullable_str("default_price")
    if given and default_price is not None:
        price = call.store.require(default_price, "price", param="default_price", status=400)
        if price["product"] != product["id"]:
            raise invalid_param(
                "default_price",
                f"The price `{default_price}` does not belong to product `{product['id']}`.",
                None,
            )
    _apply_product(p, product)
    if given:
        product["default_price"] = default_price
    after = call.store.render(product)
    if after != before:
        product["updated"] = int(call.state.now())
        call.state.emit("product.updated", product, previous=before)
    return call.store.render(product)


def delete_product(call: Call) -> JSON:
    product = call.store.require(call.arg(), "product")
    if any(pr["product"] == product["id"] for pr in call.store.all("price")):
        raise StripeError(
            400,
            "This product cannot be deleted because it has one or more user-created prices.",
        )
    product["_deleted"] = True
    call.state.emit("product.deleted", {**product, "_deleted": False})
    return {"id": product["id"], "object": "product", "deleted": True}


def list_products(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        ["active", "created", "ids", "limit", "starting_after", "ending_before", "shippable", "url"]
    )
    active = p.get_bool("active")
    ids = p.str_list("ids")
    in_range = created_filter(p)
    products = [
        pr
        for pr in call.store.all("product")
        if (active is None or pr["active"] == active)
        and (ids is None or pr["id"] in ids)
        and in_range(pr["created"])
    ]
    return call.store.list_response(products, p, "/v1/products")


# -- prices ---------------------------------------------------------------------------------


def _lookup_key_owner(call: Call, lookup_key: str) -> JSON | None:
    for price in call.store.all("price"):
        if price["lookup_key"] == lookup_key:
            return price
    return None


def _claim_lookup_key(call: Call, p: Params, lookup_key: str | None, price_id: str) -> JSON | None:
    """The price that loses ``lookup_key`` (with transfer_lookup_key) or an error."""
    if lookup_key is None:
        return None
    owner = _lookup_key_owner(call, lookup_key)
    if owner is None or owner["id"] == price_id:
        return None
    if not p.get_bool("transfer_lookup_key"):
        raise invalid_param(
            "lookup_key",
            f"A price (`{owner['id']}`) already uses that lookup key.",
            None,
        )
    return owner


def unit_amount_of(p: Params, *, required: bool = True) -> Fraction:
    """``unit_amount`` (whole minor units) or ``unit_amount_decimal`` (up to 12 decimal
    places of a minor unit), exactly; exactly one of them."""
    if p.has("unit_amount") and p.has("unit_amount_decimal"):
        raise StripeError(
            400,
            "You may only specify one of these parameters: unit_amount, unit_amount_decimal.",
            param=p.name("unit_amount"),
        )
    whole = p.get_int("unit_amount", minimum=0)
    if whole is not None:
        return Fraction(whole)
    text = p.get_str("unit_amount_decimal")
    if text is not None:
        value = money.parse_decimal(text)
        if value is None or value < 0:
            raise invalid_param(
                p.name("unit_amount_decimal"),
                f"Invalid decimal: {text}. Must be a non-negative number with at most 12 "
                "decimal places.",
                None,
            )
        return value
    if required:
        raise StripeError(
            400,
            f"Missing required param: {p.name('unit_amount')}.",
            code="parameter_missing",
            param=p.name("unit_amount"),
        )
    return Fraction(0)


def price_amount(price: JSON, quantity: int) -> int:
    """What ``quantity`` units of ``price`` cost, in minor units (tiers, decimals and
    ``transform_quantity`` as Stripe computes them)."""
    transform = price.get("transform_quantity")
    if transform is not None:
        divided = Fraction(quantity, int(transform["divide_by"]))
        quantity = (
            -(-divided.numerator // divided.denominator)
            if transform["round"] == "up"
            else divided.numerator // divided.denominator
        )
    if price["billing_scheme"] == "tiered":
        return money.tiered_total(price["tiers"], price["tiers_mode"], quantity)
    unit = money.parse_decimal(str(price["unit_amount_decimal"]))
    assert unit is not None
    return money.unit_total(unit, quantity)


def _tiers(p: Params) -> list[JSON]:
    entries = p.items("tiers")
    if not entries:
        raise StripeError(
            400,
            "Missing required param: tiers.",
            code="parameter_missing",
            param="tiers",
        )
    tiers: list[JSON] = []
    previous = 0
    for index, entry in enumerate(entries):
        entry.reject_unknown(
            ["up_to", "unit_amount", "unit_amount_decimal", "flat_amount", "flat_amount_decimal"]
        )
        up_to_raw = entry.get_str("up_to", required=True)
        last = index == len(entries) - 1
        if up_to_raw == "inf":
            if not last:
                raise invalid_param(
                    entry.name("up_to"), "Only the last tier can have `up_to: inf`.", None
                )
            up_to: int | None = None
        else:
            up_to = entry.get_int("up_to", minimum=1)
            assert up_to is not None
            if up_to <= previous:
                raise invalid_param(
                    entry.name("up_to"), "Tiers must be sorted by `up_to` ascending.", None
                )
            if last:
                raise invalid_param(
                    entry.name("up_to"), "The last tier must have `up_to: inf`.", None
                )
            previous = up_to
        unit = unit_amount_of(entry, required=False)
        flat_whole = entry.get_int("flat_amount", minimum=0)
        flat_text = entry.get_str("flat_amount_decimal")
        flat = (
            Fraction(flat_whole)
            if flat_whole is not None
            else (money.parse_decimal(flat_text) if flat_text is not None else None)
        )
        tiers.append(
            {
                "flat_amount": flat.numerator
                if flat is not None and flat.denominator == 1
                else None,
                "flat_amount_decimal": money.decimal_text(flat) if flat is not None else None,
                "unit_amount": unit.numerator if unit.denominator == 1 else None,
                "unit_amount_decimal": money.decimal_text(unit),
                "up_to": up_to,
            }
        )
    return tiers


def _new_price(call: Call, p: Params, product_id: str) -> JSON:
    currency = p.get_str("currency", required=True)
    assert currency is not None
    if not re.fullmatch(r"[a-zA-Z]{3}", currency):
        raise invalid_param("currency", f"Invalid currency: {currency.lower()}.", None)
    scheme = p.get_enum("billing_scheme", ["per_unit", "tiered"]) or "per_unit"
    tiers: list[JSON] | None = None
    tiers_mode: str | None = None
    unit: Fraction | None = None
    if scheme == "tiered":
        tiers_mode = p.get_enum("tiers_mode", ["graduated", "volume"], required=True)
        tiers = _tiers(p)
    else:
        if p.has("tiers") or p.has("tiers_mode"):
            raise invalid_param(
                "tiers", "Tiers can only be set when `billing_scheme` is `tiered`.", None
            )
        unit = unit_amount_of(p)
    recurring: JSON | None = None
    rec = p.sub("recurring")
    if rec is not None:
        rec.reject_unknown(
            ["interval", "interval_count", "usage_type", "trial_period_days", "meter",
             "aggregate_usage"]
        )  # fmt: skip
        interval = rec.get_enum("interval", _INTERVALS, required=True)
        assert interval is not None
        count = rec.get_int("interval_count", minimum=1) or 1
        if count > _MAX_INTERVAL_COUNT[interval]:
            raise invalid_param(
                rec.name("interval_count"),
                "Invalid interval_count: the maximum billing interval is 3 years "
                "(36 months, 156 weeks, or 1095 days).",
                None,
            )
        usage_type = rec.get_enum("usage_type", ["licensed", "metered"]) or "licensed"
        meter = rec.get_str("meter")
        if meter is not None:
            call.store.require(meter, "billing.meter", param=rec.name("meter"), status=400)
        if usage_type == "metered" and meter is None and not call.before(versions.BASIL):
            raise StripeError(
                400,
                "Metered prices must be backed by a meter: pass `recurring[meter]` (usage "
                "records were removed in API 2025-03-31).",
                code="parameter_missing",
                param=rec.name("meter"),
            )
        recurring = {
            "interval": interval,
            "interval_count": count,
            "meter": meter,
            "trial_period_days": rec.get_int("trial_period_days", minimum=0),
            "usage_type": usage_type,
        }
    transform: JSON | None = None
    transform_p = p.sub("transform_quantity")
    if transform_p is not None:
        transform_p.reject_unknown(["divide_by", "round"])
        divide_by = transform_p.get_int("divide_by", required=True, minimum=1)
        rounding = transform_p.get_enum("round", ["down", "up"], required=True)
        transform = {"divide_by": divide_by, "round": rounding}
    price: JSON = {
        "id": call.store.new_id("price_"),
        "object": "price",
        "active": True,
        "billing_scheme": scheme,
        "created": int(call.state.now()),
        "currency": currency.lower(),
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": product_id,
        "recurring": recurring,
        "tax_behavior": p.get_enum("tax_behavior", ["exclusive", "inclusive", "unspecified"])
        or "unspecified",
        "tiers_mode": tiers_mode,
        "transform_quantity": transform,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit.numerator if unit is not None and unit.denominator == 1 else None,
        "unit_amount_decimal": money.decimal_text(unit) if unit is not None else None,
    }
    if tiers is not None:
        price["tiers"] = tiers
    metadata_patch(p, price["metadata"])
    return price


def create_price(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        [
            "currency",
            "unit_amount",
            "unit_amount_decimal",
            "recurring",
            "product",
            "product_data",
            "lookup_key",
            "transfer_lookup_key",
            "metadata",
            "nickname",
            "active",
            "tax_behavior",
            "billing_scheme",
            "tiers",
            "tiers_mode",
            "transform_quantity",
            "currency_options",
            "custom_unit_amount",
        ]
    )
    product_id = p.get_str("product")
    product_data = p.sub("product_data")
    new_prod: JSON | None = None
    if product_id is not None and product_data is not None:
        raise StripeError(
            400, "You may only specify one of these parameters: product, product_data."
        )
    if product_id is not None:
        call.store.require(product_id, "product", param="product", status=400)
    elif product_data is not None:
        product_data.reject_unknown(
            ["name", "active", "id", "metadata", "statement_descriptor", "tax_code", "unit_label"]
        )
        new_prod = new_product(call, product_data, custom_id=product_data.get_str("id"))
        product_id = new_prod["id"]
    else:
        raise StripeError(
            400, "Missing required param: product.", code="parameter_missing", param="product"
        )
    price = _new_price(call, p, product_id)
    lookup_key = p.get_str("lookup_key")
    loser = _claim_lookup_key(call, p, lookup_key, price["id"])
    price["lookup_key"] = lookup_key
    given, nickname = p.get_nullable_str("nickname")
    if given:
        price["nickname"] = nickname
    active = p.get_bool("active")
    if active is not None:
        price["active"] = active
    if new_prod is not None:
        call.store.add(new_prod)
        call.state.emit("product.created", new_prod)
    if loser is not None:
        before = call.store.render(loser)
        loser["lookup_key"] = None
        call.state.emit("price.updated", loser, previous=before)
    call.store.add(price)
    call.state.emit("price.created", price)
    return call.store.render(price)


def retrieve_price(call: Call) -> JSON:
    return call.store.render(call.store.require(call.arg(), "price"))


def update_price(call: Call) -> JSON:
    price = call.store.require(call.arg(), "price")
    p = call.params
    p.reject_unknown(
        [
            "active",
            "metadata",
            "lookup_key",
            "transfer_lookup_key",
            "nickname",
            "tax_behavior",
            "currency_options",
        ]
    )
    active = p.get_bool("active")
    given_key, lookup_key = p.get_nullable_str("lookup_key")
    loser = _claim_lookup_key(call, p, lookup_key, price["id"]) if given_key else None
    given_nick, nickname = p.get_nullable_str("nickname")
    before = call.store.render(price)
    if active is not None:
        price["active"] = active
    if given_key:
        price["lookup_key"] = lookup_key
    if given_nick:
        price["nickname"] = nickname
    metadata_patch(p, price["metadata"])
    if loser is not None:
        loser_before = call.store.render(loser)
        loser["lookup_key"] = None
        call.state.emit("price.updated", loser, previous=loser_before)
    after = call.store.render(price)
    if after != before:
        call.state.emit("price.updated", price, previous=before)
    return after


def list_prices(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        [
            "active",
            "created",
            "currency",
            "limit",
            "lookup_keys",
            "product",
            "recurring",
            "starting_after",
            "ending_before",
            "type",
        ]
    )
    active = p.get_bool("active")
    currency = p.get_str("currency")
    product = p.get_str("product")
    price_type = p.get_enum("type", ["one_time", "recurring"])
    lookup_keys = p.str_list("lookup_keys")
    if lookup_keys is not None and len(lookup_keys) > 10:
        raise invalid_param("lookup_keys", "You may only specify up to 10 lookup keys.", None)
    recurring = p.sub("recurring")
    interval = recurring.get_enum("interval", _INTERVALS) if recurring else None
    in_range = created_filter(p)
    prices = [
        pr
        for pr in call.store.all("price")
        if (active is None or pr["active"] == active)
        and (currency is None or pr["currency"] == currency.lower())
        and (product is None or pr["product"] == product)
        and (price_type is None or pr["type"] == price_type)
        and (lookup_keys is None or pr["lookup_key"] in lookup_keys)
        and (interval is None or (pr["recurring"] or {}).get("interval") == interval)
        and in_range(pr["created"])
    ]
    return call.store.list_response(prices, p, "/v1/prices")


# -- legacy plans ---------------------------------------------------------------------------------


def plan_from_price(price: JSON) -> JSON:
    """The ``plan`` view of a recurring price (a plan and its price share one id)."""
    recurring = price["recurring"] or {}
    plan: JSON = {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": price["billing_scheme"],
        "created": price["created"],
        "currency": price["currency"],
        "interval": recurring.get("interval"),
        "interval_count": recurring.get("interval_count"),
        "livemode": False,
        "metadata": dict(price["metadata"]),
        "meter": recurring.get("meter"),
        "nickname": price["nickname"],
        "product": price["product"],
        "tiers_mode": price["tiers_mode"],
        "transform_usage": price["transform_quantity"],
        "trial_period_days": recurring.get("trial_period_days"),
        "usage_type": recurring.get("usage_type", "licensed"),
    }
    if "tiers" in price:
        plan["tiers"] = price["tiers"]
    return plan


def _plan_price(call: Call) -> JSON:
    price = call.store.get(call.arg(), "price")
    if price is None or price["recurring"] is None:
        raise no_such("plan", call.arg())
    return price


def create_plan(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        ["id", "amount", "amount_decimal", "currency", "interval", "interval_count", "product",
         "nickname", "metadata", "active", "usage_type", "billing_scheme", "tiers", "tiers_mode",
         "trial_period_days", "transform_usage", "meter"]
    )  # fmt: skip
    plan_id = p.get_str("id")
    if plan_id is not None and call.store.objects.get(plan_id) is not None:
        raise StripeError(400, "Plan already exists.", code="resource_already_exists", param="id")
    new_prod: JSON | None = None
    raw_product = p.raw("product")
    if isinstance(raw_product, dict):
        product_p = p.sub("product")
        assert product_p is not None
        product_p.reject_unknown(
            ["name", "active", "id", "metadata", "statement_descriptor", "tax_code", "unit_label"]
        )
        new_prod = new_product(call, product_p, custom_id=product_p.get_str("id"))
        product_id = new_prod["id"]
    else:
        product_id = p.get_str("product", required=True)
        assert product_id is not None
        call.store.require(product_id, "product", param="product", status=400)
    data: JSON = {
        "currency": p.raw("currency"),
        "recurring": {
            k: v
            for k, v in {
                "interval": p.raw("interval"),
                "interval_count": p.raw("interval_count"),
                "usage_type": p.raw("usage_type"),
                "trial_period_days": p.raw("trial_period_days"),
                "meter": p.raw("meter"),
            }.items()
            if v is not None
        },
    }
    for source, target in (
        ("amount", "unit_amount"),
        ("amount_decimal", "unit_amount_decimal"),
        ("billing_scheme", "billing_scheme"),
        ("tiers", "tiers"),
        ("tiers_mode", "tiers_mode"),
        ("transform_usage", "transform_quantity"),
    ):
        if p.has(source):
            data[target] = p.raw(source)
    price = _new_price(call, Params(data), product_id)
    if plan_id is not None:
        price["id"] = plan_id
    given, nickname = p.get_nullable_str("nickname")
    if given:
        price["nickname"] = nickname
    active = p.get_bool("active")
    if active is not None:
        price["active"] = active
    metadata_patch(p, price["metadata"])
    if new_prod is not None:
        call.store.add(new_prod)
        call.state.emit("product.created", new_prod)
    call.store.add(price)
    call.state.emit("plan.created", plan_from_price(price))
    call.state.emit("price.created", price)
    return plan_from_price(price)


def retrieve_plan(call: Call) -> JSON:
    return plan_from_price(_plan_price(call))


def update_plan(call: Call) -> JSON:
    price = _plan_price(call)
    p = call.params
    p.reject_unknown(["active", "metadata", "nickname", "product", "trial_period_days"])
    before = plan_from_price(price)
    price_before = call.store.render(price)
    active = p.get_bool("active")
    if active is not None:
        price["active"] = active
    given, nickname = p.get_nullable_str("nickname")
    if given:
        price["nickname"] = nickname
    product_id = p.get_str("product")
    if product_id is not None:
        call.store.require(product_id, "product", param="product", status=400)
        price["product"] = product_id
    days = p.get_int("trial_period_days", minimum=0)
    if days is not None:
        price["recurring"]["trial_period_days"] = days
    metadata_patch(p, price["metadata"])
    after = plan_from_price(price)
    if after != before:
        call.state.emit("plan.updated", after, previous=before)
        call.state.emit("price.updated", price, previous=price_before)
    return after


def delete_plan(call: Call) -> JSON:
    price = _plan_price(call)
    call.params.reject_unknown([])
    plan = plan_from_price(price)
    price["_deleted"] = True
    call.state.emit("plan.deleted", plan)
    return {"id": price["id"], "object": "plan", "deleted": True}


def list_plans(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(["active", "product", "created", "limit", "starting_after", "ending_before"])
    active = p.get_bool("active")
    product = p.get_str("product")
    in_range = created_filter(p)
    page = call.store.list_kind(
        "price",
        lambda x: (
            x["recurring"] is not None
            and (active is None or x["active"] == active)
            and (product is None or x["product"] == product)
            and in_range(x["created"])
        ),
        p,
        "/v1/plans",
    )
    page["data"] = [plan_from_price(call.store.objects[x["id"]]) for x in page["data"]]
    return page
