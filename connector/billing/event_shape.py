"""What a handler may take from a Stripe event: the object's id, nothing else trusted.

A correctly signed event can still be malformed (a replayed fixture, a hand-made test event,
a bug upstream): ``data`` missing, the object's id a list, the customer a number. Handlers
only need the object's id (they re-fetch the object from Stripe, see
docs/development.md), so this reads that id and checks the few fields around it; anything
else raises ``MalformedEvent`` with a reason a person understands, and the worker parks the
event at once with it (retrying would not make it well-formed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connector.domain.untrusted_json import UntrustedJsonError

#: Event type prefix -> the ``object`` of the object the event is about.
_OBJECT_OF_PREFIX = (
    ("customer.subscription.", "subscription"),
    ("customer.discount.", "discount"),
    ("invoice.", "invoice"),
    ("credit_note.", "credit_note"),
    ("customer.", "customer"),
)
#: Longer than any Stripe id; the mirrors key objects by id in 255-character columns.
MAX_ID = 255


class MalformedEvent(UntrustedJsonError):
    def __init__(self, reason: str) -> None:
        super().__init__("malformed_event", reason)


@dataclass(frozen=True)
class EventObject:
    event_type: str
    object_type: str
    object_id: str
    #: The customer the payload names (None for a customer's own events, or none named).
    #: Only a hint: handlers take the customer from the object they re-fetch.
    customer_id: str | None


def _stripe_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID and value.isascii()


def expected_object(event_type: str) -> str | None:
    return next((obj for prefix, obj in _OBJECT_OF_PREFIX if event_type.startswith(prefix)), None)


def event_object(event: dict[str, Any]) -> EventObject:
    """The object a Stripe event is about, or ``MalformedEvent`` saying what is wrong."""
    event_type = event.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEvent("the event has no `type`")
    data = event.get("data")
    if not isinstance(data, dict):
        raise MalformedEvent(f"the {event_type} event has no `data` object")
    obj = data.get("object")
    if not isinstance(obj, dict):
        raise MalformedEvent(f"the {event_type} event has no `data.object`")
    object_id = obj.get("id")
    if not _stripe_id(object_id):
        raise MalformedEvent(
            f"the {event_type} event's `data.object.id` is not a Stripe id "
            f"(a text of 1 to {MAX_ID} ASCII characters)"
        )
    wanted = expected_object(event_type)
    object_type = obj.get("object")
    if wanted is not None and object_type != wanted:
        raise MalformedEvent(
            f"the {event_type} event is about a {object_type!r}, not a {wanted!r} "
            f"(`data.object.object`)"
        )
    customer = obj.get("customer")
    if isinstance(customer, dict):  # an expanded customer
        customer = customer.get("id")
    if customer is not None and not _stripe_id(customer):
        raise MalformedEvent(
            f"the {event_type} event's `data.object.customer` is not a Stripe customer id"
        )
    return EventObject(
        event_type=event_type,
        object_type=str(object_type or wanted or ""),
        object_id=str(object_id),
        customer_id=customer,
    )
