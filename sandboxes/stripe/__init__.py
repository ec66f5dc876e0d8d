"""A local, stateful Stripe API sandbox speaking Stripe's real wire protocol."""

from __future__ import annotations

import threading

from .sandbox import StripeSandbox

__all__ = ["StripeSandbox", "serve_forever"]


def serve_forever(host: str, port: int, *, allow_non_loopback: bool = False) -> None:
    """Run the sandbox in the foreground (webhooks and billing in the background) until Ctrl-C."""
    sandbox = StripeSandbox().start(
        host, port, auto_deliver=True, allow_non_loopback=allow_non_loopback
    )
    print(f"Stripe sandbox listening on {sandbox.url} (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
