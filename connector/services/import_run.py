"""What every phase of an import from Stripe shares: its options and report, the cursors
that let it resume, and the paging through Stripe's lists (see ``importer`` for the phases).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from connector.crm.base import WriteResult
from connector.runtime import Runtime
from connector.store import audit
from connector.store.cursors import forget_cursor, read_cursor, save_cursor

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


def cursor_name(phase: str) -> str:
    return CURSOR_PREFIX + phase


def read_phase_cursor(runtime: Runtime, phase: str) -> str | None:
    with runtime.db.session() as session:
        return read_cursor(session, cursor_name(phase))


def save_phase_cursor(session: Any, phase: str, value: str) -> None:
    save_cursor(session, cursor_name(phase), value)


def reset(runtime: Runtime, phases: Sequence[str] = (*PHASES, "prices")) -> None:
    """Forget where an interrupted import stopped; the next one starts from the top."""
    with runtime.db.session() as session:
        for phase in phases:
            forget_cursor(session, cursor_name(phase))


class ImportRun:
    """One run of the import: its options, its report, and the paging and cursor moves every
    phase shares."""

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

    def chunks(
        self,
        resource: str,
        phase: str,
        keep: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> Iterator[tuple[list[dict[str, Any]], bool]]:
        """Chunks of Stripe objects (Stripe's JSON) after the phase's cursor, each with
        ``exhausted`` (no more follow); stops at ``options.limit`` objects. Yields nothing
        for a finished phase. ``keep`` reduces each object to what the phase reads, as its
        page arrives, so a chunk of thousands holds only that (it must keep ``id``)."""
        cursor = read_phase_cursor(self.runtime, phase)
        if cursor == DONE:
            self.report.finished.append(phase)
            return
        budget = self.options.limit
        starting_after = cursor
        while True:
            chunk: list[dict[str, Any]] = []
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
                chunk.extend(page if keep is None else map(keep, page))
                if budget is not None:
                    budget -= len(page)
                if page:
                    starting_after = page[-1]["id"]
            exhausted = not has_more
            if chunk or exhausted:
                yield chunk, exhausted
            if exhausted or (budget is not None and budget <= 0):
                return

    def commit_chunk(
        self, phase: str, chunk: list[dict[str, Any]], exhausted: bool, write: Any
    ) -> None:
        """Run ``write(session)`` and move the phase's cursor past ``chunk``, atomically."""
        with self.runtime.db.session() as session:
            write(session)
            if exhausted:
                save_phase_cursor(session, phase, DONE)
            elif chunk:
                save_phase_cursor(session, phase, chunk[-1]["id"])
        if exhausted:
            self.report.finished.append(phase)

    def checked(self, results: list[WriteResult]) -> list[WriteResult]:
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
