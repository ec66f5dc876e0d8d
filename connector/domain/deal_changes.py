"""What changed on a deal after its plan was activated, in words a person can act on.

A closed deal whose plan already bills in Stripe may still be edited in the CRM (a quantity
from 1 to 3, a new line, another start date) or moved out of Closed Won. dealbridge never
changes Stripe on its own then: it compares the deal as activated with the deal as it is
now, flags the plan "changed after activation" with every difference, and offers the
actions a person can take (amend the subscription, cancel it, ignore the change).

Pure: both deals are canonical deal JSON (``domain/deal``), compared field by field; lines
are matched by product (CRM product id, else SKU, else name), as the catalog matches them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACTIONS",
    "FLAG_KEY",
    "LABEL",
    "Difference",
    "describe",
    "differences",
    "differences_from_json",
    "differences_to_json",
]

#: What a person may do about a deal changed after activation.
ACTIONS: tuple[str, ...] = ("amend", "cancel", "ignore")
#: Where the flag lives in the frozen plan's JSON, and how the CRM's plan status shows it.
FLAG_KEY = "changed_after_activation"
LABEL = "Changed after activation"

_DEAL_FIELDS = (
    "currency",
    "contract_start",
    "contract_months",
    "payment_terms",
    "payment_method",
)
_LINE_FIELDS = (
    "quantity", "unit_amount", "pricing_schedule", "discount_percent", "discount_amount",
)  # fmt: skip


@dataclass(frozen=True)
class Difference:
    """``field`` is a dotted path (``line_items[Seats].quantity``, ``closed``)."""

    field: str
    before: Any
    after: Any


def _line_key(line: Mapping[str, Any]) -> str:
    product_id, sku = line.get("product_id"), line.get("sku")
    if product_id:
        return str(product_id)
    if sku:
        return f"sku:{sku}"
    return f"name:{line.get('product')}"


def _lines(deal: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    raw = deal.get("line_items")
    if not isinstance(raw, list):
        return {}
    return {_line_key(line): line for line in raw if isinstance(line, Mapping)}


def differences(
    activated: Mapping[str, Any], now: Mapping[str, Any], *, closed: bool
) -> tuple[Difference, ...]:
    """Every difference between the deal as activated and as it is now, in a stable order:
    the stage first, then the deal's fields, then each line (changed, added, removed)."""
    found: list[Difference] = []
    if not closed:
        found.append(Difference("closed", True, False))
    for name in _DEAL_FIELDS:
        if activated.get(name) != now.get(name):
            found.append(Difference(name, activated.get(name), now.get(name)))
    # The deal's amount off the contract: a discount of 0 is none (a deal activated before it
    # was read has no such key), as on a line.
    was, now_value = _line_value(activated, "discount_amount"), _line_value(now, "discount_amount")
    if was != now_value:
        found.append(Difference("discount_amount", was, now_value))
    before, after = _lines(activated), _lines(now)
    for key, line in before.items():
        product = line.get("product") or key
        other = after.get(key)
        if other is None:
            found.append(Difference(f"line_items[{product}]", _summary(line), None))
            continue
        for name in _LINE_FIELDS:
            was, now_value = _line_value(line, name), _line_value(other, name)
            if was != now_value:
                found.append(Difference(f"line_items[{product}].{name}", was, now_value))
    for key, line in after.items():
        if key not in before:
            product = line.get("product") or key
            found.append(Difference(f"line_items[{product}]", None, _summary(line)))
    return tuple(found)


def _line_value(line: Mapping[str, Any], name: str) -> Any:
    """A line's (or the deal's) field as compared: a discount of 0 is no discount, whether
    the CRM sends 0, "0" or nothing (a deal activated before ``discount_amount`` was read has
    no such key)."""
    value = line.get(name)
    if name in ("discount_percent", "discount_amount") and value in (0, "0", None):
        return None
    return value


def _summary(line: Mapping[str, Any]) -> dict[str, Any]:
    return {name: line.get(name) for name in ("product", *_LINE_FIELDS) if name in line}


def describe(difference: Difference) -> str:
    """One difference in words: ``line_items[Seats].quantity: 1 → 3``."""
    if difference.field == "closed":
        return "the deal is no longer Closed Won (lost or reopened)"
    if difference.before is None:
        return f"{difference.field} added: {_text(difference.after)}"
    if difference.after is None:
        return f"{difference.field} removed (was {_text(difference.before)})"
    return f"{difference.field}: {_text(difference.before)} → {_text(difference.after)}"


def _text(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def differences_to_json(found: tuple[Difference, ...]) -> list[dict[str, Any]]:
    return [{"field": d.field, "before": d.before, "after": d.after} for d in found]


def differences_from_json(data: Any) -> tuple[Difference, ...]:
    if not isinstance(data, list):
        raise ValueError(f"not a list of differences: {data!r}")
    return tuple(Difference(str(d["field"]), d.get("before"), d.get("after")) for d in data)
