"""Sections and lines rewritten with CR in the page's JavaScript, in a real browser (headless Chromium).

A job page reads ``section`` events and ``partial`` entries from NDJSON; a plain stream's page harvests the
server's ``<details class="sec">`` and ``r i p`` spans. Either way a clean finished section is one header row
(shut, its lines take no rows), a failed one stays open and is marked, and a progress bar drawn with CR is one
line at its final state. The screenshots of the README (``docs/viewer-sections.png``,
``docs/viewer-progress.png``) are taken here: run with ``UPDATE_SCREENSHOTS=1`` to write them there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.apps import progress_bar
from tests.browser import Page, job_page, served, wait_for
from tests.servers import wait_until
from wsgi_logstream import jobs, logstream, section

pytestmark = [pytest.mark.servers, pytest.mark.page(size=(900, 420))]

log = logging.getLogger("tests.viewer.sections")

#: Where the screenshots go: tests/artifacts (ignored by git), or the README's docs/ with UPDATE_SCREENSHOTS=1,
#: so that a test run does not rewrite tracked files.
SHOTS = (
    Path(__file__).resolve().parent.parent / "docs"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else (Path(__file__).resolve().parent / "artifacts")
)

ENDED = "document.getElementById('banner') !== null && !document.getElementById('banner').hidden"
#: Every row the page drew: [kind, seq, text] (a section's header row has kind "sec ...").
ROWS = "Array.from(document.querySelectorAll('#log > [data-entry]'), (r) => [r.className, r.dataset.seq || '', r.textContent])"
LINES = "Array.from(document.querySelectorAll('#log > .r'), (r) => r.textContent)"


def _sections(gate: threading.Event) -> Callable[[], None]:
    def target() -> None:
        log.info("deploying build 42")
        with section("Install dependencies"):
            for name in ("requests", "urllib3", "idna"):
                log.info("installed %s", name)
        try:
            with section("Run migrations"):
                log.info("applying 0007_add_index")
                with section("Check constraints"):
                    log.info("3 constraints checked")
                assert gate.wait(10)
                log.error("0008_drop_column: column 'legacy' is still referenced")
                raise RuntimeError("migration 0008 failed")
        except RuntimeError:
            log.warning("rolled back to 0007")

    return target


def _headers(rows: list[list[str]]) -> dict[str, list[str]]:
    return {text.split("  ")[0][2:]: [kind, text] for kind, _, text in rows if kind.startswith("sec")}


def test_a_job_page_shuts_a_clean_section_and_keeps_a_failed_one_open_and_marked(page: Page) -> None:
    gate = threading.Event()
    with job_page(page, _sections(gate), heartbeat=0.5) as served_job:
        job = served_job.job
        try:
            wait_until(lambda: job.record.records >= 6, 10, "the lines before the gate")
            served_job.open()
            # While it runs: the clean section is shut (its lines take no rows), the running one is open.
            wait_for(page, "document.querySelectorAll('#log > .sec').length === 3")
            running = _headers(page.evaluate(ROWS))
            assert running["Install dependencies"][0] == "sec ok shut"
            assert running["Run migrations"][0] == "sec run"
            assert "running" in running["Run migrations"][1]
            assert page.evaluate(LINES) == ["deploying build 42\n", "applying 0007_add_index\n"]
            assert job.status == "running"
            gate.set()
            wait_for(page, ENDED)
            wait_for(page, "document.querySelector('#log > .sec.error') !== null")
            rows = page.evaluate(ROWS)
            headers = _headers(rows)
            assert headers["Install dependencies"][0] == "sec ok shut"
            assert headers["Run migrations"][0] == "sec error"  # open, and marked
            assert headers["Check constraints"][0] == "sec ok shut"
            for name in headers:
                assert "\u00b7 " in headers[name][1] and headers[name][1].rstrip().endswith("s")  # a duration
            assert "\u2716 error" in headers["Run migrations"][1]
            assert page.evaluate(LINES) == [
                "deploying build 42\n",
                "applying 0007_add_index\n",
                "0008_drop_column: column 'legacy' is still referenced\n",
                "rolled back to 0007\n",
            ]
            # Folded lines take no rows: the log is exactly as tall as its rows.
            assert page.evaluate("document.getElementById('log').children.length") == len(rows)
            page.screenshot(SHOTS / "viewer-sections.png")
            # A click opens the clean section: its lines are back, in order, under its header.
            _click(page, "#log > .sec.shut .sec-name")
            wait_for(page, "document.querySelectorAll('#log > .r').length === 7")
            lines = page.evaluate(LINES)
            assert lines[1:4] == ["installed requests\n", "installed urllib3\n", "installed idna\n"]
            _click(page, "#log > .sec:not(.shut):not(.error) .sec-name")
            wait_for(page, "document.querySelectorAll('#log > .r').length === 4")
        finally:
            gate.set()
        assert job.wait(10)


def _click(page: Page, selector: str) -> None:
    """A real mouse click (through the browser's input pipeline) in the middle of the element."""
    box = page.evaluate(
        f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();"
        " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
    )
    for kind in ("mousePressed", "mouseReleased"):
        page.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)


