"""The HTML viewer in a real browser: headless Chromium, driven over the DevTools protocol.

Each test serves a job (or a plain stream) with ``wsgiref`` and reads what a
person would see from the page's DOM: the log's lines (``data-seq`` and text),
the header's progress bar, the end banner, the filter, the line cap. Jobs wait
on events the test sets only after the page showed what it must show first,
so every step is proven while the job is still running. A middleware cuts the
first HTML response of a job mid-line, as a proxy timing out would, and counts
every request; a script added before the page's own counts the requests the
page's JavaScript makes.

A screenshot of the viewer is kept in ``tests/artifacts/viewer.png``.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pytest

from tests.browser import Page, job_page, wait_for
from tests.browser import served as serve
from tests.servers import wait_until
from wsgi_logstream import jobs, logstream, progress
from wsgi_logstream.assets import ASSET_PREFIX, serve_asset
from wsgi_logstream.jobs import JobsApp
from wsgi_logstream.viewer import page_head

log = logging.getLogger("tests.viewer")

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

#: Runs before the page's own script: notes every request the page's JavaScript makes.
COUNT_REQUESTS = """
window.__requests = [];
(() => {
  const NativeEventSource = window.EventSource;
  window.EventSource = class extends NativeEventSource {
    constructor(url, init) { super(url, init); window.__requests.push("EventSource " + url); }
  };
  const nativeFetch = window.fetch;
  window.fetch = function (input, init) { window.__requests.push("fetch " + input); return nativeFetch.call(this, input, init); };
  const open = XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.open = function (method, url) {
    window.__requests.push("xhr " + url);
    return open.apply(this, arguments);
  };
})();
"""

pytestmark = [pytest.mark.servers, pytest.mark.page(scripts=[COUNT_REQUESTS])]

RECORDS = "Array.from(document.querySelectorAll('#log .r[data-seq]'), (r) => [Number(r.dataset.seq), r.textContent])"
VISIBLE = "Array.from(document.querySelectorAll('#log .r'), (r) => r.offsetParent !== null ? r.textContent : null)"
ENDED = "document.getElementById('banner') !== null && !document.getElementById('banner').hidden"


class Gates:
    """Events the targets wait on (bounded); all are set when the test ends, so nothing hangs."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}

    def __getitem__(self, name: str) -> threading.Event:
        return self._events.setdefault(name, threading.Event())

    def release_all(self) -> None:
        for event in self._events.values():
            event.set()


