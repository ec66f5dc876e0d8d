"""What the CRM inbox holds: the types of change events about CRM records, and storing one.

Every way a CRM change comes in (an Outbound Message or a Dataverse webhook, the poll) and
every follow-up that must re-read a CRM record later stores a small event here, in the inbox
under source ``crm``, so the worker handles them all the same way: once, retried on
failure, parked when it keeps failing, never lost because the CRM was briefly unreachable.
The worker's handlers for these types are named in ``jobs/dispatch.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from connector.runtime import Runtime
from connector.services import inbox

SOURCE = "crm"

#: A deal changed in the CRM: read it, and create or refresh its plan if it is closed.
DEAL_CHANGED = "deal.changed"
#: An account changed in the CRM (its credit hold or limit may have moved): settle its credit.
ACCOUNT_CHANGED = "account.changed"
#: A contact changed in the CRM (pushed): the Stripe customers of the accounts it is the
#: billing contact of follow its new email or name.
CONTACT_CHANGED = "contact.changed"
#: Follow-up: the account's credit was settled with no hold on it, and plans wait on its
#: credit: try them again in approval order, then announce the account's credit state.
WAITING_PLANS_DUE = "account.waiting_plans_due"

TYPES = frozenset({DEAL_CHANGED, ACCOUNT_CHANGED, CONTACT_CHANGED, WAITING_PLANS_DUE})
#: A pushed notice's kind (``PushNotice.kind``) -> the event it is stored as.
PUSHED_EVENT_TYPES = {"deal": DEAL_CHANGED, "account": ACCOUNT_CHANGED, "contact": CONTACT_CHANGED}


def store_change(
    runtime: Runtime, event_id: str, event_type: str, payload: Mapping[str, Any]
) -> bool:
    """Put a CRM change in the inbox once; returns False when it was already there."""
    stored = inbox.store_event(runtime, SOURCE, event_id, event_type, json.dumps(payload))
    return stored == "stored"


def receive_change(
    runtime: Runtime, event_id: str, event_type: str, payload: Mapping[str, Any]
) -> bool:
    """A change the CRM pushed to the web process, put in the inbox (through the intake
    spool on SQLite: ``inbox.receive_event``) once; False when it was already received."""
    stored = inbox.receive_event(runtime, SOURCE, event_id, event_type, json.dumps(payload))
    return stored == "stored"


def queue_change(
    session: Session,
    event_id: str,
    event_type: str,
    payload: Mapping[str, Any],
    now: datetime,
) -> None:
    """Store a change event in the caller's transaction: a follow-up owed by its change."""
    session.add(inbox.new_event(SOURCE, event_id, event_type, json.dumps(payload), now))
