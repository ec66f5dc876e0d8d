"""The review page's forms, posted as a browser posts them (every field as the page filled it
in), against the sandboxes: what the rep changes is what Stripe bills, nothing else."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug.datastructures import MultiDict

from connector.cli.demo import launch_link
from connector.domain.timestamps import date_from_unix
from connector.services.invoice_preview import first_invoice
from tests.e2e.conftest import World

pytestmark = pytest.mark.crm(
    "salesforce", reason="the page is the same whatever the CRM; one CRM keeps the run short"
)


class _Forms(HTMLParser):
    """The fields each form on a page would post, as the page preselected them."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, list[tuple[str, str]]] = {}
        self._form: list[tuple[str, str]] | None = None
        self._select: str | None = None
        self._first_option: tuple[str, str] | None = None
        self._selected = False
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._form = self.forms.setdefault(a.get("id") or a.get("action", ""), [])
        elif self._form is None:
            return
        elif tag == "input" and a.get("name"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self._form.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self._select, self._first_option, self._selected = a["name"], None, False
        elif tag == "option" and self._select is not None:
            if self._first_option is None:
                self._first_option = (self._select, a.get("value", ""))
            if "selected" in a:
                self._form.append((self._select, a.get("value", "")))
                self._selected = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._form is not None:
            if not self._selected and self._first_option is not None:
                self._form.append(self._first_option)
            self._select = None
        elif tag == "form":
            self._form = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _forms(html: str) -> _Forms:
    parser = _Forms()
    parser.feed(html)
    return parser


class Rep:
    """A sales rep in a browser without JavaScript: opens the launch link, posts forms."""

    def __init__(self, world: World, deal_ref: str) -> None:
        assert world.runtime is not None
        from connector.web.app import create_app

        self.world = world
        self.client = create_app(runtime=world.runtime).test_client()
        link = urlsplit(launch_link(world, world.crm.ref(deal_ref), role="sales_rep"))
        response = self.client.get(f"{link.path}?{link.query}", follow_redirects=True)
        assert response.status_code == 200, response.get_data(as_text=True)
        self.path = response.request.path
        self.html = response.get_data(as_text=True)

    @property
    def plan_id(self) -> str:
        return self.path.rsplit("/", 1)[1]

    def form(self, key: str) -> list[tuple[str, str]]:
        return _forms(self.html).forms[key]

    def post(self, key: str, change: dict[str, str] | None = None) -> Any:
        fields = [(k, v) for k, v in self.form(key) if k not in (change or {})]
        fields += list((change or {}).items())
        action = key if key.startswith("/") else None
        if action is None:
            action = f"{self.path}/{key.removesuffix('-form')}"
        response = self.client.post(action, data=MultiDict(fields))
        self.html = response.get_data(as_text=True)
        return response

    def open(self, path: str) -> Any:
        response = self.client.get(path)
        self.html = response.get_data(as_text=True)
        return response

    def plan(self) -> dict[str, Any]:
        response = self.world.api("GET", f"/api/plans/{self.plan_id}")
        assert response.status_code == 200
        return dict(response.get_json())


def _one_time_deal(world: World) -> None:
    """acme_expansion closed with annual seats on a 12-month contract: it bills once."""
    world.crm.update_line("acme_expansion", 0, pricing_schedule="annual")
    world.crm.update_deal(
        "acme_expansion", closed=True, contract_start=world.clock().date(),
        payment_terms="Net 15", payment_method="Credit Card", billing_contact="acme_ap",
    )  # fmt: skip
    world.sync()


# --------------------------------------------------------------------------- the form


def test_changing_only_the_frequency_on_the_page_bills_at_that_frequency(world: World) -> None:
    _one_time_deal(world)
    rep = Rep(world, "acme_expansion")
    assert rep.plan()["plan"]["invoice_type"] == "one_time"

    response = rep.post("adjust-form", {"billing": "month/3"})

    assert response.status_code == 200, rep.html
    plan = rep.plan()["plan"]
    assert (plan["invoice_type"], plan["interval"], plan["interval_count"]) == (
        "recurring", "month", 3,
    )  # fmt: skip
    rep.post(f"/plans/{rep.plan_id}/activate")
    subscription_id = rep.plan()["stripe_subscription_id"]
    assert subscription_id, rep.plan()["status_reason"]
    subscription = world.stripe_client().v1.subscriptions.retrieve(subscription_id)
    intervals = {
        (item.price.recurring.interval, item.price.recurring.interval_count)  # type: ignore[union-attr]
        for item in subscription["items"].data
    }
    assert intervals == {("month", 3)}


def test_saving_the_form_unchanged_keeps_the_suggested_plan(world: World) -> None:
    world.sync()
    rep = Rep(world, "acme_platform")
    before = rep.plan()["plan"]

    rep.post("adjust-form")

    after = rep.plan()["plan"]
    keys = ("invoice_type", "interval", "interval_count", "total_amount", "first_invoice_amount")
    assert {k: after[k] for k in keys} == {k: before[k] for k in keys}
    assert [line["kind"] for line in after["lines"]] == [line["kind"] for line in before["lines"]]


def test_choosing_one_invoice_on_the_page_bills_the_contract_once(world: World) -> None:
    world.sync()
    rep = Rep(world, "acme_platform")

    rep.post("adjust-form", {"billing": "one_time"})

    plan = rep.plan()["plan"]
    assert (plan["invoice_type"], plan["interval"]) == ("one_time", None)


def test_ach_debit_and_bank_transfer_are_separate_choices(world: World) -> None:
    world.sync()
    rep = Rep(world, "acme_platform")
    fields = [k for k, v in rep.form("adjust-form") if k == "payment_method_types"]
    assert fields, "the deal's ACH and card are preselected"

    form = [(k, v) for k, v in rep.form("adjust-form") if k != "payment_method_types"]
    form.append(("payment_method_types", "us_bank_account"))
    rep.client.post(f"{rep.path}/adjust", data=MultiDict(form))

    assert rep.plan()["plan"]["payment_method_types"] == ["us_bank_account"]


def test_the_api_refuses_a_one_time_bill_with_a_frequency_naming_both_fields(
    world: World,
) -> None:
    world.sync()
    plan = world.plan_for("acme_platform")

    response = world.api(
        "POST", f"/api/plans/{plan['id']}/adjust",
        json={"invoice_type": "one_time", "interval": "month"},
    )  # fmt: skip

    assert response.status_code == 422
    problems = response.get_json()["error"]["problems"]
    assert [p["field"] for p in problems] == ["interval"]
    assert "invoice_type" in problems[0]["message"] and "interval" in problems[0]["message"]
    assert world.plan_for("acme_platform")["overrides"] == {}


def test_the_api_refuses_a_send_date_for_a_schedule(world: World) -> None:
    world.sync()
    plan = world.plan_for("acme_platform")
    today = world.clock().date().isoformat()

    response = world.api(
        "POST", f"/api/plans/{plan['id']}/adjust",
        json={"invoice_type": "recurring", "send_date": today},
    )  # fmt: skip

    assert response.status_code == 422
    [problem] = response.get_json()["error"]["problems"]
    assert problem["field"] == "send_date" and "invoice_type" in problem["message"]


# --------------------------------------------------------------------------- manual invoicing


def test_manual_invoicing_asks_first_and_says_what_it_means(world: World) -> None:
    world.sync()
    rep = Rep(world, "acme_platform")

    rep.open(f"{rep.path}/manual")

    assert rep.plan()["status"] == "in_review"
    assert "no subscription and no invoice" in rep.html
    assert "undo this" in rep.html and "as long as no invoice has been sent" in rep.html
    without_confirming = [(k, v) for k, v in rep.form(f"/plans/{rep.plan_id}/manual")]
    rep.client.post(
        f"{rep.path}/manual",
        data=MultiDict([(k, v) for k, v in without_confirming if k != "confirm"]),
    )
    assert rep.plan()["status"] == "in_review"

    rep.post(f"/plans/{rep.plan_id}/manual")

    assert rep.plan()["status"] == "manual"
    assert "Please confirm" not in rep.html
    assert world.stripe_count("POST", "/v1/subscriptions") == 0


def test_manual_invoicing_can_be_undone_until_an_invoice_is_sent(world: World) -> None:
    world.sync()
    rep = Rep(world, "acme_platform")
    rep.open(f"{rep.path}/manual")
    rep.post(f"/plans/{rep.plan_id}/manual")

    rep.post(f"/plans/{rep.plan_id}/manual/undo")

    plan = rep.plan()
    assert plan["status"] == "in_review" and "collection" not in plan["overrides"]
    world.sync()
    assert world.crm.deal("acme_platform")["plan_status"] == "Awaiting review"
    rep.open(f"{rep.path}/manual")
    rep.post(f"/plans/{rep.plan_id}/manual")
    world.invoice_by_hand(plan["stripe_customer_id"])

    response = rep.post(f"/plans/{rep.plan_id}/manual/undo")

    assert response.status_code == 409
    assert "already sent" in rep.html
    assert rep.plan()["status"] == "manual"
    assert "manual-undo" not in rep.html


# --------------------------------------------------------------------------- the preview


def _first_invoice(world: World, plan_id: str) -> Any:
    assert world.runtime is not None
    return first_invoice(world.runtime, plan_id)


def test_the_preview_is_the_first_invoice_stripe_then_creates(world: World) -> None:
    """acme_platform: platform, 25 seats and quarterly support recurring monthly, plus the
    setup fee on the first invoice."""
    world.sync()
    plan = world.plan_for("acme_platform")

    preview = _first_invoice(world, plan["id"])

    assert preview.kind == "preview", preview
    assert preview.total == plan["plan"]["first_invoice_amount"]
    assert sorted(line.amount for line in preview.lines) == sorted(
        line["unit_amount"] * line["quantity"] for line in plan["plan"]["lines"]
    )
    today = world.clock().date()
    assert (preview.date, preview.due_date) == (today, today + timedelta(days=30))
    activated = world.api("POST", f"/api/plans/{plan['id']}/activate").get_json()
    assert activated["status"] == "active", activated["status_reason"]

    created = _first_invoice(world, plan["id"])

    assert created.kind == "created" and created.invoice_id
    assert (created.total, created.subtotal, created.tax, created.discount) == (
        preview.total, preview.subtotal, preview.tax, preview.discount,
    )  # fmt: skip
    assert [(line.description, line.amount) for line in created.lines] == [
        (line.description, line.amount) for line in preview.lines
    ]
    assert (created.date, created.due_date) == (preview.date, preview.due_date)
    assert created.hosted_invoice_url and created.invoice_pdf
    api = world.api("GET", f"/api/plans/{plan['id']}/first-invoice").get_json()
    assert (api["available"], api["kind"], api["total"]) == (True, "created", created.total)
    assert api["date"] == created.date.isoformat() and api["lines"][0]["amount"] > 0


def test_the_preview_shows_the_customers_discount_as_stripe_applies_it(
    world: World,
) -> None:
    world.sync()
    plan = world.plan_for("acme_platform")
    stripe = world.stripe_client()
    coupon = stripe.v1.coupons.create(params={"percent_off": 10, "duration": "forever"})
    stripe.v1.customers.update(  # a coupon on the customer: API versions before 2025-09-30
        plan["stripe_customer_id"],
        params={"coupon": coupon.id},  # type: ignore[typeddict-unknown-key]
        options={"stripe_version": "2025-08-27.basil"},
    )

    preview = _first_invoice(world, plan["id"])

    subtotal = plan["plan"]["first_invoice_amount"]
    assert preview.subtotal == subtotal
    assert preview.discount == subtotal // 10
    assert preview.total == subtotal - subtotal // 10


def test_when_stripe_cannot_preview_the_page_says_so_and_still_works(world: World) -> None:
    world.sync()
    rep = Rep(world, "acme_platform")
    world.stripe_sandbox.inject_faults("/v1/invoices/create_preview", [503])

    response = rep.open(rep.path)

    assert response.status_code == 200
    assert "Stripe could not compute the preview just now" in rep.html
    assert 'id="activate"' in rep.html


def test_annual_seats_with_a_setup_fee_preview_to_the_minor_unit(world: World) -> None:
    """Annual pricing on a 24-month contract with the setup fee: the preview's lines and
    total are the first invoice Stripe creates, and the invoices Stripe then creates over the
    contract are the page's invoice schedule, date and amount, to the minor unit."""
    for index in (1, 2, 3):
        world.crm.update_line("acme_platform", index, pricing_schedule="annual")
    world.crm.update_deal("acme_platform", contract_months=24)
    world.sync()
    plan = world.plan_for("acme_platform")
    assert (plan["plan"]["interval"], plan["plan"]["periods"]) == ("year", 2)

    preview = _first_invoice(world, plan["id"])
    activated = world.api("POST", f"/api/plans/{plan['id']}/activate").get_json()
    assert activated["status"] == "active", activated["status_reason"]
    created = _first_invoice(world, plan["id"])

    assert preview.kind == "preview" and created.kind == "created"
    assert preview.total == created.total == plan["plan"]["first_invoice_amount"]
    assert [(line.description, line.amount) for line in preview.lines] == [
        (line.description, line.amount) for line in created.lines
    ]
    schedule = [(i["date"], i["amount"]) for i in plan["plan"]["invoices"]]
    assert schedule[0] == (created.date.isoformat(), created.total)
    world.clock.advance(days=366)  # past the second year's start: Stripe renews
    world.stripe_sandbox.run_billing()
    billed = world.stripe_client().v1.invoices.list(params={"customer": plan["stripe_customer_id"]})
    assert (
        sorted(
            (date_from_unix(i.created).isoformat(), i.total)  # type: ignore[union-attr]
            for i in billed.data
        )
        == schedule
    )


# --------------------------------------------------------------------------- small things


def test_the_duplicate_customer_chooser_shows_when_each_was_created_as_a_date(
    world: World,
) -> None:
    for name in ("Acme Robotics", "Acme Robotics Inc."):
        world.stripe_client().v1.customers.create(
            params={"name": name, "email": "ap.team@acmerobotics.example"}
        )
    world.sync()
    rep = Rep(world, "acme_platform")
    assert rep.plan()["status"] == "needs_customer", rep.plan()["status_reason"]

    text = " ".join(_forms(rep.html).text)

    today = world.clock().date().isoformat()
    assert text.count(today) >= 2
    assert not re.search(r"\b\d{10}\b", text)


def test_a_contract_started_months_ago_previews_its_catch_up_as_stripe_bills_it(
    world: World,
) -> None:
    world.crm.update_deal("acme_platform", contract_start=world.clock().date() - timedelta(days=70))
    world.sync()
    plan = world.plan_for("acme_platform")

    preview = _first_invoice(world, plan["id"])
    activated = world.api("POST", f"/api/plans/{plan['id']}/activate").get_json()
    assert activated["status"] == "active", activated["status_reason"]
    created = _first_invoice(world, plan["id"])

    assert preview.kind == "preview" and created.kind == "created"
    assert [(line.description, line.amount) for line in preview.lines] == [
        (line.description, line.amount) for line in created.lines
    ]
    assert preview.total == created.total == plan["plan"]["invoices"][0]["amount"]
    assert len(preview.lines) > len(plan["plan"]["lines"])  # the elapsed months' catch-up
