"""Idempotent requests: replay the first response for a key, refuse a key reused differently."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .errors import StripeError

KEY_TTL_SECONDS = 24 * 3600


@dataclass
class SavedResponse:
    method: str
    path: str
    fingerprint: tuple[tuple[str, str], ...]
    status: int
    body: bytes
    headers: dict[str, str]
    saved_at: int


class IdempotencyCache:
    """Saved responses by (API key, Idempotency-Key), kept for 24 hours like Stripe's."""

    def __init__(self) -> None:
        self._saved: dict[tuple[str, str], SavedResponse] = {}
        self._in_flight: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def begin(
        self,
        api_key: str,
        key: str,
        method: str,
        path: str,
        fingerprint: tuple[tuple[str, str], ...],
        now: int,
    ) -> SavedResponse | None:
        """The saved response to replay, or None after reserving the key for this request."""
        if len(key) > 255:
            raise StripeError(
                400,
                "Invalid Idempotency-Key: the key must be at most 255 characters long.",
                param="Idempotency-Key",
            )
        scoped = (api_key, key)
        with self._lock:
            saved = self._saved.get(scoped)
            if saved is not None and now - saved.saved_at > KEY_TTL_SECONDS:
                del self._saved[scoped]
                saved = None
            if saved is None:
                if scoped in self._in_flight:
                    raise StripeError(
                        409,
                        "There is currently another in-progress request using this "
                        f"Idempotent Key (that probably means you submitted twice, and the "
                        f"other request is still going through): {key}. Please try again "
                        "later.",
                        type="idempotency_error",
                    )
                self._in_flight.add(scoped)
                return None
        if (saved.method, saved.path) != (method, path):
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used for the same endpoint they "
                f"were first used for ('{saved.method} {saved.path}' vs '{method} {path}'). "
                f"Try using a key other than '{key}' if you meant to execute a different "
                "request.",
                type="idempotency_error",
            )
        if saved.fingerprint != fingerprint:
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
                type="idempotency_error",
            )
        return saved

    def finish(self, api_key: str, key: str, response: SavedResponse | None) -> None:
        """Release the reservation, saving ``response`` (None: the request did not execute)."""
        scoped = (api_key, key)
        with self._lock:
            self._in_flight.discard(scoped)
            if response is not None:
                self._saved[scoped] = response
