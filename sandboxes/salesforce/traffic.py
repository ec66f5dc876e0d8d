"""What happens around each API call: daily API usage, injected faults, request counts."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime

FAULT_MESSAGES = {
    "UNABLE_TO_LOCK_ROW": "unable to obtain exclusive access to this record or 1 records",
    "SERVER_UNAVAILABLE": "Server temporarily unavailable, please try again later",
    "REQUEST_LIMIT_EXCEEDED": "TotalRequests Limit exceeded.",
    "REQUEST_RUNNING_TOO_LONG": "Your request was running for too long, and has been stopped.",
    "INVALID_SESSION_ID": "Session expired or invalid",
    "UNKNOWN_EXCEPTION": "An unexpected error occurred. Please include this ErrorId if you "
    "contact support: 1234567890-12345 (-1234567890)",
}


class ApiUsage:
    """The org's daily API request allowance; the count resets when the (UTC) day changes."""

    def __init__(self, daily_limit: int, now: Callable[[], datetime]) -> None:
        self.daily_limit = daily_limit
        self._now = now
        self._day: date = now().date()
        self._used = 0
        self._lock = threading.Lock()

    def _roll(self) -> None:
        today = self._now().date()
        if today != self._day:
            self._day, self._used = today, 0

    def try_consume(self) -> bool:
        """Count one call; False (and not counted) once the daily limit is used up."""
        with self._lock:
            self._roll()
            if self._used >= self.daily_limit:
                return False
            self._used += 1
            return True

    @property
    def used(self) -> int:
        with self._lock:
            self._roll()
            return self._used

    def set_used(self, used: int) -> None:
        with self._lock:
            self._roll()
            self._used = used

    def header(self) -> str:
        return f"api-usage={self.used}/{self.daily_limit}"


@dataclass
class Fault:
    error_code: str
    status: int
    message: str


@dataclass
class _FaultRule:
    path_prefix: str
    method: str | None
    faults: list[Fault]


class Faults:
    """Queued failures: the next requests matching a path prefix fail, without effect."""

    def __init__(self) -> None:
        self._rules: list[_FaultRule] = []
        self._down = False
        self._lock = threading.Lock()

    def inject(
        self,
        path_prefix: str,
        faults: Iterable[tuple[str, int] | tuple[str, int, str]],
        method: str | None = None,
    ) -> None:
        queued = []
        for fault in faults:
            code, status = fault[0], fault[1]
            message = fault[2] if len(fault) > 2 else FAULT_MESSAGES.get(code, code)
            queued.append(Fault(code, status, str(message)))
        with self._lock:
            self._rules.append(_FaultRule(path_prefix, method.upper() if method else None, queued))

    def take(self, method: str, full_path: str, api_path: str | None) -> Fault | None:
        """The fault for this request, consumed; ``api_path`` is the path after ``/vNN.N``."""
        with self._lock:
            for rule in self._rules:
                if rule.method is not None and rule.method != method:
                    continue
                candidate = full_path if rule.path_prefix.startswith("/services/") else api_path
                if candidate is None or not candidate.startswith(rule.path_prefix):
                    continue
                if rule.faults:
                    fault = rule.faults.pop(0)
                    if not rule.faults:
                        self._rules.remove(rule)
                    return fault
            return None

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def down(self) -> bool:
        return self._down

    def set_down(self, down: bool) -> None:
        self._down = down


class RequestCounter:
    """Requests received per ``(method, path template)``, e.g.
    ``("PATCH", "/services/data/v{version}/sobjects/Opportunity/{id}")``."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def record(self, method: str, template: str) -> None:
        with self._lock:
            self._counts[(method, template)] += 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
