"""``POST /webhooks/crm``: the CRM pushes a change; authenticate, queue, acknowledge.

Which CRM is speaking is the adapter's business (Outbound Message SOAP, Dataverse
RemoteExecutionContext); this view only stores what the adapter parsed and answers with
the acknowledgement the CRM expects.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from connector.crm.base import PushRejected
from connector.services.crm_changes import PUSHED_EVENT_TYPES, receive_change
from connector.web.context import current_runtime
from connector.web.errors import ApiError

blueprint = Blueprint("crm_webhooks", __name__)


@blueprint.post("/webhooks/crm")
def receive() -> Response:
    runtime = current_runtime()
    body = request.get_data(cache=False)
    try:
        batch = runtime.crm.parse_push(dict(request.headers), request.args.to_dict(), body)
    except PushRejected as exc:
        runtime.metrics.webhooks.labels(source="crm", outcome="rejected").inc()
        raise ApiError(exc.status, "push_rejected", exc.message) from exc
    for notice in batch.notices:
        event_type = PUSHED_EVENT_TYPES[notice.kind]
        stored = receive_change(runtime, notice.event_id, event_type, {"id": notice.record_id})
        runtime.metrics.webhooks.labels(
            source="crm", outcome="stored" if stored else "duplicate"
        ).inc()
    return Response(batch.ack_body, status=200, content_type=batch.ack_content_type)
