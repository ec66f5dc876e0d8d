"""The ID token checks msal leaves to the app (Microsoft's ID token reference): one table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connector.crm.dynamics.signin import SignInFailed, check_id_token

TENANT = "4c2f1a7e-8d3b-4e6f-9a5c-0b1d2e3f4a5b"
CLIENT = "8e6b4d2a-1c3f-4a5e-9b7d-2f4e6a8c0b1d"
HOST = "https://login.microsoftonline.com"
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
T = int(NOW.timestamp())
GOOD: dict[str, Any] = {
    "aud": CLIENT,
    "iss": f"{HOST}/{TENANT}/v2.0",
    "tid": TENANT,
    "iat": T - 5,
    "nbf": T - 5,
    "exp": T + 3595,
    "oid": "6f1d2c3b-4a5e-4f60-8a7b-1c2d3e4f5a60",
    "ver": "2.0",
}


def _check(**changes: Any) -> None:
    claims = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    check_id_token(
        claims, tenant_id=TENANT, client_id=CLIENT, authority_host=HOST, now=NOW,
        leeway_seconds=60, max_age_seconds=600,
    )  # fmt: skip


def test_a_token_for_this_app_tenant_and_moment_is_accepted() -> None:
    _check()
    _check(tid=TENANT.upper(), iss=f"{HOST}/{TENANT.upper()}/v2.0")  # GUIDs ignore case


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"aud": "11111111-2222-3333-4444-555555555555"}, "another application"),
        ({"tid": "00000000-0000-0000-0000-000000000001"}, "another tenant"),
        ({"iss": f"https://sts.windows.net/{TENANT}/"}, "another issuer"),  # a v1.0 token
        ({"exp": T - 61}, "expired"),
        ({"nbf": T + 61}, "future"),
        ({"iat": T + 61}, "future"),
        ({"iat": T - 661}, "before this sign-in began"),
        ({"oid": None}, "no oid claim"),
        ({"exp": "soon"}, "unreadable times"),
    ],
)
def test_a_token_that_fails_a_check_is_refused_saying_which(
    changes: dict[str, Any], why: str
) -> None:
    with pytest.raises(SignInFailed, match=why):
        _check(**changes)


def test_the_leeway_absorbs_a_small_clock_difference() -> None:
    _check(exp=T - 59, nbf=T + 59, iat=T + 59)
