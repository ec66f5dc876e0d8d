"""Credit notes: issuing them on open and paid invoices, listing, updating and voiding."""

from __future__ import annotations

import pytest
import requests
import stripe
from stripe.params import CreditNoteCreateParams

from sandboxes.stripe import StripeSandbox

from .conftest import DAY, START, FakeClock, Receiver


def _draft(
    client: stripe.StripeClient, customer: stripe.Customer, amount: int = 1500
) -> stripe.Invoice:
    client.v1.invoice_items.create(
        params={
            "customer": customer.id,
            "amount": amount,
            "currency": "usd",
            "description": "Setup fee",
        }
    )
    return client.v1.invoices.create(
        params={"customer": customer.id, "pending_invoice_items_behavior": "include"}
    )


def _open(
    client: stripe.StripeClient, customer: stripe.Customer, amount: int = 1500
) -> stripe.Invoice:
    return client.v1.invoices.finalize_invoice(_draft(client, customer, amount).id)


def _paid(
    client: stripe.StripeClient, customer: stripe.Customer, amount: int = 1500
) -> stripe.Invoice:
    invoice = _open(client, customer, amount)
    return client.v1.invoices.pay(invoice.id, params={"paid_out_of_band": True})


def _types(client: stripe.StripeClient) -> list[str]:
    """Every event type recorded so far, oldest first (but the invoice's PaymentIntent's)."""
    events = client.v1.events.list(params={"limit": 100}).data[::-1]
    return [str(e.type) for e in events if not e.type.startswith("payment_intent.")]


# -- issuing ------------------------------------------------------------------------------------


def test_a_credit_note_on_an_open_invoice_lowers_its_amount_due_and_remaining(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _open(client, customer)
    note = client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 500})
    assert note.id.startswith("cn_")
    assert (note.object, note.status, note.type) == ("credit_note", "issued", "pre_payment")
    assert (note.pre_payment_amount, note.post_payment_amount) == (500, 0)
    after = client.v1.invoices.retrieve(invoice.id)
    assert after.status == "open"
    assert (after.amount_due, after.amount_remaining) == (1000, 1000)
    assert after.pre_payment_credit_notes_amount == 500
    assert after.post_payment_credit_notes_amount == 0
    assert after.total == 1500


def test_a_credit_note_is_shaped_like_stripes(
    client: stripe.StripeClient, customer: stripe.Customer, clock: FakeClock
) -> None:
    invoice = _open(client, customer)
    clock.advance(60)
    note = client.v1.credit_notes.create(
        params={
            "invoice": invoice.id,
            "amount": 500,
            "memo": "Late delivery",
            "reason": "order_change",
            "metadata": {"crm_id": "006A"},
        }
    )
    assert (note.amount, note.subtotal, note.subtotal_excluding_tax) == (500, 500, 500)
    assert (note.total, note.total_excluding_tax) == (500, 500)
    assert (note.customer, note.invoice, note.currency) == (customer.id, invoice.id, "usd")
    assert (note.created, note.effective_at) == (START + 60, START + 60)
    assert (note.memo, note.reason) == ("Late delivery", "order_change")
    assert note.to_dict()["metadata"] == {"crm_id": "006A"}
    assert note.livemode is False
    assert note.voided_at is None
    assert note.out_of_band_amount is None
    assert note.customer_balance_transaction is None
    assert note.refunds == []
    assert note.lines.url == f"/v1/credit_notes/{note.id}/lines"


def test_credit_notes_are_numbered_after_their_invoice(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _open(client, customer)
    first = client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 100})
    second = client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 100})
    assert first.number == f"{invoice.number}-CN-01"
    assert second.number == f"{invoice.number}-CN-02"


