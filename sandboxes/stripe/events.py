"""``/v1/events``: list (``type`` with ``*`` wildcards, ``types[]``, ``created``) and retrieve."""

from __future__ import annotations

import fnmatch
from typing import Any

from .call import Call
from .errors import invalid_param
from .store import created_filter

JSON = dict[str, Any]


def retrieve(call: Call) -> JSON:
    return call.store.render(call.store.require(call.arg(), "event"))


def list_(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(
        ["created", "delivery_success", "ending_before", "limit", "starting_after", "type", "types"]
    )
    event_type = p.get_str("type")
    types = p.str_list("types")
    if event_type is not None and types is not None:
        raise invalid_param(
            "types", "You may only specify one of these parameters: type, types.", None
        )
    if types is not None and len(types) > 20:
        raise invalid_param("types", "You may only specify up to 20 types.", None)
    in_range = created_filter(p)
    events = [
        e
        for e in call.store.all("event")
        if (event_type is None or fnmatch.fnmatchcase(e["type"], event_type))
        and (types is None or e["type"] in types)
        and in_range(e["created"])
    ]
    return call.store.list_response(events, p, "/v1/events")
