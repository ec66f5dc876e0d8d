"""Seed many invoices into the Stripe sandbox quickly, through its own Python state.

Creating 10,000 invoices through the API takes three requests each; seeding them straight
into the sandbox's state (the same constructors its API handlers use) takes seconds. Only
the seeding takes this shortcut: what is measured reads them back through stripe-python.
"""

from __future__ import annotations

from sandboxes.stripe import StripeSandbox
from sandboxes.stripe import invoices as sandbox_invoices


def seed_invoices(
    sandbox: StripeSandbox,
    customer_id: str,
    count: int,
    *,
    amount: int = 12_500,
    currency: str = "usd",
    days_until_due: int = 30,
) -> list[str]:
    """``count`` finalized ``send_invoice`` invoices of one line each; returns their ids."""
    state = sandbox.state
    ids: list[str] = []
    with state.lock:
        customer = state.store.objects[customer_id]
        at = state.time_for_customer(customer)
        for index in range(count):
            invoice = sandbox_invoices.new_invoice(
                state,
                customer,
                at=at,
                collection_method="send_invoice",
                days_until_due=days_until_due,
                auto_advance=False,
                billing_reason="manual",
                currency=currency,
            )
            sandbox_invoices.add_line(
                invoice,
                state,
                amount=amount,
                quantity=1,
                description=f"Bench item {index + 1}",
                period=(at, at),
                price=None,
                parent={"type": "invoice_item_details", "invoice_item_details": None},
                subscription_id=None,
            )
            sandbox_invoices.finalize(state, invoice, at)
            ids.append(invoice["id"])
    return ids


def pay_invoices(sandbox: StripeSandbox, invoice_ids: list[str]) -> None:
    """Mark the invoices paid out of band, as a bulk payment run would (events included)."""
    state = sandbox.state
    with state.lock:
        at = int(state.now())
        for invoice_id in invoice_ids:
            invoice = state.store.objects[invoice_id]
            sandbox_invoices.mark_paid(state, invoice, at, out_of_band=True)


def seed_account(sandbox: StripeSandbox, customers: int, invoices_per_customer: int) -> list[str]:
    """``customers`` customers (through the customer handler, as the API creates them), each
    with ``invoices_per_customer`` finalized one-line invoices; returns the customer ids."""
    from sandboxes.stripe import customers as sandbox_customers
    from sandboxes.stripe.call import Call
    from sandboxes.stripe.params import Params

    state = sandbox.state
    ids: list[str] = []
    with state.lock:
        for index in range(customers):
            params = Params(
                {
                    "name": f"Customer {index}",
                    "email": f"billing{index}@customer{index}.example",
                    "metadata": {"crm_account_id": f"acct{index}"},
                }
            )
            created = sandbox_customers.create(Call(state, params, {}, "POST"))
            ids.append(created["id"])
        for customer_id in ids:
            customer = state.store.objects[customer_id]
            at = state.time_for_customer(customer)
            for n in range(invoices_per_customer):
                invoice = sandbox_invoices.new_invoice(
                    state,
                    customer,
                    at=at,
                    collection_method="send_invoice",
                    days_until_due=30,
                    auto_advance=False,
                    billing_reason="manual",
                    currency="usd",
                )
                sandbox_invoices.add_line(
                    invoice,
                    state,
                    amount=12_500 + n,
                    quantity=1,
                    description="Bench",
                    period=(at, at),
                    price=None,
                    parent={"type": "invoice_item_details", "invoice_item_details": None},
                    subscription_id=None,
                )
                sandbox_invoices.finalize(state, invoice, at)
    return ids


def main(customers: int = 5000, invoices: int = 50_000, runs: int = 3) -> None:
    """`python -m bench.stripe_seed [CUSTOMERS INVOICES RUNS]`: time to seed an account
    (customers, then their finalized invoices, events included) into a fresh sandbox."""
    import statistics
    import time

    timings = []
    for _ in range(runs):
        sandbox = StripeSandbox(now=lambda: 1_767_225_600)
        start = time.perf_counter()
        seed_account(sandbox, customers, invoices // customers)
        timings.append(time.perf_counter() - start)
        print(f"  seeded {customers} customers, {invoices} invoices in {timings[-1]:.2f}s")
    print(f"median of {runs}: {statistics.median(timings):.2f}s")


if __name__ == "__main__":
    import sys

    main(*[int(a) for a in sys.argv[1:4]])
