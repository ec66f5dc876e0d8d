"""Writing: create, upsert by id and alternate key, ETag preconditions, value checks, actions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sandboxes.dataverse import DataverseSandbox
from tests.sandboxes.dataverse.conftest import ANNOTATIONS, WebApi, body


def test_create_answers_204_with_the_new_rows_url(api: WebApi, sandbox: DataverseSandbox) -> None:
    response = api.post("accounts", json={"name": "Wayne Enterprises", "creditlimit": 2500})

    assert response.status_code == 204
    entity = response.headers["OData-EntityId"]
    assert entity.startswith(f"{sandbox.url}/api/data/v9.2/accounts(")
    [row] = sandbox.find("account", name="Wayne Enterprises")
    assert entity.endswith(f"({row['accountid']})")
    assert row["creditlimit"] == Decimal("2500.0000")


def test_return_representation_answers_201_with_the_row(api: WebApi) -> None:
    response = api.post(
        "accounts?$select=name,creditonhold",
        json={"name": "Wayne Enterprises"},
        headers={"Prefer": "return=representation"},
    )

    assert response.status_code == 201
    data = body(response)
    assert (data["name"], data["creditonhold"]) == ("Wayne Enterprises", None)
    assert response.headers["ETag"] == data["@odata.etag"]


def test_patch_by_alternate_key_creates_then_updates_the_same_row(
    api: WebApi, sandbox: DataverseSandbox
) -> None:
    path = "db_stripeinvoices(db_invoiceid='in_1')"
    assert api.patch(path, json={"db_status": "open"}).status_code == 204
    assert api.patch(path, json={"db_status": "paid"}).status_code == 204

    [row] = sandbox.find("db_stripeinvoice", db_invoiceid="in_1")
    assert row["db_status"] == "paid"


def test_a_key_that_is_not_an_alternate_key_is_refused(api: WebApi) -> None:
    response = api.patch("db_stripeinvoices(db_status='open')", json={"db_number": "1"})

    assert response.status_code == 400
    assert "is not defined as an alternate key" in body(response)["error"]["message"]


def test_a_stale_etag_is_412_and_changes_nothing(api: WebApi, sandbox: DataverseSandbox) -> None:
    acme = sandbox.ref("acme").id
    etag = body(api.get(f"accounts({acme})?$select=name"))["@odata.etag"]
    assert api.patch(f"accounts({acme})", json={"name": "Acme 2"}, headers={"If-Match": etag}).ok

    stale = api.patch(f"accounts({acme})", json={"name": "Acme 3"}, headers={"If-Match": etag})

    assert stale.status_code == 412
    assert body(stale)["error"]["code"] == "0x80060882"
    assert sandbox.row("account", acme)["name"] == "Acme 2"


@pytest.mark.parametrize(
    ("key", "header", "status"),
    [
        ("acme", {"If-None-Match": "*"}, 412),  # create only: it exists
        ("missing", {"If-Match": "*"}, 404),  # update only: it does not
    ],
    ids=["create-only on an existing row", "update-only on a missing row"],
)
def test_upsert_preconditions(
    api: WebApi, sandbox: DataverseSandbox, key: str, header: dict[str, str], status: int
) -> None:
    record = sandbox.ref(key).id if key != "missing" else "0e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b"

    response = api.patch(f"accounts({record})", json={"name": "X"}, headers=header)

    assert response.status_code == status
    assert not sandbox.find("account", name="X")


def test_an_unchanged_row_is_304_for_its_etag(api: WebApi, sandbox: DataverseSandbox) -> None:
    acme = sandbox.ref("acme").id
    etag = body(api.get(f"accounts({acme})?$select=name"))["@odata.etag"]

    response = api.get(f"accounts({acme})?$select=name", headers={"If-None-Match": etag})

    assert response.status_code == 304


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"name": "x" * 161}, "0x80044331"),
        ({"creditlimit": "a lot"}, "0x80060888"),
        ({"creditonhold": 1}, "0x80060888"),
        ({"nosuchcolumn": 1}, "0x80060888"),
        ({"createdon": "2026-01-01T00:00:00Z"}, "0x80060888"),
    ],
    ids=["too long", "text for money", "number for yes/no", "unknown column", "system column"],
)
def test_values_are_checked_against_their_columns(
    api: WebApi, sandbox: DataverseSandbox, values: dict[str, object], code: str
) -> None:
    acme = sandbox.ref("acme").id

    response = api.patch(f"accounts({acme})", json=values)

    assert response.status_code == 400
    assert body(response)["error"]["code"] == code
    assert sandbox.row("account", acme)["name"] == "Acme Robotics Inc."


def test_a_choice_outside_its_options_is_refused(api: WebApi, sandbox: DataverseSandbox) -> None:
    deal = sandbox.ref("stark_pilot").id

    response = api.patch(f"opportunities({deal})", json={"db_paymentterms": 7})

    assert body(response)["error"]["code"] == "0x8004431a"


def test_an_opportunity_is_won_with_win_opportunity_not_by_writing_its_state(
    api: WebApi, sandbox: DataverseSandbox, clock: object
) -> None:
    deal = sandbox.ref("stark_pilot").id
    refused = api.patch(f"opportunities({deal})", json={"statecode": 1, "statuscode": 3})
    assert refused.status_code == 400

    won = api.post(
        "WinOpportunity",
        json={
            "Status": 3,
            "OpportunityClose": {
                "subject": "Won",
                "opportunityid@odata.bind": f"/opportunities({deal})",
            },
        },
    )

    assert won.status_code == 204
    row = sandbox.row("opportunity", deal)
    assert (row["statecode"], row["statuscode"], row["actualclosedate"]) == (1, 3, "2026-11-21")


def test_money_in_a_currency_without_decimals_is_rounded_to_it(
    api: WebApi, sandbox: DataverseSandbox
) -> None:
    created = api.post(
        "transactioncurrencies",
        json={
            "isocurrencycode": "JPY", "currencyname": "Japanese Yen", "currencysymbol": "¥",
            "exchangerate": 151.5, "currencyprecision": 0,
        },
    )  # fmt: skip
    yen = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")

    response = api.post(
        "accounts?$select=creditlimit",
        json={
            "name": "Kaisha KK",
            "creditlimit": 1234567.5,
            "transactioncurrencyid@odata.bind": f"/transactioncurrencies({yen})",
        },
        headers={"Prefer": f"return=representation,{ANNOTATIONS}"},
    )

    data = body(response)
    assert data["creditlimit"] == Decimal("1234568.0000")
    assert data["creditlimit@OData.Community.Display.V1.FormattedValue"] == "¥1,234,568"


def test_bad_json_is_400(api: WebApi) -> None:
    response = api.post("accounts", data=b"{not json", headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert body(response)["error"]["code"] == "0x80060891"
