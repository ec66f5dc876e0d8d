"""The runtime: configuration plus the long-lived things built from it, built once.

Web, worker, clock, CLI and tests all get their collaborators from here, so wiring lives in
one place and a test can swap any part (the clock, the Stripe client, the CRM adapter).
It composes the adapters and the store and knows nothing above them: which jobs run and
which service handles what is ``connector.jobs``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import cached_property

from connector.billing.client import make_stripe_client
from connector.billing.gateway import StripeGateway
from connector.config import Config
from connector.crm.base import CrmAdapter
from connector.crm.factory import build_crm_adapter
from connector.mappings import CrmMapping, load_mapping
from connector.observability import Metrics
from connector.store.db import Database
from connector.store.types import utcnow


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

    @cached_property
    def db(self) -> Database:
        return self._db or Database(self.config.database_url)

    @cached_property
    def metrics(self) -> Metrics:
        return Metrics(lambda: self.db)

    @cached_property
    def mapping(self) -> CrmMapping:
        return load_mapping(self.config.mapping_path, self.config.crm_kind)

    @cached_property
    def crm(self) -> CrmAdapter:
        if self._crm is not None:
            return self._crm
        return build_crm_adapter(self.config, self.mapping)

    @cached_property
    def stripe(self) -> StripeGateway:
        if self._stripe is not None:
            return self._stripe
        return StripeGateway(
            make_stripe_client(self.config),
            dashboard_url=self.config.section("stripe")["dashboard_url"],
        )

    def today(self) -> date:
        """Today in UTC: billing dates are UTC dates, whatever the server's zone."""
        return self.clock().astimezone(UTC).date()

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
