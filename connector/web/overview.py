"""The billing overview page and ``GET /api/overview``: thin over ``services/overview``.

Finance (and admin) only. ``?refresh=1`` re-reads Stripe before computing; otherwise the
figures come from the mirrors. The trend chart is inline SVG rendered here, so the page
needs no script and no other origin (the CSP is ``default-src 'self'``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, make_response, render_template, request
from markupsafe import Markup, escape

from connector.billing.gateway import StripeGatewayError
from connector.domain.money import format_money
from connector.runtime import Runtime
from connector.services import overview as service
from connector.services import stripe_refresh
from connector.services.customer_table import customer_table
from connector.web.auth import current_identity, require
from connector.web.context import current_runtime
from connector.web.errors import ApiError

blueprint = Blueprint("overview", __name__)

CHART_W, CHART_H, PAD_L, PAD_B, PAD_T = 640, 220, 90, 28, 12
COLOURS = ("#3d4eac", "#17714a", "#a3271f", "#8a5a00", "#6b3fa0")


def _runtime() -> Runtime:
    return current_runtime()


def _refreshed() -> str | None:
    if request.args.get("refresh") not in ("1", "true", "yes"):
        return None
    try:
        result = stripe_refresh.refresh_from_stripe(_runtime())
    except StripeGatewayError as exc:
        raise ApiError(502, "stripe_error", f"Could not refresh from Stripe: {exc}") from exc
    note = (
        f"Refreshed from Stripe: {result.subscriptions} subscriptions, {result.invoices} "
        f"invoices, {result.products} products, {result.prices} prices"
    )
    if result.credit_notes_supported:
        return f"{note}, {result.credit_notes} credit notes."
    return f"{note}; this Stripe offers no credit notes, so none are subtracted."


@blueprint.get("/api/overview")
@require("finance")
def api_overview() -> Response:
    refreshed = _refreshed()
    body = service.overview(_runtime()).as_json()
    if refreshed:
        body["refreshed"] = refreshed
    return jsonify(body)


def trend_svg(trend: list[tuple[str, dict[str, int]]]) -> Markup:
    """MRR at each month's end, one line per currency, each scaled to its own maximum (so
    currencies are never put on one axis as if they could be added)."""
    currencies = sorted({c for _, values in trend for c in values})
    inner_w, inner_h = CHART_W - PAD_L - 10, CHART_H - PAD_B - PAD_T
    step = inner_w / max(len(trend) - 1, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {CHART_W} {CHART_H}" '
        f'width="100%" role="img" aria-labelledby="trend-title" id="mrr-trend">',
        '<title id="trend-title">MRR at the end of each of the last 12 months</title>',
        f'<line x1="{PAD_L}" y1="{PAD_T + inner_h}" x2="{PAD_L + inner_w}" '
        f'y2="{PAD_T + inner_h}" stroke="#d9dee5"/>',
    ]
    for index, (label, _) in enumerate(trend):
        x = PAD_L + index * step
        # The last label ends at its point rather than centring on it, past the chart's edge.
        anchor = "end" if index == len(trend) - 1 and index else "middle"
        parts.append(
            f'<text x="{x:.1f}" y="{CHART_H - 8}" font-size="10" text-anchor="{anchor}" '
            f'fill="#5b6776">{escape(label[2:])}</text>'
        )
    for n, currency in enumerate(currencies):
        colour = COLOURS[n % len(COLOURS)]
        values = [v.get(currency, 0) for _, v in trend]
        top = max(max(values), 1)
        points = " ".join(
            f"{PAD_L + i * step:.1f},{PAD_T + inner_h - inner_h * v / top:.1f}"
            for i, v in enumerate(values)
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}">'
            f"<title>{escape(currency.upper())}</title></polyline>"
        )
        parts.append(
            f'<text x="4" y="{PAD_T + 10 + n * 14}" font-size="11" fill="{colour}">'
            f"{escape(format_money(top, currency))} max</text>"
        )
        for i, v in enumerate(values):
            y = PAD_T + inner_h - inner_h * v / top
            parts.append(
                f'<circle cx="{PAD_L + i * step:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}">'
                f"<title>{escape(trend[i][0])}: "
                f"{escape(format_money(v, currency))}</title></circle>"
            )
    if not currencies:
        parts.append(
            f'<text x="{PAD_L + 10}" y="{PAD_T + inner_h / 2}" fill="#5b6776">'
            "No recurring revenue in the last 12 months.</text>"
        )
    parts.append("</svg>")
    # Every interpolated text above is escaped; the rest are numbers and fixed colours.
    return Markup("".join(parts))  # noqa: S704


def _money_list(amounts: dict[str, int]) -> str:
    return ", ".join(format_money(a, c) for c, a in amounts.items()) or "—"


def page_link(**changes: str | None) -> str:
    """The overview URL with the current query, some parameters changed (None drops one)."""
    args: dict[str, Any] = {k: v for k, v in request.args.items() if k != "refresh"}
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = value
    return "/overview" + (f"?{urlencode(args)}" if args else "")


@blueprint.get("/overview")
@require("finance")
def overview_page() -> Response:
    runtime = _runtime()
    message = _refreshed()
    data = service.overview(runtime)
    sort = request.args.get("sort", "name")
    descending = request.args.get("dir", "asc") == "desc"
    currencies = list(data.currency)
    currency = request.args.get("currency") or (currencies[0] if currencies else None)
    rows = customer_table(
        data.customers,
        sort=sort,
        descending=descending,
        query=request.args.get("q", ""),
        credit_state=request.args.get("credit", ""),
        currency=currency,
    )
    identity = current_identity()
    html = render_template(
        "overview.html",
        data=data,
        rows=rows,
        sort=sort,
        descending=descending,
        currency=currency,
        query=request.args.get("q", ""),
        credit=request.args.get("credit", ""),
        token=request.args.get("t"),
        identity=identity,
        message=message,
        chart=trend_svg(data.trend),
        trend_basis=service.TREND_BASIS,
        money=format_money,
        money_list=_money_list,
        link=page_link,
        crm_url=lambda account_id: runtime.crm.record_url("account", account_id),
        stripe_url=runtime.stripe.customer_url,
        credit_states=sorted({r.credit_state for r in data.customers} | {"ok", "on_hold"}),
    )
    return make_response(html)
