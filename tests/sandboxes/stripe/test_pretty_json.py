"""The sandbox's indented JSON (``sandboxes/stripe/pretty.py``) is byte for byte what
``json.dumps(body, indent=2)`` gives, for the bodies the sandbox answers and for values
outside its fast path."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Any

import pytest
import stripe

from sandboxes.stripe import StripeSandbox, pretty

BODIES: dict[str, Any] = {
    "scalars": [None, True, False, 0, -1, 2**70, 1.5, 1e-7, 12345678.9, "", "a"],
    "escapes and non-ASCII": {"s": 'quote " back \\ tab \t nl \n', "u": "Müller €ß 😀"},
    "empty containers": {"d": {}, "l": [], "nested": [{}, [], [[]], {"x": {}}]},
    "deep nesting": {"a": [{"b": [{"c": [1, {"d": None}]}]}]},
    "a list page": {
        "object": "list",
        "data": [{"id": "in_1", "amount_due": 12500, "lines": {"data": [], "has_more": False}}],
        "has_more": True,
        "url": "/v1/invoices",
    },
    "a bool subclass of int stays a bool": {"flag": True, "n": 1},
}

UNUSUAL: dict[str, Any] = {
    "a tuple": {"t": (1, 2)},
    "an OrderedDict": OrderedDict([("b", 1), ("a", 2)]),
    "non-string keys": {1: "one", None: "none", False: "no", 2.5: "x"},
    "an int subclass": {"n": type("Count", (int,), {})(3)},
    "infinity and NaN": {"inf": math.inf, "nan": math.nan},
}


@pytest.mark.parametrize("body", [*BODIES.values(), *UNUSUAL.values()], ids=[*BODIES, *UNUSUAL])
def test_the_text_is_json_dumps_indent_2(body: Any) -> None:
    assert pretty.dumps(body) == json.dumps(body, indent=2)


def test_what_json_refuses_is_refused_the_same_way() -> None:
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(ValueError, match="Circular reference"):
        pretty.dumps(circular)
    with pytest.raises(TypeError, match="not JSON serializable"):
        pretty.dumps({"a": {1, 2}})


def test_a_listed_invoice_page_is_answered_as_json_dumps_would_indent_it() -> None:
    sandbox = StripeSandbox().start()
    try:
        client = stripe.StripeClient(
            "sk_test_pretty0123", base_addresses={"api": sandbox.url}, max_network_retries=0
        )
        customer = client.v1.customers.create(params={"email": "ap@acme.example"}).id
        client.v1.invoice_items.create(
            params={"customer": customer, "amount": 1999, "currency": "usd"}
        )
        client.v1.invoices.create(
            params={"customer": customer, "pending_invoice_items_behavior": "include"}
        )
        response = client.raw_request("get", "/v1/invoices", limit=10)
    finally:
        sandbox.stop()
    assert response.data["data"][0]["amount_due"] == 1999
    assert response.body == json.dumps(json.loads(response.body), indent=2)
