"""Serve a sandbox's WSGI app on loopback, in a thread (tests, demo) or in the foreground (CLI).

The sandboxes stand in for paid services on a developer's machine; binding them to a
public interface by accident would expose a fake payment API, so anything but loopback
must be asked for explicitly.
"""

from __future__ import annotations

import ipaddress
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: How often the serving loop checks for a shutdown request, in seconds.
POLL_SECONDS = 0.05


class _QuietHandler(WSGIRequestHandler):
    """Sandboxes serve many requests per demo step; one log line each drowns the output."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class NonLoopbackBindRefused(ValueError):
    """Raised when a sandbox is asked to bind to a non-loopback address without consent."""


def ensure_loopback(host: str, allow_non_loopback: bool = False) -> None:
    if allow_non_loopback or host in LOOPBACK_NAMES:
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise NonLoopbackBindRefused(
        f"refusing to bind the sandbox to {host!r}: it is not a loopback address; "
        "pass --allow-non-loopback if you really mean to expose it"
    )


class SandboxServer:
    """A threaded WSGI server on a (by default random) loopback port."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allow_non_loopback: bool = False,
    ) -> None:
        ensure_loopback(host, allow_non_loopback)
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=_QuietHandler
        )
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.host)

    @property
    def port(self) -> int:
        return int(self._server.port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # shutdown() waits for the loop's next poll: a short one makes stop() prompt,
            # which tests that start and stop a sandbox each time feel.
            kwargs={"poll_interval": POLL_SECONDS},
            name=f"sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._server.server_close()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
