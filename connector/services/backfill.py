"""Backfill: invoices of linked customers, from Stripe into the mirror and the CRM.

**Reading.** Without ``customer_ids`` the backfill lists every invoice of the Stripe account
in one paged pass (``GET /v1/invoices?limit=100``, ``starting_after``: ceil(N/100) calls for
N invoices, however many customers) and keeps those of linked customers. With
``customer_ids`` it lists each of those customers' invoices (``customer=...``), which is
cheaper when they are few. Pages are read as Stripe's JSON (``iter_invoice_pages``: no
StripeObject conversion), the next ``PAGES_AHEAD`` in a background thread while the current
one is written and sent; so a few pages and one chunk are held in memory. A chunk's mirrors
are read in one query and its deals in one per kind (``DealIndex``), not one per invoice;
invoices the mirror does not have yet (all of them, the first time; unless ``announce``) are
inserted with one multi-row INSERT for their mirror rows and one for their CRM messages
(``invoice_sync.insert_new_invoices``), the rest updated as a webhook would.

**Writing.** Invoices are written in chunks (``BATCHES_PER_CHUNK`` CRM batches): each chunk is
one transaction that updates the mirror and queues the CRM records in the outbox through the
same code as the webhook handlers (``invoice_sync.apply_invoice``). Queued records are sent
once ``flush_size(runtime)`` of them are waiting, and at the end, in one adapter call per
flush: above the Salesforce adapter's ``bulk_threshold`` that call is one Bulk API 2.0 job
(a handful of requests for thousands of records) instead of ceil(n/200) collections;
Dataverse gets ``$batch`` requests of its batch size.

Why the records go through the outbox rather than straight to ``upsert_invoices``:

* *Nothing is lost on a crash.* The CRM record is queued in the transaction that writes the
  mirror, so once a chunk commits its records are sent by the next drain (this backfill's,
  or the worker's) even if this process dies first; before it commits, nothing of the chunk
  was recorded and a re-run reads it again.
* *Re-running never duplicates.* The CRM write is an upsert by Stripe invoice id, and each
  outbox message is marked done once; a chunk read twice queues two upserts of one record.
* *Order with webhooks.* Records share the per-invoice ordering key with the webhook
  handlers, so a backfilled (older) state never overtakes a newer one a webhook queued; and
  an invoice whose mirror was written after the page was fetched is left as the webhook
  wrote it.

Records the CRM refuses stay in the outbox (failed, for a person) or are retried later, as
for any other write. A backfill sends what it queued itself (CRM records and balances, and
the subscriber events an ``announce`` emits); other queued work is the worker's.

**Events.** Historical invoices are not news: a provisioning system subscribed to
``invoice.status_changed`` would otherwise receive one event per invoice of the company's
history. The backfill does not emit it unless ``announce=True``.

**Balances.** The accounts' open balances are queued once per account and currency at the
end, not once per invoice (computed in one grouped query: ``queue_open_balances``), and sent
like the invoices.

**A customer's history on linking.** A Stripe customer that existed before dealbridge found
it (linked as ``found`` or ``chosen``) may already have invoices, some of them open or
overdue. Its link queues a ``stripe.backfill_customer`` outbox message in the link's own
transaction, so the history is mirrored (and the non-payment policy sees it) even if the
process stops right after linking; a failure is retried like any queued write.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.billing.gateway import InvoiceListParams
from connector.runtime import Runtime
from connector.services import credit, crm_outbound, outbox, subscribers
from connector.services.invoice_sync import (
    DealIndex,
    apply_invoice,
    insert_new_invoices,
    queue_open_balances,
)
from connector.store.links import IN_CHUNK
from connector.store.locks import lock
from connector.store.models import CustomerLink, InvoiceMirror

log = logging.getLogger(__name__)

#: Stripe pages read ahead while the current one is written (``prefetched``). Enough for
#: the listing to go on while a flush is sent to the CRM (a Bulk API job takes a few tenths
#: of a second; a page about 20 ms): with 2 the import waited 8.7 s of 26 s for pages at
#: full size, with 10 about 3 s, for 3-5 MiB more (docs/benchmarks.md).
PAGES_AHEAD = 10
#: CRM batches per chunk: a chunk of 5 x 200 invoices is one transaction.
BATCHES_PER_CHUNK = 5

#: Outbox kind: mirror an existing Stripe customer's invoices once it is linked.
BACKFILL_CUSTOMER = "stripe.backfill_customer"

#: Called inside each chunk's transaction with the last Stripe invoice id read so far and
#: whether the listing is exhausted: a caller stores its resume point atomically with the
#: chunk (``services.importer``).
Checkpoint = Callable[[Session, str | None, bool], None]


def flush_size(runtime: Runtime) -> int:
    """How many queued CRM records are sent in one adapter call.

    Just above the adapter's ``bulk_threshold`` when it has one, so every flush is one Bulk
    API 2.0 job; else a whole number of batches. Deliberately the *smallest* such size: a
    flush holds its records in memory (claimed rows, the CSV, the results), so a fixed size
    keeps a backfill's memory flat whatever the number of invoices, and bulk jobs of about
    2,000 records still cost a handful of calls each.
    """
    batch = max(runtime.crm.batch_size, 1)
    threshold = getattr(runtime.crm, "bulk_threshold", None)
    if isinstance(threshold, int) and threshold > 0:
        return threshold + 1
    return batch * BATCHES_PER_CHUNK


def backfill_invoices(
    runtime: Runtime,
    *,
    customer_ids: Iterable[str] | None = None,
    progress: Callable[[int], None] | None = None,
    starting_after: str | None = None,
    limit: int | None = None,
    checkpoint: Checkpoint | None = None,
    announce: bool = False,
    chunk_size: int | None = None,
    send: bool = True,
) -> int:
    """Mirror and send to the CRM the invoices of these (default: all linked) customers.

    Returns how many invoices were written; ``progress`` is called with the running count
    after each chunk. Invoices of customers not linked to a CRM account are skipped.
    Without ``customer_ids``: ``starting_after`` resumes the account-wide listing after that
    invoice, ``limit`` stops after that many invoices were read, and ``checkpoint`` records
    the position in each chunk's transaction. ``announce`` emits ``invoice.status_changed``
    for each invoice whose status is new (off: history is not news). ``chunk_size``: invoices
    per transaction (default ``BATCHES_PER_CHUNK`` CRM batches). ``send=False`` only queues
    the CRM records, for the worker's next drain (a caller that is itself an outbox sender).
    """
    chunk_size = chunk_size or max(runtime.crm.batch_size, 1) * BATCHES_PER_CHUNK
    flush = flush_size(runtime)
    accounts = _accounts_by_customer(runtime)
    written = 0
    queued = 0
    touched: dict[str, set[str]] = {}  # account -> currencies whose balance may have changed
    chunk: list[tuple[datetime, dict[str, Any], str]] = []
    last: str | None = starting_after
    exhausted = True
    if customer_ids is None:
        source = _all_invoices(runtime, starting_after)
    else:
        source = _invoices_of(runtime, list(dict.fromkeys(customer_ids)), accounts)
    for read, (fetched_at, invoice) in enumerate(source, start=1):
        if limit is not None and read > limit:
            exhausted = False
            break
        last = invoice["id"]
        account_id = accounts.get(invoice.get("customer") or "")
        if account_id is not None:
            chunk.append((fetched_at, invoice, account_id))
        if read % chunk_size == 0:
            written += _write_chunk(runtime, chunk, touched, announce, checkpoint, last, False)
            queued += len(chunk)
            chunk = []
            if send and queued >= flush:
                # Whole flushes only while listing goes on (one Bulk API job each); the
                # rest waits for the next chunk instead of going as small Collections.
                _drain(runtime, flush, only=crm_outbound.UPSERT_INVOICE, flushes=queued // flush)
                queued %= flush
            if progress is not None:
                progress(written)
    if chunk or checkpoint is not None:
        written += _write_chunk(runtime, chunk, touched, announce, checkpoint, last, exhausted)
    with runtime.db.session() as session:
        queue_open_balances(runtime, session, touched)
    if send:
        _drain(runtime, flush)
    if progress is not None:
        progress(written)
    return written


def _accounts_by_customer(runtime: Runtime) -> dict[str, str]:
    with runtime.db.session() as session:
        rows = session.execute(
            select(CustomerLink.stripe_customer_id, CustomerLink.crm_account_id)
        ).all()
    return {customer: account for customer, account in rows}


def _all_invoices(
    runtime: Runtime, starting_after: str | None
) -> Iterator[tuple[datetime, dict[str, Any]]]:
    """Every invoice of the account, newest first, one page in memory at a time."""
    params: InvoiceListParams = {"starting_after": starting_after} if starting_after else {}
    pages = ((runtime.clock(), page) for page in runtime.stripe.iter_invoice_pages(params))
    for fetched_at, page in prefetched(pages, PAGES_AHEAD):
        for invoice in page:
            yield fetched_at, invoice


T = TypeVar("T")


def prefetched(items: Iterator[T], ahead: int) -> Iterator[T]:
    """``items``, read by a background thread at most ``ahead`` items in advance: Stripe's
    next page is on its way while this one is written to the store and sent to the CRM.
    The thread only reads (no store, no CRM); its exception is raised here, in order. A
    consumer that stops early stops the thread at its next item."""
    slots: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=max(ahead, 1))
    stopped = threading.Event()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stopped.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put((False, exc))
            return
        put((False, None))

    reader = threading.Thread(target=read, name="dealbridge-prefetch", daemon=True)
    reader.start()
    try:
        while True:
            more, item = slots.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stopped.set()
        reader.join()


def _invoices_of(
    runtime: Runtime, customer_ids: list[str], accounts: dict[str, str]
) -> Iterator[tuple[datetime, dict[str, Any]]]:
    """The invoices of these customers, one list per linked customer."""
    for customer_id in customer_ids:
        if customer_id not in accounts:
            log.info("backfill: customer %s is not linked to a CRM account; skipped", customer_id)
            continue
        for page in runtime.stripe.iter_invoice_pages({"customer": customer_id}):
            fetched_at = runtime.clock()
            for invoice in page:
                yield fetched_at, invoice


def _write_chunk(
    runtime: Runtime,
    chunk: list[tuple[datetime, dict[str, Any], str]],
    touched: dict[str, set[str]],
    announce: bool,
    checkpoint: Checkpoint | None,
    last: str | None,
    exhausted: bool,
) -> int:
    written = 0
    with runtime.db.session() as session:
        for invoice_id in sorted({invoice["id"] for _, invoice, _ in chunk}):
            lock(session, f"invoice:{invoice_id}")  # one order for every writer
        mirrors = _mirrors(session, [invoice["id"] for _, invoice, _ in chunk])
        deals = DealIndex.load(session, [invoice for _, invoice, _ in chunk])
        new: dict[str, tuple[dict[str, Any], str]] = {}  # not mirrored yet: inserted together
        for fetched_at, invoice, account_id in chunk:
            mirror = mirrors.get(invoice["id"])
            if mirror is not None and (mirror.deleted or mirror.synced_at > fetched_at):
                continue  # a webhook wrote a newer state meanwhile, or the draft is gone
            if mirror is None and not announce:
                if invoice["id"] not in new:  # a listing that repeats one keeps the first
                    new[invoice["id"]] = (invoice, account_id)
                    touched.setdefault(account_id, set()).add(invoice["currency"])
                    written += 1
                continue
            changed = apply_invoice(
                runtime, session, invoice, account_id, mirror=mirror, balance=False,
                announce=announce, deals=deals,
            )  # fmt: skip
            if changed:
                touched.setdefault(account_id, set()).add(invoice["currency"])
            written += 1
        insert_new_invoices(runtime, session, list(new.values()), deals)
        if checkpoint is not None:
            checkpoint(session, last, exhausted)
    return written


def _mirrors(session: Session, invoice_ids: list[str]) -> dict[str, InvoiceMirror]:
    """The chunk's mirrored invoices, locked, in one query per ``IN_CHUNK`` ids."""
    wanted = sorted(set(invoice_ids))
    found: dict[str, InvoiceMirror] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        query = (
            select(InvoiceMirror)
            .where(InvoiceMirror.id.in_(wanted[start : start + IN_CHUNK]))
            .with_for_update()
        )
        found.update({m.id: m for m in session.scalars(query)})
    return found


