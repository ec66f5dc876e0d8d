"""A stateful Dataverse Web API v9.2 (and its Entra ID tenant) behind ``responses``.

``DataverseFake`` keeps rows of the tables in ``schema.TABLES`` in memory and answers the
requests ``connector.crm.dynamics`` makes, shaped like the real service's answers:

* Entra ID: the tenant's OpenID configuration and the client-credentials token endpoint
  (the client id and secret must match; tokens it issued are the only ones accepted).
* Reads: ``entityset(<id>)`` and collections with ``$select``/``$expand``/``$filter``/
  ``$orderby``/``$top`` (see ``query``), ``Prefer: odata.maxpagesize`` paging with
  ``@odata.nextLink``, ``odata.include-annotations`` (formatted values, lookup table and
  navigation property), collection navigation (``opportunities(<id>)/product_opportunities``).
* Change tracking: ``Prefer: odata.track-changes`` answers every row and an
  ``@odata.deltaLink``; the link answers rows changed since (``$deletedEntity`` for deleted
  ones). A table can have tracking off (``0x80072491``) and links can expire.
* Writes: ``POST entityset`` (create), ``PATCH entityset(<id>)`` (upsert; ``If-Match: *``
  makes it update-only, ``If-None-Match: *`` create-only), ``PATCH entityset(key='value')``
  (upsert by alternate key), ``DELETE``, ``nav@odata.bind`` lookups; ``$batch`` of those,
  with or without ``Prefer: odata.continue-on-error``.
* ``EntityDefinitions(LogicalName='...')`` from the adapter tests' fixtures.
* Webhooks: the steps of docs/dynamics-setup.md (opportunity ``Win``, ``Update`` of the
  billing columns, account ``Update`` of ``creditonhold``/``creditlimit``) queue a
  ``RemoteExecutionContext``; ``deliver_webhooks()`` posts them with ``?code=<key>``.
* Faults: ``set_down`` (every request 503), ``throttle`` (429 with ``Retry-After``),
  ``revoke_tokens`` (401 until a new token is fetched).

Only the environment's and the tenant's hosts are intercepted; everything on loopback
passes through to the real servers (Stripe sandbox, the dealbridge app).
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import requests
import responses

from tests.support.dataverse.query import (
    Options,
    QueryError,
    Ref,
    Unsupported,
    compile_filter,
    parse_options,
)
from tests.support.dataverse.schema import (
    ADAPTER_FIXTURES,
    COLLECTIONS,
    DATE_ONLY,
    PRIMARY_NAME,
    SYSTEM_COLUMNS,
    Table,
    load_tables,
)

FIXTURES = Path(__file__).parent / "fixtures"
ENV_URL = "https://dealbridge-test.crm.dynamics.com"
TENANT_ID = "7d3e1a52-0f4b-4c8e-9a61-2b5f0c9e4d11"  # the tenant of the adapter's fixtures
CLIENT_ID = "5b1f0d7a-3c2e-4f6a-8d9b-1e2f3a4b5c6d"
CLIENT_SECRET = "dealbridge-test-client-secret"
WEBHOOK_KEY = "dealbridge-test-webhook-key-0123456789"
AUTHORITY_HOST = "https://login.microsoftonline.com"

FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_TABLE = "Microsoft.Dynamics.CRM.lookuplogicalname"
LOOKUP_NAVIGATION = "Microsoft.Dynamics.CRM.associatednavigationproperty"
SERVER_PAGE_SIZE = 5000
JSON = "application/json; odata.metadata=minimal"
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

#: Webhook steps (docs/dynamics-setup.md, step 5): table -> (message, filtering attributes).
STEPS: dict[str, list[tuple[str, frozenset[str] | None]]] = {
    "opportunity": [
        ("Win", None),
        (
            "Update",
            frozenset(
                {
                    "statecode",
                    "db_contractstart",
                    "db_termmonths",
                    "db_paymentterms",
                    "db_paymentmethod",
                    "db_billingcontactid",
                }
            ),
        ),
    ],
    "account": [("Update", frozenset({"creditonhold", "creditlimit"}))],
}


class DataverseError(Exception):
    """An error answer: ``{"error": {"code", "message"}}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Push:
    url: str
    body: bytes
    headers: dict[str, str]


def encode(value: Any) -> str:
    """JSON as Dataverse writes it: decimals as plain numbers, digit for digit."""
    if value is None or isinstance(value, bool | int | str):
        return json.dumps(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__}")


def fixture_json(name: str, env_url: str = ENV_URL) -> Any:
    text = (ADAPTER_FIXTURES / name).read_text(encoding="utf-8")
    return json.loads(text.replace("https://contoso.crm.dynamics.com", env_url))


def _error(status: int, code: str, message: str) -> Answer:
    body = encode({"error": {"code": code, "message": message}}).encode()
    return Answer(status, {"Content-Type": JSON, "OData-Version": "4.0"}, body)


def _not_found(table: str, record_id: str) -> DataverseError:
    return DataverseError(404, "0x80040217", f"{table} With Id = {record_id} Does Not Exist")


