"""Account credit: finance controls activation from the CRM account, and dealbridge helps.

The CRM holds the truth about an account's **credit hold** and **credit limit**; the
activation gate (``activation.credit_decision``) reads them fresh before the first Stripe
write. This module keeps everything around that gate:

* ``settle(runtime, account_id)`` brings our ``account_credit`` row in line with the CRM, works
  out who set a hold, applies the configured hold policy to the account's subscriptions
  (``credit.hold_policy``) or undoes it, and announces a changed credit state (``ok`` /
  ``on_hold`` / ``over_limit``) on the account in the CRM and as the
  ``account.credit_state_changed`` subscriber event. When nothing holds the account any more
  and plans wait on its credit, it does not call activation (which sits above this module):
  it stores an ``account.waiting_plans_due`` follow-up in the CRM inbox, in the transaction
  that settled the row, and the worker's handler (``activation.on_waiting_plans_due``) tries
  the plans in approval order and then announces the state.
* With ``non_payment=True`` it also applies the non-payment policy (``credit.non_payment``) to
  the account's invoices as mirrored from Stripe: a hold *dealbridge* sets names the invoice
  that caused it, and only such a hold is ever lifted by dealbridge.

Who set a hold is decided here, not taken from the CRM's source field alone: a hold is
dealbridge's only while our row says dealbridge set it *and* it has been on ever since (the
CRM's source field still says so). A hold seen to start without us is a person's; so is one
a person turned off and on again. When a person lifts a hold dealbridge set, the invoice that
caused it is *excused*: it does not put the account on hold again (a person decided).

Our own hold changes reach the CRM through the outbox. Until such a write is delivered the
CRM still shows the old value, so both this module and the activation gate look at the CRM
"as it will be" (``as_it_will_be``): a queued hold write of ours wins over the stale value.

Entry points: ``handle_account_changed`` (CRM push or poll), ``settle_after_invoices`` (the
``credit.settle_account`` follow-up an invoice event queues with its mirror change),
``invoice_changed`` (after a backfill of a customer's history), ``plan_waiting`` /
``plan_activated`` (from activation), and the ``check_credit`` clock job, which exists
because "overdue" happens by the passage of time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connector.billing.gateway import PAUSE_MARKER, StripeRejected
from connector.crm.base import CrmAccount
from connector.domain.credit import (
    UNCOLLECTIBLE,
    UNPAID_STATUSES,
    CreditState,
    CreditStatus,
    HoldChange,
    HoldSource,
    InvoiceStanding,
    NonPaymentPolicy,
    evaluate_non_payment,
)
from connector.domain.plan_status import Status
from connector.runtime import Runtime
from connector.services import crm_outbound, outbox, subscribers
from connector.services.crm_changes import WAITING_PLANS_DUE, queue_change
from connector.store import audit
from connector.store.lease import PARKED, PENDING, PROCESSING
from connector.store.links import linked_account, linked_customer
from connector.store.models import (
    AccountCredit,
    InvoiceMirror,
    OutboxMessage,
    Plan,
)

log = logging.getLogger(__name__)

EVENT = "account.credit_state_changed"
#: Outbox kind of the follow-up an invoice change owes: settle the account's credit.
SETTLE_ACCOUNT = "credit.settle_account"
#: Accounts settled per ``credit.settle_account`` batch: their CRM reads go together.
SETTLE_BATCH = 200
Recheck = Literal["always", "on_release", "never"]
Transition = Literal["held", "released"]
_PAUSE_BEHAVIOR = {"pause_keep_as_draft": "keep_as_draft", "pause_void": "void"}


@dataclass(frozen=True)
class Settled:
    """What ``settle`` found and did."""

    account_id: str
    on_hold: bool
    hold_source: HoldSource | None
    state: CreditState
    transition: Transition | None
    hold_change: HoldChange | None
    state_changed: bool


# --------------------------------------------------------------------------- configuration


def non_payment_policy(runtime: Runtime) -> NonPaymentPolicy:
    section = runtime.config.section("credit")["non_payment"]
    return NonPaymentPolicy(
        hold_when_overdue_days=section["hold_when_overdue_days"],
        hold_when_uncollectible=section["hold_when_uncollectible"],
        hold_after_payment_failures=section["hold_after_payment_failures"],
        release_when_paid=section["release_when_paid"],
    )


def _pause_behavior(runtime: Runtime) -> str | None:
    """Stripe's ``pause_collection[behavior]`` for the hold policy; None: keep running."""
    return _PAUSE_BEHAVIOR.get(runtime.config.section("credit")["hold_policy"])


