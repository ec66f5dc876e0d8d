"""Amendments: a later deal of a live customer changes the subscription it already has.

A closed deal whose type says upgrade, downgrade or replacement (the CRM's deal type, read
through the mapping's ``change_types``, or the rep's choice on the review page) is not a
second subscription: it is a change to the account's live dealbridge subscription. This
module proposes that change from the subscription as it stands in Stripe (``LiveSubscription``)
and the deal's billing plan (``BillingPlan``, priced at the subscription's frequency):

* a product already on the subscription keeps its item: a new quantity changes the
  quantity, a new price swaps the item's price (the deal states each product's quantity
  *after* the change, as an amended quote does);
* a product not on the subscription becomes a new item;
* a replacement also removes the items the deal no longer lists; an upgrade or downgrade
  leaves them as they are.

Pure: the service reads Stripe and the store, asks Stripe for the preview and applies the
change; what it applies is exactly what ``propose_amendment`` returned and the person saw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal, get_args

from connector.domain.deal import Problem, parse_date
from connector.domain.money import format_money
from connector.domain.plan import (
    BillingPlan,
    Interval,
    InvalidOverrides,
    add_months,
    interval_months,
)
from connector.domain.stored_fields import as_choice, as_text, as_whole_number

__all__ = [
    "AMENDING_KINDS",
    "CANCEL_CREDITS",
    "CANCEL_WHENS",
    "CHANGE_KINDS",
    "PAYMENT_KEY",
    "PERSON_KEYS",
    "PREVIEW_KEY",
    "PRORATION_BEHAVIORS",
    "RESERVED_KEYS",
    "TARGET_KEY",
    "Amendment",
    "AmendmentChoices",
    "ChangeKind",
    "ItemChange",
    "LiveItem",
    "LiveSubscription",
    "ProrationBehavior",
    "amendment_from_json",
    "amendment_summary",
    "amendment_to_json",
    "cancel_choice_problems",
    "change_kind",
    "choices_from_json",
    "live_from_json",
    "live_to_json",
    "phase_items",
    "plan_overrides_for",
    "propose_amendment",
    "schedule_phase_end",
    "split_overrides",
    "subscription_items",
]

ChangeKind = Literal["new", "upgrade", "downgrade", "replacement", "renewal", "cancellation"]
CHANGE_KINDS: tuple[ChangeKind, ...] = get_args(ChangeKind)
#: Kinds that change the live subscription (its items; a renewal also its end).
AMENDING_KINDS: frozenset[str] = frozenset(
    {"upgrade", "downgrade", "replacement", "renewal", "cancellation"}
)

ProrationBehavior = Literal["create_prorations", "always_invoice", "none"]
PRORATION_BEHAVIORS: tuple[ProrationBehavior, ...] = get_args(ProrationBehavior)

CancelWhen = Literal["period_end", "now"]
CANCEL_WHENS: tuple[CancelWhen, ...] = get_args(CancelWhen)
#: How the unused time is credited when a cancellation ends the subscription now
#: (``services/cancel_now``): to the customer's balance, refunded, or not at all.
CancelCredit = Literal["customer_balance", "refund", "none"]
CANCEL_CREDITS: tuple[CancelCredit, ...] = get_args(CancelCredit)

ItemAction = Literal["unchanged", "quantity", "price", "added", "removed"]
ITEM_ACTIONS: tuple[ItemAction, ...] = get_args(ItemAction)

#: Keys of a plan's stored overrides that belong to amendments, not to ``PlanOverrides``:
#: what a person chose on the page ...
PERSON_KEYS = ("change", "proration_behavior", "cancel_when", "cancel_credit")
#: ... and dealbridge's snapshot of the live subscription the deal would change, and the
#: last preview Stripe gave of the change (shown on the page until the next one).
TARGET_KEY = "amendment_target"
PREVIEW_KEY = "amendment_preview"
#: What Stripe said of the customer's payment methods (``domain/charging``), kept for the
#: plan's automatic-charging rule.
PAYMENT_KEY = "payment_on_file"
RESERVED_KEYS = (TARGET_KEY, PREVIEW_KEY, PAYMENT_KEY)

_PRORATION_WORDS: Mapping[str, str] = {
    "create_prorations": "the unused time is credited and the new items charged pro rata on "
    "the next regular invoice",
    "always_invoice": "the pro-rata difference is invoiced at once",
    "none": "no proration: the new amounts apply from the next billing period",
}


@dataclass(frozen=True)
class LiveItem:
    """One item of the live subscription, as Stripe holds it now."""

    item_id: str
    price_id: str
    product_key: str  # the catalog's key of the product (CRM product id, sku: or name:)
    product: str
    quantity: int
    unit_amount: int


@dataclass(frozen=True)
class LiveSubscription:
    """The account's live dealbridge subscription that a later deal would change."""

    subscription_id: str
    plan_id: str
    deal_id: str
    currency: str
    interval: Interval
    interval_count: int
    items: tuple[LiveItem, ...]
    cancel_at: date | None = None

    @property
    def recurring_amount(self) -> int:
        return sum(item.quantity * item.unit_amount for item in self.items)


