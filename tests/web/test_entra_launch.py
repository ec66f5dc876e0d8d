"""Entra ID sign-in for Dynamics 365: an access token verified against the tenant's keys.

Each test signs tokens with an RSA key made here and serves its JWKS with ``responses`` at
the tenant's real discovery URL, so nothing leaves the machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import responses
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask

from connector.config import ConfigError, load_config
from connector.runtime import Runtime
from connector.store.db import Database
from connector.web.app import create_app
from connector.web.auth import Identity, read_session_token
from connector.web.entra import JwksCache
from tests.support import TEST_SECRETS, FrozenClock, make_config

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "0b8a1c3e-1111-4222-8333-444455556666"
AUDIENCE = "api://dealbridge.example.com"
CLIENT_ID = "6e74172b-be56-4843-9ff4-e66a39bb12e3"
JWKS_URL = f"https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys"
ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"
ROLES = {"Dealbridge.SalesRep": "sales_rep", "Dealbridge.Finance": "finance",
         "Dealbridge.Admin": "admin"}  # fmt: skip


class Key:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def sign(self, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": AUDIENCE, "iss": ISSUER, "tid": TENANT, "iat": now, "nbf": now,
            "exp": now + 3600, "scp": "access_as_user", "roles": ["Dealbridge.Finance"],
            "preferred_username": "fin@contoso.example", "oid": "00000000-aaaa-bbbb-cccc-1",
            "ver": "2.0",
        }  # fmt: skip
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture(scope="module")
def key() -> Key:
    return Key("key-2026-a")


@pytest.fixture(scope="module")
def rotated_key() -> Key:
    return Key("key-2026-b")


def _app(sqlite_db: Database, **entra: Any) -> Flask:
    settings = {"tenant_id": TENANT, "audience": [AUDIENCE, CLIENT_ID], "roles": ROLES, **entra}
    config = make_config(sqlite_db.url, {"web": {"entra": settings}})
    return create_app(runtime=Runtime(config, db=sqlite_db, clock=FrozenClock()))


@pytest.fixture
def app(sqlite_db: Database) -> Flask:
    return _app(sqlite_db)


@pytest.fixture
def jwks(key: Key) -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JWKS_URL, json={"keys": [key.jwk()]})
        yield mock


def _launch(app: Flask, token: str, deal: str = "opp-0001") -> Any:
    return app.test_client().post(
        "/launch/entra",
        data={"access_token": token, "deal": deal},
        headers={"Accept": "application/json"},
    )


def _session(response: Any) -> Identity:
    assert response.status_code == 303, response.get_json()
    token = parse_qs(urlsplit(response.headers["Location"]).query)["t"][0]
    identity = read_session_token(TEST_SECRETS["secret_key"].reveal(), token, 3600)
    assert identity is not None
    return identity


def _refusal(response: Any) -> tuple[int, str]:
    return response.status_code, response.get_json()["error"]["reason"]


# --------------------------------------------------------------------------- accepted


def test_a_valid_token_opens_the_deal_with_a_session_in_the_mapped_role(
    app: Flask, jwks: Any, key: Key
) -> None:
    response = _launch(app, key.sign(), deal="opp-0001")
    assert urlsplit(response.headers["Location"]).path == "/deals/opp-0001/plan"
    identity = _session(response)
    assert (identity.user, identity.role) == ("fin@contoso.example", "finance")


def test_the_session_cookie_carries_the_same_sign_in(app: Flask, jwks: Any, key: Key) -> None:
    client = app.test_client()
    response = client.post("/launch/entra", data={"access_token": key.sign()})
    assert response.status_code == 303
    assert client.get("/api/overview").status_code == 200  # finance may see the overview


def test_the_token_may_come_as_a_bearer_header(app: Flask, jwks: Any, key: Key) -> None:
    response = app.test_client().post(
        "/launch/entra?deal=opp-0002", headers={"Authorization": f"Bearer {key.sign()}"}
    )
    assert urlsplit(response.headers["Location"]).path == "/deals/opp-0002/plan"
    assert _session(response).role == "finance"


def test_the_highest_mapped_app_role_wins(app: Flask, jwks: Any, key: Key) -> None:
    token = key.sign(roles=["Dealbridge.SalesRep", "Dealbridge.Admin", "Other.Role"])
    assert _session(_launch(app, token)).role == "admin"


def test_the_user_is_the_upn_or_object_id_when_there_is_no_preferred_username(
    app: Flask, jwks: Any, key: Key
) -> None:
    with_upn = key.sign(preferred_username=None, upn="rep@contoso.example")
    only_oid = key.sign(preferred_username=None)
    assert _session(_launch(app, with_upn)).user == "rep@contoso.example"
    assert _session(_launch(app, only_oid)).user == "00000000-aaaa-bbbb-cccc-1"


def test_a_token_expired_within_the_leeway_is_still_accepted(
    app: Flask, jwks: Any, key: Key
) -> None:
    now = int(time.time())
    assert _launch(app, key.sign(exp=now - 20, nbf=now - 3600)).status_code == 303


def test_the_keys_are_fetched_once_for_many_sign_ins(app: Flask, jwks: Any, key: Key) -> None:
    for n in range(3):
        assert _launch(app, key.sign(uti=f"token-{n}")).status_code == 303
    assert len(jwks.calls) == 1


# --------------------------------------------------------------------------- refused


def test_an_access_token_used_a_second_time_is_refused_as_a_replay(
    app: Flask, jwks: Any, key: Key
) -> None:
    token = key.sign()
    assert _launch(app, token).status_code == 303
    assert _refusal(_launch(app, token)) == (401, "replayed")


def test_a_session_opened_for_one_deal_cannot_reach_the_overview(
    app: Flask, jwks: Any, key: Key
) -> None:
    client = app.test_client()
    response = client.post("/launch/entra", data={"access_token": key.sign(), "deal": "o1"})
    assert response.status_code == 303
    assert client.get("/api/overview").status_code == 403


def test_a_token_without_an_issued_at_time_is_refused(app: Flask, jwks: Any, key: Key) -> None:
    assert _refusal(_launch(app, key.sign(iat=None))) == (401, "missing_claim")


def test_a_token_signed_by_another_key_with_a_known_kid_is_refused(
    app: Flask, jwks: Any, key: Key
) -> None:
    forged = Key(key.kid).sign(roles=["Dealbridge.Admin"])
    assert _refusal(_launch(app, forged)) == (401, "bad_signature")


def test_a_token_from_another_issuer_is_refused(app: Flask, jwks: Any, key: Key) -> None:
    token = key.sign(iss=f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0")
    assert _refusal(_launch(app, token)) == (401, "wrong_issuer")


def test_a_v1_token_is_refused_as_another_issuer(app: Flask, jwks: Any, key: Key) -> None:
    token = key.sign(iss=f"https://sts.windows.net/{TENANT}/")
    assert _refusal(_launch(app, token)) == (401, "wrong_issuer")


def test_a_token_naming_another_tenant_is_refused(app: Flask, jwks: Any, key: Key) -> None:
    assert _refusal(_launch(app, key.sign(tid=OTHER_TENANT))) == (401, "wrong_tenant")


def test_a_token_for_another_api_is_refused(app: Flask, jwks: Any, key: Key) -> None:
    token = key.sign(aud="https://graph.microsoft.com")
    assert _refusal(_launch(app, token)) == (401, "wrong_audience")


def test_an_expired_token_is_refused(app: Flask, jwks: Any, key: Key) -> None:
    now = int(time.time())
    token = key.sign(iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    assert _refusal(_launch(app, token)) == (401, "expired")


def test_a_token_not_valid_yet_is_refused(app: Flask, jwks: Any, key: Key) -> None:
    now = int(time.time())
    assert _refusal(_launch(app, key.sign(nbf=now + 600))) == (401, "not_yet_valid")


def test_a_token_without_the_user_scope_is_refused(app: Flask, jwks: Any, key: Key) -> None:
    # An ID token or an app-only token: same keys, same audience, but no delegated scope.
    assert _refusal(_launch(app, key.sign(scp=None))) == (401, "not_delegated")


def test_a_token_not_signed_with_rs256_is_refused(app: Flask, jwks: Any, key: Key) -> None:
    hs256 = jwt.encode(
        {"aud": AUDIENCE, "iss": ISSUER, "tid": TENANT, "exp": int(time.time()) + 60},
        "a-guessed-shared-secret-of-32-bytes!",
        algorithm="HS256",
        headers={"kid": key.kid},
    )
    assert _refusal(_launch(app, hs256)) == (401, "bad_algorithm")


def test_garbage_and_missing_tokens_are_refused(app: Flask, jwks: Any) -> None:
    assert _refusal(_launch(app, "not.a.jwt")) == (401, "malformed")
    assert _refusal(_launch(app, "")) == (401, "missing")


def test_a_user_with_no_mapped_app_role_is_refused(app: Flask, jwks: Any, key: Key) -> None:
    response = _launch(app, key.sign(roles=["Some.Other.Role"]))
    assert _refusal(response) == (403, "no_role")
    assert "Dealbridge.Finance" in response.get_json()["error"]["message"]


def test_a_configured_default_role_signs_in_a_user_with_no_mapped_role(
    sqlite_db: Database, jwks: Any, key: Key
) -> None:
    app = _app(sqlite_db, default_role="sales_rep")
    assert _session(_launch(app, key.sign(roles=None))).role == "sales_rep"


def test_sign_in_is_refused_until_a_tenant_is_configured(sqlite_db: Database, key: Key) -> None:
    app = create_app(runtime=Runtime(make_config(sqlite_db.url), db=sqlite_db))
    response = _launch(app, key.sign())
    assert response.status_code == 503
    assert "web.entra.tenant_id" in response.get_json()["error"]["message"]


def test_unreachable_signing_keys_are_a_502_not_a_refusal(app: Flask, key: Key) -> None:
    with responses.RequestsMock() as mock:
        mock.get(JWKS_URL, status=503)
        response = _launch(app, key.sign())
    assert response.status_code == 502
    assert response.get_json()["error"]["code"] == "entra_unavailable"


# --------------------------------------------------------------------------- key rotation


def test_an_unknown_kid_fetches_the_keys_again_and_signs_in_with_the_new_key(
    app: Flask, jwks: Any, key: Key, rotated_key: Key
) -> None:
    assert _launch(app, key.sign()).status_code == 303
    jwks.replace(responses.GET, JWKS_URL, json={"keys": [key.jwk(), rotated_key.jwk()]})
    identity = _session(_launch(app, rotated_key.sign(roles=["Dealbridge.Admin"])))
    assert identity.role == "admin"
    assert len(jwks.calls) == 2


def test_a_kid_unknown_after_the_refresh_is_refused_without_fetching_again(
    app: Flask, jwks: Any, key: Key
) -> None:
    assert _launch(app, key.sign()).status_code == 303
    stranger = Key("not-in-the-tenant")
    assert _refusal(_launch(app, stranger.sign())) == (401, "unknown_key")
    assert _refusal(_launch(app, stranger.sign())) == (401, "unknown_key")
    assert len(jwks.calls) == 2  # the first fill, then one refresh for the unknown kid


def test_the_cached_keys_are_fetched_again_once_their_ttl_passes(key: Key) -> None:
    now = [1000.0]
    fetched: list[str] = []

    def fetch(url: str) -> dict[str, Any]:
        fetched.append(url)
        return {"keys": [key.jwk()]}

    cache = JwksCache(JWKS_URL, 3600, clock=lambda: now[0], fetch=fetch)
    cache.key(key.kid)
    now[0] += 3599
    cache.key(key.kid)
    assert len(fetched) == 1
    now[0] += 1
    cache.key(key.kid)
    assert len(fetched) == 2


# --------------------------------------------------------------------------- configuration


def test_a_tenant_without_an_audience_is_a_configuration_problem(tmp_path: Any) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"web:\n  entra:\n    tenant_id: {TENANT}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, env={}, require_secrets=False)
    assert any(p.startswith("web.entra.audience: required") for p in error.value.problems)


def test_a_tenant_id_that_is_not_a_guid_and_an_unknown_role_are_refused(tmp_path: Any) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "web:\n  entra:\n    tenant_id: contoso.onmicrosoft.com\n    audience: [x]\n"
        "    roles: {Dealbridge.Boss: owner}\n"
    )
    with pytest.raises(ConfigError) as error:
        load_config(path, env={}, require_secrets=False)
    keys = {p.split(":")[0] for p in error.value.problems}
    assert {"web.entra.tenant_id", "web.entra.roles.Dealbridge.Boss.value"} <= keys