# --------------------------------------------------------------------------- the CRM as it will be


def pending_hold(session: Session, account_id: str) -> bool | None:
    """The credit hold our queued, not yet delivered CRM writes will leave; None if none."""
    messages = session.scalars(
        select(OutboxMessage)
        .where(
            OutboxMessage.kind.in_((crm_outbound.UPDATE_ACCOUNT, crm_outbound.SET_CREDIT_HOLD)),
            OutboxMessage.ordering_key == f"account:{account_id}",
            # A parked hold write still stands for dealbridge's intent: until a person
            # settles it, the CRM's silence is not a person lifting the hold.
            OutboxMessage.status.in_((PENDING, PROCESSING, PARKED)),
        )
        .order_by(OutboxMessage.id)
    ).all()
    value: bool | None = None
    for message in messages:
        update = (message.payload or {}).get("update") or {}
        if "credit_hold" in update:
            value = bool(update["credit_hold"])
    return value


def as_it_will_be(runtime: Runtime, account: CrmAccount) -> CrmAccount:
    """The account as the CRM will show it once dealbridge's queued hold writes land."""
    with runtime.db.session() as session:
        pending = pending_hold(session, account.id)
    if pending is None or pending == account.credit_hold:
        return account
    return replace(
        account, credit_hold=pending, credit_hold_source="dealbridge" if pending else None
    )


# --------------------------------------------------------------------------- the row


def _row(session: Session, account_id: str) -> AccountCredit:
    row = session.get(AccountCredit, account_id, with_for_update=True)
    if row is None:
        row = AccountCredit(
            crm_account_id=account_id,
            on_hold=False,
            held_by_dealbridge=False,
            hold_epoch=0,
            excused_invoices=[],
            paused_subscriptions={},
            state="ok",
        )
        session.add(row)
        session.flush()  # a racing insert fails here; the caller's retry finds the row
    return row


def _clear_hold(row: AccountCredit) -> None:
    row.on_hold = False
    row.hold_source = None
    row.held_by_dealbridge = False
    row.hold_invoice_id = None


def _reconcile(row: AccountCredit, account: CrmAccount, pending: bool | None) -> Transition | None:
    """Bring the row in line with the CRM; returns the hold transition it saw, if any."""
    limit = account.credit_limit
    row.credit_limit = limit.amount if limit is not None else None
    row.limit_currency = limit.currency if limit is not None else None
    if pending is not None:
        return None  # our own hold change is on its way: the row is ahead of the CRM
    if account.credit_hold:
        still_ours = (
            row.on_hold and row.held_by_dealbridge and account.credit_hold_source == "dealbridge"
        )
        if still_ours:
            return None
        started = not row.on_hold
        row.on_hold = True
        row.hold_source = "person"
        row.held_by_dealbridge = False
        if started:
            row.hold_invoice_id = None
            row.hold_epoch += 1
            return "held"
        return None  # a person took over dealbridge's hold: theirs to lift now
    if not row.on_hold:
        return None
    if row.hold_invoice_id and row.hold_invoice_id not in row.excused_invoices:
        # A person lifted a hold dealbridge set: that invoice will not hold the account again.
        row.excused_invoices = [*row.excused_invoices, row.hold_invoice_id]
    _clear_hold(row)
    return "released"