@dataclass(frozen=True)
class AmendmentChoices:
    """What a person chose on the review page; ``None`` = not chosen."""

    change: ChangeKind | None = None
    proration_behavior: ProrationBehavior | None = None
    #: A cancellation only: at period end (default) or now, with ``cancel_credit``.
    cancel_when: CancelWhen | None = None
    cancel_credit: CancelCredit | None = None


@dataclass(frozen=True)
class ItemChange:
    action: ItemAction
    product: str
    product_key: str
    item_id: str | None  # the subscription item changed or removed; None when added
    line_index: int | None  # the plan line it comes from; None when unchanged or removed
    quantity_before: int
    quantity_after: int
    unit_amount_before: int | None
    unit_amount_after: int | None

    @property
    def amount_before(self) -> int:
        return self.quantity_before * (self.unit_amount_before or 0)

    @property
    def amount_after(self) -> int:
        return self.quantity_after * (self.unit_amount_after or 0)


@dataclass(frozen=True)
class Amendment:
    kind: ChangeKind
    subscription_id: str
    amends_plan_id: str
    amends_deal_id: str
    proration_behavior: ProrationBehavior
    effective_date: date
    currency: str
    interval: Interval
    interval_count: int
    changes: tuple[ItemChange, ...]
    recurring_before: int
    recurring_after: int
    notes: tuple[str, ...] = ()
    needs_confirmation: tuple[str, ...] = ()
    #: A renewal's new end of term (the subscription's ``cancel_at`` moves there).
    new_end: date | None = None
    #: A cancellation: the subscription ends at the end of its current period.
    cancel_at_period_end: bool = False
    #: The change starts after the day it was proposed: it is handed to Stripe at once as a
    #: subscription schedule phase starting ``effective_date`` (``schedule_phase_end``).
    starts_later: bool = False
    #: A cancellation that ends the subscription now: how the unused time is credited
    #: (``services/cancel_now`` computes the exact credit; None = at period end, or no change).
    cancel_credit: CancelCredit | None = None

    @property
    def cancels_now(self) -> bool:
        return self.cancel_credit is not None


# --------------------------------------------------------------------------- choosing


def change_kind(deal_data: Mapping[str, Any], choices: AmendmentChoices) -> ChangeKind:
    """The kind of change a deal is: the person's choice, else the CRM's deal type."""
    if choices.change is not None:
        return choices.change
    value = deal_data.get("change_type")
    for kind in CHANGE_KINDS:
        if value == kind:
            return kind
    return "new"


def choices_from_json(data: Mapping[str, Any]) -> AmendmentChoices:
    """Read a person's amendment choices; raise ``InvalidOverrides`` naming each bad one."""
    problems: list[Problem] = []
    change = data.get("change")
    if change is not None and change not in CHANGE_KINDS:
        problems.append(
            Problem("change", f"{change!r} is not allowed; use {', '.join(CHANGE_KINDS)}")
        )
    proration = data.get("proration_behavior")
    if proration is not None and proration not in PRORATION_BEHAVIORS:
        problems.append(
            Problem(
                "proration_behavior",
                f"{proration!r} is not allowed; use {', '.join(PRORATION_BEHAVIORS)}",
            )
        )
    when = data.get("cancel_when")
    if when is not None and when not in CANCEL_WHENS:
        problems.append(
            Problem("cancel_when", f"{when!r} is not allowed; use {', '.join(CANCEL_WHENS)}")
        )
    credit = data.get("cancel_credit")
    if credit is not None and credit not in CANCEL_CREDITS:
        problems.append(
            Problem("cancel_credit", f"{credit!r} is not allowed; use {', '.join(CANCEL_CREDITS)}")
        )
    elif credit is not None and when != "now":
        problems.append(
            Problem(
                "cancel_credit",
                "goes only with cancel_when now: a cancellation at period end credits nothing",
            )
        )
    if problems:
        raise InvalidOverrides(problems)
    return AmendmentChoices(
        change=None if change is None else as_choice(change, CHANGE_KINDS),
        proration_behavior=None if proration is None else as_choice(proration, PRORATION_BEHAVIORS),
        cancel_when=None if when is None else as_choice(when, CANCEL_WHENS),
        cancel_credit=None if credit is None else as_choice(credit, CANCEL_CREDITS),
    )


