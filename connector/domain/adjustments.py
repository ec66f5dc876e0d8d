"""Adjustments a person makes on the review page or through the API, as choices that cannot
contradict each other.

The plan's overrides (``domain/plan.PlanOverrides``) are separate fields, some of which only
make sense together: a one-time bill has no billing frequency, and a send date only applies
to a one-time bill. The page offers them as one choice ("How is it billed?") so the form
cannot post a contradiction; the API receives the fields themselves and refuses a
contradiction with a message naming both fields, rather than guessing which one was meant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.domain.deal import Problem

__all__ = [
    "BILLING_CHOICES",
    "ONE_TIME",
    "billing_choice_of",
    "changes_for_billing_choice",
    "contradictions",
]

ONE_TIME = "one_time"

#: The page's "How is it billed?" choices: (value, label). A frequency is posted as an
#: interval alone, never with an invoice type, so that saving the form unchanged changes
#: nothing (an explicit ``recurring`` would also put contract-long items on the schedule).
BILLING_CHOICES: tuple[tuple[str, str], ...] = (
    (ONE_TIME, "One invoice for the whole contract"),
    ("month/1", "Monthly"),
    ("month/3", "Quarterly"),
    ("month/6", "Every 6 months"),
    ("year/1", "Yearly"),
)
_FREQUENCIES = {value: value.partition("/") for value, _ in BILLING_CHOICES if value != ONE_TIME}


def billing_choice_of(
    invoice_type: str | None, interval: str | None, interval_count: int | None
) -> str:
    """The choice that describes a plan as it stands (what the page preselects)."""
    if invoice_type != "recurring" or interval is None:
        return ONE_TIME
    return f"{interval}/{interval_count or 1}"


def changes_for_billing_choice(choice: str) -> dict[str, Any] | None:
    """The override fields one billing choice stands for; ``None`` if it is not a choice."""
    if choice == ONE_TIME:
        return {"invoice_type": ONE_TIME}
    frequency = _FREQUENCIES.get(choice)
    if frequency is None:
        return None
    interval, _, count = frequency
    return {"interval": interval, "interval_count": int(count)}


def contradictions(changes: Mapping[str, Any]) -> tuple[Problem, ...]:
    """Override fields sent together that cannot both hold, each named in the message."""
    problems: list[Problem] = []
    invoice_type = changes.get("invoice_type")
    frequency = [key for key in ("interval", "interval_count") if changes.get(key) is not None]
    if invoice_type == ONE_TIME and frequency:
        given = " and ".join(f"{key} {changes[key]!r}" for key in frequency)
        problems.append(
            Problem(
                frequency[0],
                f"invoice_type 'one_time' bills the whole contract in one invoice, so {given} "
                "contradicts it: send invoice_type 'one_time' without interval, or the "
                "interval without invoice_type 'one_time' to bill on a schedule",
            )
        )
    recurring = invoice_type == "recurring" or (invoice_type is None and frequency)
    if recurring and changes.get("send_date") is not None:
        named = "invoice_type 'recurring'" if invoice_type else f"{frequency[0]} (a schedule)"
        problems.append(
            Problem(
                "send_date",
                f"applies only to a one-time invoice, but {named} bills on a schedule from "
                "start_date: send start_date instead, or invoice_type 'one_time'",
            )
        )
    return tuple(problems)
