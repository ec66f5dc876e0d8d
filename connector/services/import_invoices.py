"""Import phase ``invoices``: the linked customers' invoices, backfilled in one paged pass."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from connector.services.backfill import backfill_invoices
from connector.services.import_run import DONE, ImportRun, read_phase_cursor, save_phase_cursor
from connector.store.models import CustomerLink


def import_invoices(run: ImportRun) -> None:
    """Backfill the linked customers' invoices in one paged pass over all of the
    account's invoices (``services.backfill``); the cursor holds the last invoice read,
    saved in the transaction of the chunk that wrote it."""
    cursor = read_phase_cursor(run.runtime, "invoices")
    if cursor == DONE:
        run.report.finished.append("invoices")
        return
    with run.runtime.db.session() as session:
        linked = session.scalar(select(func.count()).select_from(CustomerLink)) or 0
    run.report.invoice_customers = linked
    if run.options.dry_run:
        run.report.planned.append(f"would backfill the invoices of {linked} linked customers")
        return
    seen = 0
    done = False

    def forward(count: int) -> None:
        nonlocal seen
        if count > seen:
            run.report.invoices += count - seen
            run.progress("invoices", count - seen)
            seen = count

    def checkpoint(session: Any, last: str | None, exhausted: bool) -> None:
        nonlocal done
        if exhausted:
            save_phase_cursor(session, "invoices", DONE)
            done = True
        elif last:
            save_phase_cursor(session, "invoices", last)

    backfill_invoices(
        run.runtime,
        progress=forward,
        starting_after=cursor,
        limit=run.options.limit,
        checkpoint=checkpoint,
        announce=run.options.announce_invoices,
        chunk_size=run.options.chunk_size,
    )
    if done:
        run.report.finished.append("invoices")
