"""The worker's dispatch tables: which service function handles each inbound event type and
sends each kind of outbox message.

Declared here, above the services, from their public functions, so a service never has to
register itself (or be imported for its side effects) and the whole of what the worker does
reads in one page. A type Stripe does not have, a type dealbridge does not subscribe to, or
two handlers for one type stop the import of this module, i.e. start-up.
"""

from __future__ import annotations

from connector.billing.event_types import HANDLED_STRIPE_EVENTS, STRIPE_EVENT_TYPES
from connector.services import (
    account_metrics,
    activation,
    admin_import,
    backfill,
    credit,
    credit_notes,
    crm_changes,
    crm_intake,
    crm_outbound,
    customer_sync,
    invoice_sync,
    subscribers,
    subscription_sync,
)
from connector.services.inbox import EventHandlers
from connector.services.outbox import BatchedSender, OutboxSenders, SingleSender

#: Stripe events (webhooks and reconciliation), by type.
STRIPE_EVENT_HANDLERS = EventHandlers(
    "stripe", known_types=STRIPE_EVENT_TYPES, handled_types=HANDLED_STRIPE_EVENTS
)
for _type in invoice_sync.INVOICE_EVENTS:
    STRIPE_EVENT_HANDLERS.register(_type, invoice_sync.on_invoice_event)
STRIPE_EVENT_HANDLERS.register_batch(invoice_sync.INVOICE_EVENTS, invoice_sync.on_invoice_events)
for _type in subscription_sync.SUBSCRIPTION_EVENTS:
    STRIPE_EVENT_HANDLERS.register(_type, subscription_sync.on_subscription_event)
for _type in subscription_sync.CUSTOMER_DISCOUNT_EVENTS:
    STRIPE_EVENT_HANDLERS.register(_type, subscription_sync.on_customer_discount_event)
STRIPE_EVENT_HANDLERS.register("customer.updated", customer_sync.on_customer_updated)
STRIPE_EVENT_HANDLERS.register("customer.deleted", customer_sync.on_customer_deleted)
for _type in credit_notes.CREDIT_NOTE_EVENTS:
    STRIPE_EVENT_HANDLERS.register(_type, credit_notes.on_credit_note_event)
for _type in credit_notes.REFUND_EVENTS:
    STRIPE_EVENT_HANDLERS.register(_type, credit_notes.on_refund_event)

#: CRM changes (pushes, the poll) and the follow-ups that re-read a CRM record, by type.
CRM_EVENT_HANDLERS = EventHandlers(crm_changes.SOURCE, known_types=crm_changes.TYPES)
CRM_EVENT_HANDLERS.register(crm_changes.DEAL_CHANGED, crm_intake.handle_deal_changed)
CRM_EVENT_HANDLERS.register(crm_changes.ACCOUNT_CHANGED, crm_intake.handle_account_changed)
CRM_EVENT_HANDLERS.register(crm_changes.CONTACT_CHANGED, crm_intake.handle_contact_changed)
CRM_EVENT_HANDLERS.register(crm_changes.WAITING_PLANS_DUE, activation.on_waiting_plans_due)

#: Outbox messages, by kind, drained in this order each round. ``linger``: in a burst, the
#: scheduled drain sends these in full batches only, and the account's balance, figures and
#: credit settlement once it is over, one write per account (``outbox`` "Filling batches").
OUTBOX_SENDERS = OutboxSenders(
    {
        crm_outbound.UPDATE_DEAL: SingleSender(crm_outbound.send_deal_update),
        # Before the account writes they owe, so those fold into one write per account.
        credit.SETTLE_ACCOUNT: BatchedSender(
            credit.settle_after_invoices, credit.SETTLE_BATCH, linger=True
        ),
        crm_outbound.ACCOUNT_FIGURES_DUE: BatchedSender(
            account_metrics.send_figures, 500, linger=True
        ),
        crm_outbound.UPDATE_ACCOUNT: BatchedSender(
            crm_outbound.send_account_updates, crm_outbound.crm_batch_size, linger=True
        ),
        crm_outbound.UPSERT_INVOICE: BatchedSender(
            crm_outbound.send_invoice_upserts,
            crm_outbound.crm_bulk_size,
            linger=True,
            fill_unit=crm_outbound.crm_batch_size,
        ),
        crm_outbound.SET_CREDIT_HOLD: SingleSender(crm_outbound.send_credit_hold),
        subscribers.DELIVER: SingleSender(subscribers.default_delivery),
        backfill.BACKFILL_CUSTOMER: SingleSender(backfill.backfill_customer),
    }
)

#: Imports an admin started (``services/admin_import.py``): drained by their own worker job,
#: ``run_imports``, so a run of hours never holds back the CRM writes above.
IMPORT_SENDERS = OutboxSenders(
    {admin_import.IMPORT_STRIPE: SingleSender(admin_import.run_queued_import)}
)