def cancel_choice_problems(kind: ChangeKind, choices: AmendmentChoices) -> list[Problem]:
    """``cancel_when`` and ``cancel_credit`` belong to a cancellation; on any other kind of
    deal they are refused by name, not silently ignored. Cancelling now needs the credit
    chosen (``none`` is a choice: cancel now, credit nothing)."""
    problems: list[Problem] = []
    if kind != "cancellation":
        for key in ("cancel_when", "cancel_credit"):
            if getattr(choices, key) is not None:
                problems.append(
                    Problem(key, f"applies to a cancellation only; this deal is a {kind}")
                )
    elif choices.cancel_when == "now" and choices.cancel_credit is None:
        problems.append(
            Problem(
                "cancel_credit",
                "cancelling now needs the credit chosen: customer_balance, refund or none",
            )
        )
    return problems


def split_overrides(
    stored: Mapping[str, Any],
) -> tuple[dict[str, Any], AmendmentChoices, LiveSubscription | None]:
    """A plan's stored overrides as (the ``PlanOverrides`` JSON, the person's amendment
    choices, the live subscription snapshot). Raises ``InvalidOverrides`` for bad choices."""
    base = {k: v for k, v in stored.items() if k not in PERSON_KEYS and k not in RESERVED_KEYS}
    choices = choices_from_json({k: stored.get(k) for k in PERSON_KEYS})
    raw_target = stored.get(TARGET_KEY)
    target = live_from_json(raw_target) if isinstance(raw_target, Mapping) else None
    return base, choices, target


def plan_overrides_for(
    base: Mapping[str, Any], target: LiveSubscription, has_scheduled_items: bool
) -> dict[str, Any]:
    """The deal is priced at the live subscription's frequency: a subscription's items all
    bill on one interval. What a person chose otherwise stays."""
    if not has_scheduled_items:
        return dict(base)
    return {
        **base,
        "invoice_type": "recurring",
        "interval": target.interval,
        "interval_count": target.interval_count,
    }


# --------------------------------------------------------------------------- proposing