def test_custom_line_items_make_up_the_credit_note(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _open(client, customer)
    note = client.v1.credit_notes.create(
        params={
            "invoice": invoice.id,
            "lines": [
                {
                    "type": "custom_line_item",
                    "unit_amount": 200,
                    "quantity": 2,
                    "description": "Service credit",
                }
            ],
        }
    )
    assert note.amount == 400
    [line] = note.lines.data
    assert line.id.startswith("cnli_")
    assert (line.object, line.type) == ("credit_note_line_item", "custom_line_item")
    assert (line.amount, line.unit_amount, line.quantity) == (400, 200, 2)
    assert line.description == "Service credit"
    assert client.v1.invoices.retrieve(invoice.id).amount_due == 1100


def test_an_invoice_line_item_can_be_credited_by_quantity(
    client: stripe.StripeClient, customer: stripe.Customer, one_time_price: stripe.Price
) -> None:
    client.v1.invoice_items.create(
        params={"customer": customer.id, "pricing": {"price": one_time_price.id}, "quantity": 3}
    )
    draft = client.v1.invoices.create(
        params={"customer": customer.id, "pending_invoice_items_behavior": "include"}
    )
    invoice = client.v1.invoices.finalize_invoice(draft.id)
    invoice_line = invoice.lines.data[0]
    note = client.v1.credit_notes.create(
        params={
            "invoice": invoice.id,
            "lines": [
                {"type": "invoice_line_item", "invoice_line_item": invoice_line.id, "quantity": 1}
            ],
        }
    )
    [line] = note.lines.data
    assert (line.type, line.invoice_line_item) == ("invoice_line_item", invoice_line.id)
    assert (line.amount, line.quantity, line.unit_amount) == (5000, 1, 5000)
    assert client.v1.invoices.retrieve(invoice.id).amount_due == 10_000


def test_an_invoice_line_item_cannot_be_credited_beyond_its_amount(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _open(client, customer)
    line_id = invoice.lines.data[0].id
    client.v1.credit_notes.create(
        params={
            "invoice": invoice.id,
            "lines": [{"type": "invoice_line_item", "invoice_line_item": line_id, "amount": 1000}],
        }
    )
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.credit_notes.create(
            params={
                "invoice": invoice.id,
                "lines": [
                    {"type": "invoice_line_item", "invoice_line_item": line_id, "amount": 600}
                ],
            }
        )
    assert raised.value.http_status == 400
    assert raised.value.param == "lines[0][amount]"


def test_fully_crediting_an_open_invoice_marks_it_paid(
    client: stripe.StripeClient, customer: stripe.Customer, clock: FakeClock
) -> None:
    invoice = _open(client, customer)
    clock.advance(120)
    client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 1500})
    paid = client.v1.invoices.retrieve(invoice.id)
    assert paid.status == "paid"
    assert (paid.amount_due, paid.amount_paid, paid.amount_remaining) == (0, 0, 0)
    assert paid.pre_payment_credit_notes_amount == 1500
    assert paid.status_transitions.paid_at == START + 120
    assert _types(client)[-3:] == ["invoice.updated", "invoice.paid", "credit_note.created"]
    assert "invoice.payment_succeeded" not in _types(client)