class CutFirstPage:
    """Middleware: ends the first HTML response after ``records`` records and a few bytes of the next.

    Whoever cut it (a proxy's read timeout, a network blip), the browser sees a
    document that ends without its summary, in the middle of a line. The job
    itself goes on. Every request is noted in ``requests``.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], records: int, partial: int = 5) -> None:
        self.app = app
        self.records = records
        self.partial = partial
        self.requests: list[str] = []
        self.cut = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        query = environ.get("QUERY_STRING", "")
        self.requests.append(environ["PATH_INFO"] + (f"?{query}" if query else ""))
        media: list[str] = []

        def noting(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            media.extend(value for name, value in headers if name.lower() == "content-type")
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        result = self.app(environ, noting)
        if self.cut.is_set() or not media or not media[0].startswith("text/html"):
            return result
        self.cut.set()
        return self._cut(result)

    def job_requests(self, job_id: str) -> list[str]:
        """The requests for one job (the browser also asks for /favicon.ico)."""
        return [r for r in self.requests if r.split("?")[0].strip("/").split("/")[0] == job_id]

    def _cut(self, result: Iterable[bytes]) -> Iterator[bytes]:
        seen = 0
        try:
            for chunk in result:
                starts = list(re.finditer(rb'<span class="r [a-z]+" data-seq="\d+"[^>]*>', chunk))
                if seen + len(starts) <= self.records:
                    seen += len(starts)
                    yield chunk
                    continue
                following = starts[self.records - seen]
                yield chunk[: following.end() + self.partial]
                return
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


@pytest.fixture
def gates() -> Iterator[Gates]:
    made = Gates()
    yield made
    made.release_all()


def _jobs(target: Callable[..., Any], **options: Any) -> JobsApp:
    options.setdefault("formatter", "%(message)s")
    options.setdefault("heartbeat", 0.5)
    return jobs(target, **options)


def _lines(first: int, last: int) -> list[str]:
    return [f"line {i:04d}\n" for i in range(first, last + 1)]


def test_a_job_page_reads_its_log_over_ndjson_once_and_shows_every_line_exactly_once(page: Page, gates: Gates) -> None:
    def target() -> None:
        for i in range(1, 41):
            log.info("line %04d", i)
            progress(i, 40)
            if i == 20:
                assert gates["shown"].wait(10)

    app = _jobs(target)
    job = app.start()
    wait_until(lambda: job.record.records == 20, 10, "the first 20 lines")
    with serve(page, app) as url:
        page.navigate(f"{url}/{job.id}")
        wait_for(page, "document.querySelectorAll('#log .r').length === 20")
        assert job.status == "running"
        gates["shown"].set()
        wait_for(page, ENDED)
        records = page.evaluate(RECORDS)
        assert [seq for seq, _ in records] == list(range(1, 80, 2))
        assert [text for _, text in records] == _lines(1, 40)
        assert page.evaluate("document.getElementById('progress').value") == 40
        assert page.evaluate("document.getElementById('banner').textContent").startswith("✔ ok")
        assert page.evaluate("document.getElementById('download').getAttribute('href')") == f"/{job.id}?format=text"
        # The document's own copy of the log was stopped in its head: the page never parsed a line of it.
        assert page.evaluate("document.getElementById('feed')") is None
        assert page.evaluate("window.__requests") == [f"fetch /{job.id}?format=ndjson&since=0"]
    assert job.wait(10) and job.status == "ok"


def test_the_header_progress_bar_moves_and_the_end_banner_says_how_it_ended(page: Page, gates: Gates) -> None:
    def target() -> None:
        log.info("\x1b[32mgreen\x1b[0m and \x1b[1;31mbold red\x1b[0m, <b>not markup</b>")
        for step in (1, 5):
            progress(step, 10, f"step {step}")
            log.info("at step %d", step)
            assert gates[f"step {step}"].wait(10)
        log.warning("row 13: duplicate key, skipped")
        try:
            raise KeyError("row 14")
        except KeyError:
            log.exception("row 14 failed")
        progress(10, 10, "committing")
        raise RuntimeError("the last batch could not be committed")

    app = _jobs(target, formatter="%(asctime)s %(levelname)-7s %(name)s: %(message)s", title="Nightly import")
    job = app.start()
    with serve(page, app) as url:
        page.navigate(f"{url}/{job.id}")
        bar = "document.getElementById('progress')"
        assert wait_for(page, f"{bar} && {bar}.value === 1 && {bar}.max") == 10
        assert page.evaluate("document.getElementById('progress-text').textContent") == "1/10 (10%) step 1"
        assert page.evaluate("document.title") == "10% · Nightly import"
        gates["step 1"].set()
        assert wait_for(page, f"{bar}.value === 5 && {bar}.max") == 10
        gates["step 5"].set()
        wait_for(page, ENDED)
        assert page.evaluate("document.getElementById('banner').className") == "error"
        assert page.evaluate("document.getElementById('banner').textContent").startswith(
            "✖ error: RuntimeError: the last batch could not be committed"
        )
        assert page.evaluate("document.title") == "✖ Nightly import"
        # ANSI colours became styled spans, built as text: no <b> element, no escape left.
        first = "document.querySelector('#log .r')"
        assert page.evaluate(f"{first}.textContent").endswith("green and bold red, <b>not markup</b>\n")
        assert page.evaluate("document.querySelectorAll('#log b, #log script').length") == 0
        pieces = page.evaluate(
            f"Array.from({first}.children, (s) => [s.textContent, s.style.color, getComputedStyle(s).fontWeight])"
        )
        styled = {text: (color, weight) for text, color, weight in pieces}
        assert styled["green"][0] == "rgb(23, 114, 69)" and styled["green"][1] == "400"
        assert styled["bold red"] == ("rgb(192, 38, 45)", "700")
        assert styled[" and "][0] == ""
        # Tracebacks folded: the record's first line (or the exception) is the summary.
        summaries = page.evaluate(
            "Array.from(document.querySelectorAll('#log details > summary'), (s) => s.textContent)"
        )
        assert len(summaries) == 2
        assert summaries[0].endswith("row 14 failed")
        assert summaries[1].startswith("Traceback (most recent call last): … RuntimeError: the last batch")
        assert page.evaluate("document.querySelectorAll('#log details[open]').length") == 0
        page.send("Emulation.setDeviceMetricsOverride", width=1000, height=520, deviceScaleFactor=1, mobile=False)
        page.screenshot(ARTIFACTS / "viewer.png")
    assert job.status == "error"


def test_the_filter_box_shows_only_matching_lines_live_ones_included(page: Page, gates: Gates) -> None:
    def target() -> None:
        for i in range(1, 31):
            log.info("row %02d %s", i, "duplicate key" if i % 3 == 0 else "imported")
            if i == 15:
                assert gates["typed"].wait(10)

    app = _jobs(target)
    job = app.start()
    with serve(page, app) as url:
        page.navigate(f"{url}/{job.id}")
        wait_for(page, "document.querySelectorAll('#log .r').length === 15")
        page.evaluate("document.getElementById('filter').focus()")
        page.send("Input.insertText", text="DUPLICATE")
        assert page.evaluate("document.getElementById('filter').value") == "DUPLICATE"
        wait_for(page, "document.querySelectorAll('#log .r').length === 5")  # drawn on the next frame
        shown = [text for text in page.evaluate(VISIBLE) if text is not None]
        assert shown == [f"row {i:02d} duplicate key\n" for i in (3, 6, 9, 12, 15)]
        gates["typed"].set()  # lines arriving now are filtered too
        wait_for(page, ENDED)
        wait_for(page, "document.querySelectorAll('#log .r').length === 10")
        shown = [text for text in page.evaluate(VISIBLE) if text is not None]
        assert shown == [f"row {i:02d} duplicate key\n" for i in range(3, 31, 3)]
        page.evaluate(
            "(() => { const f = document.getElementById('filter'); f.value = ''; f.dispatchEvent(new Event('input')); })()"
        )
        wait_for(page, "document.querySelectorAll('#log .r').length === 30")
        assert len([text for text in page.evaluate(VISIBLE) if text is not None]) == 30


def test_the_page_holds_rows_near_the_viewport_of_the_whole_log_and_follows_until_scrolled_up(
    page: Page, gates: Gates
) -> None:
    def target() -> None:
        for i in range(1, 6001):
            log.info("line %04d", i)
        assert gates["scrolled"].wait(10)
        for i in range(6001, 6011):
            log.info("line %04d", i)

    app = _jobs(target)
    job = app.start()
    wait_until(lambda: job.record.records == 6000, 10, "6000 lines")
    with serve(page, app) as url:
        page.navigate(f"{url}/{job.id}")
        last = "document.querySelector('#log > :last-child')"
        wait_for(page, f"{last} !== null && {last}.textContent === 'line 6000\\n'")
        main = "document.querySelector('main')"
        at_bottom = f"{main}.scrollHeight - {main}.scrollTop - {main}.clientHeight < 4"
        wait_for(page, at_bottom)
        # The page holds a window of rows, not 6000, and its height is that of every line.
        records = page.evaluate(RECORDS)
        assert 10 < len(records) < 200
        assert [text for _, text in records] == _lines(6001 - len(records), 6000)
        line = page.evaluate("document.querySelector('#log > *').getBoundingClientRect().height")
        assert page.evaluate("document.getElementById('log').offsetHeight") == pytest.approx(6000 * line, abs=2)
        assert page.evaluate("document.getElementById('follow').getAttribute('aria-pressed')") == "true"
        page.evaluate(f"{main}.scrollTop = 0")
        wait_for(page, "document.getElementById('follow').getAttribute('aria-pressed') === 'false'")
        # At the top the first lines are there: the scroll position means the whole log.
        wait_for(page, "document.querySelector('#log > *').textContent === 'line 0001\\n'")
        gates["scrolled"].set()
        wait_for(page, ENDED)
        assert page.evaluate(f"{main}.scrollTop") == 0, "a paused page must stay where the reader is"
        assert page.evaluate(RECORDS)[0] == [1, "line 0001\n"]
        page.evaluate("document.getElementById('follow').click()")
        wait_for(page, at_bottom)
        wait_for(page, f"{last}.textContent === 'line 6010\\n'")
        assert len(page.evaluate(RECORDS)) < 200


def test_a_plain_stream_page_never_asks_its_url_again(page: Page, tmp_path: Path) -> None:
    runs: list[str] = []

    def target(environ: dict[str, Any]) -> None:
        runs.append(environ.get("QUERY_STRING", ""))
        for i in range(1, 21):
            log.info("line %04d", i)

    stream = logstream(target, formatter="%(message)s")
    cutter = CutFirstPage(stream, records=12)

    def site(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        # Only /op runs the operation: the browser's own /favicon.ico must not.
        if environ["PATH_INFO"] == "/op":
            return cutter(environ, start_response)
        if environ["PATH_INFO"].startswith("/_assets/"):  # the page's script and style, served by the app
            return stream(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    with serve(page, site) as url:
        # Cut mid-way: a job page would resume here; a plain one must only say it is incomplete.
        page.navigate(f"{url}/op?run=cut")
        wait_for(page, ENDED)
        assert page.evaluate("document.getElementById('banner').className") == "lost"
        assert page.evaluate("document.getElementById('state').textContent") == "disconnected"
        assert page.evaluate("window.__requests") == []
        # A whole one: its download is made from the page, not by asking the URL again.
        page.navigate(f"{url}/op?run=whole")
        wait_for(page, ENDED)
        assert page.evaluate("document.getElementById('banner').textContent").startswith("✔ ok")
        # The browser saves the file the page made (its CSP, connect-src 'self', does not govern a download).
        page.send("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(tmp_path))
        page.evaluate("document.getElementById('download').click()")
        href = page.evaluate("document.getElementById('download').href")
        assert href.startswith("blob:")
        saved_file = tmp_path / page.evaluate("document.getElementById('download').download")
        wait_until(saved_file.exists, 10, "the download to be saved")
        saved = saved_file.read_text()
        assert page.evaluate("window.__requests") == []
    assert runs == ["run=cut", "run=whole"]
    assert cutter.requests == ["/op?run=cut", "/op?run=whole"]
    assert saved.splitlines()[:20] == [line.rstrip("\n") for line in _lines(1, 20)]
    assert saved.splitlines()[-1].startswith("✔ ok")


def test_with_javascript_off_the_page_still_streams_and_ends_plainly(page: Page, gates: Gates) -> None:
    def target() -> None:
        log.info("line 0001")
        assert gates["seen"].wait(10)
        log.info("line 0002")

    page.send("Emulation.setScriptExecutionDisabled", value=True)
    app = _jobs(target)
    job = app.start()
    with serve(page, app) as url:
        page.navigate(f"{url}/{job.id}")
        wait_until(lambda: page.text("#log") == "line 0001\n", 10, "the first line with JavaScript off")
        gates["seen"].set()
        wait_until(lambda: page.text("#end") is not None, 10, "the summary with JavaScript off")
        assert page.text("#log") == "line 0001\nline 0002\n"
        assert (page.text("#end") or "").startswith("✔ ok")
        # DevTools still evaluates when the page may not: nothing of the script's work is there.
        assert page.evaluate("document.documentElement.className") == ""
        assert page.evaluate("!document.getElementById('tools') && !document.getElementById('banner')") is True
        assert page.evaluate("getComputedStyle(document.querySelector('main')).flexDirection") == "column-reverse"
        assert page.evaluate("getComputedStyle(document.getElementById('state')).display") == "none"


def test_a_line_that_arrives_in_pieces_is_rendered_whole(page: Page, gates: Gates) -> None:
    """The network may split a record anywhere: the page renders what it has, then all of it."""

    def pieces(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ["PATH_INFO"].startswith(ASSET_PREFIX):
            return serve_asset(environ, start_response, environ["PATH_INFO"][len(ASSET_PREFIX) :])
        return cut_record(start_response)

    def cut_record(start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        yield page_head("pieces", 0).encode()
        yield '<span class="r e" data-seq="1">\u241b[31mred \u241b['.encode()
        assert gates["first piece shown"].wait(10)
        yield (
            "1mstill red\u241b[0m plain\nTraceback (most recent call last):\n"
            '  File "x.py", line 1\nValueError: boom\n</span>'
            '</pre><p class="end ok" id="end" data-status="ok">\u2714 ok</p></div></main></body></html>'
        ).encode()

    with serve(page, pieces) as url:
        page.navigate(f"{url}/x")
        record = "document.querySelector('#log .r')"
        wait_for(page, f"{record} !== null && {record}.textContent === 'red \\u241b['")
        assert page.evaluate(f"{record}.firstElementChild.style.color") == "rgb(192, 38, 45)"
        gates["first piece shown"].set()
        wait_for(page, ENDED)
        assert page.evaluate(f"{record}.querySelector('summary').textContent") == "red still red plain"
        pieces_shown = page.evaluate(
            f"Array.from({record}.querySelectorAll('summary span'), (s) => [s.textContent, s.style.color, s.style.fontWeight])"
        )
        assert pieces_shown == [
            ["red ", "rgb(192, 38, 45)", ""],
            ["still red", "rgb(192, 38, 45)", "bold"],
            [" plain", "", ""],
        ]
        assert page.evaluate(f"{record}.querySelector('details').textContent").endswith("ValueError: boom\n")
        assert page.evaluate("window.__requests") == []


@pytest.mark.parametrize(("history", "marker"), [(5, "-- 15 lines dropped"), (19, "-- 1 line dropped")])
def test_a_late_viewer_of_a_trimmed_history_is_told_how_many_lines_were_not_kept(
    page: Page, history: int, marker: str
) -> None:
    def target() -> None:
        for i in range(1, 21):
            log.info("line %04d", i)

    with job_page(page, target, max_history=history) as served:
        assert served.job.wait(10)
        served.open()
        wait_for(page, ENDED)
        rows = page.evaluate("Array.from(document.querySelectorAll('#log > *'), (r) => [r.className, r.textContent])")
        # The page cannot tell a trimmed history from a slow reader or a writer's outage: the marker says neither.
        assert rows[0] == ["drop", f"{marker}: not kept for this page --\n"]
        assert [text for _, text in rows[1:]] == _lines(21 - history, 20)
