"""The Dataverse sandbox: one environment (schema, rows, users), its Entra tenant, its webhook
registrations and its service protection limits, in memory behind one lock, served over HTTP
by :class:`sandboxes._server.SandboxServer`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import quoteattr

import requests

from .._delivery import DeliveryLoop
from .._server import SandboxServer
from . import jsonio
from .app import DataverseApp
from .entra import DEMO_USERS, Tenant
from .errors import DataverseError
from .limits import DEFAULT_REQUESTS, DEFAULT_WINDOW_SECONDS, ServiceProtection
from .schema import Column, Table
from .seed import SeedLoader, guid_for
from .standard_tables import standard_schema
from .store import Store
from .values import Ref, coerce
from .webapi import Answer, ApiRequest, Organization, WebApi
from .webhooks import AUTH_HTTP_HEADER, AUTH_WEBHOOK_KEY, Webhooks

DEMO_ENVIRONMENT_URL = "https://sandbox.crm.dynamics.com"
DEMO_TENANT_ID = "4c2f1a7e-8d3b-4e6f-9a5c-0b1d2e3f4a5b"
DEMO_CLIENT_ID = "8e6b4d2a-1c3f-4a5e-9b7d-2f4e6a8c0b1d"
DEMO_CLIENT_SECRET = "dataverse-sandbox-client-secret"  # noqa: S105 - public demo credential
#: Messages a step can be registered on, and the tables each applies to (None: every table).
MESSAGES: dict[str, tuple[str, ...] | None] = {
    "Create": None,
    "Update": None,
    "Delete": None,
    "Win": ("opportunity",),
    "Lose": ("opportunity",),
}
CURRENCIES = {  # the base currencies an environment can be created with
    "USD": ("US Dollar", "$", 2),
    "EUR": ("Euro", "€", 2),
    "GBP": ("Pound Sterling", "£", 2),
    "JPY": ("Japanese Yen", "¥", 0),
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DataverseSandbox:
    """A local Dataverse environment speaking the Web API v9.2, with its Entra ID tenant.

    ``now`` is an injectable clock for row stamps, token expiry, delta links, relative seed
    dates and the service protection window. ``requests_per_window``/``window_seconds`` set
    the per-user limit (6,000 requests per 300 s by default).
    """

    def __init__(
        self,
        *,
        seed: str | Path | Mapping[str, Any] | None = None,
        environment_url: str = DEMO_ENVIRONMENT_URL,
        tenant_id: str = DEMO_TENANT_ID,
        client_id: str = DEMO_CLIENT_ID,
        client_secret: str = DEMO_CLIENT_SECRET,
        base_currency: str = "USD",
        now: Callable[[], datetime] | None = None,
        requests_per_window: int = DEFAULT_REQUESTS,
        window_seconds: int = DEFAULT_WINDOW_SECONDS,
        webhook_max_attempts: int = 5,
    ) -> None:
        self._now = now or _utc_now
        self._lock = threading.RLock()
        self.environment_url = environment_url.rstrip("/")
        self.organization_name = (urlsplit(self.environment_url).hostname or "org").split(".")[0]
        self.organization = Organization(
            organization_id=guid_for(f"organization:{self.environment_url}"),
            business_unit_id=guid_for(f"businessunit:{self.environment_url}"),
            base_currency_code=base_currency.upper(),
        )
        self.store = Store(standard_schema(), self._now)
        self.tenant = Tenant(tenant_id, {client_id: client_secret}, self._now)
        self.client_id = client_id
        self.client_secret = client_secret
        self.limits = ServiceProtection(
            lambda: self._now().timestamp(), requests_per_window, window_seconds
        )
        self._delta_floor = 0
        self._down = False
        self.api = WebApi(
            self.store,
            self.organization,
            delta_floor=lambda: self._delta_floor,
            today=lambda: self._now().date(),
        )
        self.webhooks = Webhooks(
            self.store,
            self._now,
            organization_id=self.organization.organization_id,
            organization_name=self.organization_name,
            business_unit_id=self.organization.business_unit_id,
            user_id=lambda: self.application_user_id,
            max_attempts=webhook_max_attempts,
        )
        self.app = DataverseApp(
            self.api,
            self.tenant,
            self.limits,
            self._lock,
            audiences=self._audience_ok,
            user_for=self._user_for,
            environment_url=lambda: self.environment_url,
            is_down=lambda: self._down,
        )
        self._refs: dict[str, Ref] = {}
        self._server: SandboxServer | None = None
        self._delivery = DeliveryLoop(self.deliver_webhooks, "dataverse-sandbox-webhooks")
        self._bootstrap()
        if seed is not None:
            self.load_seed(seed)

    def _bootstrap(self) -> None:
        """What every environment has: its base currency, the application user of the demo
        app registration, and the SDK messages webhook steps are registered on."""
        code = self.organization.base_currency_code
        name, symbol, precision = CURRENCIES.get(code, (code, code, 2))
        currency = self.store.insert(
            "transactioncurrency",
            {
                "transactioncurrencyid": guid_for(f"currency:{code}"),
                "isocurrencycode": code, "currencyname": name, "currencysymbol": symbol,
                "exchangerate": coerce(
                    *self._column("transactioncurrency", "exchangerate"), 1, None
                ),
                "currencyprecision": precision,
            },
            fire=False,
        )  # fmt: skip
        self.store.base_currency = currency
        self.application_user_id = self.store.insert(
            "systemuser",
            {
                "systemuserid": guid_for(f"applicationuser:{self.client_id}"),
                "firstname": "#", "lastname": "Sandbox Application User",
                "applicationid": self.client_id.lower(), "isdisabled": False,
                "internalemailaddress": f"{self.client_id}@sandbox.invalid",
            },
            fire=False,
        )  # fmt: skip
        for message, tables in MESSAGES.items():
            message_id = self.store.insert(
                "sdkmessage", {"sdkmessageid": guid_for(f"message:{message}"), "name": message},
                fire=False,
            )  # fmt: skip
            for table in tables or self.store.schema.tables:
                self._add_filter(message, message_id, table)
        self._refs.update(
            base_currency=Ref("transactioncurrency", currency),
            application_user=Ref("systemuser", self.application_user_id),
        )

    def _add_filter(self, message: str, message_id: str, table: str) -> None:
        self.store.insert(
            "sdkmessagefilter",
            {
                "sdkmessagefilterid": guid_for(f"filter:{message}:{table}"),
                "sdkmessageid": Ref("sdkmessage", message_id),
                "primaryobjecttypecode": table,
                "secondaryobjecttypecode": "none",
            },
            fire=False,
        )

    def _column(self, table: str, column: str) -> tuple[Table, Column]:
        definition = self.store.schema.tables[table]
        return definition, definition.columns[column]

    def _audience_ok(self, resource: str, own_url: str) -> bool:
        wanted = resource.rstrip("/").lower()
        return wanted in (self.environment_url.lower(), own_url.rstrip("/").lower())

    def _user_for(self, client_id: str) -> str:
        found = self.store.find("systemuser", applicationid=client_id.lower())
        return str(found[0]["systemuserid"]) if found else self.application_user_id

    # ------------------------------------------------------------------ server

    def __call__(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        return self.app(environ, start_response)

    def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        auto_deliver: bool = False,
        *,
        allow_non_loopback: bool = False,
    ) -> DataverseSandbox:
        """Serve on ``host:port`` (0 = a free port) in a background thread; returns self."""
        self._server = SandboxServer(self.app, host, port, allow_non_loopback=allow_non_loopback)
        self._server.start()
        if auto_deliver:
            self._start_auto_delivery()
        return self

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not started; call start() first")
        return self._server.url

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/data/v9.2"

    @property
    def tenant_id(self) -> str:
        return self.tenant.tenant_id

    @property
    def authority(self) -> str:
        return f"https://login.microsoftonline.com/{self.tenant.tenant_id}"

    def stop(self) -> None:
        self._delivery.stop()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> DataverseSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ acting as an admin

    def call(
        self,
        method: str,
        path: str,
        body: bytes | str | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Answer:
        """One Web API request run in process as the application user, without HTTP, auth
        or limits (an admin's hand; tests and set-up). ``path`` is relative to
        ``/api/data/v9.2/``; errors come back as answers, as over HTTP."""
        raw = (
            jsonio.dumps(body).encode()
            if isinstance(body, Mapping)
            else body.encode()
            if isinstance(body, str)
            else body or b""
        )
        request = ApiRequest(
            method=method.upper(),
            resource=path.lstrip("/"),
            params=dict(params or {}),
            headers={k.lower(): v for k, v in (headers or {}).items()},
            body=raw,
            base=f"{self.environment_url}/api/data/v9.2",
            user_id=self.application_user_id,
        )
        with self._lock:
            try:
                return self.api.dispatch(request)
            except DataverseError as error:
                return Answer.error(error)

    # ------------------------------------------------------------------ rows (Python)

    def load_seed(self, source: str | Path | Mapping[str, Any]) -> dict[str, str]:
        """Load a seed (see :mod:`.seed`); returns every ref known so far → row id."""
        with self._lock:
            refs = SeedLoader(self.store, self._now, self._refs).load(source)
        return {name: ref.id for name, ref in refs.items()}

    def ids_by_ref(self) -> dict[str, str]:
        with self._lock:
            return {name: ref.id for name, ref in self._refs.items()}

    def ref(self, name: str) -> Ref:
        return self._refs[name]

    def row(self, table: str, record_id: str) -> dict[str, Any]:
        with self._lock:
            return self.store.require(table, record_id)

    def rows(self, table: str) -> list[dict[str, Any]]:
        with self._lock:
            return self.store.all(table)

    def find(self, table: str, **values: Any) -> list[dict[str, Any]]:
        with self._lock:
            return self.store.find(table, **values)

    def insert(self, table: str, values: Mapping[str, Any], *, fire: bool = True) -> str:
        """Create a row from stored values (``Ref`` for lookups, ``Decimal`` for numbers)."""
        with self._lock:
            return self.store.insert(table, values, fire=fire)

    def update(
        self, table: str, record_id: str, values: Mapping[str, Any], *, fire: bool = True
    ) -> None:
        """Change a row as a person would in the app (webhook steps fire), or past the
        platform's plug-ins with ``fire=False`` (a data import)."""
        with self._lock:
            self.store.update(table, record_id, values, fire=fire)

    def delete(self, table: str, record_id: str) -> None:
        with self._lock:
            self.store.delete(table, record_id)

    def win(self, opportunity_id: str, subject: str | None = None) -> None:
        """``WinOpportunity`` as a salesperson runs it: closed as won, the ``Win`` step fires."""
        self._close(opportunity_id, "WinOpportunity", 3, subject)

    def lose(self, opportunity_id: str, subject: str | None = None) -> None:
        self._close(opportunity_id, "LoseOpportunity", 4, subject)

    def _close(self, opportunity_id: str, action: str, status: int, subject: str | None) -> None:
        row = self.row("opportunity", opportunity_id)
        answer = self.call(
            "POST",
            action,
            {
                "Status": status,
                "OpportunityClose": {
                    "subject": subject or f"{'Won' if status == 3 else 'Lost'}: {row.get('name')}",
                    "opportunityid@odata.bind": f"/opportunities({opportunity_id})",
                },
            },
        )
        if answer.status >= 400:
            raise RuntimeError(answer.body.decode())

    def add_currency(self, code: str, name: str, symbol: str, rate: Any, precision: int) -> str:
        """A currency an admin adds (Settings → Currencies); returns its id."""
        with self._lock:
            table, _ = self._column("transactioncurrency", "exchangerate")
            values = {
                "transactioncurrencyid": guid_for(f"currency:{code.upper()}"),
                "isocurrencycode": code.upper(), "currencyname": name, "currencysymbol": symbol,
                "exchangerate": coerce(table, table.columns["exchangerate"], rate, None),
                "currencyprecision": precision,
            }  # fmt: skip
            currency = self.store.insert("transactioncurrency", values)
            self._refs.setdefault(f"currency_{code.lower()}", Ref("transactioncurrency", currency))
            return currency

    # ------------------------------------------------------------------ schema (Python)

    def set_change_tracking(self, table: str, enabled: bool) -> None:
        with self._lock:
            self.store.table(table).change_tracking = enabled

    def drop_column(self, table: str, column: str) -> None:
        """The environment lacks a column (never created, or deleted by an admin)."""
        with self._lock:
            definition = self.store.table(table)
            definition.columns.pop(column, None)
            definition.keys = [k for k in definition.keys if column not in k.attributes]
            for name, relationship in list(self.store.schema.relationships.items()):
                if (
                    relationship.referencing_entity == table
                    and relationship.referencing_attribute == column
                ):
                    del self.store.schema.relationships[name]
            for row in self.store.all(table):
                row.pop(column, None)

    def add_choice(self, table: str, column: str, label: str) -> int:
        """A new option on a choice column (after the last one); returns its value."""
        with self._lock:
            definition = self.store.table(table).columns[column]
            for value, text in definition.options.items():
                if text == label:
                    return value
            value = max(definition.options) + 1
            definition.options[value] = label
            return value

    def choice_value(self, table: str, column: str, label: str) -> int:
        definition = self.store.table(table).columns[column]
        for value, text in definition.options.items():
            if text == label:
                return value
        raise KeyError(f"{table}.{column} has no choice labelled {label!r}")

    # ------------------------------------------------------------------ faults and traffic

    def set_down(self, down: bool) -> None:
        """While down, every Web API request answers 503."""
        self._down = down

    def throttle(self, times: int = 1, retry_after: float = 5) -> None:
        """The next ``times`` requests are refused by the service protection limits."""
        self.limits.inject(times, retry_after)

    def revoke_tokens(self) -> None:
        """Every access token issued so far is refused from now on (HTTP 401)."""
        self.tenant.revoke_all()

    @property
    def tokens_issued(self) -> int:
        return self.tenant.tokens_issued

    # ------------------------------------------------------------------ signing people in

    def allow_redirect_uri(self, uri: str) -> None:
        """Register ``uri`` as a Web redirect URI of the demo app registration (where the
        authorize endpoint may send a signed-in person back with a code)."""
        self.tenant.sign_in.add_redirect_uri(self.client_id, uri)

    def sign_in_browser_as(self, username: str | None) -> None:
        """Who is already signed in to Microsoft 365 in "the browser": the authorize endpoint
        signs them in without a page (single sign-on). None: it shows the account picker."""
        self.tenant.sign_in.browser_user = username

    def expire_delta_links(self) -> None:
        """Delta links issued so far are refused (the change tracking retention passed)."""
        with self._lock:
            self._delta_floor = self.store.next_version()

    def request_log(self) -> list[tuple[str, str]]:
        """Every Web API request over the wire, ``(method, path after /api/data/v9.2/)``."""
        return list(self.app.traffic.log)

    def request_count(self, method: str | None = None, startswith: str = "") -> int:
        return sum(
            1
            for m, p in self.app.traffic.log
            if (method is None or m == method) and p.startswith(startswith)
        )

    def request_counts(self) -> dict[tuple[str, str], int]:
        return dict(self.app.traffic.counts())

    def reset_request_log(self) -> None:
        self.app.traffic.reset()

    # ------------------------------------------------------------------ webhooks

    def register_webhook(
        self,
        url: str,
        *,
        steps: Iterable[tuple[str, str, Iterable[str] | None]],
        key: str | None = None,
        header: tuple[str, str] | None = None,
        name: str = "webhook",
    ) -> str:
        """A service endpoint (WebhookKey auth with ``key``, or an HttpHeader ``header``) and
        one asynchronous post-operation step per ``(message, table, filtering attributes)``,
        as the Plugin Registration Tool writes them; returns the endpoint's id."""
        if (key is None) == (header is None):
            raise ValueError("give either key= (WebhookKey) or header= (HttpHeader)")
        if key is not None:
            auth_type, auth_value = AUTH_WEBHOOK_KEY, key
        else:
            assert header is not None
            auth_type = AUTH_HTTP_HEADER
            auth_value = (
                f"<settings><setting name={quoteattr(header[0])} value={quoteattr(header[1])} />"
                "</settings>"
            )
        with self._lock:
            endpoint = self.store.insert(
                "serviceendpoint",
                {"name": name, "url": url, "contract": 8, "authtype": auth_type,
                 "authvalue": auth_value, "messageformat": 2, "userclaim": 1},
            )  # fmt: skip
            for message, table, filtering in steps:
                message_row = self.store.find("sdkmessage", name=message)
                filters = self.store.find(
                    "sdkmessagefilter",
                    sdkmessageid=Ref("sdkmessage", message_row[0]["sdkmessageid"])
                    if message_row
                    else None,
                    primaryobjecttypecode=table,
                )
                if not message_row or not filters:
                    raise ValueError(f"no SDK message {message} for table {table}")
                self.store.insert(
                    "sdkmessageprocessingstep",
                    {
                        "name": f"{name}: {message} of {table}",
                        "sdkmessageid": Ref("sdkmessage", message_row[0]["sdkmessageid"]),
                        "sdkmessagefilterid": Ref(
                            "sdkmessagefilter", filters[0]["sdkmessagefilterid"]
                        ),
                        "eventhandler": Ref("serviceendpoint", endpoint),
                        "stage": 40, "mode": 1, "rank": 1, "supporteddeployment": 0,
                        "asyncautodelete": False,
                        "filteringattributes": ",".join(filtering) if filtering else None,
                    },
                )  # fmt: skip
            return endpoint

    def deliver_webhooks(self) -> int:
        """POST every queued notification now; returns how many were accepted (2xx)."""
        with self._lock:
            pending = self.webhooks.take()
        delivered = 0
        for delivery in pending:
            try:
                response = requests.post(
                    delivery.url, data=delivery.body, headers=delivery.headers, timeout=30
                )
                status, error = response.status_code, None
            except requests.RequestException as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"
            with self._lock:
                delivered += self.webhooks.settle(delivery, status, error)
        return delivered

    def pending_webhooks(self) -> int:
        with self._lock:
            return len(self.webhooks.queue)

    def _start_auto_delivery(self) -> None:
        self.webhooks.on_queued = self._delivery.wake
        self._delivery.start()


def serve_forever(
    host: str,
    port: int,
    *,
    seed: str | Path | Mapping[str, Any] | None = None,
    prepare: Callable[[DataverseSandbox], None] | None = None,
    banner: Callable[[DataverseSandbox], str] | None = None,
    allow_non_loopback: bool = False,
) -> None:
    """Run a sandbox in the foreground until Ctrl-C, printing its URL and demo credentials.

    ``prepare`` customizes the environment before the seed loads (a solution's tables and
    columns, webhook registrations); ``banner`` adds text to what is printed. Webhooks are
    delivered in the background.
    """
    sandbox = DataverseSandbox()
    if prepare is not None:
        prepare(sandbox)
    if seed is not None:
        sandbox.load_seed(seed)
    sandbox.start(host, port, auto_deliver=True, allow_non_loopback=allow_non_loopback)
    print(f"Dataverse sandbox listening on {sandbox.url}")
    print(f"  environment URL: {sandbox.environment_url}  (Web API {sandbox.api_url})")
    print(f"  tenant id:       {sandbox.tenant_id}")
    print(f"  client id:       {sandbox.client_id}")
    print(f"  client secret:   {sandbox.client_secret}")
    print(f"  token endpoint:  {sandbox.url}/{sandbox.tenant_id}/oauth2/v2.0/token")
    print(f"  authorize:       {sandbox.url}/{sandbox.tenant_id}/oauth2/v2.0/authorize")
    print("  demo users:      " + ", ".join(u.username for u in DEMO_USERS))
    if banner is not None:
        print(banner(sandbox))
    print("Press Ctrl-C to stop.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()


__all__ = [
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "DEMO_ENVIRONMENT_URL",
    "DEMO_TENANT_ID",
    "DataverseSandbox",
]
