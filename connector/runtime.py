"""The runtime: configuration plus the long-lived things built from it, built once.

Web, worker, clock, CLI and tests all get their collaborators from here, so wiring lives in
one place and a test can swap any part (the clock, the Stripe client, the CRM adapter).
It composes the adapters and the store and knows nothing above them: which jobs run and
which service handles what is ``connector.jobs``.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any, cast

from connector.billing.client import make_stripe_client
from connector.billing.gateway import StripeGateway
from connector.config import Config
from connector.crm.base import CrmAdapter
from connector.crm.factory import build_crm_adapter
from connector.mappings import CrmMapping, load_mapping
from connector.observability import Metrics
from connector.store.db import Database, holding_store
from connector.store.lease import LeaseKeeper
from connector.store.types import utcnow

log = logging.getLogger(__name__)

#: Set (to anything but "" or "0") to raise instead of log when a network call is made while
#: the calling thread holds a store session; the test suite sets it for every test.
STRICT_GUARD_ENV = "DEALBRIDGE_STRICT_NETWORK_GUARD"
#: Gateway and adapter members that never touch the network.
_OFFLINE = frozenset({"customer_url", "record_url", "parse_push", "batch_size", "dashboard_url"})
#: Every network call made while a store session was open, as "what.method" (for tests).
violations: list[str] = []
#: Stripe calls one process makes at once (a batch of invoice events fetches its invoices
#: concurrently: Stripe answers in a few hundred ms, and one at a time a burst of a thousand
#: would take minutes). Well under Stripe's rate limit.
STRIPE_CONCURRENCY = 8


class NetworkCallInTransaction(AssertionError):
    """A Stripe or CRM call was made while this thread held a store session (on SQLite the
    write lock): read, call outside, then write."""


def _strict() -> bool:
    return os.environ.get(STRICT_GUARD_ENV, "") not in ("", "0")


def _check_no_session(what: str) -> None:
    if not holding_store():
        return
    violations.append(what)
    caller = "".join(traceback.format_stack(limit=6)[:-2])
    if _strict():
        raise NetworkCallInTransaction(f"{what} called inside a store session\n{caller}")
    log.warning("%s called inside a store session (network call under a lock)", what)


class _Guarded:
    """Wraps the Stripe gateway or the CRM adapter: every call (and every page of a listing it
    returns) first checks that the calling thread holds no store session."""

    def __init__(self, target: Any, name: str) -> None:
        self._target = target
        self._name = name

    def __getattr__(self, member: str) -> Any:
        attr = getattr(self._target, member)
        if member in _OFFLINE or member.startswith("_") or not callable(attr):
            return attr
        what = f"{self._name}.{member}"

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            _check_no_session(what)
            result = attr(*args, **kwargs)
            if isinstance(result, Iterator):
                return _guarded_pages(result, what)
            return result

        return call

    def __setattr__(self, member: str, value: Any) -> None:
        # A setting changed on the wrapper (``runtime.crm.bulk_threshold = 1``) is the
        # wrapped object's: a proxy that kept it would silently ignore it.
        if member.startswith("_"):
            object.__setattr__(self, member, value)
        else:
            setattr(self._target, member, value)


def _guarded_pages(pages: Iterator[Any], what: str) -> Iterator[Any]:
    while True:
        _check_no_session(what)
        try:
            item = next(pages)
        except StopIteration:
            return
        yield item


class Runtime:
    def __init__(
        self,
        config: Config,
        *,
        db: Database | None = None,
        clock: Callable[[], datetime] = utcnow,
        crm: CrmAdapter | None = None,
        stripe: StripeGateway | None = None,
    ) -> None:
        self.config = config
        self._db = db
        self._crm = crm
        self._stripe = stripe
        self.clock = clock
        self._stripe_calls: ThreadPoolExecutor | None = None
        self._stripe_calls_lock = threading.Lock()

    @property
    def stripe_calls(self) -> ThreadPoolExecutor:
        """The threads that make concurrent Stripe calls, kept for the process's life.

        stripe-python keeps one HTTP session per thread, so a thread that outlives a batch
        keeps its connection (in production, its TLS session) for the next one; a pool per
        batch paid a new connection for every call. Built on first use, under a lock: job
        threads of one worker may ask at once, and a second pool would never be shut down.
        """
        with self._stripe_calls_lock:
            if self._stripe_calls is None:
                self._stripe_calls = ThreadPoolExecutor(
                    max_workers=STRIPE_CONCURRENCY, thread_name_prefix="dealbridge-stripe"
                )
            return self._stripe_calls

    @cached_property
    def db(self) -> Database:
        return self._db or Database(self.config.database_url)

    @cached_property
    def leases(self) -> LeaseKeeper:
        """Renews the short leases of the claims this process holds while their work runs."""
        return LeaseKeeper(self.db, self.clock)

    @cached_property
    def metrics(self) -> Metrics:
        return Metrics(lambda: self.db)

    @cached_property
    def mapping(self) -> CrmMapping:
        return load_mapping(self.config.mapping_path, self.config.crm_kind)

    @cached_property
    def crm(self) -> CrmAdapter:
        crm = self._crm if self._crm is not None else build_crm_adapter(self.config, self.mapping)
        return cast(CrmAdapter, _Guarded(crm, "crm"))

    @cached_property
    def stripe(self) -> StripeGateway:
        gateway = self._stripe
        if gateway is None:
            gateway = StripeGateway(
                make_stripe_client(self.config),
                dashboard_url=self.config.section("stripe")["dashboard_url"],
            )
        return cast(StripeGateway, _Guarded(gateway, "stripe"))

    def today(self) -> date:
        """Today in UTC: billing dates are UTC dates, whatever the server's zone."""
        return self.clock().astimezone(UTC).date()

    def close(self) -> None:
        with self._stripe_calls_lock:
            pool, self._stripe_calls = self._stripe_calls, None
        if pool is not None:
            pool.shutdown(wait=True)
        if "leases" in self.__dict__:
            self.leases.stop()
        if "db" in self.__dict__:
            self.db.dispose()
