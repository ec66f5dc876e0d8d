"""Reading: $select, $filter, $orderby, $top, $expand, $count, paging and annotations."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sandboxes.dataverse import DataverseSandbox
from tests.sandboxes.dataverse.conftest import ANNOTATIONS, WebApi, body

FORMATTED = "@OData.Community.Display.V1.FormattedValue"


def test_formatted_values_are_annotations_of_the_raw_values(api: WebApi) -> None:
    response = api.get(
        "accounts?$select=name,creditlimit,creditonhold,_transactioncurrencyid_value"
        "&$filter=creditlimit ne null",
        headers={"Prefer": ANNOTATIONS},
    )

    [umbrella] = body(response)["value"]
    assert umbrella["creditlimit"] == Decimal("10000.0000")
    assert umbrella[f"creditlimit{FORMATTED}"] == "$10,000.00"
    assert umbrella[f"creditonhold{FORMATTED}"] == "No"
    assert umbrella[f"_transactioncurrencyid_value{FORMATTED}"] == "US Dollar"
    lookup = "_transactioncurrencyid_value@Microsoft.Dynamics.CRM.lookuplogicalname"
    assert umbrella[lookup] == "transactioncurrency"


def test_filter_order_and_top_apply_in_that_order(api: WebApi) -> None:
    response = api.get(
        "opportunities?$select=name&$filter=statecode eq 1 and db_termmonths ge 12"
        "&$orderby=db_termmonths desc,name&$top=2"
    )

    assert [o["name"] for o in body(response)["value"]] == [
        "Globex - Enterprise Licence",
        "Umbrella Health - Platform and Support",
    ]


def test_string_functions_compare_without_case(api: WebApi) -> None:
    response = api.get("contacts?$select=emailaddress1&$filter=contains(emailaddress1,'GLOBEX')")

    assert sorted(c["emailaddress1"] for c in body(response)["value"]) == [
        "Greta.Hoffmann@Globex.example",
        "lukas.brandt@globex.example",
    ]


def test_expand_follows_single_and_collection_navigation_properties(
    api: WebApi, sandbox: DataverseSandbox
) -> None:
    deal = sandbox.ref("globex_licence").id
    response = api.get(
        f"opportunities({deal})?$select=name&$expand=parentaccountid($select=name),"
        "product_opportunities($select=quantity;$orderby=priceperunit desc;$top=1)"
    )

    data = body(response)
    assert data["parentaccountid"]["name"] == "Globex GmbH"
    assert [p["quantity"] for p in data["product_opportunities"]] == [Decimal("1.00000")]
    assert data["@odata.context"].endswith("$metadata#opportunities(name)/$entity")


def test_pages_follow_the_next_link_with_the_page_size_asked_for(api: WebApi) -> None:
    names: list[str] = []
    url = "contacts?$select=fullname&$orderby=lastname"
    pages = 0
    while url:
        response = api.get(url, headers={"Prefer": "odata.maxpagesize=3"})
        assert response.headers["Preference-Applied"] == "odata.maxpagesize=3"
        data = body(response)
        names += [c["fullname"] for c in data["value"]]
        url = data.get("@odata.nextLink")
        pages += 1

    assert pages == 3
    assert len(names) == 7 == len(set(names))
    assert names[0] == "Alice Abernathy"


def test_count_reports_every_row_not_only_the_page(api: WebApi) -> None:
    response = api.get(
        "contacts?$select=fullname&$count=true", headers={"Prefer": "odata.maxpagesize=2"}
    )

    data = body(response)
    assert data["@odata.count"] == 7
    assert len(data["value"]) == 2


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("accounts?$select=nope", 400, "0x0"),
        ("accounts?$filter=nope eq 1", 400, "0x0"),
        ("acounts", 404, "0x8006088a"),
        ("accounts(00000000-0000-0000-0000-000000000001)", 404, "0x80040217"),
        ("accounts?$apply=groupby((name))", 501, "0x80040265"),
        ("accounts?$filter=name eq", 400, "0x0"),
    ],
    ids=[
        "unknown column",
        "unknown filter column",
        "unknown entity set",
        "missing row",
        "unsupported option",
        "malformed filter",
    ],
)
def test_bad_queries_get_a_dataverse_error_never_a_500(
    api: WebApi, path: str, status: int, code: str
) -> None:
    response = api.get(path)

    assert response.status_code == status
    error = body(response)["error"]
    assert error["code"] == code and error["message"]


def test_a_collection_navigation_property_lists_the_related_rows(
    api: WebApi, sandbox: DataverseSandbox
) -> None:
    deal = sandbox.ref("acme_platform").id
    response = api.get(f"opportunities({deal})/product_opportunities?$select=priceperunit")

    prices = sorted(p["priceperunit"] for p in body(response)["value"])
    assert prices == [
        Decimal("45.0000"),
        Decimal("1200.0000"),
        Decimal("1500.0000"),
        Decimal("2500.0000"),
    ]
