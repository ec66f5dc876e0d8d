"""What the handlers that mirror Stripe share: an event about a customer no CRM account is
linked to is counted and ignored, with one outcome note."""

from __future__ import annotations

from sqlalchemy.orm import Session

from connector.runtime import Runtime
from connector.store.links import linked_account

UNKNOWN_CUSTOMER = "unknown customer (not linked to a CRM account): ignored"


def account_of_customer(
    runtime: Runtime, session: Session, customer_id: str | None, event_type: str
) -> str | None:
    """The CRM account linked to the customer; None (and counted) when there is none."""
    account_id = linked_account(session, customer_id)
    if account_id is None:
        runtime.metrics.count_unknown_customer("stripe", event_type)
    return account_id


#: How many times a sync fetches again when another writer stored the object meanwhile
#: (read, call Stripe outside any store session, then write only if nothing changed).
MAX_REFETCH = 5


class KeptChanging(RuntimeError):
    """Other writers stored the object every time we fetched it: try the event again later."""
