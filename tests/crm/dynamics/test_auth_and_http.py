"""Auth through msal and the HTTP core: token reuse and renewal, 429 pauses, 5xx retries, errors."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
import requests
import responses

from connector.crm.base import CrmAuthError, CrmNotFound, CrmRejected, CrmUnavailable
from connector.crm.dynamics.client import DataverseRejected, parse_retry_after
from tests.crm.dynamics.support import (
    API,
    CLIENT_ID,
    ENV_URL,
    FIRST_TOKEN,
    OPENID_URL,
    SECOND_TOKEN,
    TOKEN_URL,
    FakeTime,
    api_requests,
    make_client,
    odata,
    token_requests,
)

WHOAMI = f"{API}/WhoAmI"


def add_whoami(rsps: responses.RequestsMock, status: int = 200, **kwargs: object) -> None:
    if status == 200:
        rsps.add(responses.GET, WHOAMI, **odata("whoami.json"))
    else:
        rsps.add(responses.GET, WHOAMI, status=status, **kwargs)


def test_a_token_is_requested_with_client_credentials_for_the_environment_scope(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    add_whoami(entra)
    make_client(fake_time).get_json("WhoAmI")
    assert entra.calls[0].request.url == OPENID_URL
    form = parse_qs(token_requests(entra)[0].request.body)
    assert form["grant_type"] == ["client_credentials"]
    assert form["client_id"] == [CLIENT_ID]
    assert form["scope"] == [f"{ENV_URL}/.default"]
    assert api_requests(entra)[0].request.headers["Authorization"] == f"Bearer {FIRST_TOKEN}"


def test_the_token_is_reused_from_msals_cache_across_clients_of_the_process(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    add_whoami(entra)
    make_client(fake_time).get_json("WhoAmI")
    make_client(fake_time).get_json("WhoAmI")
    assert len(token_requests(entra)) == 1
    assert len([c for c in entra.calls if c.request.url == OPENID_URL]) == 1


def test_a_401_renews_the_token_once_and_repeats_the_request(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    add_whoami(entra, status=401)
    add_whoami(entra)
    result = make_client(fake_time).get_json("WhoAmI")
    assert result["UserId"] == "75c2dd85-e89e-e711-8122-000d3aa2331c"
    calls = api_requests(entra)
    assert [c.request.headers["Authorization"] for c in calls] == [
        f"Bearer {FIRST_TOKEN}",
        f"Bearer {SECOND_TOKEN}",
    ]
    assert len(token_requests(entra)) == 2


def test_a_second_401_raises_crm_auth_error_naming_the_application_user(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    add_whoami(entra, status=401)
    add_whoami(entra, status=401)
    with pytest.raises(CrmAuthError) as caught:
        make_client(fake_time).get_json("WhoAmI")
    assert "application user" in str(caught.value)
    assert CLIENT_ID in str(caught.value)
    assert len(api_requests(entra)) == 2


def test_a_refused_client_secret_raises_crm_auth_error_without_calling_dataverse(
    rsps: responses.RequestsMock, fake_time: FakeTime
) -> None:
    rsps.add(responses.GET, OPENID_URL, **odata("openid_configuration.json"))
    rsps.add(responses.POST, TOKEN_URL, status=401, **odata("token__invalid_client.json"))
    with pytest.raises(CrmAuthError) as caught:
        make_client(fake_time).get_json("WhoAmI")
    assert "invalid_client" in str(caught.value)
    assert "AADSTS7000215" in str(caught.value)
    assert "client-secret-value" not in str(caught.value)
    assert api_requests(rsps) == []


def test_a_429_waits_the_retry_after_seconds_then_retries(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    add_whoami(
        entra,
        status=429,
        headers={"Retry-After": "7"},
        **odata("error__service_protection_requests.json"),
    )
    add_whoami(entra)
    make_client(fake_time).get_json("WhoAmI")
    assert fake_time.sleeps == [7.0]
    assert len(api_requests(entra)) == 2


def test_a_429_pauses_every_call_made_as_the_same_application_user(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    add_whoami(
        entra,
        status=429,
        headers={"Retry-After": "30"},
        **odata("error__service_protection_requests.json"),
    )
    add_whoami(entra)
    refused = make_client(fake_time, max_throttled_attempts=1)
    with pytest.raises(CrmUnavailable) as caught:
        refused.get_json("WhoAmI")
    assert caught.value.retry_after == 30.0
    fake_time.now += 12  # another worker calls 12 seconds later
    other = FakeTime(start=fake_time.now)
    other_client = make_client(fake_time, max_throttled_attempts=1)
    other_client.sleeper = other.sleep
    other_client.get_json("WhoAmI")
    assert other.sleeps == [18.0]


def test_a_429_does_not_pause_calls_made_as_another_application_user(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    add_whoami(entra, status=429, headers={"Retry-After": "30"})
    add_whoami(entra)
    with pytest.raises(CrmUnavailable):
        make_client(fake_time, max_throttled_attempts=1).get_json("WhoAmI")
    other = make_client(fake_time, client_id="0a0b0c0d-1111-2222-3333-444455556666")
    other.get_json("WhoAmI")
    assert fake_time.sleeps == []


def test_repeated_429s_raise_crm_unavailable_with_the_last_retry_after(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    add_whoami(
        entra,
        status=429,
        headers={"Retry-After": "5"},
        **odata("error__service_protection_requests.json"),
    )
    with pytest.raises(CrmUnavailable) as caught:
        make_client(fake_time, max_throttled_attempts=3).get_json("WhoAmI")
    assert caught.value.retry_after == 5.0
    assert "Number of requests exceeded the limit" in str(caught.value)
    assert fake_time.sleeps == [5.0, 5.0]
    assert len(api_requests(entra)) == 3


def test_5xx_answers_are_retried_with_exponential_backoff(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    add_whoami(entra, status=503)
    add_whoami(entra, status=500, **odata("error__unexpected_500.json"))
    add_whoami(entra)
    make_client(fake_time, backoff_base=2.0).get_json("WhoAmI")
    assert fake_time.sleeps == [2.0, 4.0]


def test_5xx_answers_past_the_attempt_limit_raise_crm_unavailable(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    add_whoami(entra, status=500, **odata("error__unexpected_500.json"))
    with pytest.raises(CrmUnavailable) as caught:
        make_client(fake_time, max_attempts=3).get_json("WhoAmI")
    assert "An unexpected error occurred." in str(caught.value)
    assert len(api_requests(entra)) == 3
    assert fake_time.sleeps == [1.0, 2.0]


def test_timeouts_are_retried_then_raise_crm_unavailable(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    entra.add(responses.GET, WHOAMI, body=requests.Timeout("read timed out"))
    with pytest.raises(CrmUnavailable) as caught:
        make_client(fake_time, max_attempts=2).get_json("WhoAmI")
    assert "Timeout" in str(caught.value)
    assert len(fake_time.sleeps) == 1


def test_a_404_raises_crm_not_found_with_dataverses_message(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    url = f"{API}/opportunities(3f2504e0-4f89-11d3-9a0c-0305e82c3301)"
    entra.add(responses.GET, url, status=404, **odata("error__record_not_found.json"))
    with pytest.raises(CrmNotFound) as caught:
        make_client(fake_time).get_json("opportunities(3f2504e0-4f89-11d3-9a0c-0305e82c3301)")
    assert "Does Not Exist" in str(caught.value)


def test_a_400_raises_crm_rejected_carrying_the_error_code_and_message(
    entra: responses.RequestsMock, fake_time: FakeTime
) -> None:
    entra.add(
        responses.PATCH,
        f"{API}/opportunities(3f2504e0-4f89-11d3-9a0c-0305e82c3301)",
        status=400,
        **odata("error__invalid_column.json"),
    )
    with pytest.raises(CrmRejected) as caught:
        make_client(fake_time).request(
            "PATCH",
            "opportunities(3f2504e0-4f89-11d3-9a0c-0305e82c3301)",
            json_body={"db_planstatus": "ready"},
        )
    assert isinstance(caught.value, DataverseRejected)
    assert caught.value.status == 400
    assert "Could not find a property named 'db_planstatus'" in str(caught.value)
    assert fake_time.sleeps == []


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), ("0.5", 0.5), ("00:01:05", 65.0), (None, None), ("soon", None)],
)
def test_retry_after_is_read_as_seconds_or_a_timespan(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header) == seconds
