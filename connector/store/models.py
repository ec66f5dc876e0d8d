"""Tables: what happened (audit, inbox) and what must still happen (outbox), plus cursors.

Every table that records work has a natural unique key, so a retry or a racing duplicate
becomes an integrity error we can treat as "already done" rather than a second effect.
Schema changes go through Alembic migrations in ``store/migrations/versions``; a test
checks that the migrations and these models agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from connector.store.types import UTCDateTime, utcnow

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class AuditEntry(Base):
    """Who did what to which subject, and why: the trail finance reads after the fact."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    subject_type: Mapped[str] = mapped_column(String(50))
    subject_id: Mapped[str] = mapped_column(String(200), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Cursor(Base):
    """Where a poll or reconciliation left off (e.g. the last SystemModstamp seen)."""

    __tablename__ = "cursors"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class InboxEvent(Base):
    """An inbound event stored raw before processing, unique per source and event id."""

    __tablename__ = "inbox_events"
    __table_args__ = (
        UniqueConstraint("source", "event_id", name="uq_inbox_source_event"),
        Index("ix_inbox_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # pending -> done | ignored ; pending -> (retry) ... -> parked
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(200))


class OutboxMessage(Base):
    """A write we owe to the CRM, Stripe or a subscriber, drained in order per ordering key."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        Index("ix_outbox_order", "ordering_key", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(50), index=True)
    ordering_key: Mapped[str] = mapped_column(String(200))
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    done_at: Mapped[datetime | None]


class CustomerLink(Base):
    """A CRM account's Stripe customer. One per account; written back to the CRM."""

    __tablename__ = "customer_links"

    crm_account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(20))  # found | created | chosen | imported
    linked_at: Mapped[datetime] = mapped_column(default=utcnow)


class Plan(Base):
    """A deal's billing plan through its life: suggested, reviewed, activated.

    ``deal_data`` is the deal as last read from the CRM and ``overrides`` what a person
    changed; the plan itself is recomputed from both (pure domain), and frozen into
    ``plan_data`` when approved, so activation bills exactly what was reviewed.
    """

    __tablename__ = "plans"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    deal_id: Mapped[str] = mapped_column(String(64), unique=True)
    crm_account_id: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(30), index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    deal_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    overrides: Mapped[dict[str, Any]] = mapped_column(default=dict)
    plan_data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    problems: Mapped[list[Any]] = mapped_column(JSON, default=list)
    customer_candidates: Mapped[list[Any]] = mapped_column(JSON, default=list)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(64))
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(64))
    stripe_schedule_id: Mapped[str | None] = mapped_column(String(64))
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(64))
    approved_at: Mapped[datetime | None]
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approval_seq: Mapped[int | None] = mapped_column(BigId)
    lease_until: Mapped[datetime | None]
    activated_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StripeOperation(Base):
    """One Stripe write of an activation step: its idempotency key and what it created.

    A re-run finds the result here and skips the call; a crash between the call and this
    row's commit re-sends the same key, and Stripe answers with the same object.
    """

    __tablename__ = "stripe_operations"
    __table_args__ = (UniqueConstraint("plan_id", "step", name="uq_operation_plan_step"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    plan_id: Mapped[str] = mapped_column(String(36), index=True)
    step: Mapped[str] = mapped_column(String(100))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    result_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CatalogLink(Base):
    """A CRM product (or a priced variant of it) and the Stripe product or price it became."""

    __tablename__ = "catalog_links"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # product | price
    stripe_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InvoiceMirror(Base):
    """Our copy of a linked customer's Stripe invoice, as last fetched from Stripe.

    Kept current by webhooks and reconciliation; the credit policy (open balance, overdue
    invoices) and the overview read it instead of calling Stripe on every page view.
    ``stripe_updated`` counts the writes of the row: a sync reads it before fetching from
    Stripe (outside any transaction) and writes only if it has not moved, so an older state
    never overwrites a newer one.
    """

    __tablename__ = "invoices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(64), index=True)
    crm_account_id: Mapped[str | None] = mapped_column(String(64), index=True)
    crm_deal_id: Mapped[str | None] = mapped_column(String(64))
    subscription_id: Mapped[str | None] = mapped_column(String(64), index=True)
    number: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    amount_due: Mapped[int] = mapped_column(BigInteger)
    amount_paid: Mapped[int] = mapped_column(BigInteger)
    amount_remaining: Mapped[int] = mapped_column(BigInteger)
    total_excluding_tax: Mapped[int] = mapped_column(BigInteger)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[datetime]
    due_date: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    billing_reason: Mapped[str | None] = mapped_column(String(64))
    #: When the invoice took effect (``effective_at``, else ``finalized_at``): the date net
    #: billing files it under.
    effective_at: Mapped[datetime | None]
    #: Credited by credit notes (``pre_payment_credit_notes_amount`` +
    #: ``post_payment_credit_notes_amount``).
    amount_credited: Mapped[int] = mapped_column(BigInteger, default=0)
    stripe_updated: Mapped[int] = mapped_column(BigInteger, default=0)
    deleted: Mapped[bool] = mapped_column(default=False)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class SubscriptionMirror(Base):
    """Our copy of a linked customer's Stripe subscription, for MRR and lifecycle views."""

    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(64), index=True)
    crm_account_id: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(30), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccountCredit(Base):
    """An account's credit standing as dealbridge last knew it, and what dealbridge did.

    The CRM is the source of truth for the hold and the limit; this row remembers what the
    CRM cannot tell us reliably: whether *dealbridge* set the hold (and which invoice caused
    it) -- a hold dealbridge did not see itself set is a person's -- which subscriptions the
    hold policy paused (only those are resumed), and the state last announced, so a change
    is written to the CRM and emitted to subscribers once.
    """

    __tablename__ = "account_credit"

    crm_account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    on_hold: Mapped[bool] = mapped_column(default=False)
    hold_source: Mapped[str | None] = mapped_column(String(20))  # person | dealbridge
    held_by_dealbridge: Mapped[bool] = mapped_column(default=False)
    hold_invoice_id: Mapped[str | None] = mapped_column(String(64))
    #: Increments with each hold that starts: part of the hold policy's idempotency keys.
    hold_epoch: Mapped[int] = mapped_column(Integer, default=0)
    #: Invoices whose dealbridge hold a person lifted: they do not hold the account again.
    excused_invoices: Mapped[list[Any]] = mapped_column(JSON, default=list)
    credit_limit: Mapped[int | None] = mapped_column(BigInteger)
    limit_currency: Mapped[str | None] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(20), default="ok")  # ok | on_hold | over_limit
    #: Subscriptions whose collection the hold policy paused: {id: behavior}.
    paused_subscriptions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ProductMirror(Base):
    """Our copy of a Stripe product, for the overview's catalogue counts and archiving."""

    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(250))
    active: Mapped[bool] = mapped_column(default=True, index=True)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class PriceMirror(Base):
    """Our copy of a Stripe price: one-time or recurring, and whether it is still offered."""

    __tablename__ = "prices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(64), index=True)
    active: Mapped[bool] = mapped_column(default=True, index=True)
    type: Mapped[str] = mapped_column(String(20))  # one_time | recurring
    currency: Mapped[str] = mapped_column(String(3))
    unit_amount: Mapped[int | None] = mapped_column(BigInteger)
    interval: Mapped[str | None] = mapped_column(String(10))
    interval_count: Mapped[int | None] = mapped_column(Integer)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class CreditNoteMirror(Base):
    """Our copy of a linked customer's Stripe credit note (subtracted from net billing)."""

    __tablename__ = "credit_notes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(64), index=True)
    crm_account_id: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    total_excluding_tax: Mapped[int] = mapped_column(BigInteger)
    created: Mapped[datetime]
    effective_at: Mapped[datetime | None]
    invoice_id: Mapped[str | None] = mapped_column(String(64), index=True)
    #: Refunds this credit note carries (``refunds[].refund``), so net billing subtracts
    #: them once.
    refund_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class RefundMirror(Base):
    """Our copy of a refund of a linked customer's charge (subtracted from net billing unless
    a credit note carries it)."""

    __tablename__ = "refunds"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(64), index=True)
    crm_account_id: Mapped[str | None] = mapped_column(String(64), index=True)
    charge_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(30))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    created: Mapped[datetime]
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccountMetrics(Base):
    """The MRR, net billing and open balance last queued for an account's CRM record, so the
    clock job writes an account only when one of its figures changed."""

    __tablename__ = "account_metrics"

    crm_account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3))
    mrr: Mapped[int] = mapped_column(BigInteger)
    net_billing: Mapped[int] = mapped_column(BigInteger)
    open_balance: Mapped[int] = mapped_column(BigInteger)
    #: The CRM record's own currency, as last read; None when the CRM did not say.
    account_currency: Mapped[str | None] = mapped_column(String(3))
    #: Why nothing was written (figures in another currency than the record's), else None.
    note: Mapped[str | None] = mapped_column(Text)
    written_at: Mapped[datetime] = mapped_column(default=utcnow)


class LifecycleOperation(Base):
    """A person's subscription lifecycle action (reactivate, bill again) and its Stripe effects.

    The row's id is the root of every idempotency key the action uses. A reactivation stays
    ``pending`` until its first-period invoice is paid, then creates the new subscription
    and becomes ``completed``.
    """

    __tablename__ = "lifecycle_operations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(
        String(30)
    )  # reactivate | bill_again | cancel_now_credit | ...
    # previewed (cancel now: shown, not confirmed) | pending | completed | failed
    status: Mapped[str] = mapped_column(String(20), index=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(64), index=True)
    crm_account_id: Mapped[str | None] = mapped_column(String(64))
    source_id: Mapped[str] = mapped_column(String(64))  # the subscription or invoice acted on
    invoice_id: Mapped[str | None] = mapped_column(String(64), index=True)
    new_subscription_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
