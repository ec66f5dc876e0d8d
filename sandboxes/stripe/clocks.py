"""``/v1/test_helpers/test_clocks``: simulated time for the customers attached to a clock."""

from __future__ import annotations

import copy
from typing import Any

from . import billing
from .call import Call
from .errors import invalid_param, invalid_request

JSON = dict[str, Any]

_RETENTION = 30 * 86_400


def create(call: Call) -> JSON:
    p = call.params
    p.reject_unknown(["frozen_time", "name"])
    frozen = p.get_int("frozen_time", required=True, minimum=0)
    now = int(call.state.now())
    clock: JSON = {
        "id": call.store.new_id("clock_"),
        "object": "test_helpers.test_clock",
        "created": now,
        "deletes_after": now + _RETENTION,
        "frozen_time": frozen,
        "livemode": False,
        "name": p.get_str("name"),
        "status": "ready",
        "status_details": {},
    }
    call.store.add(clock)
    call.state.emit("test_helpers.test_clock.created", clock)
    return call.store.render(clock)


def retrieve(call: Call) -> JSON:
    return call.store.render(call.store.require(call.arg(), "test_helpers.test_clock"))


def list_(call: Call) -> JSON:
    call.params.reject_unknown(["limit", "starting_after", "ending_before"])
    return call.store.list_response(
        call.store.all("test_helpers.test_clock"), call.params, "/v1/test_helpers/test_clocks"
    )


def delete(call: Call) -> JSON:
    clock = call.store.require(call.arg(), "test_helpers.test_clock")
    snapshot = copy.deepcopy(clock)
    clock["_deleted"] = True
    for obj in list(call.store.objects.values()):
        if obj.get("test_clock") == clock["id"] and obj["object"] != "event":
            obj["_deleted"] = True
    call.state.emit("test_helpers.test_clock.deleted", snapshot)
    return {"id": clock["id"], "object": "test_helpers.test_clock", "deleted": True}


def advance(call: Call) -> JSON:
    clock = call.store.require(call.arg(), "test_helpers.test_clock")
    p = call.params
    p.reject_unknown(["frozen_time"])
    target = p.get_int("frozen_time", required=True, minimum=0)
    assert target is not None
    if clock["status"] != "ready":
        raise invalid_request("The test clock is not ready to be advanced.")
    if target <= clock["frozen_time"]:
        raise invalid_param(
            "frozen_time",
            "The frozen_time must be after the test clock's current frozen_time "
            f"({clock['frozen_time']}).",
            None,
        )
    clock["status"] = "advancing"
    clock["status_details"] = {"advancing": {"target_frozen_time": target}}
    call.state.emit("test_helpers.test_clock.advancing", clock)
    response = call.store.render(clock)
    billing.run(call.state, clock["id"], target)
    clock["frozen_time"] = target
    clock["status"] = "ready"
    clock["status_details"] = {}
    call.state.emit("test_helpers.test_clock.ready", clock)
    return response
