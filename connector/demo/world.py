"""A whole local world: both sandboxes, and dealbridge configured against them.

``dealbridge demo`` and the end-to-end tests both build one, so the demo a newcomer runs
is exactly what the tests check. dealbridge itself does not know it is talking to
sandboxes: only base URLs differ (``stripe.api_base`` and an ``http://`` Salesforce
instance URL), and webhooks are registered through the Stripe sandbox's own API, as an
admin would with ``dealbridge stripe webhook-setup``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, cast

from connector.billing.client import StripeClient
from connector.billing.client import client_at as stripe_client_at
from connector.billing.event_types import HANDLED_STRIPE_EVENTS
from connector.config import Config, config_for_tests
from connector.crm.base import CrmAdapter
from connector.crm.salesforce.session import SalesforceClient
from connector.crm.salesforce.session import client_at as salesforce_client_at
from connector.demo import SAMPLE_ORG, salesforce_sandbox
from connector.jobs import default_registry
from connector.runtime import Runtime
from connector.secrets import Secret
from connector.store.db import Database
from connector.store.migrate import upgrade
from connector.web.app import create_app
from sandboxes._server import SandboxServer
from sandboxes.salesforce import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_PASSWORD,
    DEMO_SECURITY_TOKEN,
    DEMO_USERNAME,
)
from sandboxes.stripe import StripeSandbox

DEMO_STRIPE_KEY = "sk_test_dealbridge_local_demo"


class _LateApp:
    """A WSGI app bound before the real one exists: the server must listen (so its URL is
    known) before Stripe can be told where to send webhooks, and the app's config needs
    the signing secret Stripe returns."""

    def __init__(self) -> None:
        self.app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        assert self.app is not None, "the app is not ready yet"
        result: Iterable[bytes] = self.app(environ, start_response)
        return result


class LocalWorld:
    #: The CRM this world runs (``summary()`` names its sandbox ``<crm>_sandbox``).
    crm_name = "salesforce"

    def __init__(
        self,
        database_url: str,
        *,
        clock: Callable[[], datetime] | None = None,
        seed: str | Path | dict[str, Any] | None = SAMPLE_ORG,
        app_port: int = 0,
        stripe_port: int = 0,
        salesforce_port: int = 0,
        sections: dict[str, Any] | None = None,
        auto_deliver: bool = False,
    ) -> None:
        self.database_url = database_url
        self.clock = clock or (lambda: datetime.now(UTC))
        now_seconds = lambda: int(self.clock().timestamp())  # noqa: E731
        self.stripe_sandbox = StripeSandbox(now=now_seconds, signing_clock=now_seconds)
        self._ports = (app_port, stripe_port, salesforce_port)
        self._init_crm(seed)
        self._sections = sections or {}
        self._auto_deliver = auto_deliver
        self._late_app = _LateApp()
        self._app_server: SandboxServer | None = None
        self.outbound_token = secrets.token_urlsafe(24)
        self.api_tokens = {
            "finance": "finance-" + secrets.token_urlsafe(18),
            "admin": "admin-" + secrets.token_urlsafe(18),
            "sales_rep": "salesrep-" + secrets.token_urlsafe(18),
        }
        self.secret_key = secrets.token_urlsafe(32)
        self.runtime: Runtime | None = None
        #: Every job dealbridge runs; ``sync`` runs them as ``dealbridge sync --once`` does.
        self.jobs = default_registry()
        self.config: Config | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        app_port, stripe_port, _ = self._ports
        self.stripe_sandbox.start(port=stripe_port, auto_deliver=self._auto_deliver)
        self._app_server = SandboxServer(self._late_app, port=app_port).start()
        self._start_crm()
        endpoint = self.stripe_client().v1.webhook_endpoints.create(
            params={
                "url": f"{self.app_url}/webhooks/stripe",
                "enabled_events": cast(Any, sorted(HANDLED_STRIPE_EVENTS)),
                "description": "dealbridge (local demo)",
            }
        )
        upgrade(self.database_url)
        self.config = self._config(str(endpoint.secret))
        self.runtime = Runtime(
            self.config,
            db=Database(self.database_url),
            clock=self.clock,
            crm=self._crm_adapter(self.config),
        )
        self._late_app.app = create_app(runtime=self.runtime)
        return self

    def stop(self) -> None:
        if self._app_server is not None:
            self._app_server.stop()
        self.stripe_sandbox.stop()
        self._stop_crm()
        if self.runtime is not None:
            self.runtime.close()

    # ------------------------------------------------------------------ the CRM
    # Everything CRM-specific is in these methods; a world with another CRM
    # (connector.demo.dynamics_world, on the Dataverse sandbox) overrides them and nothing else.

    def _init_crm(self, seed: str | Path | dict[str, Any] | None) -> None:
        self.salesforce_sandbox = salesforce_sandbox(seed=seed, now=self.clock)

    def _start_crm(self) -> None:
        """Start the CRM and point its pushes at the app (whose URL is known by now)."""
        self.salesforce_sandbox.start(port=self._ports[2], auto_deliver=self._auto_deliver)
        push_url = f"{self.app_url}/webhooks/crm?token={self.outbound_token}"
        self.salesforce_sandbox.add_outbound_message(
            "dealbridge_closed_won", "Opportunity", ["Id", "StageName"], push_url,
            {"StageName": "Closed Won"},
        )  # fmt: skip
        self.salesforce_sandbox.add_outbound_message(
            "dealbridge_account_credit", "Account", ["Id", "Credit_Hold__c", "Credit_Limit__c"],
            push_url,
        )  # fmt: skip

    def _stop_crm(self) -> None:
        self.salesforce_sandbox.stop()

    def _crm_section(self) -> dict[str, Any]:
        return {"kind": "salesforce", "salesforce": {"instance_url": self.salesforce_url}}

    def _crm_secrets(self) -> dict[str, Any]:
        return {
            "salesforce_username": DEMO_USERNAME,
            "salesforce_password": Secret(DEMO_PASSWORD),
            "salesforce_security_token": Secret(DEMO_SECURITY_TOKEN)
            if DEMO_SECURITY_TOKEN
            else None,
            "salesforce_outbound_token": Secret(self.outbound_token),
            # The connected app: the integration user logs in through it (OAuth password
            # grant), and a rep opening a plan's URL signs in through it (web-server flow).
            "salesforce_client_id": DEMO_CLIENT_ID,
            "salesforce_client_secret": Secret(DEMO_CLIENT_SECRET),
        }

    def _crm_web_section(self) -> dict[str, Any]:
        """Settings of the ``web`` section the CRM's sign-in needs (none for Salesforce)."""
        return {}

    def _crm_adapter(self, config: Config) -> CrmAdapter | None:
        """The runtime's CRM adapter; None lets the runtime build it from the config."""
        return None

    def _config(self, webhook_secret: str) -> Config:
        sections: dict[str, Any] = {
            "app": {"base_url": self.app_url},
            "database": {"url": self.database_url},
            "crm": self._crm_section(),
            "stripe": {
                "api_base": self.stripe_url,
                "dashboard_url": f"{self.stripe_url}/dashboard",
                "max_network_retries": 0,
            },
            "web": {"frame_ancestors": [], "host": "127.0.0.1", **self._crm_web_section()},
        }
        for key, value in self._sections.items():
            sections[key] = {**sections.get(key, {}), **value}
        return config_for_tests(
            sections,
            stripe_api_key=Secret(DEMO_STRIPE_KEY),
            stripe_webhook_secrets=(Secret(webhook_secret),),
            secret_key=Secret(self.secret_key),
            api_tokens={token: role for role, token in self.api_tokens.items()},
            **self._crm_secrets(),
        )

    # ------------------------------------------------------------------ addresses, clients

    @property
    def app_url(self) -> str:
        assert self._app_server is not None
        return self._app_server.url

    @property
    def stripe_url(self) -> str:
        return self.stripe_sandbox.url

    @property
    def salesforce_url(self) -> str:
        return self.salesforce_sandbox.url

    @property
    def crm_url(self) -> str:
        return self.salesforce_url

    def stripe_client(self) -> StripeClient:
        return stripe_client_at(self.stripe_url, DEMO_STRIPE_KEY)

    def salesforce_client(self) -> SalesforceClient:
        return salesforce_client_at(
            self.salesforce_url,
            username=DEMO_USERNAME,
            password=DEMO_PASSWORD,
            security_token=DEMO_SECURITY_TOKEN,
        )

    # ------------------------------------------------------------------ driving

    def deliver_crm_pushes(self) -> int:
        return self.salesforce_sandbox.deliver_outbound_messages()

    def sync(self, *, max_rounds: int = 20) -> dict[str, int]:
        """Deliver every pending webhook and push, run every job; repeat until quiet.

        The deterministic stand-in for "wait a bit": each round delivers what the
        sandboxes owe us and runs one full round of dealbridge's jobs (`sync --once`).
        """
        assert self.runtime is not None
        totals: dict[str, int] = {}
        for _ in range(max_rounds):
            delivered = self.stripe_sandbox.deliver_webhooks()
            delivered += self.deliver_crm_pushes()
            handled = self.jobs.run_once(self.runtime)
            for name, count in handled.items():
                totals[name] = totals.get(name, 0) + count
            busy = sum(v for k, v in handled.items() if k not in ("poll_crm", "reconcile_stripe"))
            if delivered == 0 and busy == 0 and self.stripe_sandbox.pending_webhooks() == 0:
                break
        return totals
