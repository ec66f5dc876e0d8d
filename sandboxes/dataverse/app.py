"""The WSGI layer: the Entra tenant's endpoints and the Web API under ``/api/data/v9.x``.

Per Web API request, in Dataverse's order: count it, answer 503 while the environment is
down, authenticate the bearer token (401 with ``WWW-Authenticate``), apply the service
protection limits of the calling user (429 with ``Retry-After``), then run it under the
sandbox lock. ``GET /_sandbox/requests`` (no auth) lists the requests counted.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlencode

from werkzeug.wrappers import Request, Response

from . import jsonio
from .batch import BatchRunner, parse
from .entra import Tenant
from .entra_signin import error_page
from .errors import DataverseError
from .limits import ServiceProtection
from .webapi import Answer, ApiRequest, WebApi

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

API_PATH = re.compile(r"^/api/data/(v9\.[0-2])(?:/(.*))?$")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def template(resource: str) -> str:
    """``accounts(3f25…)/product_opportunities`` → ``accounts({id})/product_opportunities``."""
    return re.sub(r"\(([^)]*)\)", "({id})", _GUID.sub("{id}", resource))


class Traffic:
    """What reached the Web API over the wire: one entry per HTTP request (a ``$batch`` is
    one), in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.log: list[tuple[str, str]] = []

    def record(self, method: str, resource: str) -> None:
        with self._lock:
            self.log.append((method, resource))

    def counts(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter((m, template(r)) for m, r in self.log)

    def reset(self) -> None:
        with self._lock:
            self.log.clear()


class DataverseApp:
    def __init__(
        self,
        api: WebApi,
        tenant: Tenant,
        limits: ServiceProtection,
        lock: threading.RLock,
        *,
        audiences: Callable[[str, str], bool],
        user_for: Callable[[str], str],
        environment_url: Callable[[], str],
        is_down: Callable[[], bool],
    ) -> None:
        self.api = api
        self.tenant = tenant
        self.limits = limits
        self.lock = lock
        self.audiences = audiences
        self.user_for = user_for
        self.environment_url = environment_url
        self.is_down = is_down
        self.traffic = Traffic()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self.handle(request)
        except DataverseError as error:  # never a 500: every refusal is Dataverse-shaped
            response = _response(Answer.error(error))
        return response(environ, start_response)

    # ------------------------------------------------------------------ routing

    def handle(self, request: Request) -> Response:
        path = request.path
        if path == "/_sandbox/requests":
            counts = [
                {"method": m, "path": p, "count": c}
                for (m, p), c in sorted(self.traffic.counts().items())
            ]
            return _json(200, {"requests": counts})
        api = API_PATH.match(path)
        if api:
            return self.web_api(request, api.group(2) or "")
        return self.entra(request)

    def entra(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path == "/common/discovery/instance":
            return _json(
                200, self.tenant.instance_discovery(request.args.get("authorization_endpoint"))
            )
        found = re.fullmatch(
            r"/([^/]+)(/v2\.0)?/\.well-known/openid-configuration|/([^/]+)/oauth2/v2\.0/token"
            r"|/([^/]+)/oauth2/v2\.0/(authorize)|/([^/]+)/discovery/v2\.0/(keys)",
            path,
        )
        if found is None:
            return _json(
                404,
                {
                    "error": {
                        "code": "0x8006088a",
                        "message": f"Resource not found for the segment '{path}'.",
                    }
                },
            )
        tenant = found.group(1) or found.group(3) or found.group(4) or found.group(6)
        if found.group(7):  # Entra's signing keys are the same for every tenant
            return _json(200, self.tenant.sign_in.jwks())
        if tenant not in (self.tenant.tenant_id, "organizations"):
            if found.group(5):
                return _html(400, error_page(90002, f"Tenant '{tenant}' not found."))
            status, body = self.tenant.unknown_tenant(tenant)
            return _json(status, body)
        if found.group(1):
            return _json(200, self.tenant.openid_configuration())
        if found.group(5):
            return self.authorize(request)
        if request.method != "POST":
            return _json(
                405,
                {
                    "error": "invalid_request",
                    "error_description": "AADSTS900561: The endpoint only accepts POST requests.",
                },
            )
        form = {**request.args.to_dict(), **request.form.to_dict()}
        own = request.host_url.rstrip("/")
        status, body = self.tenant.token(
            form,
            request.headers.get("Authorization"),
            lambda resource: self.audiences(resource, own),
        )
        return _json(status, body)

    def authorize(self, request: Request) -> Response:
        """The sign-in leg (``entra_signin.py``): a page, an error page, or the answer sent
        back to the app by its ``response_mode``."""
        query = {**request.args.to_dict(), **request.form.to_dict()}
        status, answer = self.tenant.sign_in.authorize(query, request.base_url)
        if status != 302:
            return _html(status, str(answer["html"]))
        location, params = str(answer["location"]), dict(answer["params"])
        if answer["mode"] == "form_post":
            fields = "".join(
                f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                for k, v in params.items()
            )
            return _html(
                200,
                f'<!doctype html><html><body onload="document.forms[0].submit()"><form '
                f'method="POST" action="{escape(location)}">{fields}<noscript><button>Continue'
                "</button></noscript></form></body></html>",
            )
        separator = "#" if answer["mode"] == "fragment" else ("&" if "?" in location else "?")
        return Response(status=302, headers={"Location": location + separator + urlencode(params)})

    def web_api(self, request: Request, raw_resource: str) -> Response:
        resource = unquote(raw_resource)
        method = request.method.upper()
        self.traffic.record(method, resource)
        if self.is_down():
            return Response(
                "<html><body><h1>Service Unavailable</h1></body></html>",
                status=503,
                content_type="text/html",
            )
        header = request.headers.get("Authorization", "")
        scheme, _, token_text = header.partition(" ")
        token = self.tenant.validate(token_text.strip() if scheme.lower() == "bearer" else None)
        own = request.host_url.rstrip("/")
        if token is None or not self.audiences(token.audience, own):
            authority = (
                f"https://login.microsoftonline.com/{self.tenant.tenant_id}/oauth2/authorize"
            )
            return Response(
                b"",
                status=401,
                headers={
                    "WWW-Authenticate": (
                        f"Bearer authorization_uri={authority}, "
                        f"resource_id={self.environment_url()}/"
                    )
                },
            )
        user = self.user_for(token.client_id)
        retry_after, remaining = self.limits.admit(user)
        if retry_after is not None:
            answer = Answer.error(DataverseError(429, "0x80072322", self.limits.message()))
            answer.headers["Retry-After"] = f"{retry_after:g}"
            return _response(answer)
        api_request = ApiRequest(
            method=method,
            resource=resource,
            params=dict(parse_qsl(request.query_string.decode("latin-1"), keep_blank_values=True)),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=request.get_data(),
            base=f"{own}/api/data/v9.2",
            user_id=user,
        )
        with self.lock:
            if resource == "$batch" and method == "POST":
                answer = self._batch(api_request)
            else:
                answer = self._run(api_request)
        answer.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] = str(remaining)
        return _response(answer)

    def _run(self, request: ApiRequest) -> Answer:
        try:
            return self.api.dispatch(request)
        except DataverseError as error:
            return Answer.error(error)

    def _batch(self, request: ApiRequest) -> Answer:
        try:
            parts = parse(request.headers.get("content-type", ""), request.body)
        except DataverseError as error:
            return Answer.error(error)
        runner = BatchRunner(request, self._run_or_raise, self.api.store.transaction)
        continue_on_error = "odata.continue-on-error" in request.headers.get("prefer", "")
        status, body, content_type = runner.execute(parts, continue_on_error)
        return Answer(status, {"Content-Type": content_type, "OData-Version": "4.0"}, body)

    def _run_or_raise(self, request: ApiRequest) -> Answer:
        return self.api.dispatch(request)


def _response(answer: Answer) -> Response:
    response = Response(answer.body, status=answer.status)
    if "Content-Type" not in answer.headers:
        response.headers.pop("Content-Type", None)
    for name, value in answer.headers.items():
        response.headers[name] = value
    return response


def _html(status: int, page: str) -> Response:
    return Response(page, status=status, content_type="text/html; charset=utf-8")


def _json(status: int, body: Any) -> Response:
    return Response(
        jsonio.dumps(body), status=status, content_type="application/json; charset=utf-8"
    )
