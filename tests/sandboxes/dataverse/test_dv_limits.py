"""Service protection limits: requests per user in a sliding window, 429 with Retry-After."""

from __future__ import annotations

from collections.abc import Callable

from connector.crm.dynamics.batch import BatchOperation, build_batch_request
from sandboxes.dataverse import DataverseSandbox
from tests.sandboxes.dataverse.conftest import WebApi, body
from tests.support import FrozenClock


def test_past_the_limit_requests_are_429_until_the_window_moves_on(
    make_sandbox: Callable[..., DataverseSandbox], clock: FrozenClock
) -> None:
    api = WebApi(make_sandbox(requests_per_window=3, window_seconds=300))
    for _ in range(3):
        assert api.get("WhoAmI").status_code == 200
        clock.advance(seconds=10)

    refused = api.get("WhoAmI")

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "270"  # when the first request leaves the window
    assert body(refused)["error"] == {
        "code": "0x80072322",
        "message": "Number of requests exceeded the limit of 3 over time window of 300 seconds.",
    }
    clock.advance(seconds=270)
    assert api.get("WhoAmI").status_code == 200


def test_the_default_limit_is_6000_requests_in_300_seconds(api: WebApi) -> None:
    response = api.get("WhoAmI")

    assert response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "5999"


def test_a_batch_counts_as_one_request(
    make_sandbox: Callable[..., DataverseSandbox],
) -> None:
    sandbox = make_sandbox(requests_per_window=2)
    api = WebApi(sandbox)
    acme = sandbox.ref("acme").id
    operations = [
        BatchOperation("PATCH", f"{api.base}/accounts({acme})", {"name": f"Acme {n}"})
        for n in range(5)
    ]
    content_type, payload = build_batch_request(operations)

    response = api.post("$batch", data=payload, headers={"Content-Type": content_type})

    assert response.status_code == 200
    assert api.get("WhoAmI").status_code == 200
    assert api.get("WhoAmI").status_code == 429