def _drain(
    runtime: Runtime, flush: int, only: str | None = None, flushes: int | None = None
) -> None:
    """Send what the backfill queued until nothing more goes out (or ``flushes`` adapter
    calls of ``flush`` records were sent). CRM invoice and account writes go ``flush``
    records an adapter call (one Bulk API 2.0 job above its threshold; the adapter splits
    the rest into its own batches)."""
    senders: dict[str, outbox.Sender] = {
        crm_outbound.UPDATE_ACCOUNT: outbox.BatchedSender(crm_outbound.send_account_updates, flush),
        crm_outbound.UPSERT_INVOICE: outbox.BatchedSender(crm_outbound.send_invoice_upserts, flush),
        subscribers.DELIVER: outbox.SingleSender(subscribers.default_delivery),
    }
    chosen = {only: senders[only]} if only is not None else senders
    sent = 0
    while flushes is None or sent < flushes:
        if outbox.drain_outbox(runtime, chosen, limit=flush) == 0:
            return
        sent += 1


# --------------------------------------------------------------------------- on linking


def queue_customer_history(session: Session, account_id: str, customer_id: str) -> None:
    """In the link's transaction: mirror this existing customer's invoices soon, once."""
    outbox.enqueue(
        session,
        BACKFILL_CUSTOMER,
        f"backfill:{customer_id}",
        {"account_id": account_id, "customer_id": customer_id},
        dedupe_key=f"backfill:{account_id}:{customer_id}",
    )


def send_customer_histories(runtime: Runtime) -> int:
    """Mirror the queued customer histories now, rather than at the worker's next drain; a
    failure stays queued and is retried like any write."""
    return outbox.drain_outbox(runtime, {BACKFILL_CUSTOMER: outbox.SingleSender(backfill_customer)})


def backfill_customer(runtime: Runtime, payload: dict[str, Any]) -> None:
    """The ``stripe.backfill_customer`` sender: mirror the customer's invoices, then let the
    credit policy see them."""
    customer_id = str(payload["customer_id"])
    written = backfill_invoices(runtime, customer_ids=[customer_id], send=False)
    log.info("mirrored %d existing invoices of newly linked customer %s", written, customer_id)
    if written:
        credit.invoice_changed(runtime, customer_id)
