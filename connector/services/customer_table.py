"""The overview's customer table as a person asks for it: filtered and sorted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from connector.services.overview import CustomerRow

SORT_KEYS = ("name", "mrr", "net_billing", "unpaid_invoices", "credit_state")


def customer_table(
    rows: Iterable[CustomerRow],
    *,
    sort: str = "name",
    descending: bool = False,
    query: str = "",
    credit_state: str = "",
    currency: str | None = None,
) -> list[CustomerRow]:
    """Filter (name or id contains ``query``, any case; exact credit state) and sort.

    Money columns sort by the amount in ``currency`` (a customer without it counts 0), so
    amounts in different currencies are never compared with each other; without a currency,
    only customers billed in one currency are ordered by amount (the others count 0).
    """
    wanted = query.strip().casefold()
    kept = [
        r
        for r in rows
        if (
            not wanted
            or wanted in r.name.casefold()
            or wanted in r.crm_account_id.casefold()
            or wanted in r.stripe_customer_id.casefold()
        )
        and (not credit_state or r.credit_state == credit_state)
    ]
    key = sort if sort in SORT_KEYS else "name"

    def sort_key(row: CustomerRow) -> tuple[Any, str]:
        value: Any
        if key in ("mrr", "net_billing"):
            amounts: dict[str, int] = getattr(row, key)
            if currency:
                value = amounts.get(currency, 0)
            else:  # never add or compare amounts of different currencies
                value = next(iter(amounts.values())) if len(amounts) == 1 else 0
        elif key == "name":
            value = row.name.casefold()
        else:
            value = getattr(row, key)
        return value, row.crm_account_id

    return sorted(kept, key=sort_key, reverse=descending)
