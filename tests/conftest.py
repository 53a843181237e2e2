from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.browser import Chromium, Page
    from wsgi_logstream.redis import RedisStore

# Tests import their helpers as ``tests.<module>`` (the rootdir is on sys.path). This directory is on sys.path too,
# as it is on the PYTHONPATH of the servers tests start (servers.Program), for modules named by file.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    """One headless Chromium per test module (started on first use, stopped by its PID after the module)."""
    from tests.browser import Chromium

    with Chromium() as chromium:
        yield chromium


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "page(size=None, timezone=None, scripts=(), domains=()): how the `page` fixture sets up its tab"
    )


@pytest.fixture
def page(browser: Chromium, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A new tab in the module's Chromium, set up as the closest ``pytest.mark.page(...)`` asks
    (the keywords of :meth:`tests.browser.Chromium.new_page`); a plain tab without one."""
    marker = request.node.get_closest_marker("page")
    with browser.new_page(**(marker.kwargs if marker is not None else {})) as tab:
        yield tab


@pytest.fixture
def prefix() -> str:
    """A key prefix of the test's own, so that tests sharing one Redis server (or cluster) never see each other."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def stores() -> Iterator[list[RedisStore]]:
    """Where a Redis test puts the stores it makes: each is closed after the test."""
    made: list[RedisStore] = []
    yield made
    for store in made:
        store.close()
