"""Stripe objects as plain data, for code that stores or compares what Stripe answered."""

from __future__ import annotations

import json
from typing import Any


def plain(obj: Any) -> dict[str, Any]:
    """A Stripe object (``StripeObject``) as JSON-ready data: Decimal fields back to their
    wire strings, nested objects as dicts. Stripe objects are not dicts (``.get`` raises)."""
    data: dict[str, Any] = json.loads(json.dumps(obj.to_dict(), default=str))
    return data
