"""The Salesforce sandbox: a local, stateful stand-in for the Salesforce REST API.

One :class:`SalesforceSandbox` is one org: schema (standard objects + dealbridge's SFDX
metadata), records, sessions, API allowance, outbound message rules and queue. All state is
in memory behind one lock; the HTTP side is a WSGI app served by
:class:`sandboxes._server.SandboxServer`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

from .._delivery import DeliveryLoop
from .._server import SandboxServer
from .app import SandboxApp
from .auth import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_PASSWORD,
    DEMO_SECURITY_TOKEN,
    DEMO_USERNAME,
    Credentials,
    OrgIdentity,
    Sessions,
)
from .bulk2 import Processing
from .ids import ORGANIZATION_PREFIX, IdGenerator
from .outbound import Evaluation, OutboundMessages, is_ack
from .query import Cursors
from .rest import RestApi
from .seed import SeedLoader
from .sfdx import build_schema
from .standard_objects import CORPORATE_CURRENCY
from .store import Store, to_json
from .traffic import ApiUsage, Faults, RequestCounter

API_VERSION = "59.0"
#: The org's currencies at creation: (ISO code, rate to the corporate currency, decimals).
CURRENCIES = (
    ("USD", Decimal("1"), 2),
    ("EUR", Decimal("0.92"), 2),
    ("GBP", Decimal("0.79"), 2),
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SalesforceSandbox:
    """A local Salesforce org speaking the REST API that simple-salesforce uses.

    ``seed`` is a YAML/JSON path or a dict (see :mod:`.seed`); ``now`` an injectable clock for
    timestamps, relative seed dates, the daily API allowance, outbound retry backoff and Bulk
    API processing time. ``bulk_processing`` says how long a closed Bulk API 2.0 job stays
    ``InProgress`` (status checks and/or clock seconds; instant by default).
    """

    def __init__(
        self,
        seed: str | Path | dict[str, Any] | None = None,
        daily_api_limit: int = 15000,
        now: Callable[[], datetime] | None = None,
        *,
        metadata_dir: str | Path | None = None,
        username: str = DEMO_USERNAME,
        password: str = DEMO_PASSWORD,
        security_token: str = DEMO_SECURITY_TOKEN,
        client_id: str = DEMO_CLIENT_ID,
        client_secret: str = DEMO_CLIENT_SECRET,
        query_batch_size: int = 2000,
        bulk_processing: Processing | None = None,
    ) -> None:
        self._now = now or _utc_now
        self._lock = threading.RLock()
        self._ids = IdGenerator()
        self.org_id = self._ids.new(ORGANIZATION_PREFIX)
        self.schema = build_schema(Path(metadata_dir) if metadata_dir else None)
        self.credentials = Credentials(username, password, security_token, client_id, client_secret)
        self.sessions = Sessions(self.org_id)
        self.usage = ApiUsage(daily_api_limit, self._now)
        self.faults = Faults()
        self.counter = RequestCounter()
        self.user_id = self._ids.new("005")
        self.profile_id = self._ids.new("00e")  # the integration user's profile
        self.store = Store(self.schema, self._ids, self._now, self.user_id)
        self.outbound = OutboundMessages(
            self.store, self._ids, self._now, self.org_id, self.sessions, API_VERSION
        )
        self.rest = RestApi(
            self.store,
            Cursors(self._ids),
            self.usage,
            lambda: self._now().date(),
            query_batch_size,
        )
        self.app = SandboxApp(
            self.rest,
            self._lock,
            self.credentials,
            self.sessions,
            self.usage,
            self.faults,
            self.counter,
            self._identity,
            self._now,
            bulk_processing,
        )
        self._refs: dict[str, str] = {}
        self._server: SandboxServer | None = None
        self._delivery = DeliveryLoop(self.deliver_outbound_messages, "salesforce-sandbox-outbound")
        self._bootstrap()
        if seed is not None:
            self.load_seed(seed)

    def _bootstrap(self) -> None:
        """The records every org has: the API user and the Standard Price Book."""
        stamp = self._now().replace(microsecond=0)
        self.store.put_raw(
            "User",
            {
                "Id": self.user_id, "IsDeleted": False, "CreatedDate": stamp,
                "LastModifiedDate": stamp, "SystemModstamp": stamp, "CreatedById": self.user_id,
                "LastModifiedById": self.user_id, "Username": self.credentials.username,
                "FirstName": "Dealbridge", "LastName": "Integration",
                "Name": "Dealbridge Integration", "Email": self.credentials.username,
                "Alias": "dbint", "IsActive": True,
            },
        )  # fmt: skip
        for code, rate, places in CURRENCIES:
            currency = self.store.create(
                "CurrencyType",
                {"IsoCode": code, "ConversionRate": rate, "DecimalPlaces": places,
                 "IsActive": True},
                seed=True,
            )  # fmt: skip
            if code == CORPORATE_CURRENCY:
                self.store.put_raw("CurrencyType", {"Id": currency, "IsCorporate": True})
        self.store.sync_currencies()
        standard = self.store.create(
            "Pricebook2", {"Name": "Standard Price Book", "IsActive": True}, seed=True
        )
        self.store.put_raw("Pricebook2", {"Id": standard, "IsStandard": True})
        self._refs.update(integration_user=self.user_id, standard_pricebook=standard)

    def _identity(self, instance_url: str) -> OrgIdentity:
        return OrgIdentity(
            self.org_id, self.user_id, instance_url, self.profile_id, CORPORATE_CURRENCY
        )

    # ------------------------------------------------------------------ server

    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        """The sandbox is a WSGI app (for tests that want no socket)."""
        return self.app(environ, start_response)

    def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        auto_deliver: bool = False,
        *,
        allow_non_loopback: bool = False,
    ) -> SalesforceSandbox:
        """Serve on ``host:port`` (0 = a free port) in a background thread; returns self."""
        self._server = SandboxServer(
            self.app, host, port, allow_non_loopback=allow_non_loopback
        ).start()
        self.outbound.base_url = self.url
        if auto_deliver:
            self._start_auto_delivery()
        return self

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not started; call start() first")
        return self._server.url

    def stop(self) -> None:
        self._delivery.stop()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> SalesforceSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- records

    def load_seed(self, source: str | Path | dict[str, Any]) -> dict[str, str]:
        """Create the seed's records; returns every ref known so far with its id."""
        with self._lock:
            return SeedLoader(self.store, self._now, self._refs).load(source)

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Every live record of ``sobject`` as the REST API renders it (Decimals for numbers)."""
        with self._lock:
            obj = self.store.object(sobject)
            return [to_json(obj, r, API_VERSION) for r in self.store.rows(obj.name)]

    def ids_by_ref(self) -> dict[str, str]:
        with self._lock:
            return dict(self._refs)

    # ------------------------------------------------------------ test hooks

    def inject_faults(
        self,
        path_prefix: str,
        faults: Iterable[tuple[str, int] | tuple[str, int, str]],
        *,
        method: str | None = None,
    ) -> None:
        """The next requests whose path starts with ``path_prefix`` fail, in order, with no effect.

        ``path_prefix`` is either a full path (``/services/oauth2/token``) or relative to the
        versioned data API root (``/sobjects/Opportunity``, ``/query``, ``/composite``).
        """
        self.faults.inject(path_prefix, faults, method)

    def clear_faults(self) -> None:
        self.faults.clear()

    def set_down(self, down: bool) -> None:
        """While down, every request answers 503 (a CRM outage)."""
        self.faults.set_down(down)

    def expire_sessions(self) -> None:
        """Invalidate every access token: the next call answers 401 INVALID_SESSION_ID."""
        self.sessions.expire_all()

    def request_counts(self) -> dict[tuple[str, str], int]:
        return self.counter.snapshot()

    def reset_request_counts(self) -> None:
        self.counter.reset()

    @property
    def api_usage(self) -> int:
        return self.usage.used

    def set_api_usage(self, used: int) -> None:
        """Pretend ``used`` API calls were already made today (limit tests)."""
        self.usage.set_used(used)

    # ---------------------------------------------------- outbound messages

    def add_outbound_message(
        self,
        name: str,
        sobject: str,
        fields: list[str],
        endpoint_url: str,
        criteria: dict[str, Any] | None = None,
        *,
        evaluation: Evaluation = "created_and_every_edit",
        send_session_id: bool = False,
    ) -> str:
        """Define a workflow rule with an outbound message; returns its ActionId (04k...)."""
        with self._lock:
            return self.outbound.add_rule(
                name,
                sobject,
                fields,
                endpoint_url,
                criteria,
                evaluation=evaluation,
                send_session_id=send_session_id,
            )

    def pending_outbound_messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return self.outbound.pending()

    def deliver_outbound_messages(self) -> int:
        """POST every due message now; returns how many notifications were acknowledged."""
        with self._lock:
            if self._server is not None:
                self.outbound.base_url = self.url
            deliveries = self.outbound.prepare_due()
        acknowledged = 0
        for delivery in deliveries:
            try:
                response = requests.post(
                    delivery.rule.endpoint_url,
                    data=delivery.body,
                    headers=delivery.headers,
                    timeout=10,
                )
                ok, error = is_ack(response.status_code, response.content)
            except requests.RequestException as exc:
                ok, error = False, f"{type(exc).__name__}: {exc}"
            with self._lock:
                acknowledged += self.outbound.complete(delivery, ok, error)
        return acknowledged

    def _start_auto_delivery(self) -> None:
        self.outbound.on_queued = self._delivery.wake
        self._delivery.start()


def serve_forever(
    host: str,
    port: int,
    *,
    seed: str | Path | dict[str, Any] | None = None,
    metadata_dir: str | Path | None = None,
    allow_non_loopback: bool = False,
) -> None:
    """Run a sandbox in the foreground until Ctrl-C, printing its URL and demo credentials.

    Outbound messages are delivered automatically in the background.
    """
    # A person trying the sandbox sees Bulk API jobs run for a moment, as they do for real.
    sandbox = SalesforceSandbox(
        seed=seed, metadata_dir=metadata_dir, bulk_processing=Processing(seconds=2)
    )
    server = SandboxServer(sandbox.app, host, port, allow_non_loopback=allow_non_loopback)
    sandbox._server = server
    sandbox.outbound.base_url = server.url
    sandbox._start_auto_delivery()
    credentials = sandbox.credentials
    print(f"Salesforce sandbox listening on {server.url}")
    print(f"  username:        {credentials.username}")
    print(f"  password:        {credentials.password}")
    print(f"  security token:  {credentials.security_token!r}")
    print(f"  client id:       {credentials.client_id}")
    print(f"  client secret:   {credentials.client_secret}")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        server.serve_forever()
    finally:
        sandbox._server = None
        sandbox.stop()