def _standing(mirror: InvoiceMirror) -> InvoiceStanding:
    return InvoiceStanding(
        invoice_id=mirror.id,
        status=mirror.status,
        due_date=mirror.due_date.date() if mirror.due_date else None,
        amount_remaining=mirror.amount_remaining,
        payment_failures=mirror.attempt_count,
    )


def _any_trigger(policy: NonPaymentPolicy) -> bool:
    """Whether the policy can put an account on hold at all (every trigger is opt-in)."""
    return (
        policy.hold_when_overdue_days is not None
        or policy.hold_when_uncollectible
        or policy.hold_after_payment_failures is not None
    )


def _apply_non_payment(runtime: Runtime, session: Session, row: AccountCredit) -> HoldChange | None:
    account_id = row.crm_account_id
    excused = set(row.excused_invoices or [])
    policy = non_payment_policy(runtime)
    invoices: list[InvoiceStanding] = []
    if _any_trigger(policy):
        # Only unpaid or uncollectible invoices can trigger a hold: an account's paid
        # history (thousands of rows) is not read, let alone built into objects.
        invoices = [
            _standing(m)
            for m in session.scalars(
                select(InvoiceMirror).where(
                    InvoiceMirror.crm_account_id == account_id,
                    InvoiceMirror.deleted.is_(False),
                    InvoiceMirror.status.in_(sorted({*UNPAID_STATUSES, UNCOLLECTIBLE})),
                )
            )
            if m.id not in excused
        ]
    source: HoldSource | None = None
    if row.on_hold:
        source = "dealbridge" if row.held_by_dealbridge else "person"
    status = CreditStatus(on_hold=row.on_hold, hold_source=source, credit_limit=None)
    change = evaluate_non_payment(policy, status, invoices, runtime.today())
    if change is None:
        return None
    if change.action == "hold":
        row.on_hold = True
        row.hold_source = "dealbridge"
        row.held_by_dealbridge = True
        row.hold_invoice_id = change.invoice_id
        row.hold_epoch += 1
        crm_outbound.set_credit_hold(
            runtime, session, account_id, hold=True, note=change.note, epoch=row.hold_epoch
        )
    else:
        epoch = row.hold_epoch
        _clear_hold(row)
        crm_outbound.set_credit_hold(
            runtime, session, account_id, hold=False, note=change.note, epoch=epoch
        )
    audit.record(
        session,
        actor="dealbridge",
        action=f"credit.{change.action}",
        subject_type="account",
        subject_id=account_id,
        invoice_id=change.invoice_id,
        note=change.note,
    )
    return change


# --------------------------------------------------------------------------- settle


def settle(
    runtime: Runtime,
    account_id: str,
    *,
    non_payment: bool = False,
    recheck: Recheck = "always",
    account: CrmAccount | None = None,
) -> Settled:
    """Reconcile the account's credit with the CRM, act on what changed, announce the state.

    ``recheck``: when to re-activate the account's waiting plans (in approval order) if the
    account is not on hold -- ``always`` (a CRM change: the hold or limit may have moved),
    ``on_release`` (only when a hold was lifted) or ``never`` (called from activation).
    """
    if account is None:
        account = runtime.crm.get_account(account_id)
    with runtime.db.session() as session:
        row = _row(session, account_id)
        transition = _reconcile(row, account, pending_hold(session, account_id))
        if transition is not None:
            audit.record(
                session,
                actor="crm",
                action=f"credit.hold_{transition}",
                subject_type="account",
                subject_id=account_id,
                hold_source=row.hold_source,
            )
        change = _apply_non_payment(runtime, session, row) if non_payment else None
        if change is not None:
            transition = "held" if change.action == "hold" else "released"
        on_hold = row.on_hold
        source = row.hold_source
        state = cast(CreditState, row.state)
        retry_waiting = (
            not on_hold
            and (recheck == "always" or (recheck == "on_release" and transition is not None))
            and _has_waiting_plans(session, account_id)
        )
        if retry_waiting:
            _queue_waiting_plans(session, account_id, change, runtime.clock())
    apply_hold_policy(runtime, account_id)
    changed = False
    if not retry_waiting:  # else the follow-up announces, once the waiting plans were tried
        state, changed = announce(runtime, account_id, change)
    return Settled(
        account_id=account_id,
        on_hold=on_hold,
        hold_source="dealbridge" if source == "dealbridge" else ("person" if on_hold else None),
        state=state,
        transition=transition,
        hold_change=change,
        state_changed=changed,
    )


