"""Service protection limits: requests per user in a sliding window, answered with 429.

Dataverse counts each user's requests over the preceding 300 seconds and refuses more than
6,000 (per web server) with ``429 Too Many Requests``, error ``0x80072322`` and a
``Retry-After`` in seconds; a ``$batch`` counts as one request. The sandbox keeps one count
per calling application user, on its injected clock; both numbers are configurable.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable

DEFAULT_REQUESTS = 6000
DEFAULT_WINDOW_SECONDS = 300


class ServiceProtection:
    def __init__(
        self,
        now: Callable[[], float],
        requests: int = DEFAULT_REQUESTS,
        window_seconds: int = DEFAULT_WINDOW_SECONDS,
    ) -> None:
        self.now = now
        self.requests = requests
        self.window_seconds = window_seconds
        self._calls: dict[str, deque[float]] = {}
        self._injected: list[float] = []
        self._lock = threading.Lock()

    def message(self) -> str:
        return (
            f"Number of requests exceeded the limit of {self.requests} over time window of "
            f"{self.window_seconds} seconds."
        )

    def inject(self, times: int, retry_after: float) -> None:
        """The next ``times`` requests are refused, whatever the counts say (tests)."""
        with self._lock:
            self._injected.extend([retry_after] * times)

    def admit(self, user: str) -> tuple[float | None, int]:
        """``(None, remaining)`` when the request may run, else ``(retry_after, 0)``."""
        with self._lock:
            if self._injected:
                return self._injected.pop(0), 0
            now = self.now()
            calls = self._calls.setdefault(user, deque())
            while calls and calls[0] <= now - self.window_seconds:
                calls.popleft()
            if len(calls) >= self.requests:
                wait = calls[0] + self.window_seconds - now
                return float(max(1, math.ceil(wait))), 0
            calls.append(now)
            return None, self.requests - len(calls)

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._injected.clear()
