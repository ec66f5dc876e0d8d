"""No secret is ever printed: configured secrets are scrubbed from every log line."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from connector.logs import configure_logging, request_id_var
from connector.runtime import Runtime
from connector.web.app import create_app
from tests.support import TEST_SECRETS, make_config

RECOGNISABLE = [
    TEST_SECRETS["stripe_api_key"].reveal(),
    TEST_SECRETS["stripe_webhook_secrets"][0].reveal(),
    TEST_SECRETS["secret_key"].reveal(),
    *TEST_SECRETS["api_tokens"].keys(),
]


@pytest.fixture
def json_logs(capfd: pytest.CaptureFixture[str]) -> Any:
    config = make_config("sqlite://")
    configure_logging("DEBUG", "json", config.secrets.all_values())
    yield capfd
    configure_logging("WARNING", "text", ())


def test_secrets_in_messages_arguments_and_extras_are_redacted(json_logs: Any) -> None:
    log = logging.getLogger("dealbridge.test")
    for secret in RECOGNISABLE:
        log.info("calling with %s", secret, extra={"detail": f"key={secret}"})
    log.warning("login failed for url https://x/?token=%s", RECOGNISABLE[-1])
    err = json_logs.readouterr().err
    assert err.count("[REDACTED]") >= len(RECOGNISABLE) * 2
    for secret in RECOGNISABLE:
        assert secret not in err


def test_secrets_in_exception_tracebacks_are_redacted(json_logs: Any) -> None:
    try:
        raise RuntimeError(f"Stripe said: invalid key {RECOGNISABLE[0]}")
    except RuntimeError:
        logging.getLogger("dealbridge.test").exception("stripe call failed")
    err = json_logs.readouterr().err
    assert RECOGNISABLE[0] not in err
    assert "invalid key [REDACTED]" in err


def test_unconfigured_stripe_keys_are_redacted_by_shape(json_logs: Any) -> None:
    fake_live_key = "sk_" + "live_4eC39HqLyjWDarjtT1zdp7dc"  # Stripe's documentation example
    logging.getLogger("dealbridge.test").info("found %s in a payload", fake_live_key)
    assert "sk_live_4eC39" not in json_logs.readouterr().err


def test_json_lines_carry_the_request_id(json_logs: Any) -> None:
    token = request_id_var.set("req-12345678")
    try:
        logging.getLogger("dealbridge.test").info("hello")
    finally:
        request_id_var.reset(token)
    line = json.loads(json_logs.readouterr().err.strip().splitlines()[-1])
    assert line["request_id"] == "req-12345678"
    assert line["message"] == "hello"


def test_a_whole_request_logs_no_secret(json_logs: Any, sqlite_db: Any) -> None:
    runtime = Runtime(make_config(sqlite_db.url), db=sqlite_db)
    client = create_app(runtime=runtime).test_client()
    client.get("/healthz", headers={"Authorization": f"Bearer {RECOGNISABLE[3]}"})
    client.get(f"/api/nothing?token={RECOGNISABLE[3]}")
    err = json_logs.readouterr().err
    assert "/healthz" not in err  # health checks are not logged
    assert "/api/nothing -> 404" in err
    for secret in RECOGNISABLE:
        assert secret not in err
