"""Helpers shared by tests: a hand-moved clock, test secrets, configs built in code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from connector.config import Config, config_for_tests
from connector.secrets import Secret

TEST_SECRETS: dict[str, Any] = {
    "stripe_api_key": Secret("sk_test_51DealbridgeTestKeyAbCdEf"),
    "stripe_webhook_secrets": (Secret("whsec_dealbridgeTestWebhookSecret"),),
    "secret_key": Secret("test-secret-key-0123456789abcdef0123456789"),
    "api_tokens": {
        "tok-finance-0123456789abcdef": "finance",
        "tok-admin-0123456789abcdef00": "admin",
        "tok-salesrep-0123456789abcdef": "sales_rep",
    },
}


class FrozenClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 21, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def make_config(database_url: str, sections: dict[str, Any] | None = None) -> Config:
    sections = dict(sections or {})
    sections.setdefault("database", {"url": database_url})
    return config_for_tests(sections, **TEST_SECRETS)
