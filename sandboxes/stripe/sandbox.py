"""``StripeSandbox``: the stateful local Stripe API, its server and its test hooks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial

from .. import _server
from .._delivery import DeliveryLoop
from . import billing, customers, discounts, subscriptions, webhooks
from .app import Hold, StripeApp
from .routes import ROUTES
from .state import State

#: Stripe's test mode retries a failed webhook "three times over a few hours": after 1 h,
#: 2 h and 4 h (``webhook_retry_base_seconds`` · 2^(n-1)), four attempts in all.
RETRY_BASE_SECONDS = 3600
MAX_ATTEMPTS = 4


class StripeSandbox:
    """A local stand-in for the Stripe API that the official stripe-python client talks to.

    ``now`` drives real time for customers without a test clock (and webhook retry backoff);
    ``signing_clock`` stamps webhook signatures (wall time by default, so receivers verifying
    with a tolerance accept them even when ``now`` is simulated).
    """

    def __init__(
        self,
        now: Callable[[], int] | None = None,
        search_lag_seconds: int = 0,
        *,
        webhook_max_attempts: int = MAX_ATTEMPTS,
        webhook_retry_base_seconds: int = RETRY_BASE_SECONDS,
        signing_clock: Callable[[], int] | None = None,
    ) -> None:
        self.state = State(
            now or (lambda: int(time.time())),
            search_lag_seconds=search_lag_seconds,
            webhook_max_attempts=webhook_max_attempts,
            webhook_retry_base_seconds=webhook_retry_base_seconds,
            signing_clock=signing_clock,
        )
        self.state.store.renderers["subscription"] = subscriptions.make_renderer(self.state)
        self.state.store.renderers["customer"] = customers.make_renderer(self.state)
        self.state.store.renderers["coupon"] = partial(discounts.render_coupon, self.state)
        self.app = StripeApp(self.state, ROUTES)
        self._server: _server.SandboxServer | None = None
        self._background = DeliveryLoop(self._tick, "stripe-sandbox-worker")
        self._delivery_lock = threading.Lock()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not started")
        return self._server.url

    def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        auto_deliver: bool = False,
        *,
        allow_non_loopback: bool = False,
    ) -> StripeSandbox:
        self._server = _server.SandboxServer(
            self.app, host, port, allow_non_loopback=allow_non_loopback
        )
        self.state.base_url = self._server.url
        self._server.start()
        if auto_deliver:
            self._background.start()
        return self

    def stop(self) -> None:
        self._background.stop()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _tick(self) -> int:
        """What Stripe does by itself as time passes: bill what is due, then send webhooks."""
        self.run_billing()
        return self.deliver_webhooks()

    # -- test hooks ------------------------------------------------------------------------------

    def deliver_webhooks(self) -> int:
        """Deliver every webhook due now (including due retries); returns POSTs attempted."""
        with self._delivery_lock:
            return webhooks.deliver_due(self.state)

    def pending_webhooks(self) -> int:
        return webhooks.pending(self.state)

    def run_billing(self) -> None:
        """Run the billing engine up to ``now()`` for customers without a test clock."""
        with self.state.lock:
            billing.run(self.state, None, int(self.state.now()))

    def request_counts(self) -> dict[tuple[str, str], int]:
        return self.app.request_counts()

    def reset_request_counts(self) -> None:
        self.app.reset_request_counts()

    def hold(self, path: str, method: str | None = None) -> Hold:
        """Make requests matching ``path`` (a template like ``/v1/invoices/:id`` or a path
        prefix) wait until ``release()`` on the returned hold: Stripe answering slowly."""
        return self.app.hold(path, method)

    def inject_faults(self, path: str, statuses: list[int]) -> None:
        """Fail the next requests matching ``path`` (a template like ``/v1/invoices/:id`` or a
        path prefix) with ``statuses``, in order, without executing them."""
        self.app.inject_faults(path, statuses)
