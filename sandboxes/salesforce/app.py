"""The WSGI layer: HTTP in, Salesforce-shaped HTTP out.

Per request, in Salesforce's order: count it, answer 503 if the org is down, authenticate
(``401 INVALID_SESSION_ID``), apply an injected fault, charge the daily API allowance
(``403 REQUEST_LIMIT_EXCEEDED``), then run the resource under the sandbox lock. Every data API
response carries ``Sforce-Limit-Info: api-usage=N/M``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from . import bulk2, jsonio
from .auth import (
    AuthorizationCodes,
    Credentials,
    OrgIdentity,
    Sessions,
    authorize,
    identity_service,
    oauth_token,
    soap_login,
)
from .errors import ApiError, invalid_session, json_parser_error, request_limit_exceeded
from .rest import SUPPORTED_VERSIONS, VERSION_LABELS, ApiRequest, RestApi
from .traffic import ApiUsage, Faults, RequestCounter

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

_DATA_PATH = re.compile(r"^/services/data/v(\d+\.\d)(/.*)?$")
_SOAP_PATH = re.compile(r"^/services/Soap/u/(\d+\.\d)(?:/.*)?$")


class SandboxApp:
    def __init__(
        self,
        rest: RestApi,
        lock: threading.RLock,
        credentials: Credentials,
        sessions: Sessions,
        usage: ApiUsage,
        faults: Faults,
        counter: RequestCounter,
        identity: Callable[[str], OrgIdentity],
        now: Callable[[], datetime],
        processing: bulk2.Processing | None = None,
    ) -> None:
        self.rest = rest
        self.lock = lock
        self.credentials = credentials
        self.sessions = sessions
        self.usage = usage
        self.faults = faults
        self.counter = counter
        self.identity = identity
        self.now = now
        self.codes = AuthorizationCodes()
        self.bulk2 = bulk2.Bulk2Api(rest.store, now, processing)
        rest.bulk_counts = lambda: (self.bulk2.batches_run, self.bulk2.queries.jobs_created)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        response = self.handle(request)
        return response(environ, start_response)

    # ----------------------------------------------------------------- helpers

    @staticmethod
    def json_response(
        status: int, body: Any, headers: dict[str, str] | None = None, pretty: bool = False
    ) -> Response:
        text = "" if body is None else jsonio.dumps(body, indent=2 if pretty else None)
        response = Response(
            text,
            status=status,
            content_type="application/json;charset=UTF-8" if body is not None else None,
        )
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    def error_response(self, error: ApiError, pretty: bool = False) -> Response:
        return self.json_response(error.status, error.body(), pretty=pretty)

    @staticmethod
    def bearer(request: Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() in ("bearer", "oauth") and token:
            return token.strip()
        return None

    # ------------------------------------------------------------------ handle

    def handle(self, request: Request) -> Response:
        path = request.path
        method = request.method.upper()
        if path == "/_sandbox/requests":
            counts = [
                {"method": m, "path": p, "count": c}
                for (m, p), c in sorted(self.counter.snapshot().items())
            ]
            return self.json_response(200, {"requests": counts})
        data = _DATA_PATH.match(path)
        soap = _SOAP_PATH.match(path)
        if data:
            api_path = data.group(2) or "/"
            relative = bulk2.template_for(api_path) or self.rest.template_for(
                method, api_path.rstrip("/") or "/"
            )
            template = f"/services/data/v{{version}}{relative}"
        elif soap:
            api_path = None
            template = "/services/Soap/u/{version}"
        else:
            api_path = None
            template = path.rstrip("/") or "/"
        self.counter.record(method, template)

        if self.faults.down:
            return self.json_response(
                503,
                [
                    {
                        "message": "Service Unavailable: the org is down for maintenance",
                        "errorCode": "SERVER_UNAVAILABLE",
                    }
                ],
            )
        if path.rstrip("/") == "/services/oauth2/token":
            return self.fault_or(method, path, None, lambda: self.token(request))
        if path.rstrip("/") == "/services/oauth2/authorize":
            return self.authorize(request)
        if path.startswith("/id/"):
            status, body = identity_service(
                request.headers.get("Authorization"),
                self.sessions,
                self.identity(request.host_url.rstrip("/")),
                self.credentials.username,
            )
            return self.json_response(status, body)
        if soap:
            return self.fault_or(method, path, None, lambda: self.soap(request, soap.group(1)))
        if path.rstrip("/") == "/services/data":
            return self.json_response(
                200,
                [
                    {"label": VERSION_LABELS[v], "url": f"/services/data/v{v}", "version": v}
                    for v in SUPPORTED_VERSIONS
                ],
            )
        if not data:
            return self.json_response(
                404,
                [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}],
            )
        return self.data_api(request, method, data.group(1), api_path or "/")

    def fault_or(
        self, method: str, path: str, api_path: str | None, handler: Callable[[], Response]
    ) -> Response:
        fault = self.faults.take(method, path, api_path)
        if fault is not None:
            return self.json_response(
                fault.status, [{"message": fault.message, "errorCode": fault.error_code}]
            )
        return handler()

    def token(self, request: Request) -> Response:
        if request.method != "POST":
            return self.json_response(
                405, {"error": "invalid_request", "error_description": "must use HTTP POST"}
            )
        # Salesforce reads the token request's parameters from the body or the query string.
        form = {**request.args.to_dict(), **request.form.to_dict()}
        status, body = oauth_token(
            form,
            request.headers.get("Authorization"),
            self.credentials,
            self.sessions,
            self.identity(request.host_url.rstrip("/")),
            self.now,
            self.codes,
        )
        return self.json_response(status, body)

    def authorize(self, request: Request) -> Response:
        status, answer = authorize(
            request.args.to_dict(), self.credentials, self.codes, self.now().timestamp()
        )
        if status != 302:
            return self.json_response(status, answer)
        location = answer.pop("location")
        separator = "&" if "?" in location else "?"
        return Response(status=302, headers={"Location": location + separator + urlencode(answer)})

    def soap(self, request: Request, version: str) -> Response:
        status, text = soap_login(
            request.get_data(),
            self.credentials,
            self.sessions,
            self.identity(request.host_url.rstrip("/")),
            version,
        )
        return Response(text, status=status, content_type="text/xml; charset=utf-8")

    def bulk_api(
        self,
        method: str,
        api_path: str,
        version: str,
        raw: bytes,
        headers: dict[str, str],
        pretty: bool,
        args: dict[str, str] | None = None,
    ) -> Response:
        """Bulk API 2.0 (``bulk2.py``): CSV bodies, so no JSON parsing here."""
        try:
            with self.lock:
                result = self.bulk2.handle(method, api_path, version, raw, args)
        except ApiError as error:
            return self.json_response(error.status, error.body(), headers, pretty)
        headers = {**headers, **result.headers}
        if isinstance(result.body, str):
            response = Response(result.body, status=result.status, content_type=result.content_type)
            for name, value in headers.items():
                response.headers[name] = value
            return response
        if result.body is None:
            return self.json_response(result.status, None, headers)
        return self.json_response(result.status, result.body, headers, pretty)

    def data_api(self, request: Request, method: str, version: str, api_path: str) -> Response:
        pretty = request.headers.get("X-PrettyPrint") == "1"
        if version not in SUPPORTED_VERSIONS:
            return self.json_response(
                404,
                [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}],
            )
        if not self.sessions.valid(self.bearer(request)):
            return self.error_response(invalid_session(), pretty)
        limit_header = {"Sforce-Limit-Info": self.usage.header()}
        fault = self.faults.take(method, request.path, api_path)
        if fault is not None:
            return self.json_response(
                fault.status,
                [{"message": fault.message, "errorCode": fault.error_code}],
                limit_header,
                pretty,
            )
        if not self.usage.try_consume():
            return self.json_response(
                403,
                request_limit_exceeded().body(),
                {"Sforce-Limit-Info": self.usage.header()},
                pretty,
            )
        limit_header = {"Sforce-Limit-Info": self.usage.header()}
        raw = request.get_data()
        if bulk2.template_for(api_path) is not None:
            return self.bulk_api(
                method, api_path, version, raw, limit_header, pretty, request.args.to_dict()
            )
        body: Any = None
        if raw.strip():
            try:
                body = jsonio.loads(raw)
            except ValueError as exc:
                error = json_parser_error(f"Unexpected character: {exc}")
                return self.json_response(400, error.body(), limit_header, pretty)
        api_request = ApiRequest(
            method=method,
            path=api_path,
            version=version,
            args={k: v for k, v in request.args.items()},
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        try:
            with self.lock:
                result = self.rest.dispatch(api_request)
        except ApiError as error:
            error_body = error.body()
            if error.status == 300 and isinstance(error_body, list):
                error_body = [str(url).replace("{version}", version) for url in error_body]
            return self.json_response(error.status, error_body, limit_header, pretty)
        headers = {**result.headers, **limit_header}
        if result.status == 204:
            return self.json_response(204, None, headers)
        return self.json_response(result.status, result.body, headers, pretty)