def test_a_post_payment_credit_note_on_a_paid_invoice_is_credited_out_of_band(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _paid(client, customer)
    note = client.v1.credit_notes.create(
        params={"invoice": invoice.id, "amount": 400, "out_of_band_amount": 400}
    )
    assert note.type == "post_payment"
    assert (note.pre_payment_amount, note.post_payment_amount) == (0, 400)
    assert note.out_of_band_amount == 400
    after = client.v1.invoices.retrieve(invoice.id)
    assert after.status == "paid"
    assert (after.amount_due, after.amount_paid, after.amount_remaining) == (1500, 1500, 0)
    assert after.post_payment_credit_notes_amount == 400
    assert after.pre_payment_credit_notes_amount == 0


def test_credit_amount_credits_the_customers_balance(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _paid(client, customer)
    note = client.v1.credit_notes.create(
        params={
            "invoice": invoice.id,
            "amount": 500,
            "credit_amount": 300,
            "out_of_band_amount": 200,
        }
    )
    assert str(note.customer_balance_transaction).startswith("cbtxn_")
    assert client.v1.customers.retrieve(customer.id).balance == -300
    event = client.v1.events.list(params={"type": "customer.updated"}).data[0]
    assert event.data.to_dict()["previous_attributes"] == {"balance": 0}


def test_a_post_payment_credit_note_must_be_covered_exactly(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _paid(client, customer)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 400})
    assert raised.value.http_status == 400
    assert raised.value.user_message == (
        "The sum of credit amount, refund amount and out of band amount ($0.00) must equal "
        "the credit note amount ($4.00)."
    )


# -- refusals -----------------------------------------------------------------------------------


def test_a_credit_note_on_a_draft_invoice_is_refused(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    draft = _draft(client, customer)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.credit_notes.create(params={"invoice": draft.id, "amount": 100})
    assert raised.value.http_status == 400
    assert raised.value.error is not None
    assert raised.value.error.type == "invalid_request_error"
    assert raised.value.param == "invoice"
    assert client.v1.credit_notes.list().data == []


def test_a_credit_note_on_a_void_invoice_is_refused(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    voided = client.v1.invoices.void_invoice(_open(client, customer).id)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.credit_notes.create(params={"invoice": voided.id, "amount": 100})
    assert (raised.value.http_status, raised.value.param) == (400, "invoice")


def test_a_credit_note_for_an_unknown_invoice_is_refused(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.credit_notes.create(params={"invoice": "in_missing", "amount": 100})
    assert (raised.value.http_status, raised.value.code) == (400, "resource_missing")
    assert raised.value.param == "invoice"


def test_a_credit_note_over_the_invoice_total_is_refused_and_changes_nothing(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _open(client, customer)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 1501})
    assert raised.value.http_status == 400
    assert raised.value.error is not None
    assert raised.value.error.type == "invalid_request_error"
    assert raised.value.param == "amount"
    assert client.v1.invoices.retrieve(invoice.id).amount_due == 1500
    assert client.v1.credit_notes.list().data == []


def test_all_credit_notes_together_cannot_exceed_the_invoice_total(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _paid(client, customer)
    client.v1.credit_notes.create(
        params={"invoice": invoice.id, "amount": 1000, "out_of_band_amount": 1000}
    )
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.credit_notes.create(
            params={"invoice": invoice.id, "amount": 600, "out_of_band_amount": 600}
        )
    assert (raised.value.http_status, raised.value.param) == (400, "amount")


def test_a_credit_note_needs_an_amount_or_lines(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _open(client, customer)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.credit_notes.create(params={"invoice": invoice.id})
    assert raised.value.http_status == 400


def test_an_unknown_reason_is_refused(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _open(client, customer)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.credit_notes.create(
            params={"invoice": invoice.id, "amount": 100, "reason": "goodwill"}
        )
    assert raised.value.param == "reason"


# -- listing, retrieving, updating --------------------------------------------------------------


def test_credit_notes_are_listed_newest_first_and_filtered_by_customer(
    client: stripe.StripeClient, customer: stripe.Customer, clock: FakeClock
) -> None:
    other = client.v1.customers.create(params={"email": "grace@example.com"})
    invoice = _open(client, customer)
    first = client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 100})
    clock.advance(10)
    second = client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 100})
    client.v1.credit_notes.create(params={"invoice": _open(client, other).id, "amount": 100})
    page = client.v1.credit_notes.list(params={"customer": customer.id, "limit": 1})
    assert [n.id for n in page.data] == [second.id]
    assert page.has_more is True
    rest = client.v1.credit_notes.list(
        params={"customer": customer.id, "limit": 1, "starting_after": second.id}
    )
    assert [n.id for n in rest.data] == [first.id]
    assert rest.has_more is False


def test_credit_notes_are_filtered_by_invoice_and_paged_backwards(
    client: stripe.StripeClient, customer: stripe.Customer, clock: FakeClock
) -> None:
    invoice = _open(client, customer)
    other_invoice = _open(client, customer)
    notes = []
    for _ in range(3):
        clock.advance(10)
        notes.append(client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 100}))
    client.v1.credit_notes.create(params={"invoice": other_invoice.id, "amount": 100})
    listed = client.v1.credit_notes.list(params={"invoice": invoice.id})
    assert [n.id for n in listed.data] == [n.id for n in reversed(notes)]
    before = client.v1.credit_notes.list(
        params={"invoice": invoice.id, "ending_before": notes[0].id, "limit": 1}
    )
    assert [n.id for n in before.data] == [notes[1].id]
    assert before.has_more is True


def test_every_credit_note_can_be_iterated_with_auto_paging(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _open(client, customer)
    ids = {
        client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 10}).id
        for _ in range(5)
    }
    pages = client.v1.credit_notes.list(params={"invoice": invoice.id, "limit": 2})
    assert {n.id for n in pages.auto_paging_iter()} == ids


def test_a_credit_note_can_be_retrieved(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    note = client.v1.credit_notes.create(
        params={"invoice": _open(client, customer).id, "amount": 100}
    )
    assert client.v1.credit_notes.retrieve(note.id).to_dict() == note.to_dict()


def test_an_unknown_credit_note_is_a_404(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.credit_notes.retrieve("cn_missing")
    assert (raised.value.http_status, raised.value.code) == (404, "resource_missing")


def test_the_lines_of_a_credit_note_can_be_listed(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    note = client.v1.credit_notes.create(
        params={
            "invoice": _open(client, customer).id,
            "lines": [
                {"type": "custom_line_item", "unit_amount": 100, "description": "A"},
                {"type": "custom_line_item", "unit_amount": 200, "description": "B"},
            ],
        }
    )
    page = client.v1.credit_notes.line_items.list(note.id, params={"limit": 1})
    assert [line.description for line in page.data] == ["A"]
    assert page.has_more is True


def test_updating_the_memo_emits_credit_note_updated_with_previous_attributes(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    note = client.v1.credit_notes.create(
        params={"invoice": _open(client, customer).id, "amount": 100}
    )
    updated = client.v1.credit_notes.update(
        note.id, params={"memo": "Goodwill", "metadata": {"k": "v"}}
    )
    assert updated.memo == "Goodwill"
    assert updated.to_dict()["metadata"] == {"k": "v"}
    event = client.v1.events.list(params={"type": "credit_note.updated"}).data[0]
    assert event.data.object["id"] == note.id
    assert event.data.to_dict()["previous_attributes"] == {"memo": None, "metadata": {"k": None}}


def test_the_credit_note_pdf_renders(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    note = client.v1.credit_notes.create(
        params={"invoice": _open(client, customer).id, "amount": 100}
    )
    pdf = requests.get(note.pdf, timeout=5)
    assert pdf.status_code == 200
    assert pdf.content.startswith(b"%PDF-")


# -- voiding ------------------------------------------------------------------------------------


def test_voiding_gives_the_amount_back_to_the_open_invoice(
    client: stripe.StripeClient, customer: stripe.Customer, clock: FakeClock
) -> None:
    invoice = _open(client, customer)
    note = client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 500})
    clock.advance(30)
    voided = client.v1.credit_notes.void_credit_note(note.id)
    assert (voided.status, voided.voided_at) == ("void", START + 30)
    after = client.v1.invoices.retrieve(invoice.id)
    assert (after.amount_due, after.amount_remaining) == (1500, 1500)
    assert after.pre_payment_credit_notes_amount == 0
    assert _types(client)[-2:] == ["invoice.updated", "credit_note.voided"]


def test_a_voided_credit_note_no_longer_counts_against_the_invoice_total(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _open(client, customer)
    note = client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 1000})
    client.v1.credit_notes.void_credit_note(note.id)
    again = client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 1000})
    assert again.number == f"{invoice.number}-CN-02"


