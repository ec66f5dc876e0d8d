"""$batch: operations in order, continue-on-error, and change sets that are all or nothing."""

from __future__ import annotations

import pytest

from connector.crm.dynamics.batch import BatchOperation, build_batch_request, parse_batch_response
from sandboxes.dataverse import DataverseSandbox
from tests.sandboxes.dataverse.conftest import WebApi, body

MISSING = "0e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b"


def _invoice(api: WebApi, number: str, account: str) -> BatchOperation:
    return BatchOperation(
        "PATCH",
        f"{api.base}/db_stripeinvoices(db_invoiceid='in_{number}')",
        {"db_number": number, "db_accountid@odata.bind": f"/accounts({account})"},
    )


def _send(api: WebApi, body_bytes: bytes, content_type: str, prefer: str | None = None):
    headers = {"Content-Type": content_type}
    if prefer:
        headers["Prefer"] = prefer
    return api.post("$batch", data=body_bytes, headers=headers)


def test_with_continue_on_error_every_operation_answers_in_order(
    api: WebApi, sandbox: DataverseSandbox
) -> None:
    acme = sandbox.ref("acme").id
    content_type, payload = build_batch_request(
        [_invoice(api, "1", acme), _invoice(api, "2", MISSING), _invoice(api, "3", acme)]
    )

    response = _send(api, payload, content_type, "odata.continue-on-error")

    assert response.status_code == 200
    answers = parse_batch_response(response.headers["Content-Type"], response.content)
    assert [a.status for a in answers] == [204, 404, 204]
    assert answers[1].error() == ("0x80040217", f"account With Id = {MISSING} Does Not Exist")
    assert sorted(r["db_invoiceid"] for r in sandbox.rows("db_stripeinvoice")) == ["in_1", "in_3"]
    assert sandbox.request_log().count(("POST", "$batch")) == 1


def test_without_continue_on_error_the_batch_stops_at_the_first_failure(
    api: WebApi, sandbox: DataverseSandbox
) -> None:
    acme = sandbox.ref("acme").id
    content_type, payload = build_batch_request(
        [_invoice(api, "1", acme), _invoice(api, "2", MISSING), _invoice(api, "3", acme)]
    )

    response = _send(api, payload, content_type)

    assert response.status_code == 404
    answers = parse_batch_response(response.headers["Content-Type"], response.content)
    assert [a.status for a in answers] == [204, 404]
    assert [r["db_invoiceid"] for r in sandbox.rows("db_stripeinvoice")] == ["in_1"]


def _change_set(api: WebApi, operations: list[tuple[str, str, str]]) -> tuple[str, bytes]:
    lines = ["--batch_1", "Content-Type: multipart/mixed; boundary=changeset_1", ""]
    for content_id, (method, path, json_body) in enumerate(operations, start=1):
        lines += [
            "--changeset_1",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {content_id}",
            "",
            f"{method} {path} HTTP/1.1",
            "Content-Type: application/json",
            "",
            json_body,
        ]
    lines += ["--changeset_1--", "--batch_1--", ""]
    return 'multipart/mixed; boundary="batch_1"', "\r\n".join(lines).encode()


def test_a_failing_change_set_rolls_back_and_answers_only_its_failure(
    api: WebApi, sandbox: DataverseSandbox
) -> None:
    content_type, payload = _change_set(
        api,
        [
            ("POST", "/api/data/v9.2/accounts", '{"name": "Batch Co"}'),
            ("POST", "/api/data/v9.2/accounts", '{"name": "Bad Co", "creditonhold": "yes"}'),
        ],
    )

    response = _send(api, payload, content_type, "odata.continue-on-error")

    answers = parse_batch_response(response.headers["Content-Type"], response.content)
    assert [(a.status, a.headers.get("content-id")) for a in answers] == [(400, None)]
    assert b"Content-ID: 2" in response.content
    assert sandbox.find("account", name="Batch Co") == []


def test_a_change_set_refers_to_a_row_it_created_by_content_id(
    api: WebApi, sandbox: DataverseSandbox
) -> None:
    content_type, payload = _change_set(
        api,
        [
            ("POST", f"{api.base}/accounts", '{"name": "Parent Co"}'),
            (
                "POST",
                f"{api.base}/contacts",
                '{"lastname": "Child", "parentcustomerid_account@odata.bind": "$1"}',
            ),
        ],
    )

    response = _send(api, payload, content_type)

    assert response.status_code == 200
    [parent] = sandbox.find("account", name="Parent Co")
    [child] = sandbox.find("contact", lastname="Child")
    assert child["parentcustomerid"].id == parent["accountid"]


def test_a_get_in_a_change_set_is_refused(api: WebApi) -> None:
    content_type, payload = _change_set(api, [("GET", "/api/data/v9.2/accounts", "")])

    response = _send(api, payload, content_type)

    assert response.status_code == 400


def test_more_than_a_thousand_operations_are_refused(
    api: WebApi, sandbox: DataverseSandbox
) -> None:
    acme = sandbox.ref("acme").id
    content_type, payload = build_batch_request([_invoice(api, str(n), acme) for n in range(1001)])

    response = _send(api, payload, content_type)

    assert response.status_code == 400
    assert "1000" in body(response)["error"]["message"]
    assert sandbox.rows("db_stripeinvoice") == []


@pytest.mark.parametrize("payload", [b"no boundary here", b"--batch_1\r\nunterminated"])
def test_an_unreadable_batch_is_400(api: WebApi, payload: bytes) -> None:
    response = _send(api, payload, 'multipart/mixed; boundary="batch_1"')

    assert response.status_code == 400
