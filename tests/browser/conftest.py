"""Browser tests: Playwright driving Debian's Chromium against a LocalWorld on loopback.

Playwright cannot download its own browsers here, so it launches /usr/bin/chromium
(`scripts/test.sh` installs it when missing) with flags that keep it off the network.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from connector.demo.world import LocalWorld
from tests.support import FrozenClock

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    yield context.new_page()
    context.close()


@pytest.fixture
def served_world(tmp_path: Path) -> Iterator[LocalWorld]:
    """Both sandboxes and dealbridge, the app served on a loopback port the browser opens."""
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    world = LocalWorld(f"sqlite:///{tmp_path / 'browser.sqlite3'}", clock=clock).start()
    world.sync()
    yield world
    world.stop()