def _has_waiting_plans(session: Session, account_id: str) -> bool:
    waiting = session.scalars(
        select(Plan.id)
        .where(Plan.crm_account_id == account_id, Plan.status == Status.AWAITING_CREDIT)
        .limit(1)
    ).first()
    return waiting is not None


def _queue_waiting_plans(
    session: Session, account_id: str, change: HoldChange | None, now: datetime
) -> None:
    """The follow-up ``settle`` owes when the account's credit may let its plans through."""
    queue_change(
        session,
        f"waiting-plans-due:{account_id}:{uuid.uuid4().hex}",
        WAITING_PLANS_DUE,
        {"id": account_id, "hold_change": asdict(change) if change is not None else None},
        now,
    )


def hold_change_of(payload: Mapping[str, Any]) -> HoldChange | None:
    """The hold change an ``account.waiting_plans_due`` follow-up carries to announce."""
    raw = payload.get("hold_change")
    return HoldChange(**raw) if raw else None


def announce(
    runtime: Runtime, account_id: str, change: HoldChange | None = None
) -> tuple[CreditState, bool]:
    """Work out the account's credit state; if it changed, tell the CRM and subscribers."""
    with runtime.db.session() as session:
        row = _row(session, account_id)
        state: CreditState = (
            "on_hold"
            if row.on_hold
            else ("over_limit" if _has_waiting_plans(session, account_id) else "ok")
        )
        if state == row.state:
            return state, False
        previous = row.state
        row.state = state
        crm_outbound.update_account(runtime, session, account_id, {"credit_state": state})
        subscribers.emit(
            session,
            runtime,
            EVENT,
            account_id,
            {
                "previous_state": previous,
                "state": state,
                "on_hold": row.on_hold,
                "hold_source": row.hold_source,
                "credit_limit": row.credit_limit,
                "currency": row.limit_currency,
                "invoice_id": change.invoice_id if change else row.hold_invoice_id,
                "note": change.note if change else None,
            },
        )
        audit.record(
            session,
            actor="dealbridge",
            action="credit.state_changed",
            subject_type="account",
            subject_id=account_id,
            previous_state=previous,
            state=state,
        )
        return state, True


# --------------------------------------------------------------------------- hold policy


def apply_hold_policy(runtime: Runtime, account_id: str) -> int:
    """Pause the held account's billing subscriptions as the policy says, or undo our pauses.

    Only subscriptions dealbridge paused (recorded in the row, and tagged in Stripe with
    ``metadata[dealbridge_credit_pause]``) are ever resumed. Idempotency keys derive from the
    account and the hold's epoch, so a retried pause or resume is replayed, never doubled.
    Returns the number of Stripe writes.
    """
    with runtime.db.session() as session:
        row = session.get(AccountCredit, account_id)
        if row is None:
            return 0
        on_hold, epoch = row.on_hold, row.hold_epoch
        paused = dict(row.paused_subscriptions or {})
        customer_id = linked_customer(session, account_id)
    behavior = _pause_behavior(runtime)
    if on_hold and behavior is not None and customer_id is not None:
        return _pause(runtime, account_id, customer_id, behavior, epoch, paused)
    if not on_hold and paused:
        return _resume(runtime, account_id, paused)
    return 0


