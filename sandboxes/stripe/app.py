"""The WSGI app: routing, auth, request counting, fault injection, idempotency, JSON."""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from . import pages, pretty
from .call import Call
from .errors import StripeError, api_error, fault
from .idempotency import IdempotencyCache, SavedResponse
from .params import Params, parse_pairs
from .state import API_VERSION, RequestInfo, State
from .store import random_token

JSON = dict[str, Any]
Handler = Callable[[Call], JSON]
RouteSpec = tuple[str, str, Handler]

_log = logging.getLogger(__name__)
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")


def _werkzeug_path(template: str) -> str:
    return re.sub(r":(\w+)", r"<\1>", template)


def _json_response(status: int, body: JSON, headers: dict[str, str] | None = None) -> Response:
    return Response(
        pretty.dumps(body),
        status=status,
        headers=headers or {},
        content_type="application/json",
    )


class Hold:
    """Requests matching a path wait here until ``release()``: a Stripe that answers as
    slowly as a test needs, without the test sleeping. ``arrived`` is set once a request is
    waiting, so the test knows the slow call is in flight."""

    def __init__(self, path: str, method: str | None) -> None:
        self.path = path
        self.method = method
        self.arrived = threading.Event()
        self._released = threading.Event()
        self.waiting = 0

    def matches(self, method: str, template: str, path: str) -> bool:
        if self.method is not None and method != self.method:
            return False
        return self.path == template or path.startswith(self.path)

    def wait(self) -> None:
        self.waiting += 1
        self.arrived.set()
        self._released.wait()

    def release(self) -> None:
        self._released.set()


#: URL maps by their routes: building one compiles ~250 rules, and every sandbox (one per
#: end-to-end test) has the same routes. A Map is only read once built.
_URL_MAPS: dict[tuple[tuple[str, str], ...], Map] = {}
_URL_MAPS_LOCK = threading.Lock()


def _url_map(endpoints: tuple[tuple[str, str], ...]) -> Map:
    with _URL_MAPS_LOCK:
        url_map = _URL_MAPS.get(endpoints)
        if url_map is None:
            rules = [
                Rule(_werkzeug_path(template), endpoint=f"{method} {template}", methods=[method])
                for method, template in endpoints
            ]
            url_map = _URL_MAPS[endpoints] = Map(rules, strict_slashes=False)
        return url_map


