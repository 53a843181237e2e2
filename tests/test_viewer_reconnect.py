"""A job's page that loses its connection keeps trying, says so, and resumes without a gap or a duplicate.

Chromium reaches the job through a TCP proxy (``tests/apps/tcp_proxy.py``, a
process of its own). The test kills the proxy with ``SIGKILL`` while the page is
following a running job, so every connection through it is cut at once,
possibly in the middle of a line; the job goes on logging meanwhile. The page
must say it is reconnecting and keep trying with a growing wait (its attempts
are refused while the proxy is down); once the proxy is back on the same port,
it must carry on from the last line it had. Then every line of the job must be
in the page exactly once, in order: the test reads every row the page can show
by scrolling it from top to bottom, keyed by the page's own entry number, so a
line the page held twice would be seen twice.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.browser import Page, job_page, wait_for
from tests.servers import Program, free_port, wait_until
from tests.wire import ndjson_objects
from wsgi_logstream import progress

log = logging.getLogger("tests.viewer_reconnect")

PROXY = Path(__file__).resolve().parent / "apps" / "tcp_proxy.py"

COUNT_FETCHES = """
window.__fetches = [];
(() => {
  const nativeFetch = window.fetch;
  window.fetch = function (input, init) { window.__fetches.push(String(input)); return nativeFetch.call(this, input, init); };
})();
"""

#: Scroll the log from top to bottom, one screen at a time, and return [entry, seq, text] of every row it showed.
EVERY_ROW = """
(async () => {
  const main = document.querySelector("main");
  const rows = new Map();
  const frame = () => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok)));
  document.getElementById("follow").getAttribute("aria-pressed") === "true" && document.getElementById("follow").click();
  main.scrollTop = 0;
  for (;;) {
    await frame();
    for (const row of document.querySelectorAll("#log > [data-seq]")) {
      rows.set(Number(row.dataset.entry), [Number(row.dataset.entry), Number(row.dataset.seq), row.textContent]);
    }
    if (main.scrollTop + main.clientHeight >= main.scrollHeight - 2) break;
    main.scrollTop += main.clientHeight;
  }
  return Array.from(rows.values()).sort((a, b) => a[0] - b[0]);
})()
"""

ENDED = "document.getElementById('banner') !== null && !document.getElementById('banner').hidden && document.getElementById('end') !== null"
LAST_ROW = "document.querySelector('#log > :last-child')?.textContent"

pytestmark = [pytest.mark.servers, pytest.mark.page(scripts=[COUNT_FETCHES])]


def _proxy(port: int, upstream: str) -> Program:
    return Program([sys.executable, str(PROXY), str(port), upstream.rsplit(":", 1)[1]], port)


def _stop(proxy: Program, sig: int = signal.SIGTERM) -> None:
    proxy.stop(sig)
    proxy.log.unlink(missing_ok=True)


def _every_row(page: Page) -> list[list[Any]]:
    result = page.send("Runtime.evaluate", expression=EVERY_ROW, awaitPromise=True, returnByValue=True)
    assert "exceptionDetails" not in result, result
    rows: list[list[Any]] = result["result"]["value"]
    return rows


def test_a_job_page_cut_off_keeps_trying_and_resumes_with_every_line_once(page: Page) -> None:
    gates = {name: threading.Event() for name in ("cut", "back")}

    def target() -> None:
        for phase, (first, last) in enumerate(((1, 200), (201, 400), (401, 600))):
            for i in range(first, last + 1):
                log.info("line %04d", i)
                if i % 50 == 0:
                    progress(i, 600)
            if phase < 2:
                assert gates[("cut", "back")[phase]].wait(30)

    proxy: Program | None = None
    with job_page(page, target, heartbeat=0.5) as served:
        job, upstream = served.job, served.url
        try:
            port = free_port()
            proxy = _proxy(port, upstream)
            page.navigate(f"http://127.0.0.1:{port}/{job.id}")
            wait_for(page, f"{LAST_ROW} === 'line 0200\\n'")
            _stop(proxy, signal.SIGKILL)  # every connection through it cut at once
            proxy = None
            wait_for(page, "document.getElementById('state').textContent === 'reconnecting…'")
            gates["cut"].set()  # the job goes on while the page is cut off
            wait_until(lambda: job.record.records == 400, 10, "lines 201-400")
            # It keeps trying, counting its attempts, with a growing wait (refused while the proxy is down).
            banner = wait_for(
                page,
                "/trying again in .* \\(attempt 3\\)/.test(document.getElementById('banner').textContent)"
                " && document.getElementById('banner').textContent",
                20,
            )
            assert banner.startswith(("lost the connection to the server", "the stream ended before the log did"))
            assert "trying again in 2 s (attempt 3)" in banner
            proxy = _proxy(port, upstream)
            wait_for(page, f"{LAST_ROW} === 'line 0400\\n'", 30)
            assert page.evaluate("document.getElementById('state').textContent") == "running"
            assert page.evaluate("document.getElementById('banner').hidden") is True
            gates["back"].set()
            wait_for(page, ENDED, 30)
            assert page.evaluate("document.getElementById('end').dataset.status") == "ok"
            # What the job logged, read straight from it.
            with urllib.request.urlopen(f"{upstream}/{job.id}?format=ndjson", timeout=10) as reply:
                events = ndjson_objects(reply.read())
            expected = [[e["seq"], e["line"] + "\n"] for e in events if e["event"] == "log"]
            assert len(expected) == 600
            rows = _every_row(page)
            assert [[seq, text] for _, seq, text in rows] == expected, "a line missing or shown twice"
            # It asked again from where it was, never from the start.
            fetches = page.evaluate("window.__fetches")
            cut_at = max(e.get("seq", 0) for e in events if e.get("seq", 0) <= expected[199][0] + 1)
            assert fetches[0] == f"/{job.id}?format=ndjson&since=0"
            assert len(fetches) >= 4  # the first, three refused, the one that got back in
            assert set(fetches[1:]) == {f"/{job.id}?format=ndjson&since={cut_at}"}
            assert job.status == "ok"
        finally:
            for gate in gates.values():
                gate.set()
            if proxy is not None:
                _stop(proxy)