def _no_property(name: str, table: str) -> DataverseError:
    return DataverseError(
        400,
        "0x0",
        f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{table}'.",
    )


class DataverseFake:
    def __init__(
        self,
        *,
        env_url: str = ENV_URL,
        tenant_id: str = TENANT_ID,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        webhook_key: str = WEBHOOK_KEY,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.env_url = env_url.rstrip("/")
        self.api = f"{self.env_url}/api/data/v9.2"
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.webhook_key = webhook_key
        self.authority = f"{AUTHORITY_HOST}/{tenant_id}"
        self.now = now
        self.tables: dict[str, Table] = load_tables(self.env_url)
        self.rows: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.tables}
        self.deleted: dict[str, dict[str, int]] = {name: {} for name in self.tables}
        self.version = 1_000_000
        self.webhook_url: str | None = None
        self.pushes: list[Push] = []
        self.requests: list[tuple[str, str]] = []  # (method, path after /api/data/v9.2/)
        self.down = False
        self._throttled: list[float] = []
        self._tokens: set[str] = set()
        self.tokens_issued = 0
        self._delta_floor = 0  # delta links older than this version are refused
        self._lock = threading.RLock()
        self._mock: responses.RequestsMock | None = None

    # ------------------------------------------------------------------ responses

    def start(self) -> DataverseFake:
        mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        mock.add_passthru(re.compile(r"http://(127\.0\.0\.1|localhost|\[::1\])[:/]"))
        openid = f"{self.authority}/v2.0/.well-known/openid-configuration"
        mock.add_callback(responses.GET, openid, callback=self._openid)
        mock.add_callback(
            responses.POST, f"{self.authority}/oauth2/v2.0/token", callback=self._token
        )
        discovery = (FIXTURES / "instance_discovery.json").read_text(encoding="utf-8")
        mock.add(
            responses.GET,
            f"{AUTHORITY_HOST}/common/discovery/instance",
            body=discovery,
            content_type="application/json",
        )
        pattern = re.compile(re.escape(self.api) + r"/.*")
        for method in ("GET", "POST", "PATCH", "DELETE"):
            mock.add_callback(method, pattern, callback=self._callback)
        mock.start()
        self._mock = mock
        return self

    def stop(self) -> None:
        if self._mock is not None:
            self._mock.stop()
            self._mock.reset()
            self._mock = None

    def _openid(self, request: Any) -> tuple[int, dict[str, str], str]:
        text = (ADAPTER_FIXTURES / "openid_configuration.json").read_text(encoding="utf-8")
        return 200, {"Content-Type": "application/json"}, text.replace(TENANT_ID, self.tenant_id)

    def _token(self, request: Any) -> tuple[int, dict[str, str], str]:
        form = dict(
            parse_qsl(request.body if isinstance(request.body, str) else request.body.decode())
        )
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            text = (ADAPTER_FIXTURES / "token__invalid_client.json").read_text(encoding="utf-8")
            return 401, {"Content-Type": "application/json"}, text
        token = f"eyJ0eXAiOiJKV1QifQ.{uuid.uuid4().hex}.sig"
        with self._lock:
            self._tokens.add(token)
            self.tokens_issued += 1
        body = {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": token,
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def _callback(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            answer = self.handle(
                request.method,
                request.url,
                dict(request.headers),
                request.body.encode() if isinstance(request.body, str) else (request.body or b""),
            )
        return answer.status, answer.headers, answer.body

    # ------------------------------------------------------------------ faults and tokens

    def set_down(self, down: bool) -> None:
        self.down = down

    def throttle(self, times: int = 1, retry_after: float = 5) -> None:
        """The next ``times`` requests are refused by the service protection limits."""
        self._throttled.extend([retry_after] * times)

    def revoke_tokens(self) -> None:
        """Every access token issued so far is refused from now on (HTTP 401)."""
        self._tokens.clear()

    def set_change_tracking(self, table: str, enabled: bool) -> None:
        self.tables[table].change_tracking = enabled

    def expire_delta_links(self) -> None:
        """Delta links issued so far are refused (``ExpireChangeTrackingInDays`` passed)."""
        self._delta_floor = self._next_version()

    def drop_column(self, table: str, column: str) -> None:
        """The environment lacks a column: gone from ``EntityDefinitions`` and the table."""
        self.tables[table].drop_column(column)
        for row in self.rows[table].values():
            row.pop(column, None)

    def request_count(self, method: str | None = None, startswith: str = "") -> int:
        return sum(
            1
            for m, p in self.requests
            if (method is None or m == method) and p.startswith(startswith)
        )

    # ------------------------------------------------------------------ dispatch

    def handle(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Answer:
        parts = urlsplit(url)
        path = unquote(parts.path)
        prefix = urlsplit(self.api).path + "/"
        if not path.startswith(prefix):
            return _error(404, "0x8006088a", f"Resource not found for the segment '{path}'.")
        resource = path[len(prefix) :]
        self.requests.append((method, resource))
        headers = {k.lower(): v for k, v in headers.items()}
        if self.down:
            return Answer(
                503, {"Content-Type": "text/html"}, b"<html><body>Service Unavailable</body></html>"
            )
        if self._throttled:
            wait = self._throttled.pop(0)
            answer = _error(
                429,
                "0x80072322",
                "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
            )
            answer.headers["Retry-After"] = f"{wait:g}"
            return answer
        token = headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self._tokens:
            return Answer(
                401,
                {"WWW-Authenticate": f"Bearer authorization_uri={self.authority}/oauth2/authorize"},
                b"",
            )
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        try:
            if resource == "$batch" and method == "POST":
                return self._batch(headers, body)
            return self._dispatch(method, resource, params, headers, body)
        except DataverseError as exc:
            return _error(exc.status, exc.code, exc.message)
        except QueryError as exc:
            return _error(400, exc.code, exc.message)

    def _dispatch(
        self,
        method: str,
        resource: str,
        params: dict[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Answer:
        if resource == "WhoAmI" and method == "GET":
            return self._json(200, fixture_json("whoami.json", self.env_url))
        match = re.fullmatch(r"EntityDefinitions\(LogicalName='([^']+)'\)", resource)
        if match and method == "GET":
            return self._definition(match.group(1), params)
        match = re.fullmatch(r"([A-Za-z_]+)(?:\((.+?)\))?(?:/([A-Za-z_]+))?", resource)
        table = self._table_of_set(match.group(1)) if match else None
        if match is None or table is None:
            segment = resource.split("(")[0].split("/")[0]
            raise DataverseError(
                404, "0x8006088a", f"Resource not found for the segment '{segment}'."
            )
        key, navigation = match.group(2), match.group(3)
        if key is None:
            if method == "GET":
                return self._collection(table, self._all_rows(table), params, headers, resource)
            if method == "POST":
                return self._create(table, body, headers)
        elif navigation is None:
            if method == "GET":
                row = self._row_by_key(table, key, required=True)
                assert row is not None
                return self._entity(table, row, params, headers)
            if method == "PATCH":
                return self._upsert(table, key, body, headers)
            if method == "DELETE":
                return self._delete(table, key)
        elif method == "GET":
            row = self._row_by_key(table, key, required=True)
            assert row is not None
            related = COLLECTIONS.get((table.logical_name, navigation))
            if related is None:
                raise _no_property(navigation, table.logical_name)
            other, lookup = related
            rows = [
                r
                for r in self._all_rows(self.tables[other])
                if r.get(lookup) == Ref(table.logical_name, row[table.primary_key])
            ]
            return self._collection(self.tables[other], rows, params, headers, resource)
        raise Unsupported(f"{method} {resource} is not implemented by the fake")

    def _table_of_set(self, entity_set: str) -> Table | None:
        return next((t for t in self.tables.values() if t.entity_set == entity_set), None)

    # ------------------------------------------------------------------ reading

    def _all_rows(self, table: Table) -> list[dict[str, Any]]:
        return list(self.rows[table.logical_name].values())

    def _row_by_key(self, table: Table, key: str, *, required: bool) -> dict[str, Any] | None:
        """A row by ``<guid>`` or by alternate key ``column='value'``."""
        rows = self.rows[table.logical_name]
        if re.fullmatch(_GUID, key):
            row = rows.get(key.lower())
            if row is None and required:
                raise _not_found(table.logical_name, key)
            return row
        match = re.fullmatch(r"([a-z_0-9]+)='((?:[^']|'')*)'", key)
        if match is None:
            raise DataverseError(
                400, "0x80060888", f"Bad Request - Error in query syntax: '{key}'."
            )
        column, value = match.group(1), match.group(2).replace("''", "'")
        if [column] not in table.keys:
            raise DataverseError(
                400,
                "0x80060888",
                f"The key attribute '{column}' is not defined as an alternate key for the "
                f"{table.logical_name} table.",
            )
        found = next((r for r in rows.values() if r.get(column) == value), None)
        if found is None and required:
            raise DataverseError(
                404,
                "0x80040217",
                "A record with the specified key values does not exist in "
                f"{table.logical_name} entity",
            )
        return found

    def _annotations(self, headers: Mapping[str, str]) -> set[str]:
        prefer = headers.get("prefer", "")
        match = re.search(r'odata\.include-annotations="([^"]*)"', prefer)
        if not match:
            return set()
        wanted = match.group(1)
        if wanted == "*":
            return {FORMATTED, LOOKUP_TABLE, LOOKUP_NAVIGATION}
        return {a.strip() for a in wanted.split(",")}

    def _context(self, table: Table, options: Options, suffix: str = "") -> str:
        columns = ",".join(options.select or [])
        shape = f"({columns})" if columns else ""
        return f"{self.api}/$metadata#{table.entity_set}{shape}{suffix}"

    def _entity(
        self, table: Table, row: dict[str, Any], params: dict[str, str], headers: Mapping[str, str]
    ) -> Answer:
        options = parse_options(params)
        rendered = self.render(table, row, options, self._annotations(headers))
        return self._json(
            200, {"@odata.context": self._context(table, options, "/$entity"), **rendered}
        )

    def _collection(
        self,
        table: Table,
        rows: list[dict[str, Any]],
        params: dict[str, str],
        headers: Mapping[str, str],
        resource: str,
    ) -> Answer:
        prefer = headers.get("prefer", "")
        tracking = "odata.track-changes" in prefer
        delta_token = params.get("$deltatoken")
        options = parse_options(params)
        if (tracking or delta_token) and (options.filter or options.orderby or options.top):
            raise DataverseError(
                400, "0x80072492", "Change tracking does not support $filter, $orderby or $top."
            )
        suffix = ""
        since = None
        if (tracking or delta_token) and not table.change_tracking:
            raise DataverseError(
                400,
                "0x80072491",
                f"Entity {table.logical_name} isn't enabled for change tracking.",
            )
        if delta_token:
            since = int(delta_token.split("!", 1)[0])
            if since < self._delta_floor:
                raise DataverseError(400, "0x80040203", "Invalid argument.")
            rows = [r for r in rows if r["versionnumber"] > since]
            suffix = "/$delta"
        if options.filter:
            predicate = compile_filter(options.filter)
            rows = [r for r in rows if predicate(self._resolver(table, r))]
        for column, descending in reversed(options.orderby):
            rows.sort(key=lambda r: _sort_key(r.get(column)), reverse=descending)
        if options.top is not None:
            rows = rows[: options.top]
        annotations = self._annotations(headers)
        rendered: list[dict[str, Any]] = [self.render(table, r, options, annotations) for r in rows]
        if since is not None:
            for record_id, version in self.deleted[table.logical_name].items():
                if version > since:
                    rendered.append(
                        {
                            "@odata.context": (
                                f"{self.api}/$metadata#{table.entity_set}/$deletedEntity"
                            ),
                            "id": record_id,
                            "reason": "deleted",
                        }
                    )
        page_size = SERVER_PAGE_SIZE
        match = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        if match:
            page_size = min(int(match.group(1)), SERVER_PAGE_SIZE)
        cookie = params.get("$skiptoken")
        page = int(re.search(r'pagenumber="(\d+)"', cookie).group(1)) if cookie else 1  # type: ignore[union-attr]
        snapshot = (
            int(m.group(1))
            if cookie and (m := re.search(r'version="(\d+)"', cookie))
            else self.version
        )
        start = (page - 1) * page_size
        out: dict[str, Any] = {"@odata.context": self._context(table, options, suffix)}
        out["value"] = rendered[start : start + page_size]
        applied = []
        if match:
            applied.append(f"odata.maxpagesize={page_size}")
        if start + page_size < len(rendered):
            next_cookie = (
                f'<cookie pagenumber="{page + 1}" pagingcookie="" '
                f'istracking="{tracking or bool(delta_token)}" version="{snapshot}" />'
            )
            query = {k: v for k, v in params.items() if k != "$skiptoken"}
            query["$skiptoken"] = next_cookie
            out["@odata.nextLink"] = (
                f"{self.api}/{resource}?{urlencode(query, quote_via=quote, safe='$,()=;/')}"
            )
        elif tracking or delta_token:
            query = {k: v for k, v in params.items() if k not in ("$skiptoken", "$deltatoken")}
            stamp = self.now().strftime("%m/%d/%Y %H:%M:%S")
            query["$deltatoken"] = f"{snapshot}!{stamp}"
            out["@odata.deltaLink"] = (
                f"{self.api}/{resource}?{urlencode(query, quote_via=quote, safe='$,()=;')}"
            )
        if tracking:
            applied.append("odata.track-changes")
        answer = self._json(200, out)
        if applied:
            answer.headers["Preference-Applied"] = ",".join(applied)
        return answer

    def _resolver(self, table: Table, row: dict[str, Any]) -> Callable[[str], Any]:
        def resolve(path: str) -> Any:
            first, _, rest = path.partition("/")
            if rest:
                navigation = table.navigation(first)
                if navigation is None:
                    raise _no_property(first, table.logical_name)
                column, target = navigation
                ref = row.get(column)
                if not isinstance(ref, Ref) or ref.table != target:
                    return None
                related = self.rows[target].get(ref.id)
                return self._resolver(self.tables[target], related)(rest) if related else None
            if first.startswith("_") and first.endswith("_value"):
                column = first[1:-6]
                if column not in table.lookups:
                    raise _no_property(first, table.logical_name)
                return row.get(column)
            if first not in table.columns or first in table.lookups:
                raise _no_property(first, table.logical_name)
            return row.get(first)

        return resolve

    def render(
        self, table: Table, row: dict[str, Any], options: Options, annotations: set[str]
    ) -> dict[str, Any]:
        """A row as the Web API returns it for these query options."""
        out: dict[str, Any] = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
        names = options.select or [
            f"_{c}_value" if c in table.lookups else c for c in table.columns
        ]
        for name in names:
            if name.startswith("_") and name.endswith("_value"):
                column = name[1:-6]
                if column not in table.lookups:
                    raise _no_property(name, table.logical_name)
                ref = row.get(column)
                if isinstance(ref, Ref):
                    target = self.rows[ref.table].get(ref.id, {})
                    label = target.get(PRIMARY_NAME.get(ref.table, ""))
                    if FORMATTED in annotations and label is not None:
                        out[f"{name}@{FORMATTED}"] = label
                    if LOOKUP_NAVIGATION in annotations:
                        out[f"{name}@{LOOKUP_NAVIGATION}"] = table.lookups[column].targets[
                            ref.table
                        ]
                    if LOOKUP_TABLE in annotations:
                        out[f"{name}@{LOOKUP_TABLE}"] = ref.table
                out[name] = ref.id if isinstance(ref, Ref) else None
                continue
            kind = table.kind(name)
            if kind is None or kind == "Lookup":
                raise _no_property(name, table.logical_name)
            value = row.get(name)
            label = self._formatted(table, row, name, value) if FORMATTED in annotations else None
            if label is not None:
                out[f"{name}@{FORMATTED}"] = label
            out[name] = value
        out[table.primary_key] = row[table.primary_key]
        for navigation, nested in options.expand.items():
            resolved = table.navigation(navigation)
            if resolved is None:
                if (table.logical_name, navigation) in COLLECTIONS:
                    raise Unsupported("$expand of a collection is not implemented by the fake")
                raise _no_property(navigation, table.logical_name)
            column, target = resolved
            ref = row.get(column)
            related = (
                self.rows[target].get(ref.id)
                if isinstance(ref, Ref) and ref.table == target
                else None
            )
            out[navigation] = (
                self.render(self.tables[target], related, nested, annotations) if related else None
            )
        return out

    def _formatted(self, table: Table, row: dict[str, Any], column: str, value: Any) -> str | None:
        if value is None:
            return None
        kind = table.kind(column)
        choices = table.choices(column)
        if choices is not None and kind in ("Picklist", "State", "Status"):
            return choices.get(int(value))
        if choices is not None and kind == "MultiSelectPicklist":
            return "; ".join(choices.get(int(v), v) for v in str(value).split(","))
        if kind == "Boolean":
            return "Yes" if value else "No"
        if kind == "Money":
            symbol = "$"
            ref = row.get("transactioncurrencyid")
            if isinstance(ref, Ref):
                symbol = self.rows["transactioncurrency"].get(ref.id, {}).get("currencysymbol", "$")
            return f"{symbol}{Decimal(value):,.2f}"
        if kind in ("Integer", "BigInt"):
            return f"{int(value):,}"
        if kind == "Decimal":
            return f"{Decimal(value):,}"
        if kind == "DateTime" and isinstance(value, str):
            if column in DATE_ONLY:
                day = date.fromisoformat(value[:10])
                return f"{day.month}/{day.day}/{day.year}"
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return f"{when.month}/{when.day}/{when.year} {when.strftime('%I:%M %p').lstrip('0')}"
        return None

    def _definition(self, logical_name: str, params: dict[str, str]) -> Answer:
        table = self.tables.get(logical_name)
        if table is None:
            raise DataverseError(
                404, "0x80040217", f"Could not find entity with logical name '{logical_name}'."
            )
        return self._json(200, copy.deepcopy(table.definition))

    def _json(self, status: int, data: Any) -> Answer:
        return Answer(status, {"Content-Type": JSON, "OData-Version": "4.0"}, encode(data).encode())

    # ------------------------------------------------------------------ writing

    def _values(self, table: Table, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body or b"{}", parse_float=Decimal)
        except ValueError as exc:
            raise DataverseError(400, "0x80060891", "The request body is not valid JSON.") from exc
        if not isinstance(data, dict):
            raise DataverseError(400, "0x80060891", "An entity was expected in the request body.")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name.endswith("@odata.bind"):
                navigation = name.removesuffix("@odata.bind")
                resolved = table.navigation(navigation)
                if resolved is None:
                    raise DataverseError(
                        400,
                        "0x80060888",
                        f"An undeclared property '{navigation}' which only has property "
                        "annotations in the payload but no property value was found in the "
                        "payload.",
                    )
                column, target = resolved
                values[column] = None if value is None else self._bound(target, str(value))
                continue
            if name.startswith("@"):
                continue
            kind = table.kind(name)
            if kind is None or kind == "Lookup" or name in SYSTEM_COLUMNS:
                raise DataverseError(
                    400,
                    "0x80060888",
                    f"Invalid property '{name}' was found in entity "
                    f"'Microsoft.Dynamics.CRM.{table.logical_name}'.",
                )
            values[name] = _coerce(table, name, kind, value)
        return values

    def _bound(self, target: str, reference: str) -> Ref:
        match = re.fullmatch(r"/?([A-Za-z_]+)\((.+)\)", unquote(reference))
        table = self._table_of_set(match.group(1)) if match else None
        if match is None or table is None or table.logical_name != target:
            raise DataverseError(
                400, "0x80048d19", f"Invalid reference '{reference}' for a {target} lookup."
            )
        row = self._row_by_key(table, match.group(2), required=False)
        if row is None:
            key = match.group(2)
            raise (
                _not_found(target, key)
                if re.fullmatch(_GUID, key)
                else DataverseError(
                    404,
                    "0x80040217",
                    f"A record with the specified key values does not exist in {target} entity",
                )
            )
        return Ref(target, row[table.primary_key])

    def _create(self, table: Table, body: bytes, headers: Mapping[str, str]) -> Answer:
        values = self._values(table, body)
        record_id = str(values.pop(table.primary_key, None) or uuid.uuid4()).lower()
        if record_id in self.rows[table.logical_name]:
            raise DataverseError(412, "0x80040237", "Cannot insert duplicate key.")
        values = self._on_create(table, values)
        self._check_keys(table, values, record_id)
        self.insert(table.logical_name, {table.primary_key: record_id, **values})
        return self._written(table, record_id, 204)

    def _upsert(self, table: Table, key: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        values = self._values(table, body)
        row = self._row_by_key(table, key, required=False)
        if row is None:
            if headers.get("if-match") == "*":
                if re.fullmatch(_GUID, key):
                    raise _not_found(table.logical_name, key)
                self._row_by_key(table, key, required=True)
            if re.fullmatch(_GUID, key):
                record_id = key.lower()
            else:
                column, value = key.split("=", 1)
                values[column] = value[1:-1].replace("''", "'")
                record_id = str(uuid.uuid4())
            values = self._on_create(table, values)
            self._check_keys(table, values, record_id)
            self.insert(table.logical_name, {table.primary_key: record_id, **values})
            return self._written(table, record_id, 204)
        if headers.get("if-none-match") == "*":
            raise DataverseError(
                412, "0x80040237", "A record with matching key values already exists."
            )
        record_id = row[table.primary_key]
        self._check_keys(table, values, record_id)
        self.update(table.logical_name, record_id, values)
        return self._written(table, record_id, 204)

    def _on_create(self, table: Table, values: dict[str, Any]) -> dict[str, Any]:
        """The rules Dataverse's product catalog applies to a new row (a plain table has
        none): a product needs its unit group and default unit; a price list item needs its
        price list, product and unit, gets the product's unit group and the price list's
        currency, and is unique per price list, product and unit."""
        if table.logical_name == "product":
            if not isinstance(values.get("defaultuomscheduleid"), Ref):
                raise DataverseError(400, "0x80043b0a", "The unit schedule id is missing.")
            if not isinstance(values.get("defaultuomid"), Ref):
                raise DataverseError(400, "0x80040203", "Invalid argument: defaultuomid.")
            self._unit_in_group(values["defaultuomid"], values["defaultuomscheduleid"])
        if table.logical_name == "productpricelevel":
            for column in ("pricelevelid", "productid", "uomid"):
                if not isinstance(values.get(column), Ref):
                    raise DataverseError(
                        400, "0x80040203", f"Invalid argument: {column} is required."
                    )
            product = self.rows["product"][values["productid"].id]
            group = product.get("defaultuomscheduleid")
            assert isinstance(group, Ref)  # every product has one (see above)
            self._unit_in_group(values["uomid"], group)
            price_list = self.rows["pricelevel"][values["pricelevelid"].id]
            values = {
                **values,
                "uomscheduleid": group,
                "transactioncurrencyid": price_list.get("transactioncurrencyid"),
            }
            values.setdefault("pricingmethodcode", 1)
            for other in self.rows["productpricelevel"].values():
                if all(other.get(c) == values[c] for c in ("pricelevelid", "productid", "uomid")):
                    raise DataverseError(
                        412,
                        "0x80040237",
                        "This product and unit combination has a price for this price list.",
                    )
        return values

    def _unit_in_group(self, unit: Ref, group: Ref) -> None:
        if self.rows["uom"][unit.id].get("uomscheduleid") != group:
            raise DataverseError(
                400, "0x80040203", "Invalid argument: the unit does not belong to the unit group."
            )

    def _check_keys(self, table: Table, values: Mapping[str, Any], record_id: str) -> None:
        for key in table.keys:
            column = key[0]
            if values.get(column) is None:
                continue
            for other in self.rows[table.logical_name].values():
                if other[table.primary_key] != record_id and other.get(column) == values[column]:
                    raise DataverseError(
                        412,
                        "0x80060892",
                        "A record that has the attribute values Key already exists.",
                    )

    def _delete(self, table: Table, key: str) -> Answer:
        row = self._row_by_key(table, key, required=True)
        assert row is not None
        self.delete(table.logical_name, row[table.primary_key])
        return Answer(204, {"OData-Version": "4.0"})

    def _written(self, table: Table, record_id: str, status: int) -> Answer:
        url = f"{self.api}/{table.entity_set}({record_id})"
        return Answer(status, {"OData-Version": "4.0", "OData-EntityId": url, "Location": url})

    # ------------------------------------------------------------------ $batch

    def _batch(self, headers: Mapping[str, str], body: bytes) -> Answer:
        match = re.search(r'boundary="?([^";]+)"?', headers.get("content-type", ""))
        if not match:
            raise DataverseError(400, "0x80048d19", "The batch request must have a boundary.")
        continue_on_error = "odata.continue-on-error" in headers.get("prefer", "")
        delimiter = b"--" + match.group(1).encode()
        parts: list[bytes] = []
        for piece in body.split(delimiter)[1:]:
            if piece.startswith(b"--"):
                break
            parts.append(piece.removeprefix(b"\r\n"))
        boundary = f"batchresponse_{uuid.uuid4()}"
        out: list[str] = []
        for part in parts:
            part_head, _, request = part.partition(b"\r\n\r\n")
            if b"multipart/mixed" in part_head.lower():
                raise Unsupported("change sets in $batch are not implemented by the fake")
            head, _, op_body = request.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            op_method, op_url, _ = lines[0].split(" ", 2)
            op_headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                op_headers[name.strip().lower()] = value.strip()
            parts_url = urlsplit(op_url if op_url.startswith("http") else f"{self.api}/{op_url}")
            resource = unquote(parts_url.path)[len(urlsplit(self.api).path) + 1 :]
            self.requests.append((op_method, resource))
            try:
                answer = self._dispatch(
                    op_method,
                    resource,
                    dict(parse_qsl(parts_url.query)),
                    op_headers,
                    op_body.rstrip(b"\r\n"),
                )
            except DataverseError as exc:
                answer = _error(exc.status, exc.code, exc.message)
            except QueryError as exc:
                answer = _error(400, exc.code, exc.message)
            reason = {
                200: "OK",
                201: "Created",
                204: "No Content",
                400: "Bad Request",
                404: "Not Found",
                412: "Precondition Failed",
            }.get(answer.status, "")
            out += [
                f"--{boundary}",
                "Content-Type: application/http",
                "Content-Transfer-Encoding: binary",
                "",
            ]
            out.append(f"HTTP/1.1 {answer.status} {reason}".rstrip())
            out += [f"{k}: {v}" for k, v in answer.headers.items()]
            out.append("")
            out.append(answer.body.decode())
            if answer.status >= 400 and not continue_on_error:
                break
        out.append(f"--{boundary}--")
        out.append("")
        return Answer(
            200,
            {"Content-Type": f"multipart/mixed; boundary={boundary}", "OData-Version": "4.0"},
            "\r\n".join(out).encode(),
        )

    # ------------------------------------------------------------------ the store

    def _stamp(self) -> str:
        return self.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _next_version(self) -> int:
        self.version += 1
        return self.version

    def insert(self, table: str, values: Mapping[str, Any], *, message: str = "Create") -> str:
        definition = self.tables[table]
        row = dict(values)
        record_id = str(row.get(definition.primary_key) or uuid.uuid4()).lower()
        row[definition.primary_key] = record_id
        for column in ("statecode", "statuscode"):
            if column in definition.columns:
                row.setdefault(column, 0 if column == "statecode" else 1)
        if table == "contact" and not row.get("fullname"):
            row["fullname"] = " ".join(p for p in (row.get("firstname"), row.get("lastname")) if p)
        row["createdon"] = row["modifiedon"] = self._stamp()
        row["versionnumber"] = self._next_version()
        self.rows[table][record_id] = row
        return record_id

    def update(
        self, table: str, record_id: str, values: Mapping[str, Any], *, fire: bool = True
    ) -> None:
        """Change a row; the webhook steps registered for the change fire unless ``fire`` is
        False (data written past the CRM's plugins, e.g. by an import)."""
        row = self.rows[table][record_id]
        changed = {k for k, v in values.items() if row.get(k) != v}
        row.update(values)
        if table == "contact" and ({"firstname", "lastname"} & changed):
            row["fullname"] = " ".join(p for p in (row.get("firstname"), row.get("lastname")) if p)
        row["modifiedon"] = self._stamp()
        row["versionnumber"] = self._next_version()
        if fire:
            self._fire(table, "Update", record_id, {k: values[k] for k in changed})

    def delete(self, table: str, record_id: str) -> None:
        del self.rows[table][record_id]
        self.deleted[table][record_id] = self._next_version()

    def win(self, opportunity_id: str) -> None:
        """``WinOpportunity``: the opportunity is closed as won; the ``Win`` step fires."""
        row = self.rows["opportunity"][opportunity_id]
        row.update(
            {"statecode": 1, "statuscode": 3, "actualclosedate": self.now().date().isoformat()}
        )
        row["modifiedon"] = self._stamp()
        row["versionnumber"] = self._next_version()
        self._fire("opportunity", "Win", opportunity_id, {})

    def row(self, table: str, record_id: str) -> dict[str, Any]:
        return self.rows[table][record_id]

    def find(self, table: str, **values: Any) -> list[dict[str, Any]]:
        return [
            r for r in self.rows[table].values() if all(r.get(k) == v for k, v in values.items())
        ]

    # ------------------------------------------------------------------ webhooks

    def register_webhook(self, url: str) -> None:
        """The service endpoint (WebhookKey auth: ``?code=<key>``) and the steps of STEPS."""
        self.webhook_url = url

    def _fire(self, table: str, message: str, record_id: str, changed: Mapping[str, Any]) -> None:
        if self.webhook_url is None:
            return
        for step_message, filtering in STEPS.get(table, []):
            if step_message != message:
                continue
            if filtering is not None and not (filtering & set(changed)):
                continue
            context = self._context_for(table, message, record_id, changed)
            self.pushes.append(
                Push(
                    url=f"{self.webhook_url}?code={quote(self.webhook_key)}",
                    body=json.dumps(context).encode(),
                    headers={
                        "Content-Type": "application/json",
                        "x-ms-dynamics-organization": urlsplit(self.env_url).hostname or "",
                        "x-ms-dynamics-entity-name": table,
                        "x-ms-dynamics-request-name": message,
                        "x-ms-correlation-request-id": context["CorrelationId"],
                    },
                )
            )

    def _context_for(
        self, table: str, message: str, record_id: str, changed: Mapping[str, Any]
    ) -> dict[str, Any]:
        stamp = int(self.now().timestamp() * 1000)
        if message == "Win":
            context = fixture_json("remote_execution_context__opportunity_win.json")
            close = context["InputParameters"][0]["value"]
            close["Attributes"][0]["value"]["Id"] = record_id
            name = self.rows[table][record_id].get("name")
            close["Attributes"][1]["value"] = f"Won: {name}"
            close["Attributes"] = close["Attributes"][:2]
        else:
            context = fixture_json("remote_execution_context__account_credit_hold_update.json")
            target = context["InputParameters"][0]["value"]
            target["Id"] = record_id
            target["LogicalName"] = table
            target["Attributes"] = [
                {"key": k, "value": _sdk_value(v)} for k, v in changed.items()
            ] + [{"key": f"{table}id", "value": record_id}]
            context["PrimaryEntityId"] = record_id
            context["PrimaryEntityName"] = table
            context["PostEntityImages"] = []
        context["OperationId"] = str(uuid.uuid4())
        context["CorrelationId"] = str(uuid.uuid4())
        context["OperationCreatedOn"] = f"/Date({stamp}+0000)/"
        context["OrganizationName"] = (urlsplit(self.env_url).hostname or "").split(".")[0]
        return dict(context)

    def deliver_webhooks(self) -> int:
        """Post every queued notification now; returns how many were accepted (2xx).

        Refused ones (4xx) are dropped, as Dataverse fails the system job; unreachable or
        5xx ones stay queued for the next delivery, as Dataverse retries them."""
        pending, self.pushes = self.pushes, []
        delivered = 0
        for push in pending:
            try:
                response = requests.post(push.url, data=push.body, headers=push.headers, timeout=30)
            except requests.RequestException:
                self.pushes.append(push)
                continue
            if response.status_code < 300:
                delivered += 1
            elif response.status_code >= 500:
                self.pushes.append(push)
        return delivered

    def pending_webhooks(self) -> int:
        return len(self.pushes)

    def iter_rows(self, table: str) -> Iterator[dict[str, Any]]:
        yield from self.rows[table].values()


def _sdk_value(value: Any) -> Any:
    """A column value as the DataContract JSON of ``RemoteExecutionContext`` writes it."""
    if isinstance(value, Ref):
        return {
            "__type": "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts",
            "Id": value.id,
            "KeyAttributes": [],
            "LogicalName": value.table,
            "Name": None,
            "RowVersion": None,
        }
    if isinstance(value, Decimal):
        return {
            "__type": "Money:http://schemas.microsoft.com/xrm/2011/Contracts",
            "Value": float(value),
        }
    if isinstance(value, int) and not isinstance(value, bool):
        return {
            "__type": "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts",
            "Value": value,
        }
    return value


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, Ref):
        return (1, value.id)
    return (1, value)


def _coerce(table: Table, column: str, kind: str, value: Any) -> Any:
    """A written value checked against its column type, as Dataverse converts it."""
    if value is None:
        return None

    def refuse() -> DataverseError:
        return DataverseError(
            400,
            "0x80060888",
            f"Cannot convert the literal '{value}' to the expected type of '{column}' ({kind}).",
        )

    if kind in ("String", "Memo"):
        if not isinstance(value, str):
            raise refuse()
        return value
    if kind == "Boolean":
        if not isinstance(value, bool):
            raise refuse()
        return value
    if kind in ("Money", "Decimal"):
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise refuse()
        return Decimal(value).quantize(Decimal("0.0001")) if kind == "Money" else Decimal(value)
    if kind in ("Integer", "BigInt"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise refuse()
        return value
    if kind in ("Picklist", "State", "Status"):
        choices = table.choices(column) or {}
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or (choices and value not in choices)
        ):
            raise DataverseError(
                400,
                "0x8004431a",
                f"A validation error occurred. The value {value} of '{column}' on record of type "
                f"'{table.logical_name}' is outside the valid range.",
            )
        return value
    if kind == "MultiSelectPicklist":
        if not isinstance(value, str):
            raise refuse()
        return value
    if kind == "DateTime":
        if not isinstance(value, str):
            raise refuse()
        try:
            if column in DATE_ONLY:
                return date.fromisoformat(value[:10]).isoformat()
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise refuse() from exc
        return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == "UniqueIdentifier":
        return str(value).lower()
    raise refuse()