def propose_amendment(
    kind: ChangeKind,
    live: LiveSubscription,
    plan: BillingPlan,
    line_keys: Sequence[str],
    proration_behavior: ProrationBehavior,
    *,
    proration_chosen: bool,
    today: date,
    cancel_credit: CancelCredit | None = None,
    credit_confirmed: bool = False,
) -> Amendment:
    """The change ``plan`` makes to ``live``; raises ``InvalidOverrides`` when the deal cannot
    be expressed as a change to that subscription (each reason named). A cancellation with
    ``cancel_credit`` ends the subscription now; its credit must be confirmed by a person
    (``credit_confirmed``: ``cancel_credit`` is in the plan's ``confirmed``)."""
    assert kind in AMENDING_KINDS, kind
    assert len(line_keys) == len(plan.lines)
    if kind == "cancellation":
        return _cancellation(live, today, cancel_credit, credit_confirmed)
    problems: list[Problem] = []
    if kind == "renewal" and live.cancel_at is None:
        problems.append(
            Problem(
                "change",
                f"the subscription {live.subscription_id} has no end date, so there is no term "
                "to renew; choose upgrade, downgrade or replacement to change it",
            )
        )
    if plan.currency != live.currency:
        problems.append(
            Problem(
                "currency",
                f"the deal is in {plan.currency.upper()} but the subscription it changes bills "
                f"in {live.currency.upper()}; Stripe bills one subscription in one currency",
            )
        )
    wanted: dict[str, int] = {}
    left_out: list[str] = []
    for index, line in enumerate(plan.lines):
        path = f"line_items[{index}]"
        if line.kind != "recurring":
            left_out.append(line.product)
            continue
        key = line_keys[index]
        if key in wanted:
            problems.append(
                Problem(
                    path,
                    f"{line.product} is on the deal twice; state each product once, with its "
                    "quantity after the change",
                )
            )
            continue
        wanted[key] = index
    if problems:
        raise InvalidOverrides(problems)

    notes: list[str] = []
    needs: list[str] = []
    if left_out:
        needs.append("line_items")
        notes.append(
            f"{', '.join(left_out)} {'is' if len(left_out) == 1 else 'are'} billed once and "
            "left out of the change: a subscription change carries recurring items only. "
            "Confirm, and bill what is still owed on a deal of its own."
        )
    changes: list[ItemChange] = []
    cur = live.currency
    for item in live.items:
        matched = wanted.pop(item.product_key) if item.product_key in wanted else None
        if matched is None:
            replaced = kind in ("replacement", "renewal")
            action: ItemAction = "removed" if replaced else "unchanged"
            changes.append(
                ItemChange(
                    action,
                    item.product,
                    item.product_key,
                    item.item_id,
                    None,
                    item.quantity,
                    0 if action == "removed" else item.quantity,
                    item.unit_amount,
                    None if action == "removed" else item.unit_amount,
                )
            )
            continue
        line = plan.lines[matched]
        if line.unit_amount != item.unit_amount:
            action = "price"
        elif line.quantity != item.quantity:
            action = "quantity"
        else:
            action = "unchanged"
        changes.append(
            ItemChange(
                action,
                item.product,
                item.product_key,
                item.item_id,
                matched,
                item.quantity,
                line.quantity,
                item.unit_amount,
                line.unit_amount,
            )
        )
    for key, new_index in wanted.items():
        line = plan.lines[new_index]
        changes.append(
            ItemChange(
                "added",
                line.product,
                key,
                None,
                new_index,
                0,
                line.quantity,
                None,
                line.unit_amount,
            )
        )

    before = live.recurring_amount
    after = sum(c.amount_after for c in changes)
    every = _every(live.interval, live.interval_count)
    notes.append(
        f"Changes the subscription {live.subscription_id} (deal {live.deal_id}) instead of "
        f"starting a new one: {format_money(before, cur)} {every} before, "
        f"{format_money(after, cur)} {every} after."
    )
    if any(c.action in ("quantity", "price") for c in changes):
        notes.append(
            "The deal states each product's quantity after the change; a product already on "
            "the subscription keeps its item with the new quantity and price."
        )
    if kind == "upgrade" and after < before:
        needs.append("change")
        notes.append(
            "The deal is typed as an upgrade but lowers the recurring amount; confirm, or "
            "choose downgrade or replacement."
        )
    if kind == "downgrade" and after > before:
        needs.append("change")
        notes.append(
            "The deal is typed as a downgrade but raises the recurring amount; confirm, or "
            "choose upgrade or replacement."
        )
    if kind == "renewal":
        assert live.cancel_at is not None
        return _renewal(kind, live, plan, changes, proration_behavior, notes, needs, today)
    if all(c.action == "unchanged" for c in changes):
        needs.append("change")
        notes.append("The deal changes nothing on the subscription; confirm or mark it manual.")
    effective = plan.start_date if plan.start_date > today else today
    if live.cancel_at is not None and effective >= live.cancel_at:
        raise InvalidOverrides(
            [
                Problem(
                    "start_date",
                    f"the change starts {effective.isoformat()}, when the subscription "
                    f"{live.subscription_id} has ended ({live.cancel_at.isoformat()}); renew "
                    "it, or start a new subscription",
                )
            ]
        )
    if plan.start_date > today:
        notes.append(
            f"The change starts on {effective.isoformat()}: on approval dealbridge adds it to "
            "the subscription's schedule in Stripe as a phase starting that day, and Stripe "
            "changes the subscription then."
        )
    elif plan.start_date < today:
        notes.append(
            f"The deal starts {plan.start_date.isoformat()}, before today; the change applies "
            "from today (Stripe prorates from the moment of the change, never backwards)."
        )
    if live.cancel_at is not None:
        notes.append(
            f"The subscription still ends {live.cancel_at.isoformat()}; the deal's "
            "contract term does not move it (a renewal does)."
        )
    origin = "as chosen on the review page" if proration_chosen else "the configured default"
    notes.append(
        f"Proration: {proration_behavior} ({origin}): {_PRORATION_WORDS[proration_behavior]}."
    )
    return Amendment(
        kind=kind,
        subscription_id=live.subscription_id,
        amends_plan_id=live.plan_id,
        amends_deal_id=live.deal_id,
        proration_behavior=proration_behavior,
        effective_date=effective,
        currency=cur,
        interval=live.interval,
        interval_count=live.interval_count,
        changes=tuple(changes),
        recurring_before=before,
        recurring_after=after,
        notes=tuple(notes),
        needs_confirmation=tuple(dict.fromkeys(needs)),
        starts_later=effective > today,
    )


