"""The API versions whose differences the sandbox answers, for requests pinned to them.

Objects are always rendered in the account's version (2026-10-28.endive); what changes with
an older ``Stripe-Version`` is which request parameters exist:

- before 2025-09-30 (clover), subscription schedule phases take ``iterations`` (a phase of
  that many billing intervals of its first price);
- before 2025-09-30, customers and subscriptions take ``coupon`` and ``promotion_code``
  (``discounts[]`` replaced them);
- before 2025-03-31 (basil), a metered price needs no meter and its usage is reported as
  usage records (``/v1/subscription_items/:id/usage_records``).
"""

from __future__ import annotations

#: The first version without phase ``iterations`` and the ``coupon``/``promotion_code``
#: parameters of customers and subscriptions.
CLOVER = "2025-09-30"

#: The first version without usage records (metered prices need a meter).
BASIL = "2025-03-31"
