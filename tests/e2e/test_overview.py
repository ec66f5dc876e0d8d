"""The billing overview end to end: what /api/overview says equals what Stripe holds.

The expected figures are computed here from everything listed through the Stripe client,
with plain code written from the definitions in docs/billing-rules.md (not with
connector/domain/metrics.py), so the two implementations check each other.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from connector.store.models import CustomerLink
from tests.e2e.conftest import World

PER_MONTH = {
    "day": Fraction(365, 12),
    "week": Fraction(52, 12),
    "month": Fraction(1),
    "year": Fraction(1, 12),
}


def _activate(world: World, deal_ref: str) -> dict[str, Any]:
    plan = world.plan_for(deal_ref)
    response = world.api("POST", f"/api/plans/{plan['id']}/activate")
    assert response.status_code == 200, response.get_json()
    world.sync()
    return world.plan_for(deal_ref)


def _half_up(value: Fraction) -> int:
    return int(value + Fraction(1, 2)) if value >= 0 else -int(-value + Fraction(1, 2))


def _exact(text: Any) -> Fraction:
    return Fraction(Decimal(str(text))) if text is not None else Fraction(0)


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def _item_amount(client: Any, item: Any) -> Fraction:
    """What the item bills a period before discounts (docs/billing-rules.md §4.1, step 1)."""
    price = item["price"]
    quantity = item.get("quantity")
    quantity = 1 if quantity is None else int(quantity)
    if price["billing_scheme"] == "tiered":
        retrieved = client.v1.prices.retrieve(price["id"], params={"expand": ["tiers"]})
        tiers = retrieved.to_dict()["tiers"]
        if quantity == 0:
            return Fraction(0)
        total, lower = Fraction(0), 0
        for tier in tiers:
            top = tier["up_to"]
            unit = _exact(tier["unit_amount_decimal"])
            flat = _exact(tier["flat_amount_decimal"])
            if price["tiers_mode"] == "volume":
                if top is None or quantity <= top:
                    return unit * quantity + flat
                continue
            reach = quantity if top is None else min(quantity, top)
            if reach > lower:
                total += unit * (reach - lower) + flat
            if top is None or quantity <= top:
                return total
            lower = top
        raise AssertionError("tiers end before the quantity")
    transform = price.get("transform_quantity")
    if transform:
        whole, rest = divmod(quantity, transform["divide_by"])
        quantity = whole + (1 if rest and transform["round"] == "up" else 0)
    return _exact(price["unit_amount_decimal"]) * quantity


def _active_discounts(client: Any, raws: Any, now: datetime) -> list[Any]:
    found = []
    for discount in raws or []:
        coupon = discount["source"]["coupon"]
        if isinstance(coupon, str):
            coupon = client.v1.coupons.retrieve(coupon).to_dict()
        start, end = _ts(discount.get("start")), _ts(discount.get("end"))
        if coupon.get("duration") == "once" or (start and start > now) or (end and now >= end):
            continue
        found.append(coupon)
    return found


def _subscription_mrr(
    client: Any, sub: Any, now: datetime, customer_discount: Any = None
) -> dict[str, int]:
    items = [i for i in sub["items"]["data"] if i["price"]["recurring"]["usage_type"] == "licensed"]
    amounts = {i["id"]: _item_amount(client, i) for i in items}
    for item in items:
        for coupon in _active_discounts(client, item.get("discounts"), now):
            if coupon.get("percent_off") is not None:
                amounts[item["id"]] *= 1 - _exact(coupon["percent_off"]) / 100
            else:
                amounts[item["id"]] = max(Fraction(0), amounts[item["id"]] - coupon["amount_off"])
    # The customer's discount where the subscription has none of its own (§4.1).
    coupons = _active_discounts(client, sub.get("discounts"), now) or _active_discounts(
        client, [customer_discount] if customer_discount else [], now
    )
    for coupon in coupons:
        if coupon.get("percent_off") is not None:
            for item in items:
                amounts[item["id"]] *= 1 - _exact(coupon["percent_off"]) / 100
    for coupon in coupons:
        if coupon.get("amount_off") is not None:
            base = sum(amounts.values(), Fraction(0))
            off = min(Fraction(coupon["amount_off"]), base)
            if base:
                amounts = {k: v - off * v / base for k, v in amounts.items()}
    mrr: dict[str, Fraction] = defaultdict(Fraction)
    for item in items:
        recurring = item["price"]["recurring"]
        per_month = PER_MONTH[recurring["interval"]] / recurring["interval_count"]
        mrr[item["price"]["currency"]] += amounts[item["id"]] * per_month
    return {c: _half_up(v) for c, v in mrr.items()}


def _counts(sub: Any, now: datetime) -> bool:
    if sub["status"] not in ("active", "past_due") or sub.get("pause_collection"):
        return False
    trial_end = _ts(sub.get("trial_end"))
    return not (trial_end and now < trial_end)


def expected_from_stripe(world: World) -> dict[str, Any]:
    """Every overview figure recomputed from Stripe's objects with plain code written from
    docs/billing-rules.md §4 (not with connector/domain/metrics.py)."""
    assert world.runtime is not None
    now = world.clock()
    month_start = datetime(now.year, now.month, 1, tzinfo=UTC)
    first = now.year * 12 + now.month - 1 - 11  # the 11 months before this one
    year_start = datetime(first // 12, first % 12 + 1, 1, tzinfo=UTC)
    with world.runtime.db.session() as session:
        linked = [link.stripe_customer_id for link in session.query(CustomerLink)]
    client = world.stripe_client()
    mrr: dict[str, int] = defaultdict(int)
    net: dict[str, dict[str, int]] = {"year": defaultdict(int), "month": defaultdict(int)}
    owed: dict[str, int] = defaultdict(int)
    active = 0
    with_active: set[str] = set()

    def book(when: datetime | None, currency: str, amount: int) -> None:
        assert when is not None
        if year_start <= when <= now:
            net["year"][currency] += amount
        if month_start <= when <= now:
            net["month"][currency] += amount

    for customer in linked:
        customer_discount = client.v1.customers.retrieve(customer).to_dict().get("discount")
        subs = client.v1.subscriptions.list(
            params={
                "customer": customer, "status": "all",
                "expand": ["data.discounts", "data.items.data.discounts"],
            }
        )  # fmt: skip
        for listed in subs.auto_paging_iter():
            sub = listed.to_dict()
            if not _counts(sub, now):
                continue
            active += 1
            with_active.add(customer)
            for currency, value in _subscription_mrr(client, sub, now, customer_discount).items():
                mrr[currency] += value
        for invoice in client.v1.invoices.list(params={"customer": customer}).auto_paging_iter():
            if invoice.status in ("open", "uncollectible"):
                owed[invoice.currency] += invoice.amount_remaining
            if invoice.status in ("open", "paid", "uncollectible"):
                when = _ts(invoice.effective_at or invoice.status_transitions.finalized_at)
                book(when, invoice.currency, invoice.total_excluding_tax)
        carried: set[str] = set()
        notes = client.v1.credit_notes.list(params={"customer": customer})
        for note in notes.auto_paging_iter():
            if note.status == "void":
                continue
            carried |= {r["refund"] for r in note.to_dict().get("refunds") or []}
            book(_ts(note.effective_at or note.created), note.currency, -note.total_excluding_tax)
        for charge in client.v1.charges.list(params={"customer": customer}).auto_paging_iter():
            for refund in client.v1.refunds.list(params={"charge": charge.id}).auto_paging_iter():
                if refund.id not in carried and refund.status not in ("failed", "canceled"):
                    book(_ts(refund.created), refund.currency, -refund.amount)
    products = list(client.v1.products.list(params={"limit": 100}).auto_paging_iter())
    prices = list(client.v1.prices.list(params={"limit": 100}).auto_paging_iter())
    currencies = sorted(set(mrr) | set(net["year"]) | set(net["month"]) | set(owed))
    return {
        "currency": {
            c: {
                "mrr": mrr.get(c, 0),
                "net_billing": net["year"].get(c, 0),
                "net_billing_this_month": net["month"].get(c, 0),
                "average_billing_per_customer": _half_up(
                    Fraction(net["year"].get(c, 0), len(linked))
                ),
                "open_balance": owed.get(c, 0),
            }
            for c in currencies
        },
        "active_subscriptions": active,
        "total_customers": len(linked),
        "customers_with_active_subscriptions": len(with_active),
        "total_products": sum(1 for p in products if p.active),
        "one_time_prices": sum(1 for p in prices if p.active and p.recurring is None),
        "recurring_prices": sum(1 for p in prices if p.active and p.recurring is not None),
    }


FIGURES = (
    "currency",
    "active_subscriptions",
    "total_customers",
    "customers_with_active_subscriptions",
    "total_products",
    "one_time_prices",
    "recurring_prices",
)


@pytest.fixture
def billed_world(world: World) -> World:
    """Two deals activated (USD now, EUR on a schedule two weeks out), then 40 days pass
    and the billing engine runs: the schedule starts, renewals are invoiced."""
    world.sync()
    _activate(world, "acme_platform")
    _activate(world, "globex_licence")
    world.clock.advance(days=40)
    world.stripe_sandbox.run_billing()
    world.sync()
    return world


def test_each_accounts_figures_are_written_to_the_crm(billed_world: World) -> None:
    world = billed_world
    body = world.api("GET", "/api/overview", role="finance").get_json()
    acme = next(c for c in body["customers"] if c["crm_account_id"] == world.crm.ref("acme"))
    account = world.crm.account("acme")
    assert Decimal(str(account["mrr"])) * 100 == acme["mrr"]["usd"]
    assert Decimal(str(account["net_billing"])) * 100 == acme["net_billing"]["usd"]
    assert Decimal(str(account["open_balance"])) * 100 == acme["open_balance"]["usd"]
    assert acme["mrr"]["usd"] > 0


def _usd_net_billing(world: World) -> int:
    body = world.api("GET", "/api/overview", role="finance").get_json()
    return int(body["currency"]["usd"]["net_billing"])


def _open_invoice(world: World, deal_ref: str) -> Any:
    customer = world.plan_for(deal_ref)["stripe_customer_id"]
    invoices = world.stripe_client().v1.invoices.list(
        params={"customer": customer, "status": "open", "limit": 1}
    )
    return invoices.data[0]


def _book(world: World) -> dict[str, str]:
    """On top of the billed world: a book with percent-off and amount-off coupons, a trial, a
    metered price, a quantity of zero, 3-month and 2-year intervals, a decimal and a tiered
    price, USD, EUR and JPY, paid, open, void and uncollectible invoices, a credit note that
    refunds and a refund on its own. The JPY customer belongs to a EUR account."""
    assert world.runtime is not None
    client = world.stripe_client()
    acme = world.plan_for("acme_platform")["stripe_customer_id"]
    globex = world.plan_for("globex_licence")["stripe_customer_id"]
    stark = world.crm.ref("stark")
    jpy = client.v1.customers.create(params={"name": "Stark KK", "email": "ap@stark.jp"}).id
    with world.runtime.db.session() as session:
        session.add(CustomerLink(crm_account_id=stark, stripe_customer_id=jpy, source="found"))
    product = client.v1.products.create(params={"name": "Book"}).id
    meter = client.v1.billing.meters.create(
        params={"display_name": "Calls", "event_name": "api_call",
                "default_aggregation": {"formula": "sum"}}
    ).id  # fmt: skip

    def price(currency: str, interval: str = "month", count: int = 1, **more: Any) -> str:
        recurring = {"interval": interval, "interval_count": count, **more.pop("recurring", {})}
        params = {"product": product, "currency": currency, "recurring": recurring, **more}
        return str(client.v1.prices.create(params=params).id)  # type: ignore[arg-type]

    def coupon(**params: Any) -> str:
        return str(client.v1.coupons.create(params=params).id)  # type: ignore[arg-type]

    def subscribe(customer: str, items: list[dict[str, Any]], **more: Any) -> Any:
        params = {"customer": customer, "items": items, "collection_method": "send_invoice",
                  "days_until_due": 30, **more}  # fmt: skip
        return client.v1.subscriptions.create(params=params)  # type: ignore[arg-type]

    decimal_price = price("usd", unit_amount_decimal="1999.5")
    subscribe(acme, [{"price": decimal_price, "quantity": 3}],
              discounts=[{"coupon": coupon(percent_off=15, duration="forever")}])  # fmt: skip
    quarterly = subscribe(
        acme,
        [{"price": price("usd", "month", 3, unit_amount=30000), "quantity": 2},
         {"price": price("usd", "month", 3, unit_amount=12000), "quantity": 0}],
        discounts=[{"coupon": coupon(amount_off=5000, currency="usd", duration="forever")}],
    )  # fmt: skip
    subscribe(acme, [{"price": price("usd", "year", 2, unit_amount=240000)}],
              trial_period_days=30)  # fmt: skip
    subscribe(
        acme,
        [{"price": price("usd", unit_amount=4000,
                         recurring={"usage_type": "metered", "meter": meter})},
         {"price": price("usd", unit_amount=5000), "quantity": 1}],
        discounts=[{"coupon": coupon(percent_off=50, duration="repeating",
                                     duration_in_months=3)}],
    )  # fmt: skip
    tiered = price(
        "eur", billing_scheme="tiered", tiers_mode="graduated",
        tiers=[{"up_to": 5, "unit_amount": 1000, "flat_amount": 500},
               {"up_to": "inf", "unit_amount_decimal": "800.5"}],
    )  # fmt: skip
    eur_sub = subscribe(globex, [{"price": tiered, "quantity": 7}])
    jpy_sub = subscribe(jpy, [{"price": price("jpy", unit_amount=33333), "quantity": 1}])
    world.sync()

    client.v1.invoices.pay(str(quarterly.latest_invoice), params={"paid_out_of_band": True})
    client.v1.invoices.void_invoice(str(eur_sub.latest_invoice))
    client.v1.invoices.mark_uncollectible(str(jpy_sub.latest_invoice))
    by_card = world.invoice_by_hand(acme, amount=80_000)
    client.v1.invoices.pay(str(by_card.id), params={"payment_method": "pm_card_visa"})
    charge = client.v1.charges.list(params={"customer": acme, "limit": 1}).data[0]
    client.v1.credit_notes.create(
        params={"invoice": str(by_card.id), "amount": 20_000, "refund_amount": 20_000}
    )
    client.v1.refunds.create(params={"charge": charge.id, "amount": 10_000})
    # A discount on the JPY customer (an API version that still takes `coupon` on a
    # customer): Stripe applies it to its subscription, which has none of its own.
    client.v1.customers.update(
        jpy,
        params={"coupon": coupon(percent_off=10, duration="forever")},  # type: ignore[typeddict-unknown-key]
        options={"stripe_version": "2025-08-27.basil"},
    )
    world.sync()
    return {"stark": stark, "jpy": jpy}
