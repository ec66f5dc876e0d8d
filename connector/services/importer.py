"""Import from Stripe: bring an existing Stripe account under dealbridge.

Three phases, in order, each resumable:

``customers``
    Every Stripe customer is linked to a CRM account by, in order: the account already
    carrying its Stripe customer id (a previous import created or linked it); its metadata
    ``import.account_id_metadata_key`` naming an account that exists; its email matching the
    contacts of exactly one account (any case); the configured ``import.match_rule`` (name,
    or a metadata value, equal to exactly one account's name). The rest are listed for a
    person (the report and the audit log, ``import.customer_unmatched``) or, with
    ``create_missing_accounts``, created in the CRM with the customer id written on them.
    Links are ``CustomerLink`` rows (source ``imported``), one per account; the accounts get
    their Stripe customer id and link in one batched CRM write per chunk.
``products``
    Stripe products become CRM products (upsert by Stripe product id), then Stripe prices
    become price book entries (upsert by Stripe price id).
``invoices``
    The linked customers' invoices are backfilled (``services.backfill``) in one paged pass
    over the account's invoices, chunk by chunk; each chunk's transaction also moves the
    phase's cursor (the last invoice read). ``invoice.status_changed`` is not emitted for
    them unless ``announce_invoices``: historical invoices are not news.

**Resuming.** Stripe lists newest first; a phase reads ``chunk_size`` objects, writes them
to the CRM in one batched call (Bulk API 2.0 above the adapter's threshold), then commits
its links and a ``Cursor`` row (``import.stripe.<phase>`` = the last Stripe id handled) in
one transaction. An interrupted run continues after that id; a chunk cut short is done
again, which is harmless: links are unique per account and CRM writes are upserts by
Stripe id. A phase that finishes marks its cursor ``done``; once every phase a run asked
for is done the cursors are removed, so the next import starts from the top again (and,
being idempotent, only adds what is new).

**Dry run** reads Stripe and the CRM and reports what it would link, create and upsert;
it writes nothing anywhere (no CRM write, no Stripe write, no database row).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from connector.crm.base import AccountDirectory, PriceEntryRecord, ProductRecord, WriteResult
from connector.domain.deal import Address
from connector.runtime import Runtime
from connector.services import crm_outbound
from connector.services.backfill import backfill_invoices
from connector.store import audit
from connector.store.cursors import forget_cursor, read_cursor, save_cursor
from connector.store.models import CatalogLink, CustomerLink

log = logging.getLogger(__name__)

PHASES = ("customers", "products", "invoices")
CURSOR_PREFIX = "import.stripe."
DONE = "done"
ACTOR = "dealbridge import"

Progress = Callable[[str, int], None]


class ImportInterrupted(Exception):
    """A CRM write the CRM may accept later failed; run the import again to resume."""


@dataclass(frozen=True)
class Unmatched:
    customer_id: str
    name: str | None
    email: str | None
    reason: str


@dataclass
class ImportReport:
    dry_run: bool
    linked: dict[str, int] = field(default_factory=dict)  # by how the account was found
    already_linked: int = 0
    created_accounts: list[tuple[str, str]] = field(default_factory=list)  # (customer, account)
    unmatched: list[Unmatched] = field(default_factory=list)
    products: int = 0
    prices: int = 0
    invoices: int = 0
    invoice_customers: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (stripe id, error)
    planned: list[str] = field(default_factory=list)  # what a dry run would do, line by line
    finished: list[str] = field(default_factory=list)  # phases that reached their end

    @property
    def linked_total(self) -> int:
        return sum(self.linked.values())


@dataclass(frozen=True)
class ImportOptions:
    dry_run: bool = False
    phases: Sequence[str] = PHASES
    create_missing_accounts: bool | None = None  # None: the config's import section
    limit: int | None = None  # at most this many Stripe objects per phase in this run
    chunk_size: int | None = None  # None: the config's import section
    page_size: int = 100
    #: Emit ``invoice.status_changed`` for backfilled invoices (history is not news: off).
    announce_invoices: bool = False


# --------------------------------------------------------------------------- cursors


def _cursor_name(phase: str) -> str:
    return CURSOR_PREFIX + phase


def read_phase_cursor(runtime: Runtime, phase: str) -> str | None:
    with runtime.db.session() as session:
        return read_cursor(session, _cursor_name(phase))


def _save_cursor(session: Any, phase: str, value: str) -> None:
    save_cursor(session, _cursor_name(phase), value)


def reset(runtime: Runtime, phases: Sequence[str] = (*PHASES, "prices")) -> None:
    """Forget where an interrupted import stopped; the next one starts from the top."""
    with runtime.db.session() as session:
        for phase in phases:
            forget_cursor(session, _cursor_name(phase))


# --------------------------------------------------------------------------- entry point


def import_stripe(
    runtime: Runtime, options: ImportOptions | None = None, *, progress: Progress | None = None
) -> ImportReport:
    options = options or ImportOptions()
    settings = runtime.config.section("import")
    chunk_size = options.chunk_size or int(settings["chunk_size"])
    create = (
        bool(settings["create_missing_accounts"])
        if options.create_missing_accounts is None
        else options.create_missing_accounts
    )
    report = ImportReport(dry_run=options.dry_run)
    notify: Progress = progress or (lambda _phase, _n: None)
    runner = _Run(runtime, options, report, notify, chunk_size, create)
    for phase in PHASES:
        if phase not in options.phases:
            continue
        if phase == "customers":
            runner.customers()
        elif phase == "products":
            runner.products()
        else:
            runner.invoices()
    wanted = [p for p in PHASES if p in options.phases]
    if not options.dry_run and all(p in report.finished for p in wanted):
        reset(runtime, [*wanted, *(["prices"] if "products" in wanted else [])])
    return report


class _Run:
    def __init__(
        self,
        runtime: Runtime,
        options: ImportOptions,
        report: ImportReport,
        progress: Progress,
        chunk_size: int,
        create: bool,
    ) -> None:
        self.runtime = runtime
        self.options = options
        self.report = report
        self.progress = progress
        self.chunk_size = chunk_size
        self.create = create
        self.settings = runtime.config.section("import")
        self._id_index: _AccountIds | None = None

    # ------------------------------------------------------------------ paging

    def _chunks(self, resource: str, phase: str) -> Any:
        """Chunks of Stripe objects after the phase's cursor, each with ``last`` (more
        follow?); stops at ``options.limit`` objects. Yields nothing for a finished phase."""
        cursor = read_phase_cursor(self.runtime, phase)
        if cursor == DONE:
            self.report.finished.append(phase)
            return
        budget = self.options.limit
        starting_after = cursor
        while True:
            chunk: list[Any] = []
            has_more = True
            while len(chunk) < self.chunk_size and has_more:
                want = min(self.options.page_size, self.chunk_size - len(chunk))
                if budget is not None:
                    want = min(want, budget)
                if want <= 0:
                    break
                page, has_more = self.runtime.stripe.list_page(
                    resource, starting_after=starting_after, limit=want
                )
                chunk.extend(page)
                if budget is not None:
                    budget -= len(page)
                if page:
                    starting_after = page[-1].id
            exhausted = not has_more
            if chunk or exhausted:
                yield chunk, exhausted
            if exhausted or (budget is not None and budget <= 0):
                return

    def _commit_chunk(self, phase: str, chunk: list[Any], exhausted: bool, write: Any) -> None:
        """Run ``write(session)`` and move the phase's cursor past ``chunk``, atomically."""
        with self.runtime.db.session() as session:
            write(session)
            if exhausted:
                _save_cursor(session, phase, DONE)
            elif chunk:
                _save_cursor(session, phase, chunk[-1].id)
        if exhausted:
            self.report.finished.append(phase)

    # ------------------------------------------------------------------ customers

    def customers(self) -> None:
        directory = self.runtime.crm.account_directory()
        taken = self._linked_accounts()
        for chunk, exhausted in self._chunks("customers", "customers"):
            self._customer_chunk(chunk, exhausted, directory, taken)
            self.progress("customers", len(chunk))

    def _linked_accounts(self) -> dict[str, str]:
        with self.runtime.db.session() as session:
            rows = session.execute(
                select(CustomerLink.crm_account_id, CustomerLink.stripe_customer_id)
            ).all()
        return {account: customer for account, customer in rows}

    def _customer_chunk(
        self,
        chunk: list[Any],
        exhausted: bool,
        directory: AccountDirectory,
        taken: dict[str, str],
    ) -> None:
        report = self.report
        linked_customers = set(taken.values())
        links: list[tuple[str, str, str]] = []  # (customer, account, how)
        unmatched: list[Unmatched] = []
        for customer in chunk:
            if getattr(customer, "deleted", False):
                continue
            if customer.id in linked_customers:
                report.already_linked += 1
                continue
            account, how, reason, ambiguous = self._match(customer, directory)
            # Only a customer no account matches may get a new one: when several accounts
            # match, or the match is linked to someone else, a person decides, not a guess.
            may_create = account is None and not ambiguous
            if account is not None and account in taken:
                reason = f"its account {account} is already linked to {taken[account]}"
                account = None
            if account is None and may_create and self.create:
                account, how = self._create_account(customer), "created"
            if account is None:
                unmatched.append(
                    Unmatched(customer.id, customer.name, customer.email, reason or "no match")
                )
                continue
            taken[account] = customer.id
            linked_customers.add(customer.id)
            links.append((customer.id, account, how))
        for customer_id, account, how in links:
            report.linked[how] = report.linked.get(how, 0) + 1
            if self.options.dry_run:
                verb = "create an account for" if how == "created" else "link"
                report.planned.append(f"would {verb} {customer_id} → account {account} ({how})")
        report.unmatched.extend(unmatched)
        if self.options.dry_run:
            return
        results = self.runtime.crm.update_accounts(
            [
                (
                    account,
                    {
                        "stripe_customer_id": customer_id,
                        "stripe_customer_url": self.runtime.stripe.customer_url(customer_id),
                    },
                )
                for customer_id, account, _how in links
            ]
        )
        failed = {r.key for r in results if not r.ok}

        def write(session: Any) -> None:
            for customer_id, account, how in links:
                session.add(
                    CustomerLink(
                        crm_account_id=account,
                        stripe_customer_id=customer_id,
                        source="imported",
                        linked_at=self.runtime.clock(),
                    )
                )
                audit.record(
                    session,
                    actor=ACTOR,
                    action="customer.imported",
                    subject_type="account",
                    subject_id=account,
                    stripe_customer_id=customer_id,
                    matched_by=how,
                )
                if account in failed:
                    # The outbox retries the write-back until the CRM takes it.
                    crm_outbound.link_account(self.runtime, session, account, customer_id)
            for item in unmatched:
                audit.record(
                    session,
                    actor=ACTOR,
                    action="import.customer_unmatched",
                    subject_type="stripe_customer",
                    subject_id=item.customer_id,
                    name=item.name,
                    email=item.email,
                    reason=item.reason,
                )

        self._commit_chunk("customers", chunk, exhausted, write)

    def _match(
        self, customer: Any, directory: AccountDirectory
    ) -> tuple[str | None, str, str | None, bool]:
        """(account, how, why not, ambiguous): the linking order of the module docstring.

        ``ambiguous`` is true when several accounts matched: not a case for a new account.
        """
        known = directory.by_stripe_customer.get(customer.id)
        if known:
            return known, "stripe_id", None, False
        metadata = customer.metadata.to_dict() if customer.metadata else {}
        wanted = metadata.get(self.settings["account_id_metadata_key"])
        if wanted:
            found = self._ids(directory).find(str(wanted))
            if found:
                return found, "metadata", None, False
        reason = None
        ambiguous = False
        email = (customer.email or "").strip().casefold()
        if email:
            accounts = directory.by_email.get(email, [])
            if len(accounts) == 1:
                return accounts[0], "email", None, False
            if len(accounts) > 1:
                reason = f"{len(accounts)} accounts have a contact with {customer.email}"
                ambiguous = True
        rule = self.settings["match_rule"]
        value: Any = None
        if rule == "name":
            value = customer.name
        elif rule == "metadata":
            value = metadata.get(self.settings["match_metadata_key"])
        if value:
            accounts = directory.by_name.get(str(value).strip().casefold(), [])
            if len(accounts) == 1:
                return accounts[0], rule, None, False
            if len(accounts) > 1:
                reason = reason or f"{len(accounts)} accounts are named {value!r}"
                ambiguous = True
        if wanted and reason is None:
            reason = f"metadata names account {wanted}, which does not exist in the CRM"
        return None, "", reason, ambiguous

    def _ids(self, directory: AccountDirectory) -> _AccountIds:
        if self._id_index is None or self._id_index.ids is not directory.ids:
            self._id_index = _AccountIds(directory.ids)
        return self._id_index

    def _create_account(self, customer: Any) -> str:
        name = customer.name or customer.email or customer.id
        if self.options.dry_run:
            return f"(new account {name!r})"
        address = customer.address
        return self.runtime.crm.create_account(
            name,
            customer.email,
            Address(
                line1=address.line1,
                line2=address.line2,
                city=address.city,
                state=address.state,
                postal_code=address.postal_code,
                country=address.country,
            )
            if address
            else None,
            stripe_customer_id=customer.id,
        )

    # ------------------------------------------------------------------ products, prices

    def products(self) -> None:
        for chunk, exhausted in self._chunks("products", "products"):
            records = [
                ProductRecord(
                    stripe_product_id=p.id,
                    name=p.name,
                    sku=p.metadata.to_dict().get("sku") if p.metadata else None,
                    active=bool(p.active),
                    description=p.description,
                )
                for p in chunk
                if not getattr(p, "deleted", False)
            ]
            if self.options.dry_run:
                self.report.planned += [
                    f"would upsert product {r.stripe_product_id}" for r in records
                ]
                self.report.products += len(records)
                self.progress("products", len(chunk))
                continue
            results = self._checked(self.runtime.crm.upsert_products(records))
            self.report.products += sum(1 for r in results if r.ok)

            def write(session: Any, results: list[WriteResult] = results) -> None:
                for result in results:
                    if result.ok and result.crm_id:
                        key = f"product:{result.crm_id}"
                        if session.get(CatalogLink, key) is None:
                            session.add(CatalogLink(key=key, kind="product", stripe_id=result.key))

            self._commit_chunk("products", chunk, exhausted, write)
            self.progress("products", len(chunk))
        if "products" not in self.report.finished and not self.options.dry_run:
            return  # prices wait for every product
        for chunk, exhausted in self._chunks("prices", "prices"):
            entries = [
                PriceEntryRecord(
                    stripe_price_id=p.id,
                    stripe_product_id=p.product if isinstance(p.product, str) else p.product.id,
                    currency=p.currency,
                    unit_amount=p.unit_amount,
                    active=bool(p.active),
                    recurring_interval=p.recurring.interval if p.recurring else None,
                    nickname=p.nickname,
                )
                for p in chunk
            ]
            if self.options.dry_run:
                self.report.planned += [f"would upsert price {e.stripe_price_id}" for e in entries]
                self.report.prices += len(entries)
                self.progress("prices", len(chunk))
                continue
            results = self._checked(self.runtime.crm.upsert_price_entries(entries))
            self.report.prices += sum(1 for r in results if r.ok)
            self._commit_chunk("prices", chunk, exhausted, lambda _session: None)
            self.progress("prices", len(chunk))
        if "prices" in self.report.finished and "products" in self.report.finished:
            self.report.finished.remove("prices")
        elif "products" in self.report.finished:
            self.report.finished.remove("products")  # interrupted among the prices

    def _checked(self, results: list[WriteResult]) -> list[WriteResult]:
        """Stop (without moving the cursor) when the CRM may take a write later; list
        refusals a person must look at."""
        retry = [r for r in results if not r.ok and r.retryable]
        if retry:
            raise ImportInterrupted(
                f"the CRM could not take {len(retry)} writes now ({retry[0].error}); "
                "run the import again to resume"
            )
        refused = [(r.key, r.error or "refused") for r in results if not r.ok]
        self.report.failures.extend(refused)
        if refused:
            with self.runtime.db.session() as session:
                for key, error in refused:
                    audit.record(
                        session,
                        actor=ACTOR,
                        action="import.crm_refused",
                        subject_type="stripe_object",
                        subject_id=key,
                        error=error,
                    )
        return results

    # ------------------------------------------------------------------ invoices

    def invoices(self) -> None:
        """Backfill the linked customers' invoices in one paged pass over all of the
        account's invoices (``services.backfill``); the cursor holds the last invoice read,
        saved in the transaction of the chunk that wrote it."""
        cursor = read_phase_cursor(self.runtime, "invoices")
        if cursor == DONE:
            self.report.finished.append("invoices")
            return
        with self.runtime.db.session() as session:
            linked = session.scalar(select(func.count()).select_from(CustomerLink)) or 0
        self.report.invoice_customers = linked
        if self.options.dry_run:
            self.report.planned.append(f"would backfill the invoices of {linked} linked customers")
            return
        seen = 0
        done = False

        def forward(count: int) -> None:
            nonlocal seen
            if count > seen:
                self.report.invoices += count - seen
                self.progress("invoices", count - seen)
                seen = count

        def checkpoint(session: Any, last: str | None, exhausted: bool) -> None:
            nonlocal done
            if exhausted:
                _save_cursor(session, "invoices", DONE)
                done = True
            elif last:
                _save_cursor(session, "invoices", last)

        backfill_invoices(
            self.runtime,
            progress=forward,
            starting_after=cursor,
            limit=self.options.limit,
            checkpoint=checkpoint,
            announce=self.options.announce_invoices,
            chunk_size=self.options.chunk_size,
        )
        if done:
            self.report.finished.append("invoices")


class _AccountIds:
    """Account ids as people and systems write them: Salesforce ids by their first 15
    characters (the 18-character form adds a case-safe suffix), GUIDs ignoring case."""

    def __init__(self, ids: frozenset[str]) -> None:
        self.ids = ids
        self.index: dict[str, str] = {}
        for account in ids:
            self.index.setdefault(account.casefold(), account)
            if len(account) == 18 and "-" not in account:
                self.index.setdefault(account[:15], account)

    def find(self, wanted: str) -> str | None:
        if wanted in self.ids:
            return wanted
        if len(wanted) in (15, 18) and "-" not in wanted:
            return self.index.get(wanted[:15])
        return self.index.get(wanted.casefold())
