"""``/v1/tax_rates``: manual tax rates, exclusive or inclusive, applied per line item."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from . import money
from .call import Call
from .errors import StripeError, invalid_param, no_such
from .params import Params, metadata_patch
from .state import State
from .store import created_filter

JSON = dict[str, Any]

TAX_TYPES = [
    "amusement_tax", "communications_tax", "gst", "hst", "igst", "jct", "lease_tax", "pst",
    "qst", "retail_delivery_fee", "rst", "sales_tax", "service_tax", "vat",
]  # fmt: skip


def percentage(rate: JSON) -> Fraction:
    return Fraction(rate["_percentage"])


def create(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        ["display_name", "inclusive", "percentage", "active", "country", "description",
         "jurisdiction", "metadata", "state", "tax_type"]
    )  # fmt: skip
    name = p.get_str("display_name", required=True)
    inclusive = p.get_bool("inclusive")
    if inclusive is None:
        raise StripeError(
            400, "Missing required param: inclusive.", code="parameter_missing", param="inclusive"
        )
    text = p.get_str("percentage", required=True)
    assert text is not None
    value = money.parse_decimal(text)
    if value is None or not 0 <= value <= 100:
        raise invalid_param("percentage", "Invalid percentage: must be between 0 and 100.", None)
    active = p.get_bool("active")
    rate: JSON = {
        "id": call.store.new_id("txr_"),
        "object": "tax_rate",
        "active": True if active is None else active,
        "country": p.get_str("country"),
        "created": int(call.state.now()),
        "description": p.get_str("description"),
        "display_name": name,
        "effective_percentage": money.json_number(value),
        "flat_amount": None,
        "inclusive": inclusive,
        "jurisdiction": p.get_str("jurisdiction"),
        "jurisdiction_level": None,
        "livemode": False,
        "metadata": {},
        "percentage": money.json_number(value),
        "rate_type": "percentage",
        "state": p.get_str("state"),
        "tax_type": p.get_enum("tax_type", TAX_TYPES),
        "_percentage": str(value),
    }
    metadata_patch(p, rate["metadata"])
    call.store.add(rate)
    call.state.emit("tax_rate.created", rate)
    return call.store.render(rate)


def _rate(call: Call) -> JSON:
    rate = call.store.get(call.arg(), "tax_rate")
    if rate is None:
        raise no_such("tax_rate", call.arg())
    return rate


def retrieve(call: Call) -> JSON:
    return call.store.render(_rate(call))


def update(call: Call) -> JSON:
    rate = _rate(call)
    p = call.params
    p.reject_unknown(
        ["active", "country", "description", "display_name", "jurisdiction", "metadata", "state",
         "tax_type"]
    )  # fmt: skip
    before = call.store.render(rate)
    active = p.get_bool("active")
    if active is not None:
        rate["active"] = active
    for key in ("country", "description", "jurisdiction", "state"):
        given, value = p.get_nullable_str(key)
        if given:
            rate[key] = value
    name = p.get_str("display_name")
    if name is not None:
        rate["display_name"] = name
    metadata_patch(p, rate["metadata"])
    after = call.store.render(rate)
    if after != before:
        call.state.emit("tax_rate.updated", rate, previous=before)
    return after


def list_(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(["active", "inclusive", "created", "limit", "starting_after", "ending_before"])
    active = p.get_bool("active")
    inclusive = p.get_bool("inclusive")
    in_range = created_filter(p)
    return call.store.list_kind(
        "tax_rate",
        lambda r: (
            (active is None or r["active"] == active)
            and (inclusive is None or r["inclusive"] == inclusive)
            and in_range(r["created"])
        ),
        p,
        "/v1/tax_rates",
    )


def parse(state: State, p: Params, key: str) -> list[str] | None:
    """A ``tax_rates[]``/``default_tax_rates[]`` parameter: active tax rate ids (``""``
    clears); None when not given."""
    ids = p.str_list(key)
    if ids is None:
        return None
    for index, rate_id in enumerate(ids):
        rate = state.store.get(rate_id, "tax_rate")
        if rate is None:
            raise no_such("tax_rate", rate_id, param=f"{p.name(key)}[{index}]", status=400)
        if not rate["active"]:
            raise invalid_param(
                f"{p.name(key)}[{index}]",
                f"Tax rate {rate_id} is archived; only active tax rates can be applied.",
                None,
            )
    if len(set(ids)) != len(ids):
        raise invalid_param(p.name(key), "A tax rate can be applied only once.", None)
    return ids
