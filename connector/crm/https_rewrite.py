"""A `requests.Session` that sends every ``https://`` request to one fixed ``http://`` base URL.

Why this exists: both CRM clients build their URLs themselves and offer no way to choose the
scheme. simple-salesforce builds every URL as ``https://{instance}/...`` (the login host, the
instance host and the ``nextRecordsUrl`` of paged queries alike); msal refuses ``http://``
authorities. dealbridge's local sandboxes listen on ``http://127.0.0.1:PORT``. Handing a client
this session lets it talk to such a server unchanged: ``https://login.salesforce.com/services/...``
and ``https://127.0.0.1:PORT/services/...`` both go to ``http://127.0.0.1:PORT/services/...``
with path and query string kept.

The adapters select it purely by configuration: an ``http://`` Salesforce instance URL or
Dataverse environment URL means "rewrite to this base"; an ``https://`` one (the real service)
uses an ordinary session.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests


class HttpsRewriteSession(requests.Session):
    """Send each ``https://<any host>/<path>?<query>`` request to ``<base_url>/<path>?<query>``.

    Requests whose URL is not ``https://`` (for example ``http://`` URLs already pointing at
    the base) are sent unchanged.
    """

    def __init__(self, base_url: str) -> None:
        super().__init__()
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")

    def rewrite(self, url: str) -> str:
        """Return the URL a request for ``url`` is actually sent to."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "https":
            return url
        return urlunsplit(
            (self._scheme, self._netloc, self._prefix + parts.path, parts.query, parts.fragment)
        )

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if isinstance(url, bytes):
            url = url.decode()
        return super().request(method, self.rewrite(url), *args, **kwargs)