def test_a_plain_page_folds_the_sections_it_harvests_from_the_servers_html(page: Page) -> None:
    gate = threading.Event()
    app = logstream(_sections(gate), formatter="%(message)s", heartbeat=0.5)
    gate.set()
    with served(page, app) as url:
        page.navigate(url)
        wait_for(page, ENDED)
        wait_for(page, "document.querySelector('#log > .sec.error') !== null")
        headers = _headers(page.evaluate(ROWS))
        assert headers["Install dependencies"][0] == "sec ok shut"
        assert headers["Run migrations"][0] == "sec error"
        assert headers["Check constraints"][0] == "sec ok shut"
        assert page.evaluate(LINES) == [
            "deploying build 42\n",
            "applying 0007_add_index\n",
            "0008_drop_column: column 'legacy' is still referenced\n",
            "rolled back to 0007\n",
        ]
        # The server's own markup was taken apart: no <details> left in the page.
        assert page.evaluate("document.querySelectorAll('details.sec').length") == 0


def test_a_shut_section_of_twenty_thousand_lines_takes_no_rows_and_a_filter_still_finds_them(page: Page) -> None:
    def target() -> None:
        log.info("start")
        with section("Quiet"):
            for i in range(20000):
                log.info("quiet %05d", i)
        with contextlib.suppress(RuntimeError), section("Loud"):
            for i in range(20000):
                log.info("loud %05d", i)
            raise RuntimeError("loud failed")
        log.info("finish")

    with job_page(page, target, heartbeat=0.5, max_history=100000) as served_job:
        assert served_job.job.wait(30)
        served_job.open()
        wait_for(page, ENDED, timeout=30)
        # The scroller is as tall as the rows shown: start, two headers, Loud's 20000 lines, finish.
        rows = (
            "(() => { const row = document.querySelector('#log > .r'); if (!row) return -1;"
            " return Math.round(parseFloat(document.getElementById('log').style.height)"
            " / row.getBoundingClientRect().height); })()"
        )
        assert page.evaluate(rows) == 20004
        assert page.evaluate("document.querySelector('#log > .r:last-child').textContent") == "finish\n"
        # A filter finds lines in a shut section too.
        page.evaluate(
            "(() => { const f = document.getElementById('filter'); f.value = 'quiet 0000';"
            " f.dispatchEvent(new Event('input')); })()"
        )
        wait_for(page, "document.querySelectorAll('#log > .r').length === 10")
        assert page.evaluate(LINES) == [f"quiet {i:05d}\n" for i in range(10)]
        page.evaluate(
            "(() => { const f = document.getElementById('filter'); f.value = '';"
            " f.dispatchEvent(new Event('input')); })()"
        )
        wait_for(page, f"{rows} === 20004")
        # Opened, Quiet's lines take their rows again, and the last line is still reachable at the bottom.
        page.evaluate("document.querySelector('main').scrollTop = 0")
        wait_for(page, "document.querySelector('#log > .sec.shut') !== null")
        _click(page, "#log > .sec.shut .sec-name")
        wait_for(page, f"{rows} === 40004")
        page.evaluate("document.querySelector('main').scrollTop = document.querySelector('main').scrollHeight")
        wait_for(page, "document.querySelector('#log > .r:last-child').textContent === 'finish\\n'")


def _bar_rows(page: Page) -> list[str]:
    return [text for text in page.evaluate(LINES)]


@pytest.mark.parametrize("kind", ["job", "plain"])
def test_a_command_drawing_a_progress_bar_is_one_line_that_ends_at_100_percent(
    page: Page, tmp_path: Path, kind: str
) -> None:
    gate = tmp_path / "gate"
    command = progress_bar.command(gate, "downloading model.bin", "saved model.bin", 0.01)
    options: dict[str, Any] = {"formatter": "%(message)s", "heartbeat": 0.2}
    app: Any = jobs(command, **options) if kind == "job" else logstream(command, **options)
    job = app.start() if kind == "job" else None
    try:
        with served(page, app) as url:
            page.navigate(f"{url}/{job.id}" if job is not None else url)
            # The first state is on the page while the command still waits for the gate.
            wait_for(
                page, "Array.from(document.querySelectorAll('#log > .r')).some((r) => r.textContent.includes('0/100'))"
            )
            gate.touch()
            wait_for(page, ENDED, timeout=30)
            lines = _bar_rows(page)
            assert lines == ["downloading model.bin\n", "100%|##########| 100/100\n", "saved model.bin\n"]
            if kind == "job":
                page.screenshot(SHOTS / "viewer-progress.png")
    finally:
        gate.touch()
    if job is not None:
        assert job.wait(10)
