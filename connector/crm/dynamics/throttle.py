"""A per-process pause shared by every call made as one Dataverse application user.

Dataverse's service protection limits count requests, execution time and concurrency *per
user* (here: per app registration's application user). When one call is answered
``429 Too Many Requests`` with ``Retry-After: N``, every further call as that user would be
refused too, and each refusal extends the penalty. So the first 429 closes a gate that all
callers with the same client id wait at, for ``N`` seconds, before sending anything.

Time is injected (``clock`` gives seconds on a monotonic scale, ``sleeper`` waits), so tests
assert the pause requested instead of waiting for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Clock = Callable[[], float]
Sleeper = Callable[[float], None]

__all__ = ["Clock", "Sleeper", "ThrottleGate", "gate_for", "reset_gates"]


class ThrottleGate:
    """Closed until a moment on the injected clock; ``wait`` sleeps out the remainder."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open_at: float | None = None

    def close_for(self, seconds: float, now: float) -> None:
        """Hold every caller back for ``seconds`` from ``now`` (never shortens a pause)."""
        with self._lock:
            until = now + max(seconds, 0.0)
            if self._open_at is None or until > self._open_at:
                self._open_at = until

    def remaining(self, now: float) -> float:
        with self._lock:
            if self._open_at is None:
                return 0.0
            left = self._open_at - now
            if left <= 0:
                self._open_at = None
                return 0.0
            return left

    def wait(self, clock: Clock, sleeper: Sleeper) -> float:
        """Sleep until the gate opens; returns the seconds slept (0 when it was open)."""
        left = self.remaining(clock())
        if left > 0:
            sleeper(left)
        return left


_gates: dict[str, ThrottleGate] = {}
_gates_lock = threading.Lock()


def gate_for(client_id: str) -> ThrottleGate:
    """The one gate of this process for the application user ``client_id``."""
    key = client_id.lower()
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            gate = _gates[key] = ThrottleGate()
        return gate


def reset_gates() -> None:
    """Forget every pause (tests)."""
    with _gates_lock:
        _gates.clear()
