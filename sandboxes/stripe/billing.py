"""The billing engine: replays everything due between the last run and ``until``.

It works per time scope: one test clock (objects of customers attached to that clock) or
real time (``clock_id=None``: customers without a clock). Due work is processed strictly in
time order, so advancing a clock by three months produces each monthly invoice in turn.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from . import invoices, schedules, subscriptions
from .state import State

JSON = dict[str, Any]
Action = tuple[int, int, int, Callable[[int], None]]

_MAX_ACTIONS = 100_000
_LIVE = ("active", "past_due", "unpaid", "trialing")


def _actions(state: State, clock_id: str | None, until: int) -> list[Action]:
    found: list[Action] = []

    def add(at: int | None, priority: int, obj: JSON, run: Callable[[int], None]) -> None:
        if at is not None and at <= until:
            found.append((at, priority, int(obj["_seq"]), run))

    store = state.store
    for schedule in store.all("subscription_schedule"):
        if schedule["test_clock"] != clock_id:
            continue
        add(
            schedules.expiring_at(schedule),
            0,
            schedule,
            partial(schedules.send_expiring, state, schedule),
        )
        when = schedules.next_action_time(schedule)
        if schedule["status"] == "not_started":
            add(when, 0, schedule, partial(schedules.start_schedule, state, schedule))
        elif schedule["status"] == "active":
            add(when, 0, schedule, partial(schedules.advance, state, schedule))
    for sub in store.all("subscription"):
        if sub["test_clock"] != clock_id:
            continue
        if sub["status"] == "incomplete":
            add(
                sub["created"] + subscriptions.INCOMPLETE_EXPIRY,
                1,
                sub,
                partial(subscriptions.expire_incomplete, state, sub),
            )
            continue
        if sub["status"] not in _LIVE:
            continue
        add(
            subscriptions.trial_will_end_at(sub),
            1,
            sub,
            partial(subscriptions.send_trial_will_end, state, sub),
        )
        resumes_at = (sub["pause_collection"] or {}).get("resumes_at")
        add(resumes_at, 1, sub, partial(subscriptions.resume_collection, state, sub))
        _, period_end = subscriptions.period_of(sub)
        cancel_at = sub["cancel_at"]
        if cancel_at is not None and cancel_at <= period_end:
            add(cancel_at, 1, sub, partial(subscriptions.cancel_now, state, sub))
        else:
            add(period_end, 2, sub, partial(subscriptions.cycle, state, sub))
    for invoice in store.all("invoice"):
        if invoice["test_clock"] != clock_id:
            continue
        if invoice["status"] == "draft" and invoice["auto_advance"]:
            add(
                invoice["automatically_finalizes_at"],
                3,
                invoice,
                partial(_auto_finalize, state, invoice),
            )
        elif invoice["status"] == "open":
            if invoice["collection_method"] == "charge_automatically":
                add(invoice["next_payment_attempt"], 3, invoice, partial(_collect, state, invoice))
            elif invoice["_subscription"] and not invoice.get("_overdue_handled"):
                add(
                    invoice["due_date"],
                    3,
                    invoice,
                    partial(subscriptions.on_invoice_overdue, state, invoice),
                )
    return found


def _auto_finalize(state: State, invoice: JSON, at: int) -> None:
    invoices.finalize(state, invoice, at)
    if invoice["status"] != "open":
        return
    if invoice["collection_method"] == "send_invoice":
        invoices.send(state, invoice, at)
    else:
        invoices.attempt_payment(state, invoice, at)


def _collect(state: State, invoice: JSON, at: int) -> None:
    invoices.attempt_payment(state, invoice, at)


def run(state: State, clock_id: str | None, until: int) -> int:
    """Process everything due up to ``until`` in time order; returns the number of steps."""
    clock = state.store.objects.get(clock_id) if clock_id else None
    steps = 0
    while steps < _MAX_ACTIONS:
        actions = _actions(state, clock_id, until)
        if not actions:
            break
        at, _, _, action = min(actions, key=lambda a: a[:3])
        if clock is not None and at > clock["frozen_time"]:
            clock["frozen_time"] = at
        action(at)
        steps += 1
    return steps
