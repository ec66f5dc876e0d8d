"""Builders for the domain tests: a valid canonical deal, changed one field at a time."""

from __future__ import annotations

import copy
from typing import Any


def deal_json(**changes: Any) -> dict[str, Any]:
    """A valid canonical deal JSON; keyword arguments replace top-level keys."""
    data: dict[str, Any] = {
        "id": "006000000000001",
        "name": "Acme renewal 2025",
        "currency": "usd",
        "contract_start": "2025-03-01",
        "contract_months": 12,
        "payment_terms": "Net 30",
        "payment_method": "Credit Card",
        "billing_contact": {"name": "Ada Payer", "email": "ap@acme.example"},
        "account": {
            "id": "001000000000001",
            "name": "Acme Corp",
            "address": {
                "line1": "1 Market St",
                "line2": None,
                "city": "San Francisco",
                "state": "CA",
                "postal_code": "94105",
                "country": "US",
            },
        },
        "line_items": [
            {
                "product": "Platform license",
                "sku": "PLAT-1",
                "quantity": 10,
                "unit_amount": 12000,
                "pricing_schedule": "monthly",
                "product_id": "prod_123",
            }
        ],
    }
    data.update(copy.deepcopy(changes))
    return data


def line_item(**changes: Any) -> dict[str, Any]:
    """A valid line item JSON; keyword arguments replace its keys."""
    item: dict[str, Any] = {
        "product": "Platform license",
        "sku": "PLAT-1",
        "quantity": 1,
        "unit_amount": 10000,
        "pricing_schedule": "monthly",
    }
    item.update(changes)
    return item
