"""A local, stateful Stripe API sandbox speaking Stripe's real wire protocol."""

from __future__ import annotations

import os
import threading

from .sandbox import RETRY_BASE_SECONDS, StripeSandbox

__all__ = ["StripeSandbox", "serve_forever"]


#: Shortens the webhook retry backoff for local work (seconds before the first retry; each
#: next one waits twice as long). Unset: Stripe's test-mode schedule (1 h, 2 h, 4 h).
RETRY_SECONDS_ENV = "STRIPE_SANDBOX_WEBHOOK_RETRY_SECONDS"


def serve_forever(
    host: str,
    port: int,
    *,
    allow_non_loopback: bool = False,
    webhook_retry_base_seconds: int | None = None,
) -> None:
    """Run the sandbox in the foreground (webhooks and billing in the background) until Ctrl-C.

    ``webhook_retry_base_seconds`` (or the ``STRIPE_SANDBOX_WEBHOOK_RETRY_SECONDS``
    environment variable) shortens the retry schedule for local work."""
    if webhook_retry_base_seconds is None:
        configured = os.environ.get(RETRY_SECONDS_ENV)
        webhook_retry_base_seconds = int(configured) if configured else RETRY_BASE_SECONDS
    sandbox = StripeSandbox(webhook_retry_base_seconds=webhook_retry_base_seconds).start(
        host, port, auto_deliver=True, allow_non_loopback=allow_non_loopback
    )
    print(f"Stripe sandbox listening on {sandbox.url} (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
