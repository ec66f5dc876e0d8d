"""Deliver a sandbox's outgoing notifications in the background, as the real service pushes
them without being asked (Salesforce outbound messages, Dataverse webhooks).

Woken at once when something is queued, and at least every ``interval`` seconds, so a retry
due later is still sent."""

from __future__ import annotations

import threading
from collections.abc import Callable

#: How often the loop delivers when nothing wakes it, in seconds.
AUTO_DELIVER_INTERVAL_SECONDS = 1.0


class DeliveryLoop:
    def __init__(self, deliver: Callable[[], int], name: str) -> None:
        self._deliver = deliver
        self._name = name
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()

    def wake(self) -> None:
        """Deliver now (a notification was queued)."""
        self._wake.set()

    def start(self, interval: float = AUTO_DELIVER_INTERVAL_SECONDS) -> None:
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                self._wake.wait(interval)
                self._wake.clear()
                if self._stop.is_set():
                    return
                self._deliver()

        self._thread = threading.Thread(target=loop, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