def _pause(
    runtime: Runtime,
    account_id: str,
    customer_id: str,
    behavior: str,
    epoch: int,
    paused: dict[str, Any],
) -> int:
    marker = f"{account_id}:{epoch}"
    writes = 0
    for subscription in runtime.stripe.iter_subscriptions(customer_id):
        if subscription.id in paused:
            continue
        if subscription.pause_collection:
            metadata: dict[str, str] = dict(subscription["metadata"] or {})
            if metadata.get(PAUSE_MARKER) != marker:
                continue  # paused by someone else: not ours to pause or resume
        else:
            runtime.stripe.pause_collection(
                subscription.id,
                behavior,
                marker,
                idempotency_key=f"dealbridge:credit:{account_id}:{epoch}:pause:{subscription.id}",
            )
            writes += 1
        with runtime.db.session() as session:
            row = _row(session, account_id)
            row.paused_subscriptions = {
                **(row.paused_subscriptions or {}),
                subscription.id: {"behavior": behavior, "epoch": epoch},
            }
            audit.record(
                session,
                actor="dealbridge",
                action="credit.subscription_paused",
                subject_type="account",
                subject_id=account_id,
                subscription_id=subscription.id,
                behavior=behavior,
            )
    return writes


def _resume(runtime: Runtime, account_id: str, paused: dict[str, Any]) -> int:
    writes = 0
    for subscription_id, how in paused.items():
        epoch = (how or {}).get("epoch", 0)
        try:
            runtime.stripe.resume_collection(
                subscription_id,
                idempotency_key=f"dealbridge:credit:{account_id}:{epoch}:resume:{subscription_id}",
            )
            writes += 1
        except StripeRejected as exc:
            # Gone or ended since (canceled subscriptions cannot be updated): nothing to undo.
            log.warning("could not resume %s for %s: %s", subscription_id, account_id, exc)
        with runtime.db.session() as session:
            row = _row(session, account_id)
            remaining = dict(row.paused_subscriptions or {})
            remaining.pop(subscription_id, None)
            row.paused_subscriptions = remaining
            audit.record(
                session,
                actor="dealbridge",
                action="credit.subscription_resumed",
                subject_type="account",
                subject_id=account_id,
                subscription_id=subscription_id,
            )
    return writes


# --------------------------------------------------------------------------- entry points


def handle_account_changed(runtime: Runtime, account_id: str) -> str | None:
    """The CRM account changed (push or poll): its hold or limit may have moved."""
    settled = settle(runtime, account_id, recheck="always")
    parts = []
    if settled.transition:
        parts.append(f"credit hold {settled.transition}")
    if settled.state_changed:
        parts.append(f"credit state {settled.state}")
    return "; ".join(parts) or None


def queue_settlement(session: Session, account_id: str, now: datetime) -> None:
    """In the caller's transaction: settle this account's credit soon (an invoice of it
    changed). One waiting settlement per account is enough, so a burst of invoice events
    queues one; the waiting message is locked, so no worker starts it before the change
    that owes it commits."""
    outbox.enqueue_unless_waiting(
        session, SETTLE_ACCOUNT, f"credit:{account_id}", {"account_id": account_id}, now
    )


def settle_after_invoices(
    runtime: Runtime, payloads: list[dict[str, Any]]
) -> list[outbox.SendResult]:
    """The ``credit.settle_account`` sender: apply the non-payment policy to each account's
    mirrored invoices, and give plans waiting for the limit another try (a payment lowers
    the exposure).

    Skipped -- no CRM read -- for an account whose invoices cannot move anything: no
    non-payment trigger is on, dealbridge holds or paused nothing of the account, and no
    plan waits for its credit. (A person's hold or limit change reaches
    ``handle_account_changed`` through the CRM's push or poll, not through invoices.) The
    others are read from the CRM together (``get_accounts``), not one call per account: a
    month-end payment run settles hundreds. Each account settles, retries or parks on its
    own; if the read fails, the whole batch waits for a retry."""
    account_ids = [str(p["account_id"]) for p in payloads]
    mattering = _invoices_can_matter(runtime, list(dict.fromkeys(account_ids)))
    accounts = runtime.crm.get_accounts(mattering) if mattering else {}
    outcomes: dict[str, outbox.SendResult] = {}
    for account_id in dict.fromkeys(account_ids):
        if account_id not in mattering:
            outcomes[account_id] = outbox.SendResult.sent()
            continue
        try:
            # An account the read did not return is read alone: its CrmNotFound parks it.
            settle(
                runtime,
                account_id,
                non_payment=True,
                recheck="always",
                account=accounts.get(account_id),
            )
        except Exception as exc:
            log.warning("account %s: credit settlement failed: %s", account_id, exc)
            outcomes[account_id] = outbox.SendResult(
                ok=False, error=str(exc), retryable=outbox.is_retryable(exc)
            )
        else:
            outcomes[account_id] = outbox.SendResult.sent()
    return [outcomes[account_id] for account_id in account_ids]