def test_voiding_a_void_credit_note_is_refused(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    note = client.v1.credit_notes.create(
        params={"invoice": _open(client, customer).id, "amount": 100}
    )
    client.v1.credit_notes.void_credit_note(note.id)
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.credit_notes.void_credit_note(note.id)
    assert raised.value.http_status == 400
    assert raised.value.user_message == "This credit note has already been voided."


def test_a_credit_note_on_a_paid_invoice_cannot_be_voided(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _paid(client, customer)
    note = client.v1.credit_notes.create(
        params={"invoice": invoice.id, "amount": 100, "out_of_band_amount": 100}
    )
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.credit_notes.void_credit_note(note.id)
    assert raised.value.user_message == (
        "You can only void a credit note if the associated invoice is open."
    )
    assert client.v1.credit_notes.retrieve(note.id).status == "issued"


# -- events, idempotency, clocks ----------------------------------------------------------------


def test_issuing_emits_invoice_updated_then_credit_note_created(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _open(client, customer)
    note = client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 500})
    assert _types(client)[-2:] == ["invoice.updated", "credit_note.created"]
    created = client.v1.events.list(params={"type": "credit_note.created"}).data[0]
    assert created.data.object["id"] == note.id
    updated = client.v1.events.list(params={"type": "invoice.updated"}).data[0]
    assert updated.data.to_dict()["previous_attributes"] == {
        "amount_due": 1500,
        "amount_remaining": 1500,
        "pre_payment_credit_notes_amount": 0,
    }


def test_credit_note_events_are_delivered_as_webhooks(
    sandbox: StripeSandbox, client: stripe.StripeClient, receiver: Receiver
) -> None:
    client.v1.webhook_endpoints.create(
        params={
            "url": receiver.url,
            "enabled_events": [
                "credit_note.created",
                "credit_note.updated",
                "credit_note.voided",
            ],
        }
    )
    customer = client.v1.customers.create()
    note = client.v1.credit_notes.create(
        params={"invoice": _open(client, customer).id, "amount": 100}
    )
    client.v1.credit_notes.update(note.id, params={"memo": "x"})
    client.v1.credit_notes.void_credit_note(note.id)
    sandbox.deliver_webhooks()
    assert receiver.types() == ["credit_note.created", "credit_note.updated", "credit_note.voided"]
    assert receiver.received[-1].event["data"]["object"]["status"] == "void"


def test_a_repeated_idempotency_key_issues_one_credit_note(
    client: stripe.StripeClient, customer: stripe.Customer
) -> None:
    invoice = _open(client, customer)
    params: CreditNoteCreateParams = {"invoice": invoice.id, "amount": 500}
    first = client.v1.credit_notes.create(params=params, options={"idempotency_key": "cn-1"})
    second = client.v1.credit_notes.create(params=params, options={"idempotency_key": "cn-1"})
    assert second.id == first.id
    assert second.last_response is not None
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert client.v1.invoices.retrieve(invoice.id).amount_due == 1000


def test_a_credit_note_is_dated_by_its_customers_test_clock(
    client: stripe.StripeClient,
) -> None:
    test_clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": START})
    customer = client.v1.customers.create(params={"test_clock": test_clock.id})
    invoice = _open(client, customer)
    client.v1.test_helpers.test_clocks.advance(
        test_clock.id, params={"frozen_time": START + 3 * DAY}
    )
    note = client.v1.credit_notes.create(params={"invoice": invoice.id, "amount": 100})
    assert note.created == START + 3 * DAY
