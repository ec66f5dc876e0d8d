"""The import's bulk writes (``invoice_sync.insert_new_invoices``, ``outbox.enqueue_many``):
a backfilled invoice is stored and queued exactly as the webhook path would store and queue
it, and an import stopped anywhere resumes with one mirror row and one CRM message per
invoice."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from sqlalchemy import inspect, select

from connector.services import crm_outbound, invoice_sync
from connector.services.invoice_sync import sync_invoice
from connector.store.models import Cursor, InvoiceMirror, OutboxMessage
from tests.e2e.conftest import World
from tests.e2e.test_import import Interrupt, _assert_imported_once, _fill_stripe, _run


def _mirror_row(world: World, invoice_id: str) -> dict[str, Any]:
    assert world.runtime is not None
    with world.runtime.db.session() as session:
        mirror = session.get(InvoiceMirror, invoice_id)
        assert mirror is not None
        return {c.key: getattr(mirror, c.key) for c in inspect(InvoiceMirror).column_attrs}


def _invoice_messages(world: World) -> list[tuple[str, dict[str, Any]]]:
    assert world.runtime is not None
    with world.runtime.db.session() as session:
        rows = session.execute(
            select(OutboxMessage.ordering_key, OutboxMessage.payload)
            .where(OutboxMessage.kind == crm_outbound.UPSERT_INVOICE)
            .order_by(OutboxMessage.id)
        ).all()
    return [(key, payload) for key, payload in rows]


def test_a_backfilled_invoice_is_stored_and_queued_as_its_webhook_would_store_it(
    world: World,
) -> None:
    filled = _fill_stripe(world)
    _run(world)
    invoice_id = sorted(filled["invoices"])[0]
    backfilled = _mirror_row(world, invoice_id)
    (queued,) = [p for k, p in _invoice_messages(world) if k == f"invoice:{invoice_id}"]
    assert world.runtime is not None

    # The webhook path: fetch the invoice again and update the row through the ORM.
    sync_invoice(world.runtime, invoice_id, backfilled["stripe_customer_id"])

    handled = _mirror_row(world, invoice_id)
    assert backfilled["stripe_updated"] == 1
    assert handled["stripe_updated"] == 2
    different = {
        column
        for column in backfilled
        if column not in ("stripe_updated", "synced_at") and backfilled[column] != handled[column]
    }
    assert different == set()
    assert backfilled["status"] == "open"
    assert backfilled["amount_remaining"] > 0
    (_, requeued) = [m for m in _invoice_messages(world) if m[0] == f"invoice:{invoice_id}"][1]
    assert requeued == queued


@pytest.mark.postgresql(reason="multi-row inserts and the outbox claim differ by dialect")
@pytest.mark.parametrize("stop_after_invoices", [1, 2])
def test_an_import_stopped_between_invoice_chunks_queues_each_invoice_once(
    world: World, stop_after_invoices: int
) -> None:
    filled = _fill_stripe(world)
    _run(world, phases=("customers", "products"))
    handled = 0

    def interrupt(phase: str, count: int) -> None:
        nonlocal handled
        if phase == "invoices":
            handled += count
            if handled >= stop_after_invoices:
                raise Interrupt

    with pytest.raises(Interrupt):
        _run(world, chunk_size=1, progress=interrupt)
    assert len(_invoice_messages(world)) == stop_after_invoices

    _run(world, chunk_size=1)

    keys = Counter(key for key, _payload in _invoice_messages(world))
    assert keys == Counter(f"invoice:{i}" for i in filled["invoices"])
    _assert_imported_once(world, filled)


@pytest.mark.postgresql(reason="the chunk's transaction is rolled back by the store")
def test_a_chunk_that_fails_halfway_leaves_nothing_and_is_read_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    filled = _fill_stripe(world)
    _run(world, phases=("customers", "products"))
    real = crm_outbound.upsert_invoices

    def fail_after_the_mirror_rows(*args: Any) -> None:
        raise Interrupt  # the mirror rows of the chunk are inserted, the messages not yet

    monkeypatch.setattr(invoice_sync.crm_outbound, "upsert_invoices", fail_after_the_mirror_rows)
    with pytest.raises(Interrupt):
        _run(world, phases=("invoices",))
    assert world.runtime is not None
    with world.runtime.db.session() as session:
        assert session.scalars(select(InvoiceMirror.id)).all() == []
        assert session.scalars(select(Cursor.name)).all() == []
    assert _invoice_messages(world) == []

    monkeypatch.setattr(invoice_sync.crm_outbound, "upsert_invoices", real)
    _run(world, phases=("invoices",))

    assert Counter(key for key, _ in _invoice_messages(world)) == Counter(
        f"invoice:{i}" for i in filled["invoices"]
    )
    _assert_imported_once(world, filled)
