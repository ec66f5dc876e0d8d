"""The billing plan's status machine: every status a plan can be in, and what each allows.

Pure data, so the services that move a plan (intake, review, activation, credit) and the
pages that show it agree on one set of names and one set of rules.

How a plan moves (the services make each move; this module only names them):

* intake: a closed deal becomes ``in_review``, or ``invalid`` (problems listed), or
  ``needs_customer`` (several Stripe customers share the email; a person chooses);
* review: ``in_review`` or ``failed`` is approved (``approved``) or marked ``manual``; a change
  to a plan ``awaiting_credit`` sends it back to ``in_review``;
* activation: ``approved`` or ``scheduled`` is claimed (``activating``) and ends ``active``,
  ``scheduled`` (a one-time invoice sent later), ``awaiting_credit``, ``manual``, ``failed``,
  or ``approved`` again (retried later);
* credit: a plan ``awaiting_credit`` is ``approved`` again once the account's credit allows.
"""

from __future__ import annotations


class Status:
    INVALID = "invalid"  # the deal cannot be billed as it is; problems say why
    NEEDS_CUSTOMER = "needs_customer"  # several Stripe customers share the email
    IN_REVIEW = "in_review"  # suggested; a person reviews and activates
    APPROVED = "approved"  # queued for activation
    AWAITING_CREDIT = "awaiting_credit"  # on credit hold or over the limit: waits
    ACTIVATING = "activating"
    SCHEDULED = "scheduled"  # a one-time invoice waiting for its send date
    ACTIVE = "active"  # subscription, schedule or invoice created in Stripe
    MANUAL = "manual"  # manual invoicing: only the customer link
    FAILED = "failed"  # Stripe refused; a person must look

    EDITABLE = frozenset({IN_REVIEW, AWAITING_CREDIT, FAILED, INVALID})
    ACTIVATABLE = frozenset({IN_REVIEW, FAILED})
    SETTLED = frozenset({ACTIVE, MANUAL, SCHEDULED})
    REFRESHABLE = frozenset({INVALID, NEEDS_CUSTOMER, IN_REVIEW, FAILED})

    LABELS = {
        INVALID: "Cannot be billed",
        NEEDS_CUSTOMER: "Choose the Stripe customer",
        IN_REVIEW: "Awaiting review",
        APPROVED: "Approved, activating",
        AWAITING_CREDIT: "Awaiting credit",
        ACTIVATING: "Activating",
        SCHEDULED: "Scheduled",
        ACTIVE: "Active",
        MANUAL: "Manual invoicing",
        FAILED: "Activation failed",
    }
