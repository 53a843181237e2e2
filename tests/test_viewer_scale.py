"""The viewer at CI-log scale, in Chromium: a million lines open, scroll and follow without freezing the tab.

A ``PerformanceObserver`` for long tasks is installed before the page's own
script; a test fails if any main-thread task took 200 ms or more while the page
loaded, scrolled or followed. The page's memory (the JavaScript heap, as
DevTools reports it, and the DOM's node count) is a figure written to
``tests/artifacts/viewer-scale.json``, not an assertion: it depends on the
browser's version more than on us.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser import Page, job_page, wait_for

log = logging.getLogger("tests.viewer_scale")

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LIMIT_MS = 200

LONG_TASKS = """
window.__long = [];
new PerformanceObserver((list) => {
  for (const task of list.getEntries()) window.__long.push(Math.round(task.duration));
}).observe({type: "longtask", buffered: true});
"""

ENDED = "document.getElementById('banner') !== null && !document.getElementById('banner').hidden"
MAIN = "document.querySelector('main')"
FIRST_ROW = "document.querySelector('#log > *').textContent"
LAST_ROW = "document.querySelector('#log > :last-child').textContent"
SET_FILTER = "(() => { const f = document.getElementById('filter'); f.value = 'NEEDLE'; f.dispatchEvent(new Event('input')); })()"

pytestmark = [pytest.mark.servers, pytest.mark.page(scripts=[LONG_TASKS])]


def _figures(page: Page, name: str, **more: Any) -> dict[str, Any]:
    heap = page.send("Runtime.getHeapUsage")
    figures = {
        "js_heap_used_mb": round(heap["usedSize"] / 1e6, 1),
        "js_heap_total_mb": round(heap["totalSize"] / 1e6, 1),
        "dom_elements": page.evaluate("document.getElementsByTagName('*').length"),
        "rows_in_page": page.evaluate("document.getElementById('log').childElementCount"),
        "long_tasks_ms": page.evaluate("window.__long"),
        **more,
    }
    path = ARTIFACTS / "viewer-scale.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(path.read_text()) if path.exists() else {}
    known[name] = figures
    path.write_text(json.dumps(known, indent=2) + "\n")
    print(f"\n{name}: {figures}")
    return figures


def test_a_finished_million_line_job_opens_scrolls_and_filters_without_a_long_task(page: Page) -> None:
    lines = 1_000_000

    def target() -> None:
        for i in range(1, lines + 1):
            log.info("line %07d", i)

    with job_page(page, target, max_history=lines, heartbeat=1) as served:
        job = served.job
        assert job.wait(300) and job.record.records == lines
        opened = time.monotonic()
        served.open()
        wait_for(page, ENDED, 180)
        seconds = round(time.monotonic() - opened, 1)
        assert page.evaluate(LAST_ROW) == f"line {lines:07d}\n"
        wait_for(page, f"{MAIN}.scrollHeight - {MAIN}.scrollTop - {MAIN}.clientHeight < 4")
        # The scroll position means the whole log: the top is line 1, the middle the middle.
        page.evaluate(f"{MAIN}.scrollTop = 0")
        wait_for(page, f"{FIRST_ROW} === 'line 0000001\\n'")
        page.evaluate(f"{MAIN}.scrollTop = {MAIN}.scrollHeight / 2")
        middle = wait_for(page, f"{FIRST_ROW} !== 'line 0000001\\n' && Number({FIRST_ROW}.slice(5))")
        assert abs(middle - lines / 2) < lines / 100
        page.evaluate("document.getElementById('follow').click()")
        wait_for(page, f"{LAST_ROW} === 'line {lines:07d}\\n'")
        # The filter goes over every line, not only the rows in the page: a tenth of them match.
        line = page.evaluate("document.querySelector('#log > *').getBoundingClientRect().height")
        page.evaluate(SET_FILTER.replace("NEEDLE", "line 09"))
        wait_for(page, f"Math.abs(document.getElementById('log').offsetHeight - {lines // 10} * {line}) < 2", 60)
        page.evaluate(f"{MAIN}.scrollTop = 0")
        wait_for(page, f"{FIRST_ROW} === 'line 0900000\\n'")
        page.evaluate(SET_FILTER.replace("NEEDLE", ""))
        wait_for(page, f"Math.abs(document.getElementById('log').offsetHeight - {lines} * {line}) < 2", 60)
        figures = _figures(page, "finished_1M_lines", lines=lines, seconds_to_open=seconds)
        assert figures["rows_in_page"] < 400
        assert figures["dom_elements"] < 1000
        assert max(figures["long_tasks_ms"], default=0) < LIMIT_MS, figures["long_tasks_ms"]


def test_a_live_job_at_ten_thousand_lines_a_second_is_followed_at_the_bottom(page: Page) -> None:
    seconds, rate = 5, 10_000
    started = threading.Event()

    def target() -> None:
        assert started.wait(30)
        begin = time.monotonic()
        for i in range(1, seconds * rate + 1):
            log.info("live %06d", i)
            if i % 100 == 0:  # pace the producer at `rate` lines a second
                ahead = begin + i / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)

    with job_page(page, target, max_history=seconds * rate, heartbeat=1) as served:
        job = served.job
        try:
            served.open()
            wait_for(page, "document.getElementById('follow') !== null")
            started.set()
            wait_for(page, f"document.querySelector('#log > *') !== null && {LAST_ROW} !== 'live 000001\\n'")
            # While it runs, the view is at the newest lines: each look finds the last row near the end.
            behind = []
            while job.status == "running":
                shown = page.evaluate(f"Number({LAST_ROW}.slice(5))")
                behind.append(job.record.records - shown)
                assert page.evaluate("document.getElementById('follow').getAttribute('aria-pressed')") == "true"
            wait_for(page, ENDED, 60)
            assert page.evaluate(LAST_ROW) == f"live {seconds * rate:06d}\n"
            wait_for(page, f"{MAIN}.scrollHeight - {MAIN}.scrollTop - {MAIN}.clientHeight < 4")
            figures = _figures(page, "live_10k_lines_per_s", lines=seconds * rate, lines_behind=max(behind, default=0))
        finally:
            started.set()
        assert job.status == "ok"
        assert max(figures["long_tasks_ms"], default=0) < LIMIT_MS, figures["long_tasks_ms"]
