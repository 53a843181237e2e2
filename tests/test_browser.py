"""A real browser, through nginx with the example config: the HTML page and EventSource.

Headless Chromium loads the stream through nginx (gzip on, buffering left on,
as in ``examples/nginx.conf``), and the tests read what a person would see
through the DevTools protocol (``tests/browser.py``). The operation
(``tests/nginx.py``) logs ``first K`` and then waits until the test, having
seen that line in the page, asks ``/release?key=K``: a pass proves the page
showed the line while the operation was still running.

Screenshots of the page mid-stream are saved to ``tests/artifacts/`` (ignored
by git) for a person to look at.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import Chromium, Page, wait_for
from tests.nginx import Nginx, gunicorn_with
from tests.servers import RawClient, wait_until

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="module")
def site() -> Iterator[Nginx]:
    with (
        gunicorn_with("gunicorn.conf.py", "tests.nginx:application") as upstream,
        Nginx(f"127.0.0.1:{upstream.port}") as proxy,
    ):
        yield proxy


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    with Chromium() as browser:
        yield browser


def _get(url: str, path: str) -> bytes:
    with RawClient(url, path) as client:
        body = client.read_to_end()
    assert client.status == 200, (path, client.status, body)
    return body


def _watch_html_stream(site: Nginx, page: Page, key: str, screenshot: str) -> None:
    page.navigate(f"{site.url}/ops/run?format=html&key={key}")
    wait_until(lambda: f"first {key}" in (page.text("#log") or ""), 15, f"'first {key}' in the page's #log")
    # The operation is blocked until we release it: the page shows a line of a running operation.
    assert page.text("#end") is None
    assert f"second {key}" not in (page.text("#log") or "")
    page.screenshot(ARTIFACTS / screenshot)
    _get(site.url, f"/release?key={key}")
    wait_until(lambda: page.text("#end") is not None, 15, "the end summary (#end) in the page")
    assert page.evaluate("document.querySelector('#end').dataset.status") == "ok"
    log = page.text("#log") or ""
    for line in (f"second {key} released=True", f"line 1 of {key}", f"line 3 of {key}"):
        assert line in log


@pytest.mark.servers
def test_html_page_shows_first_line_while_operation_runs(site: Nginx, chromium: Chromium) -> None:
    with chromium.new_page() as page:
        _watch_html_stream(site, page, uuid.uuid4().hex, "html-stream-running.png")


@pytest.mark.servers
def test_html_page_streams_with_javascript_disabled(site: Nginx, chromium: Chromium) -> None:
    with chromium.new_page() as page:
        page.send("Emulation.setScriptExecutionDisabled", value=True)
        # The switch really is off: the EventSource page's script does not run.
        page.navigate(f"{site.url}/sse.html?key=never")
        wait_until(lambda: page.evaluate("document.readyState") == "complete", 15, "the EventSource page to load")
        assert page.evaluate("typeof window.source") == "undefined"
        _watch_html_stream(site, page, uuid.uuid4().hex, "html-stream-running-no-javascript.png")


@pytest.mark.servers
def test_event_source_gets_every_event_then_stops_without_reconnecting(site: Nginx, chromium: Chromium) -> None:
    """EventSource through nginx: each event, the end event, then one reconnection answered 204, and no more.

    The page never calls ``close()``: when the stream ends EventSource
    reconnects (after the stream's ``retry``, 3 s) with ``Last-Event-ID``, the
    library answers 204, and EventSource closes for good (readyState 2).
    """
    key = uuid.uuid4().hex
    with chromium.new_page() as page:
        page.navigate(f"{site.url}/sse.html?key={key}")
        wait_for(page, f"window.received?.some((line) => line.endsWith('first {key}'))", 15)
        assert page.evaluate("window.ended") is None  # the operation is still blocked
        _get(site.url, f"/release?key={key}")
        ended = wait_for(page, "window.ended", 15)
        assert ended["status"] == "ok" and ended["records"] == 5
        received = page.evaluate("window.received")
        assert [line.rsplit(": ", 1)[-1] for line in received] == [
            f"first {key}",
            f"second {key} released=True",
            f"line 1 of {key}",
            f"line 2 of {key}",
            f"line 3 of {key}",
        ]
        wait_for(page, "window.source.readyState === 2", 15)
        counts = json.loads(_get(site.url, f"/count?key={key}"))
        assert counts["runs"] == 1, counts  # the operation ran once
        assert counts["requests"] == 2, counts  # the stream, and one reconnection that got 204
        assert page.evaluate("window.opens") == 1
