"""The viewer under its Content-Security-Policy, in Chromium, served directly and behind nginx with a prefix.

A script added before the page's own records every ``securitypolicyviolation``
event; the DevTools console (``Log`` domain) is read as well. A page passes
when nothing was refused *and* the script's enhancement visibly ran (the tools
it builds exist) and the style applied: a page whose assets failed to load
would have no violation either. Each test then injects an inline script and
sees it refused, so the detector is shown to work on the same page.

Behind nginx, the site is reached under ``/mapped/``, a prefix the WSGI
application never sees (``proxy_pass http://app/;`` strips it): the page's
asset URLs, relative to the page, must still resolve through the proxy.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.browser import Page, job_page, served, wait_for
from tests.nginx import Nginx
from tests.servers import wsgiref_server
from wsgi_logstream import LogStreamMiddleware, jobs, logstream, progress
from wsgi_logstream.assets import load
from wsgi_logstream.viewer import CSP

log = logging.getLogger("tests.viewer_csp")

WATCH_CSP = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""

ENHANCED = (
    "document.documentElement !== null && document.documentElement.classList.contains('js') && document.getElementById('tools') !== null"
    " && document.getElementById('filter') !== null"
)
ENDED = "document.getElementById('banner') !== null && !document.getElementById('banner').hidden"

PREFIX_CONF = """
events {
    worker_connections 64;
}
http {
    default_type application/octet-stream;
    gzip on;
    gzip_types text/plain text/css text/javascript application/x-ndjson text/event-stream;
    upstream app {
        server @UPSTREAM@;
    }
    server {
        listen @LISTEN@;
        location /mapped/ {
            proxy_pass http://app/;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_read_timeout 60s;
        }
    }
}
"""


pytestmark = [pytest.mark.servers, pytest.mark.page(domains=["Log"], scripts=[WATCH_CSP])]


def _console_refusals(page: Page) -> list[str]:
    page.evaluate("0")  # collect the events that arrived meanwhile
    return [
        event["params"]["entry"]["text"]
        for event in page.events
        if event["method"] == "Log.entryAdded" and "Content Security Policy" in event["params"]["entry"]["text"]
    ]


def _uncaught(page: Page) -> list[str]:
    page.evaluate("0")  # collect the events that arrived meanwhile
    return [
        str(event["params"]["exceptionDetails"].get("exception", {}).get("description"))
        for event in page.events
        if event["method"] == "Runtime.exceptionThrown"
    ]


def _assert_enhanced_under_csp(page: Page) -> None:
    wait_for(page, ENHANCED)
    assert page.evaluate("window.__violations") == []
    assert _console_refusals(page) == []
    # The style file applied: the JS-on layout and the header's line.
    assert page.evaluate("getComputedStyle(document.querySelector('main')).flexDirection") == "column"
    assert page.evaluate("getComputedStyle(document.querySelector('header')).borderBottomStyle") == "solid"


def _assert_inline_script_is_refused(page: Page) -> None:
    page.evaluate(
        "document.head.append(Object.assign(document.createElement('script'), {textContent: 'window.__ran = 1'}))"
    )
    assert _uncaught(page) == []  # the page's own script threw nothing, all along
    wait_for(page, "window.__violations.length === 1")
    assert page.evaluate("window.__ran === undefined") is True
    assert page.evaluate("window.__violations[0]").startswith("script-src")


def test_a_job_page_runs_its_script_and_style_under_the_strict_csp_and_nothing_inline_runs(page: Page) -> None:
    seen = threading.Event()

    def target() -> None:
        log.info("\x1b[31mred\x1b[0m line one")
        progress(1, 2, "half")
        assert seen.wait(10)
        log.info("line two")

    with job_page(page, target, heartbeat=0.5) as served:
        try:
            served.open()
            _assert_enhanced_under_csp(page)
            # What the script does, under the policy: colours as styled spans, the header's bar.
            wait_for(page, "document.getElementById('progress').value === 1")
            wait_for(page, "document.querySelector('#log .r span') !== null")
            assert page.evaluate("document.querySelector('#log .r span').style.color") == "rgb(192, 38, 45)"
            seen.set()
            wait_for(page, ENDED)
            assert page.evaluate("window.__violations") == []
            _assert_inline_script_is_refused(page)
        finally:
            seen.set()


def test_the_jobs_index_has_its_style_under_the_csp(page: Page) -> None:
    with job_page(page, lambda: None, title="Imports") as served:
        assert served.job.wait(10)
        page.navigate(f"{served.url}/")
        wait_for(page, "document.querySelector('table') !== null && document.readyState === 'complete'")
        assert page.evaluate("getComputedStyle(document.querySelector('table')).borderCollapse") == "collapse"
        assert page.evaluate("window.__violations") == []
        assert _console_refusals(page) == []


def _fallback(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"the host app\n"]


@pytest.mark.parametrize("route", ["job", "plain"])
def test_behind_a_proxy_that_maps_a_prefix_the_page_loads_its_assets_through_it(page: Page, route: str) -> None:
    seen = threading.Event()

    def target() -> None:
        log.info("first line")
        assert seen.wait(10)

    job_app = jobs(target, formatter="%(message)s", heartbeat=0.5)
    site = LogStreamMiddleware(
        _fallback,
        {"/ops/import": job_app, "/ops/reindex": logstream(target, formatter="%(message)s", heartbeat=0.5)},
    )
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "prefix.conf"
        conf.write_text(PREFIX_CONF)
        try:
            with wsgiref_server(site) as upstream, Nginx(upstream.removeprefix("http://"), conf=conf) as proxy:
                if route == "job":
                    job = job_app.start()
                    page_url = f"{proxy.url}/mapped/ops/import/{job.id}"
                else:
                    page_url = f"{proxy.url}/mapped/ops/reindex"  # at the mount point itself: no trailing slash
                page.navigate(page_url)
                _assert_enhanced_under_csp(page)
                wait_for(page, "document.querySelector('#log .r') !== null")
                # The URLs the page used went through the proxy's prefix to the mount point's _assets/.
                loaded = page.evaluate(
                    "performance.getEntriesByType('resource').map((e) => [e.name, e.responseStatus])"
                )
                mount = "/mapped/ops/import" if route == "job" else "/mapped/ops/reindex"
                assert sorted(loaded) == sorted(
                    [
                        [f"{proxy.url}{mount}/_assets/{load('viewer.css').hashed_name}", 200],
                        [f"{proxy.url}{mount}/_assets/{load('viewer.js').hashed_name}", 200],
                    ]
                ), proxy.errors()
                # The stream's own response carries the policy through nginx (HEAD: nothing runs, nothing waits).
                with urllib.request.urlopen(
                    urllib.request.Request(f"{page_url}?format=html", method="HEAD"), timeout=10
                ) as head:
                    assert head.headers["Content-Security-Policy"] == CSP
                seen.set()
                wait_for(page, ENDED)
                assert page.evaluate("document.getElementById('end').dataset.status") == "ok"
                _assert_inline_script_is_refused(page)
                page.navigate("about:blank")
                # A conditional request through the proxy gets 304.
                asset_url = f"{proxy.url}{mount}/_assets/{load('viewer.js').hashed_name}"
                request = urllib.request.Request(asset_url, headers={"If-None-Match": load("viewer.js").etag})
                with pytest.raises(urllib.error.HTTPError) as not_modified:
                    urllib.request.urlopen(request, timeout=10)
                assert not_modified.value.code == 304
                not_modified.value.close()
        finally:
            seen.set()
            assert job_app.shutdown()


def test_the_policy_is_the_documented_one() -> None:
    directives = dict(part.strip().split(" ", 1) for part in CSP.split(";"))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    assert "unsafe" not in CSP


def test_a_flask_view_mounted_at_one_url_loads_its_script_and_style_from_that_url_under_the_csp(page: Page) -> None:
    from flask import Flask

    from wsgi_logstream.flask import stream_view

    seen = threading.Event()

    def target() -> None:
        log.info("first line")
        assert seen.wait(10)

    host = Flask(__name__)
    host.add_url_rule("/ops/once", "once", stream_view(logstream(target, formatter="%(message)s", heartbeat=0.5)))
    try:
        with served(page, host) as url:
            page.navigate(f"{url}/ops/once")  # one URL: the host routes nothing below it
            _assert_enhanced_under_csp(page)
            wait_for(page, "document.querySelector('#log .r') !== null")
            loaded = page.evaluate("performance.getEntriesByType('resource').map((e) => [e.name, e.responseStatus])")
            assert sorted(loaded) == sorted(
                [f"{url}/ops/once?logstream_asset={load(name).hashed_name}", 200]
                for name in ("viewer.css", "viewer.js")
            )
            seen.set()
            wait_for(page, ENDED)
            _assert_inline_script_is_refused(page)
    finally:
        seen.set()