class StripeApp:
    def __init__(self, state: State, routes: Iterable[RouteSpec]) -> None:
        self.state = state
        self.handlers: dict[str, Handler] = {}
        endpoints = []
        for method, template, handler in routes:
            self.handlers[f"{method} {template}"] = handler
            endpoints.append((method, template))
        self.url_map = _url_map(tuple(endpoints))
        self.idempotency = IdempotencyCache()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._faults: list[tuple[str, deque[int]]] = []
        self._holds: list[Hold] = []
        self._meta_lock = threading.Lock()

    # -- test hooks --------------------------------------------------------------------------

    def request_counts(self) -> dict[tuple[str, str], int]:
        with self._meta_lock:
            return dict(self._counts)

    def reset_request_counts(self) -> None:
        with self._meta_lock:
            self._counts.clear()

    def inject_faults(self, path: str, statuses: list[int]) -> None:
        with self._meta_lock:
            self._faults.append((path, deque(statuses)))

    def hold(self, path: str, method: str | None = None) -> Hold:
        """Hold every request matching ``path`` (and ``method``) until the hold is released."""
        hold = Hold(path, method)
        with self._meta_lock:
            self._holds.append(hold)
        return hold

    def _hold_for(self, method: str, template: str, path: str) -> Hold | None:
        with self._meta_lock:
            self._holds = [h for h in self._holds if not h._released.is_set()]
            return next((h for h in self._holds if h.matches(method, template, path)), None)

    def _take_fault(self, template: str, path: str) -> int | None:
        with self._meta_lock:
            for spec, statuses in self._faults:
                if statuses and (spec == template or path.startswith(spec)):
                    status = statuses.popleft()
                    return status
        return None

    # -- WSGI --------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        if request.path == "/_sandbox/requests":
            counts = self.request_counts()
            return _json_response(
                200,
                {
                    "requests": [
                        {"method": m, "path": p, "count": n} for (m, p), n in sorted(counts.items())
                    ]
                },
            )
        if request.path.startswith("/invoice/"):
            with self.state.lock:
                return pages.invoice_page(self.state, request.path)
        if request.path.startswith("/dashboard/"):
            with self.state.lock:
                return pages.dashboard_page(self.state, request.path)
        if request.path.startswith("/credit_note/"):
            with self.state.lock:
                return pages.credit_note_pdf(self.state, request.path)
        request_id = "req_" + random_token(14)
        stripe_version = request.headers.get("Stripe-Version") or API_VERSION
        headers = {"Request-Id": request_id, "Stripe-Version": stripe_version}
        adapter = self.url_map.bind_to_environ(request.environ)
        method = request.method.upper()
        try:
            endpoint, matched = adapter.match()
            path_args = {k: str(v) for k, v in matched.items()}
        except HTTPException:
            with self._meta_lock:
                self._counts[(method, request.path)] += 1
            return _json_response(
                404,
                StripeError(
                    404,
                    f"Unrecognized request URL ({method}: {request.path}). Please see "
                    "https://stripe.com/docs or we can help at https://support.stripe.com/.",
                ).body(),
                headers,
            )
        template = str(endpoint).split(" ", 1)[1]
        with self._meta_lock:
            self._counts[(method, template)] += 1
        held = self._hold_for(method, template, request.path)
        if held is not None:
            held.wait()  # before any state is read: the answer is as of the release
        try:
            api_key = self._authenticate(request)
            if not _VERSION.match(stripe_version):
                raise StripeError(400, f"Invalid Stripe API version: {stripe_version}")
            injected = self._take_fault(template, request.path)
            if injected is not None:
                raise fault(injected)
        except StripeError as error:
            return _json_response(error.status, error.body(), {**headers, **error.headers})
        pairs = list(request.args.items(multi=True))
        if method == "POST":
            pairs += list(request.form.items(multi=True))
        idempotency_key = request.headers.get("Idempotency-Key") if method == "POST" else None
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
            fingerprint = tuple(sorted(pairs))
            try:
                saved = self.idempotency.begin(
                    api_key, idempotency_key, method, template, fingerprint, int(self.state.now())
                )
            except StripeError as error:
                return _json_response(error.status, error.body(), headers)
            if saved is not None:
                return Response(
                    saved.body,
                    status=saved.status,
                    headers={**saved.headers, "Idempotent-Replayed": "true"},
                    content_type="application/json",
                )
            to_save: SavedResponse | None = None
            try:
                status, body, extra = self._execute(
                    endpoint, path_args, method, pairs, request_id, idempotency_key, stripe_version
                )
                payload = pretty.dumps(body).encode()
                all_headers = {**headers, **extra}
                if status < 400 or status == 402:
                    to_save = SavedResponse(
                        method,
                        template,
                        fingerprint,
                        status,
                        payload,
                        all_headers,
                        int(self.state.now()),
                    )
            finally:
                self.idempotency.finish(api_key, idempotency_key, to_save)
            return Response(
                payload, status=status, headers=all_headers, content_type="application/json"
            )
        status, body, extra = self._execute(
            endpoint, path_args, method, pairs, request_id, None, stripe_version
        )
        return _json_response(status, body, {**headers, **extra})

    def _execute(
        self,
        endpoint: str,
        path_args: dict[str, str],
        method: str,
        pairs: list[tuple[str, str]],
        request_id: str,
        idempotency_key: str | None,
        stripe_version: str = API_VERSION,
    ) -> tuple[int, JSON, dict[str, str]]:
        handler = self.handlers[endpoint]
        with self.state.lock:
            self.state.request = RequestInfo(request_id, idempotency_key)
            # A write runs in an undo journal: a refused or failed request is rolled back.
            mark = self.state.begin() if method != "GET" else None
            keep = False
            try:
                params = Params(parse_pairs(pairs))
                expand = params.expand()
                body = handler(Call(self.state, params, path_args, method, stripe_version))
                body = self.state.store.expand(body, expand)
                keep = True
                return 200, body, {}
            except StripeError as error:
                # A declined payment is recorded (attempt_count, events); other refusals
                # leave no trace, like Stripe's.
                keep = not error.rollback
                return error.status, error.body(), error.headers
            except Exception:
                _log.exception("Stripe sandbox handler failed: %s", endpoint)
                failure = api_error()
                return failure.status, failure.body(), failure.headers
            finally:
                if mark is not None:
                    if keep:
                        self.state.commit()
                    else:
                        self.state.rollback(mark)
                self.state.request = None

    def _authenticate(self, request: Request) -> str:
        header = request.headers.get("Authorization", "")
        key = ""
        if header.startswith("Bearer "):
            key = header[len("Bearer ") :].strip()
        elif header.startswith("Basic "):
            try:
                key = base64.b64decode(header[len("Basic ") :]).decode().split(":", 1)[0]
            except ValueError:
                key = ""
        if not key:
            raise StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for "
                "details, or we can help at https://support.stripe.com/.",
            )
        if not re.fullmatch(r"sk_test_\w+", key):
            masked = key[:8] + "*" * max(len(key) - 12, 4) + key[-4:]
            raise StripeError(401, f"Invalid API Key provided: {masked}")
        return key
