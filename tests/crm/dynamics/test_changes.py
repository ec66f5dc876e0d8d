"""Changes since a cursor: change tracking with delta links, or modifiedon where it is off."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
import responses

from connector.crm.base import CrmRejected
from tests.crm.dynamics.support import (
    API,
    OPPORTUNITY_ID,
    FakeTime,
    api_requests,
    fixture_json,
    make_adapter,
    odata,
    query_of,
)

OPPORTUNITIES = f"{API}/opportunities"
FIRST_DELTA = fixture_json("delta__initial.json")["@odata.deltaLink"]
SECOND_DELTA = fixture_json("delta__changes.json")["@odata.deltaLink"]
OPEN_NOW_WON = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
WON_LATER = "16fd2706-8baf-433b-82eb-8c7fada847da"


def test_the_first_poll_starts_change_tracking_and_keeps_won_deals(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    entra.add(responses.GET, OPPORTUNITIES, **odata("delta__initial.json"))
    changes = make_adapter(fake_time).changed_deals(None)
    assert changes.ids == [OPPORTUNITY_ID, WON_LATER]
    assert changes.cursor == f"delta:{FIRST_DELTA}"
    call = api_requests(entra)[0]
    assert "odata.track-changes" in call.request.headers["Prefer"]
    assert query_of(call) == {"$select": ["opportunityid,statecode"]}


def test_the_next_poll_follows_the_delta_link_and_skips_deleted_records(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    entra.add(responses.GET, OPPORTUNITIES, **odata("delta__changes.json"))
    changes = make_adapter(fake_time).changed_deals(f"delta:{FIRST_DELTA}")
    assert changes.ids == [OPEN_NOW_WON]
    assert changes.cursor == f"delta:{SECOND_DELTA}"
    assert unquote(api_requests(entra)[0].request.url) == unquote(FIRST_DELTA)


def test_without_change_tracking_the_poll_falls_back_to_modifiedon(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    entra.add(
        responses.GET, OPPORTUNITIES, status=400, **odata("error__change_tracking_not_enabled.json")
    )
    entra.add(responses.GET, OPPORTUNITIES, **odata("opportunities__won_modified_since.json"))
    changes = make_adapter(fake_time).changed_deals(None)
    assert changes.ids == [OPPORTUNITY_ID, WON_LATER]
    assert changes.cursor == "modifiedon:2026-11-21T08:40:33Z"
    fallback = api_requests(entra)[1]
    assert "odata.track-changes" not in fallback.request.headers["Prefer"]
    assert query_of(fallback) == {
        "$select": ["opportunityid,modifiedon,versionnumber"],
        "$orderby": ["modifiedon asc"],
        "$filter": ["statecode eq 1"],
    }


def test_a_modifiedon_cursor_asks_for_changes_from_its_own_second_on(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    entra.add(responses.GET, OPPORTUNITIES, **odata("opportunities__won_modified_since.json"))
    changes = make_adapter(fake_time).changed_deals("modifiedon:2026-11-20T00:00:00Z")
    assert changes.cursor == "modifiedon:2026-11-21T08:40:33Z"
    assert query_of(api_requests(entra)[0])["$filter"] == [
        "statecode eq 1 and modifiedon ge 2026-11-20T00:00:00Z"
    ]


def test_a_modifiedon_poll_reports_each_rows_version(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    entra.add(responses.GET, OPPORTUNITIES, **odata("opportunities__won_modified_since.json"))
    changes = make_adapter(fake_time).changed_deals("modifiedon:2026-11-20T00:00:00Z")
    assert changes.versions == {
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301": "4812345",
        WON_LATER: "4812990",
    }


def test_a_modifiedon_poll_with_no_changes_keeps_the_cursor(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    entra.add(responses.GET, OPPORTUNITIES, json={"value": []})
    changes = make_adapter(fake_time).changed_deals("modifiedon:2026-11-21T08:40:33Z")
    assert changes.ids == []
    assert changes.cursor == "modifiedon:2026-11-21T08:40:33Z"


def test_a_refused_delta_link_restarts_change_tracking(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    entra.add(responses.GET, OPPORTUNITIES, status=400, **odata("error__delta_link_refused.json"))
    entra.add(responses.GET, OPPORTUNITIES, **odata("delta__initial.json"))
    changes = make_adapter(fake_time).changed_deals(f"delta:{FIRST_DELTA}")
    assert changes.cursor == f"delta:{FIRST_DELTA}"
    restart = api_requests(entra)[1]
    assert "odata.track-changes" in restart.request.headers["Prefer"]


def test_other_refusals_of_the_first_poll_are_raised(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    entra.add(responses.GET, OPPORTUNITIES, status=400, **odata("error__invalid_column.json"))
    with pytest.raises(CrmRejected):
        make_adapter(fake_time).changed_deals(None)


def test_changed_accounts_are_every_account_in_the_delta(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    entra.add(responses.GET, f"{API}/accounts", **odata("accounts__delta_initial.json"))
    changes = make_adapter(fake_time).changed_accounts(None)
    assert changes.ids == [
        "a1d4c5b6-7e8f-4a1b-9c2d-3e4f5a6b7c8d",
        "d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70",
    ]
    assert changes.cursor is not None and changes.cursor.startswith("delta:")
    assert query_of(api_requests(entra)[0]) == {"$select": ["accountid"]}


def test_an_unknown_cursor_is_refused(fake_time: FakeTime) -> None:
    with pytest.raises(ValueError):
        make_adapter(fake_time).changed_deals("soql:LastModifiedDate")