def _invoices_can_matter(runtime: Runtime, account_ids: list[str]) -> list[str]:
    """The accounts (of a batch, in order) whose invoices can move something: every one when
    a non-payment trigger is on, else those dealbridge holds or paused something of, or
    with a plan waiting for credit. Two reads for the batch, not a session per account."""
    if _any_trigger(non_payment_policy(runtime)):
        return account_ids
    with runtime.db.reading() as session:
        ours = {
            row.crm_account_id
            for row in session.scalars(
                select(AccountCredit).where(AccountCredit.crm_account_id.in_(account_ids))
            )
            if row.held_by_dealbridge or row.paused_subscriptions
        }
        waiting = set(
            session.scalars(
                select(Plan.crm_account_id).where(
                    Plan.crm_account_id.in_(account_ids), Plan.status == Status.AWAITING_CREDIT
                )
            )
        )
    return [a for a in account_ids if a in ours or a in waiting]


def invoice_changed(runtime: Runtime, customer_id: str | None) -> None:
    """A linked customer's invoice changed in the mirror: apply the non-payment policy, and
    give plans waiting for the limit another try (a payment lowers the exposure)."""
    if not customer_id:
        return
    with runtime.db.session() as session:
        account_id = linked_account(session, customer_id)
    if account_id is not None:
        settle(runtime, account_id, non_payment=True, recheck="always")


def plan_waiting(runtime: Runtime, account_id: str | None) -> None:
    """Activation stopped a plan at the credit gate: show why on the account."""
    if account_id:
        settle(runtime, account_id, recheck="never")


def plan_activated(runtime: Runtime, account_id: str | None) -> None:
    """A plan was activated. A hold that landed while it was in flight (after the gate) is
    applied now, to the new subscription too; the state may drop from over the limit."""
    if not account_id:
        return
    with runtime.db.session() as session:
        known = session.get(AccountCredit, account_id) is not None
    if known:
        apply_hold_policy(runtime, account_id)
        announce(runtime, account_id)


def check_credit(runtime: Runtime) -> int:
    """Clock job: apply the non-payment policy to every account that owes, or that dealbridge
    holds or paused; "overdue" happens by the passage of time, with no event to say so.
    Returns how many accounts changed (hold or state), so a quiet run reports 0."""
    with runtime.db.session() as session:
        owing = set(
            session.scalars(
                select(InvoiceMirror.crm_account_id)
                .where(
                    InvoiceMirror.status.in_(("open", "uncollectible")),
                    InvoiceMirror.deleted.is_(False),
                    InvoiceMirror.crm_account_id.is_not(None),
                )
                .distinct()
            ).all()
        )
        pausing = _pause_behavior(runtime) is not None
        ours = {
            row.crm_account_id
            for row in session.scalars(select(AccountCredit))
            if row.held_by_dealbridge or row.paused_subscriptions or (row.on_hold and pausing)
        }
    changed = 0
    for account_id in sorted(a for a in owing | ours if a):
        try:
            settled = settle(runtime, account_id, non_payment=True, recheck="on_release")
        except IntegrityError:
            continue  # a concurrent first sight of the account: the next run settles it
        except Exception:
            log.exception("credit check of account %s failed; next run retries", account_id)
            continue
        changed += int(settled.transition is not None or settled.state_changed)
    return changed
