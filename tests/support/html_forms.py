"""What a browser does with a page's forms: the auto-submitted ``form_post`` answer of an
identity provider, or a button a person clicks."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Form:
    action: str
    method: str
    id: str = ""
    fields: dict[str, str] = field(default_factory=dict)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.links: dict[str, str] = {}
        self._in: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._in = Form(a.get("action", ""), a.get("method", "GET").upper(), a.get("id", ""))
            self.forms.append(self._in)
        elif tag == "input" and self._in is not None and a.get("name"):
            self._in.fields[a["name"]] = a.get("value", "")
        elif tag == "a" and a.get("href"):
            self.links[a.get("id") or a["href"]] = a["href"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in = None


def forms_of(page: str) -> list[Form]:
    parser = _Forms()
    parser.feed(page)
    return parser.forms


def links_of(page: str) -> dict[str, str]:
    """Links by their ``id`` (else by address)."""
    parser = _Forms()
    parser.feed(page)
    return parser.links