def _cancellation(
    live: LiveSubscription,
    today: date,
    cancel_credit: CancelCredit | None,
    credit_confirmed: bool,
) -> Amendment:
    """A cancellation ends the subscription at the end of its current period: what was
    billed is served, nothing is prorated or refunded, nothing more is billed. Or, chosen by
    a person, now: the unused part of the period is credited as ``cancel_credit`` says, at
    the exact figure ``services/cancel_now`` previews, which the person confirms."""
    changes = tuple(
        ItemChange(
            "removed",
            i.product,
            i.product_key,
            i.item_id,
            None,
            i.quantity,
            0,
            i.unit_amount,
            None,
        )
        for i in live.items
    )
    if cancel_credit is None:
        notes: tuple[str, ...] = (
            f"Cancels the subscription {live.subscription_id} (deal {live.deal_id}) at the end "
            "of its current period: the period already billed is served, nothing is prorated "
            "or refunded, and nothing more is billed. The deal's products and dates are not "
            "used.",
        )
    else:
        credited = {
            "customer_balance": "credited to the customer's balance (after lowering what is "
            "still due on the period's invoice)",
            "refund": "refunded (after lowering what is still due on the period's invoice)",
            "none": "not credited",
        }[cancel_credit]
        notes = (
            f"Cancels the subscription {live.subscription_id} (deal {live.deal_id}) now, on "
            "approval: the unused whole UTC days of the period already billed are "
            f"{credited}. The credit shown is the one of the day it was previewed; if it is "
            "another on the day of activation, the plan comes back to review and nothing is "
            "sent. The deal's products and dates are not used.",
        )
    return Amendment(
        kind="cancellation",
        subscription_id=live.subscription_id,
        amends_plan_id=live.plan_id,
        amends_deal_id=live.deal_id,
        proration_behavior="none",
        effective_date=today,
        currency=live.currency,
        interval=live.interval,
        interval_count=live.interval_count,
        changes=changes,
        recurring_before=live.recurring_amount,
        recurring_after=0,
        notes=notes,
        needs_confirmation=("cancel_credit",)
        if cancel_credit is not None and not credit_confirmed
        else (),
        cancel_at_period_end=cancel_credit is None,
        cancel_credit=cancel_credit,
    )


def _renewal(
    kind: ChangeKind,
    live: LiveSubscription,
    plan: BillingPlan,
    changes: list[ItemChange],
    proration_behavior: ProrationBehavior,
    notes: list[str],
    needs: list[str],
    today: date,
) -> Amendment:
    """A renewal moves the subscription's end to the deal's end; new prices or quantities
    apply from the first period of the new term.

    Stripe bills each period in advance, when it starts; a change made without proration
    during the last period of the old term is therefore billed first by the invoice that
    opens the new term. So a renewal that changes items waits for the day after the last
    period starts (or applies now, if that day has passed); one that changes nothing but
    the end applies at once.
    """
    assert live.cancel_at is not None
    old_end = live.cancel_at
    new_end = plan.end_date
    cur = live.currency
    if plan.start_date != old_end:
        needs.append("start_date")
        notes.append(
            f"The renewal starts {plan.start_date.isoformat()} but the subscription ends "
            f"{old_end.isoformat()}; the subscription continues without a gap to "
            f"{new_end.isoformat()}. Confirm the dates."
        )
    if new_end <= old_end:
        raise InvalidOverrides(
            [
                Problem(
                    "contract_months",
                    f"the renewal ends {new_end.isoformat()}, not after the subscription's "
                    f"current end {old_end.isoformat()}",
                )
            ]
        )
    changed = [c for c in changes if c.action != "unchanged"]
    every = _every(live.interval, live.interval_count)
    notes.append(
        f"Renewal: the subscription's end moves from {old_end.isoformat()} to "
        f"{new_end.isoformat()}."
    )
    effective = today
    if changed:
        last_period = add_months(old_end, -interval_months(live.interval, live.interval_count))
        effective = max(today, last_period + timedelta(days=1))
        notes.append(
            f"The new term bills {format_money(sum(c.amount_after for c in changes), cur)} "
            f"{every} from {old_end.isoformat()}; the items change on "
            f"{effective.isoformat()}, in the last period of the current term, without "
            "proration, so the current term is billed as agreed and the first invoice of "
            "the new term has the new prices."
            + (
                " Stripe makes the change that day: a phase of the subscription's schedule, "
                "added on approval."
                if effective > today
                else ""
            )
        )
    else:
        notes.append("The products and prices stay as they are.")
    return Amendment(
        kind=kind,
        subscription_id=live.subscription_id,
        amends_plan_id=live.plan_id,
        amends_deal_id=live.deal_id,
        proration_behavior="none",
        effective_date=effective,
        currency=cur,
        interval=live.interval,
        interval_count=live.interval_count,
        changes=tuple(changes),
        recurring_before=live.recurring_amount,
        recurring_after=sum(c.amount_after for c in changes),
        notes=tuple(notes),
        needs_confirmation=tuple(dict.fromkeys(needs)),
        new_end=new_end,
        starts_later=effective > today,
    )


