"""Change tracking: Prefer: odata.track-changes, delta links, deletions, and their refusals."""

from __future__ import annotations

from sandboxes.dataverse import DataverseSandbox
from tests.sandboxes.dataverse.conftest import WebApi, body

TRACK = {"Prefer": "odata.track-changes"}


def test_a_delta_link_answers_what_changed_since_and_what_was_deleted(
    api: WebApi, sandbox: DataverseSandbox
) -> None:
    first = api.get("accounts?$select=name", headers=TRACK)
    assert first.headers["Preference-Applied"] == "odata.track-changes"
    delta = body(first)["@odata.deltaLink"]
    assert len(body(first)["value"]) == 5

    sandbox.update("account", sandbox.ref("acme").id, {"name": "Acme Robotics Holdings"})
    sandbox.delete("account", sandbox.ref("stark").id)
    changes = body(api.get(delta))

    assert changes["@odata.context"].endswith("$metadata#accounts(name)/$delta")
    assert [(c.get("name"), c.get("reason")) for c in changes["value"]] == [
        ("Acme Robotics Holdings", None),
        (None, "deleted"),
    ]
    assert changes["value"][1]["id"] == sandbox.ref("stark").id
    assert body(api.get(changes["@odata.deltaLink"]))["value"] == []


def test_a_table_without_change_tracking_refuses_it(api: WebApi) -> None:
    response = api.get("contacts?$select=fullname", headers=TRACK)

    assert response.status_code == 400
    assert body(response)["error"] == {
        "code": "0x80072491",
        "message": "Entity contact isn't enabled for change tracking.",
    }


def test_an_expired_delta_link_is_refused(api: WebApi, sandbox: DataverseSandbox) -> None:
    delta = body(api.get("accounts?$select=name", headers=TRACK))["@odata.deltaLink"]
    sandbox.expire_delta_links()

    response = api.get(delta)

    assert response.status_code == 400
    assert body(response)["error"]["code"] == "0x80040203"


def test_change_tracking_takes_no_filter(api: WebApi) -> None:
    response = api.get("accounts?$select=name&$filter=creditonhold eq true", headers=TRACK)

    assert response.status_code == 400
