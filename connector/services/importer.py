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

from connector.runtime import Runtime
from connector.services.import_catalog import import_catalog
from connector.services.import_customers import import_customers
from connector.services.import_invoices import import_invoices
from connector.services.import_run import (
    PHASES,
    ImportOptions,
    ImportReport,
    ImportRun,
    Progress,
    reset,
)


def import_stripe(
    runtime: Runtime, options: ImportOptions | None = None, *, progress: Progress | None = None
) -> ImportReport:
    """Run the phases ``options`` asks for, in order, each from where it last stopped."""
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
    run = ImportRun(runtime, options, report, notify, chunk_size, create)
    for phase in PHASES:
        if phase not in options.phases:
            continue
        if phase == "customers":
            import_customers(run)
        elif phase == "products":
            import_catalog(run)
        else:
            import_invoices(run)
    wanted = [p for p in PHASES if p in options.phases]
    if not options.dry_run and all(p in report.finished for p in wanted):
        reset(runtime, [*wanted, *(["prices"] if "products" in wanted else [])])
    return report