def subscription_items(amendment: Amendment, price_ids: Mapping[int, str]) -> list[dict[str, Any]]:
    """Stripe's ``items`` for the update: only what changes (Stripe keeps the rest).
    ``price_ids`` maps a plan line index to its Stripe price."""
    items: list[dict[str, Any]] = []
    for change in amendment.changes:
        if change.action == "quantity":
            items.append({"id": change.item_id, "quantity": change.quantity_after})
        elif change.action == "price":
            assert change.line_index is not None
            items.append(
                {
                    "id": change.item_id,
                    "price": price_ids[change.line_index],
                    "quantity": change.quantity_after,
                }
            )
        elif change.action == "added":
            assert change.line_index is not None
            items.append({"price": price_ids[change.line_index], "quantity": change.quantity_after})
        elif change.action == "removed":
            items.append({"id": change.item_id, "deleted": True})
    return items


def phase_items(
    amendment: Amendment, live: LiveSubscription, price_ids: Mapping[int, str]
) -> list[dict[str, Any]]:
    """The subscription's whole item list after the change, as a schedule phase lists it
    (a phase names every item; what it leaves out is removed when it starts)."""
    live_prices = {item.item_id: item.price_id for item in live.items}
    items: list[dict[str, Any]] = []
    for change in amendment.changes:
        if change.action == "removed":
            continue
        if change.action in ("price", "added"):
            assert change.line_index is not None
            price = price_ids[change.line_index]
        else:
            assert change.item_id is not None
            price = live_prices[change.item_id]
        items.append({"price": price, "quantity": change.quantity_after})
    return items


def schedule_phase_end(amendment: Amendment, live: LiveSubscription) -> tuple[date, str]:
    """Where the phase that carries the change ends, and the schedule's ``end_behavior``.

    The contract's end does not move (a renewal moves it to its new end): a subscription
    that ends keeps ending on that day (``cancel``), so the contract bills exactly the
    periods it did. One that runs on ends its phase one billing period after the change and
    is then released, running on with the changed items as before."""
    if amendment.new_end is not None:
        return amendment.new_end, "cancel"
    if live.cancel_at is not None:
        return live.cancel_at, "cancel"
    months = interval_months(amendment.interval, amendment.interval_count)
    return add_months(amendment.effective_date, months), "release"


