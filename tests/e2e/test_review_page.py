"""The review page's forms, posted as a browser posts them (every field as the page filled it
in), against the sandboxes: what the rep changes is what Stripe bills, nothing else."""

from __future__ import annotations

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


# --------------------------------------------------------------------------- manual invoicing


# --------------------------------------------------------------------------- the preview


def _first_invoice(world: World, plan_id: str) -> Any:
    assert world.runtime is not None
    return first_invoice(world.runtime, plan_id)


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
