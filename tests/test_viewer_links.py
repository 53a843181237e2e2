"""Links to lines, in Chromium: ``#L<seq>`` and ``#L<from>-L<to>`` open the page there, highlighted.

Each line of a job has a stable name, its sequence number (the number in the
page's gutter). A link to a finished job scrolls once the line is in the
page; a link to a running job's line that does not exist yet waits for it,
then scrolls there and stops following, so the lines that keep arriving do
not pull the reader away.
"""

from __future__ import annotations

import logging
import threading

import pytest

from tests.browser import Page, job_page, wait_for
from tests.servers import wait_until

pytestmark = pytest.mark.servers

log = logging.getLogger("tests.viewer_links")

ENDED = "document.getElementById('banner') !== null && !document.getElementById('banner').hidden"
HIGHLIGHTED = "Array.from(document.querySelectorAll('#log > .hl'), (r) => Number(r.dataset.seq))"
FOLLOWING = "document.getElementById('follow').getAttribute('aria-pressed') === 'true'"


def in_view(seq: int) -> str:
    """JavaScript: the row of line ``seq`` is in the page and wholly inside the scroller's viewport."""
    return (
        "(() => { const row = document.querySelector('#log > [data-seq=\"SEQ\"]'); if (!row) return false;"
        " const m = document.querySelector('main').getBoundingClientRect(), r = row.getBoundingClientRect();"
        " return r.top >= m.top && r.bottom <= m.bottom; })()"
    ).replace("SEQ", str(seq))


def test_a_range_link_to_a_finished_job_opens_scrolled_there_with_the_range_highlighted(page: Page) -> None:
    def target() -> None:
        for i in range(1, 3001):
            log.info("line %04d", i)

    with job_page(page, target) as served:
        assert served.job.wait(30)
        served.open("#L1200-L1250")
        wait_for(page, ENDED)
        wait_for(page, in_view(1200))
        shown = page.evaluate(HIGHLIGHTED)
        assert shown == list(range(1200, 1200 + len(shown))) and len(shown) > 10
        assert page.evaluate("document.querySelector('#log > [data-seq=\"1199\"]') !== null") is True
        assert page.evaluate(FOLLOWING) is False
        # Further down, the range ends at 1250.
        page.evaluate("document.querySelector('main').scrollTop += 500")
        wait_for(page, "document.querySelector('#log > [data-seq=\"1251\"]') !== null")
        shown = page.evaluate(HIGHLIGHTED)
        assert shown[-1] == 1250 and shown == list(range(shown[0], 1251))
        # Another link in the same page: it goes there.
        page.evaluate("location.hash = '#L10'")
        wait_for(page, in_view(10))
        assert page.evaluate(HIGHLIGHTED) == [10]


def test_a_link_to_a_line_a_running_job_has_not_logged_yet_waits_for_it_then_stays(page: Page) -> None:
    gates = {name: threading.Event() for name in ("opened", "more")}

    def target() -> None:
        for i in range(1, 101):
            log.info("line %04d", i)
        assert gates["opened"].wait(10)
        for i in range(101, 301):
            log.info("line %04d", i)
        assert gates["more"].wait(10)
        for i in range(301, 601):
            log.info("line %04d", i)

    with job_page(page, target, heartbeat=0.5) as served:
        try:
            wait_until(lambda: served.job.record.records == 100, 10, "the first 100 lines")
            served.open("#L150")
            wait_for(page, "document.querySelector('#log > [data-seq=\"100\"]') !== null")
            assert page.evaluate(FOLLOWING) is True  # nothing to go to yet
            gates["opened"].set()
            wait_for(page, in_view(150))
            assert page.evaluate(HIGHLIGHTED) == [150]
            assert page.evaluate(FOLLOWING) is False
            gates["more"].set()
            wait_for(page, ENDED)
            assert page.evaluate(in_view(150)) is True, "lines arriving after the link must not move the page"
            assert served.job.status == "ok"
        finally:
            for gate in gates.values():
                gate.set()


def test_a_click_on_a_line_number_links_to_it_and_shift_click_makes_a_range(page: Page) -> None:
    def target() -> None:
        for i in range(1, 21):
            log.info("line %04d", i)

    with job_page(page, target) as served:
        assert served.job.wait(10)
        served.open()
        wait_for(page, ENDED)
        for seq, modifiers in ((3, 0), (7, 8)):  # 8: shift
            box = page.evaluate(
                f"(() => {{ const r = document.querySelector('#log > [data-seq=\"{seq}\"]').getBoundingClientRect();"
                " return [r.left, r.top + r.height / 2]; })()"
            )
            for kind in ("mousePressed", "mouseReleased"):
                page.send(
                    "Input.dispatchMouseEvent",
                    type=kind,
                    x=box[0] + 4,
                    y=box[1],
                    button="left",
                    clickCount=1,
                    modifiers=modifiers,
                )
            wait_for(page, f"document.querySelector('#log > [data-seq=\"{seq}\"]')?.classList.contains('hl')")
        assert page.evaluate("location.hash") == "#L3-L7"
        assert page.evaluate(HIGHLIGHTED) == [3, 4, 5, 6, 7]