def amendment_summary(amendment: Amendment, preview: Mapping[str, Any] | None) -> list[str]:
    """The change in words a rep can check, with Stripe's preview of the next invoice."""
    cur = amendment.currency
    every = _every(amendment.interval, amendment.interval_count)
    when = amendment.effective_date.isoformat()
    lines = [
        f"Change to subscription {amendment.subscription_id} ({amendment.kind}) on {when}: "
        f"{format_money(amendment.recurring_before, cur)} → "
        f"{format_money(amendment.recurring_after, cur)} {every}."
    ]
    for c in amendment.changes:
        before = f"{c.quantity_before} x {format_money(c.unit_amount_before or 0, cur)}"
        after = f"{c.quantity_after} x {format_money(c.unit_amount_after or 0, cur)}"
        lines.append(
            {
                "unchanged": f"  - {c.product}: unchanged ({before})",
                "quantity": f"  - {c.product}: quantity {c.quantity_before} → {c.quantity_after}",
                "price": f"  - {c.product}: {before} → {after} (new price)",
                "added": f"  - {c.product}: added, {after}",
                "removed": f"  - {c.product}: removed (was {before})",
            }[c.action]
        )
    if amendment.cancels_now:
        return _cancel_now_summary(amendment, preview)
    if amendment.cancel_at_period_end:
        return [
            f"Cancel subscription {amendment.subscription_id} at the end of its current period "
            f"({format_money(amendment.recurring_before, cur)} {every} until then; nothing more "
            "is billed)."
        ]
    if amendment.new_end is not None:
        lines.append(f"The subscription now ends {amendment.new_end.isoformat()}.")
    else:
        lines.append(f"Proration: {amendment.proration_behavior}.")
    if amendment.starts_later:
        lines.append(
            f"Stripe makes the change on {when}: a phase of the subscription's schedule "
            "starting that day."
        )
    if preview is None and amendment.starts_later and amendment.new_end is None:
        lines.append(
            "No Stripe preview of the next invoice: the change starts after the current "
            "billing period. Stripe previews it only as the next invoice of a schedule that "
            "already manages the subscription, for a change starting as the period ends; "
            "otherwise Stripe bills it from its day on a later invoice."
        )
    if preview is not None and preview.get("error"):
        lines.append(f"Stripe could not preview the next invoice: {preview['error']}")
    elif preview is not None:
        lines.append(
            f"Next invoice (Stripe's preview): {format_money(int(preview['amount_due']), cur)}"
            + (
                f", of which prorations {format_money(int(preview['proration_amount']), cur)}."
                if preview.get("proration_amount")
                else "."
            )
        )
    return lines


def _cancel_now_summary(amendment: Amendment, preview: Mapping[str, Any] | None) -> list[str]:
    """Cancelling now, with the exact credit ``services/cancel_now`` previewed (its lines,
    the exact figure and the rounding), or why there is none yet."""
    cur = amendment.currency
    every = _every(amendment.interval, amendment.interval_count)
    lines = [
        f"Cancel subscription {amendment.subscription_id} now (it bills "
        f"{format_money(amendment.recurring_before, cur)} {every}); credit: "
        f"{amendment.cancel_credit}."
    ]
    if preview is None:
        lines.append("The credit is not previewed yet; save the plan again to preview it.")
        return lines
    if preview.get("error"):
        lines.append(f"The credit could not be previewed: {preview['error']}")
        return lines
    if preview.get("credit_amount_text") is None or amendment.cancel_credit == "none":
        lines.append("No credit note: nothing is credited.")
        return lines
    lines.append(
        f"Credit note on invoice {preview.get('invoice_id')} as of "
        f"{str(preview.get('as_of'))[:10]} (UTC): {preview['credit_amount_text']} "
        f"(exact {preview.get('exact_text')}, rounding {preview.get('rounding_minor_units')} "
        f"minor units; {preview.get('rule')})."
    )
    for line in preview.get("lines") or []:
        lines.append(
            f"  - {line['description']}: {line['unused_days']} of {line['period_days']} days "
            f"unused of {format_money(int(line['net']), cur)} = "
            f"{format_money(int(line['credit']), cur)} (exact {line['exact_text']})"
        )
    for action, amount in (preview.get("actions") or {}).items():
        lines.append(f"  {action.replace('_', ' ')}: {format_money(int(amount), cur)}")
    return lines


def _every(interval: str, count: int) -> str:
    if interval == "year":
        return "per year" if count == 1 else f"every {count} years"
    return {1: "per month", 3: "per quarter", 6: "every six months"}.get(
        count, f"every {count} months"
    )


# --------------------------------------------------------------------------- JSON


def live_to_json(live: LiveSubscription) -> dict[str, Any]:
    return {
        "subscription_id": live.subscription_id,
        "plan_id": live.plan_id,
        "deal_id": live.deal_id,
        "currency": live.currency,
        "interval": live.interval,
        "interval_count": live.interval_count,
        "cancel_at": None if live.cancel_at is None else live.cancel_at.isoformat(),
        "items": [
            {
                "item_id": i.item_id,
                "price_id": i.price_id,
                "product_key": i.product_key,
                "product": i.product,
                "quantity": i.quantity,
                "unit_amount": i.unit_amount,
            }
            for i in live.items
        ],
    }


