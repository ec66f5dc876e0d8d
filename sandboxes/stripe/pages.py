"""The hosted invoice page (``hosted_invoice_url``), its PDF (``invoice_pdf``), credit
notes' PDFs (``pdf``), and a read-only stand-in for the Dashboard's customer and
subscription pages (``/dashboard/customers/:id``, ``/dashboard/subscriptions/:id``), so the
links an integration shows to people lead somewhere when it runs against the sandbox."""

from __future__ import annotations

import html

from werkzeug.wrappers import Response

from .state import State
from .timeutil import format_money


def invoice_page(state: State, path: str) -> Response:
    parts = path.strip("/").split("/")
    invoice = state.store.get(parts[1], "invoice") if len(parts) >= 2 else None
    if invoice is None or invoice["status"] == "draft":
        return Response("Invoice not found", status=404, content_type="text/plain")
    if len(parts) == 3 and parts[2] == "pdf":
        return Response(_pdf(invoice), content_type="application/pdf")
    rows = "".join(
        f"<tr><td>{html.escape(str(line['description']))}</td><td>{line['quantity']}</td>"
        f"<td>{format_money(line['amount'], line['currency'])}</td></tr>"
        for line in invoice["lines"]["data"]
    )
    currency = invoice["currency"]
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Invoice {html.escape(invoice["number"])}</title>
</head><body>
<h1>Invoice {html.escape(invoice["number"])}</h1>
<p>Status: <strong>{invoice["status"]}</strong></p>
<p>Billed to: {html.escape(invoice["customer_email"] or invoice["customer_name"] or "")}</p>
<table><thead><tr><th>Description</th><th>Qty</th><th>Amount</th></tr></thead>
<tbody>{rows}</tbody></table>
<p>Amount due: {format_money(invoice["amount_due"], currency)}</p>
<p>Amount paid: {format_money(invoice["amount_paid"], currency)}</p>
<p>Amount remaining: {format_money(invoice["amount_remaining"], currency)}</p>
</body></html>"""
    return Response(body, content_type="text/html; charset=utf-8")


def dashboard_page(state: State, path: str) -> Response:
    parts = path.strip("/").split("/")
    kinds = {"customers": "customer", "subscriptions": "subscription"}
    kind = kinds.get(parts[1]) if len(parts) == 3 else None
    obj = state.store.get(parts[2], kind) if kind else None
    if obj is None:
        return Response("Not found", status=404, content_type="text/plain")
    customer_id = obj["id"] if kind == "customer" else obj["customer"]
    invoices = sorted(
        (i for i in state.store.all("invoice") if i["customer"] == customer_id),
        key=lambda i: int(i["created"]),
    )
    if kind == "subscription":
        invoices = [i for i in invoices if _subscription_of(i) == obj["id"]]
    rows = "".join(
        f"<tr><td>{_invoice_link(i)}</td><td>{i['status']}</td>"
        f"<td>{format_money(i['total'], i['currency'])}</td></tr>"
        for i in invoices
    )
    if kind == "customer":
        title = f"Customer {html.escape(obj.get('name') or obj['id'])}"
        facts = f"<p>{html.escape(obj['id'])} · {html.escape(obj.get('email') or '')}</p>"
    else:
        title = f"Subscription {html.escape(obj['id'])}"
        facts = (
            f"<p>Status: <strong>{obj['status']}</strong> · customer "
            f'<a href="/dashboard/customers/{customer_id}">{html.escape(customer_id)}</a></p>'
        )
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head><body>
<p>Stripe sandbox: a read-only stand-in for the Dashboard page.</p>
<h1>{title}</h1>{facts}
<h2>Invoices</h2>
<table><thead><tr><th>Invoice</th><th>Status</th><th>Total</th></tr></thead>
<tbody>{rows}</tbody></table>
</body></html>"""
    return Response(body, content_type="text/html; charset=utf-8")


def _subscription_of(invoice: dict[str, object]) -> object:
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    return details.get("subscription") if isinstance(details, dict) else None


def _invoice_link(invoice: dict[str, object]) -> str:
    label = html.escape(str(invoice.get("number") or invoice["id"]))
    url = invoice.get("hosted_invoice_url")
    return f'<a href="{html.escape(str(url))}">{label}</a>' if url else label


def credit_note_pdf(state: State, path: str) -> Response:
    parts = path.strip("/").split("/")
    note = state.store.get(parts[1], "credit_note") if len(parts) == 3 else None
    if note is None or parts[2] != "pdf":
        return Response("Credit note not found", status=404, content_type="text/plain")
    return Response(_pdf(note, "Credit note"), content_type="application/pdf")


def _pdf(document: dict[str, object], title: str = "Invoice") -> bytes:
    """A minimal, valid one-page PDF naming the document."""
    text = f"{title} {document['number']} - {document['status']}"
    text = text.replace("(", "").replace(")", "")
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)
