"""What every action after activation shares: its stored operation, its keys, its errors.

Every action (cancel, reactivate, bill again, archive, change a price) first stores a
``LifecycleOperation`` row; its id is the root of the idempotency keys of the Stripe writes
it makes (``dealbridge:lifecycle:<id>:<step>``), so a retried call never bills twice. Every
action is audited when it finishes and, when it bills the customer (reactivate, bill
again), refused on an account that is on credit hold. Cancelling is allowed on hold (it
lowers what the customer will owe), and archiving touches the catalogue, not an account.
Errors carry the HTTP status the web layer answers with and a message fit to show a person.
"""

from __future__ import annotations

import uuid
from typing import Any

from connector.billing.gateway import StripeGatewayError
from connector.crm.base import CrmError
from connector.runtime import Runtime
from connector.services.invoice_sync import sync_invoice
from connector.store import audit
from connector.store.models import LifecycleOperation, SubscriptionMirror

CURRENT_STATUSES = ("active", "past_due", "trialing", "unpaid", "paused", "incomplete")
INACTIVE_STATUSES = ("canceled", "incomplete_expired")


class LifecycleError(Exception):
    """The action cannot be done; the message says why, fit to show a person."""

    status = 409


class NotFound(LifecycleError):
    status = 404


class OnCreditHold(LifecycleError):
    status = 409


class StripeRefused(LifecycleError):
    status = 502


def ensure_not_on_hold(runtime: Runtime, account_id: str, action: str) -> None:
    """Refuse an action that bills the customer while the account is on credit hold."""
    try:
        account = runtime.crm.get_account(account_id)
    except CrmError as exc:
        raise LifecycleError(
            f"Cannot {action} now: the CRM did not answer about the account's credit ({exc})."
        ) from exc
    if account.credit_hold:
        raise OnCreditHold(
            f"Cannot {action}: {account.name} is on credit hold. Lift the hold in the CRM "
            "first (finance)."
        )


def new_operation(
    runtime: Runtime,
    kind: str,
    customer_id: str,
    account_id: str | None,
    source_id: str,
    actor: str,
    details: dict[str, Any],
) -> str:
    """Store the operation before its first Stripe write; returns its id."""
    op_id = str(uuid.uuid4())
    with runtime.db.session() as session:
        session.add(
            LifecycleOperation(
                id=op_id, kind=kind, status="pending", stripe_customer_id=customer_id,
                crm_account_id=account_id, source_id=source_id, details=details, actor=actor,
                created_at=runtime.clock(),
            )
        )  # fmt: skip
    return op_id


def operation_key(op_id: str, step: str) -> str:
    """The idempotency key of one Stripe write of an operation."""
    return f"dealbridge:lifecycle:{op_id}:{step}"


def finish(
    runtime: Runtime,
    op_id: str,
    status: str,
    *,
    action: str,
    subject_type: str,
    subject_id: str,
    **details: Any,
) -> None:
    """Record how the operation ended (or that it waits: ``pending``), audited."""
    with runtime.db.session() as session:
        op = session.get(LifecycleOperation, op_id)
        assert op is not None
        op.status = status
        if status != "pending":
            op.completed_at = runtime.clock()
        for key in ("invoice_id", "new_subscription_id"):
            if details.get(key):
                setattr(op, key, details[key])
        if details.get("error"):
            op.details = {**op.details, "error": details["error"]}
        audit.record(
            session, actor=op.actor, action=action, subject_type=subject_type,
            subject_id=subject_id, operation=op_id, stripe_customer_id=op.stripe_customer_id,
            crm_account_id=op.crm_account_id, **details,
        )  # fmt: skip


def mirrored_subscription(runtime: Runtime, subscription_id: str) -> SubscriptionMirror:
    """A linked customer's subscription as mirrored, or NotFound."""
    with runtime.db.session() as session:
        row = session.get(SubscriptionMirror, subscription_id)
        if row is None:
            raise NotFound(f"No subscription {subscription_id} among linked customers.")
        session.expunge(row)
        return row


def call_stripe(call: Any, what: str) -> Any:
    """Make a Stripe call; a refusal becomes StripeRefused saying what was being done."""
    try:
        return call()
    except StripeGatewayError as exc:
        raise StripeRefused(f"Stripe refused to {what}: {exc}") from exc


def send_invoice(
    runtime: Runtime,
    op_id: str,
    customer_id: str,
    days_until_due: int,
    metadata: dict[str, str],
    lines: list[dict[str, Any]],
    what: str,
) -> str:
    """Create, finalize and send a one-time invoice of ``lines``, each write keyed by the
    operation, then mirror it; returns its id."""
    params: dict[str, Any] = {
        "customer": customer_id,
        "collection_method": "send_invoice",
        "days_until_due": days_until_due,
        "pending_invoice_items_behavior": "exclude",
        "auto_advance": False,
        "metadata": metadata,
    }
    invoice = call_stripe(
        lambda: runtime.stripe.create_invoice(params, operation_key(op_id, "invoice")),  # type: ignore[arg-type]
        what,
    )
    for index, line in enumerate(lines):
        item = {"customer": customer_id, "invoice": invoice.id, "metadata": metadata, **line}
        call_stripe(
            lambda item=item, index=index: runtime.stripe.create_invoice_item(
                item,
                operation_key(op_id, f"item:{index}"),
            ),
            what,
        )
    call_stripe(
        lambda: runtime.stripe.finalize_invoice(invoice.id, operation_key(op_id, "finalize")), what
    )
    call_stripe(lambda: runtime.stripe.send_invoice(invoice.id, operation_key(op_id, "send")), what)
    sync_invoice(runtime, invoice.id, customer_id, "invoice.sent")
    return str(invoice.id)