def live_from_json(data: Mapping[str, Any]) -> LiveSubscription:
    try:
        return LiveSubscription(
            subscription_id=as_text(data["subscription_id"]),
            plan_id=as_text(data["plan_id"]),
            deal_id=as_text(data["deal_id"]),
            currency=as_text(data["currency"]),
            interval=as_choice(data["interval"], ("month", "year")),
            interval_count=as_whole_number(data["interval_count"]),
            cancel_at=None if data.get("cancel_at") is None else parse_date(data["cancel_at"]),
            items=tuple(
                LiveItem(
                    item_id=as_text(i["item_id"]),
                    price_id=as_text(i["price_id"]),
                    product_key=as_text(i["product_key"]),
                    product=as_text(i["product"]),
                    quantity=as_whole_number(i["quantity"]),
                    unit_amount=as_whole_number(i["unit_amount"]),
                )
                for i in data["items"]
            ),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a subscription snapshot: {exc!r}") from exc


def amendment_to_json(a: Amendment) -> dict[str, Any]:
    return {
        "kind": a.kind,
        "subscription_id": a.subscription_id,
        "amends_plan_id": a.amends_plan_id,
        "amends_deal_id": a.amends_deal_id,
        "proration_behavior": a.proration_behavior,
        "effective_date": a.effective_date.isoformat(),
        "currency": a.currency,
        "interval": a.interval,
        "interval_count": a.interval_count,
        "recurring_before": a.recurring_before,
        "recurring_after": a.recurring_after,
        "changes": [
            {
                "action": c.action,
                "product": c.product,
                "product_key": c.product_key,
                "item_id": c.item_id,
                "line_index": c.line_index,
                "quantity_before": c.quantity_before,
                "quantity_after": c.quantity_after,
                "unit_amount_before": c.unit_amount_before,
                "unit_amount_after": c.unit_amount_after,
            }
            for c in a.changes
        ],
        "notes": list(a.notes),
        "needs_confirmation": list(a.needs_confirmation),
        "new_end": None if a.new_end is None else a.new_end.isoformat(),
        "cancel_at_period_end": a.cancel_at_period_end,
        "starts_later": a.starts_later,
        "cancel_credit": a.cancel_credit,
    }


def amendment_from_json(data: Mapping[str, Any]) -> Amendment:
    try:
        return Amendment(
            kind=as_choice(data["kind"], CHANGE_KINDS),
            subscription_id=as_text(data["subscription_id"]),
            amends_plan_id=as_text(data["amends_plan_id"]),
            amends_deal_id=as_text(data["amends_deal_id"]),
            proration_behavior=as_choice(data["proration_behavior"], PRORATION_BEHAVIORS),
            effective_date=parse_date(data["effective_date"]),
            currency=as_text(data["currency"]),
            interval=as_choice(data["interval"], ("month", "year")),
            interval_count=as_whole_number(data["interval_count"]),
            recurring_before=as_whole_number(data["recurring_before"]),
            recurring_after=as_whole_number(data["recurring_after"]),
            changes=tuple(
                ItemChange(
                    action=as_choice(c["action"], ITEM_ACTIONS),
                    product=as_text(c["product"]),
                    product_key=as_text(c["product_key"]),
                    item_id=None if c["item_id"] is None else as_text(c["item_id"]),
                    line_index=None
                    if c["line_index"] is None
                    else as_whole_number(c["line_index"]),
                    quantity_before=as_whole_number(c["quantity_before"]),
                    quantity_after=as_whole_number(c["quantity_after"]),
                    unit_amount_before=None
                    if c["unit_amount_before"] is None
                    else as_whole_number(c["unit_amount_before"]),
                    unit_amount_after=None
                    if c["unit_amount_after"] is None
                    else as_whole_number(c["unit_amount_after"]),
                )
                for c in data["changes"]
            ),
            notes=tuple(as_text(n) for n in data["notes"]),
            needs_confirmation=tuple(as_text(n) for n in data["needs_confirmation"]),
            new_end=None if data.get("new_end") is None else parse_date(data["new_end"]),
            cancel_at_period_end=data.get("cancel_at_period_end") is True,
            starts_later=data.get("starts_later") is True,
            cancel_credit=None
            if data.get("cancel_credit") is None
            else as_choice(data["cancel_credit"], CANCEL_CREDITS),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an amendment: {exc!r}") from exc
