"""Search in the page, in Chromium: a level filter, a /regex/ filter, and next/previous over the whole log.

The page keeps the whole log as data and draws only the rows near the viewport, so a search that looked at
the drawn rows would miss most of the log: these tests use a finished job of 4,000 lines, far more than one
screen, and check that the filter, the "k of N" count and next/previous (buttons, Enter and Shift+Enter in the
box) cover all of it, in order, wrapping around, with the line gone to scrolled into view and marked.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterator

import pytest

from tests.browser import Page, job_page, wait_for

pytestmark = [pytest.mark.servers, pytest.mark.page(size=(1000, 420))]

log = logging.getLogger("tests.viewer_search")

LINES = 4000
ENDED = "document.getElementById('banner') !== null && !document.getElementById('banner').hidden"
#: The rows drawn now: [level class, text].
DRAWN = "Array.from(document.querySelectorAll('#log > .r'), (r) => [r.className.split(' ')[1], r.textContent])"
HIT = "(() => { const r = document.querySelector('#log > .hit'); return r ? r.textContent : null; })()"
HIT_IN_VIEW = (
    "(() => { const row = document.querySelector('#log > .hit'); if (!row) return false;"
    " const m = document.querySelector('main').getBoundingClientRect(), r = row.getBoundingClientRect();"
    " return r.top >= m.top && r.bottom <= m.bottom; })()"
)


def _level(i: int) -> int:
    return logging.ERROR if i % 100 == 0 else logging.WARNING if i % 10 == 0 else logging.INFO


def _message(i: int) -> str:
    return f"chunk {i // 1000} row {i % 1000}"


def _target() -> None:
    for i in range(1, LINES + 1):
        log.log(_level(i), "%s", _message(i))


@pytest.fixture
def finished(page: Page) -> Iterator[Page]:
    """The page of a finished job of LINES lines, opened and drawn to its end (uncaught exceptions in the page
    arrive in ``page.events`` as ``Runtime.exceptionThrown``)."""
    with job_page(page, _target) as served:
        assert served.job.wait(60)
        served.open()
        wait_for(page, ENDED, 30)
        wait_for(page, f"document.querySelector('#log > [data-seq=\"{LINES}\"]') !== null")
        yield page


def _type(page: Page, text: str) -> None:
    """Replace the filter box's text as a person would: focus, select all, type (input events fire)."""
    page.evaluate("(() => { const f = document.getElementById('filter'); f.focus(); f.select(); })()")
    if text:
        page.send("Input.insertText", text=text)
    else:
        for kind in ("keyDown", "keyUp"):
            page.send("Input.dispatchKeyEvent", type=kind, key="Backspace", code="Backspace", windowsVirtualKeyCode=8)


def _enter(page: Page, shift: bool = False) -> None:
    for kind in ("keyDown", "keyUp"):
        page.send(
            "Input.dispatchKeyEvent",
            type=kind,
            key="Enter",
            code="Enter",
            windowsVirtualKeyCode=13,
            text="\r" if kind == "keyDown" else "",
            modifiers=8 if shift else 0,
        )


def _level_to(page: Page, value: str) -> None:
    page.evaluate(
        "(() => { const s = document.getElementById('level'); s.value = VALUE;"
        " s.dispatchEvent(new Event('change', {bubbles: true})); })()".replace("VALUE", json.dumps(value))
    )


def _count(page: Page, text: str) -> None:
    """Wait until the count says ``text``, then until the rows are drawn: the page draws them in the next
    animation frame (viewer.js ``paint()``), and the count may already say the same before (two filters with
    8 matches each), so reading the rows right after the count could see the log still empty."""
    wait_for(page, f"document.getElementById('count').textContent === {json.dumps(text)}")
    page.evaluate("window.testFramed = false; requestAnimationFrame(() => { window.testFramed = true; })")
    wait_for(page, "window.testFramed")  # frame callbacks run in order: the page's pending draw ran first


def _click(page: Page, ident: str) -> None:
    page.evaluate(f"document.getElementById({json.dumps(ident)}).click()")


def _exceptions(page: Page) -> list[dict[str, Any]]:
    page.evaluate("1")  # collect the events that arrived meanwhile
    return [event for event in page.events if event.get("method") == "Runtime.exceptionThrown"]


def test_the_level_filter_shows_only_warning_and_above_over_the_whole_log_and_next_previous_scroll_there(
    finished: Page,
) -> None:
    page = finished
    warnings = [i for i in range(1, LINES + 1) if _level(i) >= logging.WARNING]
    _level_to(page, "3")
    _count(page, f"{len(warnings)} matches")
    drawn = page.evaluate(DRAWN)
    assert drawn and {kind for kind, _ in drawn} <= {"w", "e"}
    assert [text for _, text in drawn] == [_message(i) + "\n" for i in warnings[-len(drawn) :]]  # following: the end
    # Previous with nothing gone to yet: the last match, far from the first; next wraps to the first.
    _click(page, "prev")
    _count(page, f"{len(warnings)} of {len(warnings)}")
    wait_for(page, HIT_IN_VIEW)
    assert page.evaluate(HIT) == _message(warnings[-1]) + "\n"
    _click(page, "next")
    _count(page, f"1 of {len(warnings)}")
    wait_for(page, HIT_IN_VIEW)
    assert page.evaluate(HIT) == _message(warnings[0]) + "\n"
    # Halfway through the log: the 200th match, by Enter in the box, scrolled into view.
    page.evaluate("document.getElementById('filter').focus()")
    for _ in range(199):
        _enter(page)
    _count(page, f"200 of {len(warnings)}")
    wait_for(page, HIT_IN_VIEW)
    assert page.evaluate(HIT) == _message(warnings[199]) + "\n"
    # Error and above, with a text in the box: both apply.
    _level_to(page, "4")
    _type(page, "row 500")
    _count(page, "4 matches")
    assert page.evaluate(DRAWN) == [["e", _message(i) + "\n"] for i in (500, 1500, 2500, 3500)]
    # All levels again, an empty box: every line, and no count.
    _level_to(page, "0")
    _type(page, "")
    _count(page, "")
    wait_for(page, f"document.querySelector('#log > [data-seq=\"{LINES}\"]') !== null")
    assert {kind for kind, _ in page.evaluate(DRAWN)} >= {"i", "w"}
    assert _exceptions(page) == []


def test_a_regex_in_slashes_matches_exactly_its_lines_and_next_previous_go_through_them_in_order_wrapping(
    finished: Page,
) -> None:
    page = finished
    expected = [_message(i) + "\n" for i in range(1, LINES + 1) if i % 1000 in (125, 345)]
    assert len(expected) == 8
    _type(page, "/row (12|34)5$/")
    _count(page, "8 matches")
    assert [text for _, text in page.evaluate(DRAWN)] == expected
    # Enter: forward through all of them, then around to the first.
    for k in range(1, 9):
        _enter(page)
        _count(page, f"{k} of 8")
        assert page.evaluate(HIT) == expected[k - 1]
        assert page.evaluate(HIT_IN_VIEW) is True
    _enter(page)
    _count(page, "1 of 8")
    assert page.evaluate(HIT) == expected[0]
    # Shift+Enter and the previous button: backwards, around to the last.
    _enter(page, shift=True)
    _count(page, "8 of 8")
    assert page.evaluate(HIT) == expected[7]
    _click(page, "prev")
    _count(page, "7 of 8")
    assert page.evaluate(HIT) == expected[6]
    assert page.evaluate("document.querySelectorAll('#log > .hit').length") == 1
    # The level applies to the regex's lines: those ending in 120 or 340 are warnings, none an error.
    _type(page, "/row (12|34)0$/")
    _level_to(page, "3")
    _count(page, "8 matches")
    assert {kind for kind, _ in page.evaluate(DRAWN)} == {"w"}
    _level_to(page, "4")
    _count(page, "0 matches")
    assert page.evaluate(DRAWN) == []
    _click(page, "next")  # nothing to go to: nothing happens
    _count(page, "0 matches")
    assert _exceptions(page) == []


def test_a_bad_regex_says_so_in_the_tools_bar_and_filters_nothing_without_an_exception(finished: Page) -> None:
    page = finished
    _type(page, "/(/")
    wait_for(page, "document.getElementById('count').textContent.startsWith('bad regex')")
    assert page.evaluate("document.getElementById('filter').getAttribute('aria-invalid')") == "true"
    # Nothing filtered: the end of the log is drawn, every level, in order.
    wait_for(page, f"document.querySelector('#log > [data-seq=\"{LINES}\"]') !== null")
    drawn = page.evaluate(DRAWN)
    assert [text for _, text in drawn] == [_message(i) + "\n" for i in range(LINES - len(drawn) + 1, LINES + 1)]
    _enter(page)  # next over a filter that filters nothing: nothing to go through
    assert page.evaluate(HIT) is None
    assert _exceptions(page) == []
    # Mended: the message goes, the filter applies.
    _type(page, "/row 999$/")
    _count(page, "4 matches")
    assert page.evaluate("document.getElementById('filter').hasAttribute('aria-invalid')") is False


LONG = "x" * 1200 + " needle past the first thousand characters"
AS = "a" * 5000


def _long_lines() -> None:
    log.info("a needle near the start")
    log.info("%s", LONG)
    log.info("%s", AS)
    log.info("the last line")


def test_a_regex_searches_each_line_on_its_first_thousand_characters_and_a_costly_one_is_refused(page: Page) -> None:
    """The page's /regex/ is bounded as the server's ?grep= is (filters.py): a catastrophic pattern on a long line
    would otherwise freeze the tab, and a frozen tab would fail this test's next DevTools call."""
    with job_page(page, _long_lines) as served:
        assert served.job.wait(10)
        served.open()
        wait_for(page, ENDED)
        # The regex sees the first 1,000 characters of a line; a plain substring, the whole line.
        _type(page, "/needle/")
        _count(page, "1 match")
        assert page.evaluate(DRAWN) == [["i", "a needle near the start\n"]]
        _type(page, "needle")
        _count(page, "2 matches")
        # Refused as the server refuses them, said in the tools bar; nothing is filtered and nothing hangs.
        for pattern, why in (
            ("/(a+)+b/", "regex refused: a repeat of a group that repeats or alternates, like (a+)+"),
            ("/(a|aa)*b/", "regex refused: a repeat of a group that repeats or alternates, like (a+)+"),
            ("/a*a*a*b/", "regex refused: more than 2 unbounded repeats (*, +, {n,})"),
            ("/" + "a" * 201 + "/", "regex refused: longer than 200 characters"),
        ):
            _type(page, "")
            _count(page, "")
            _type(page, pattern)
            _count(page, why)
            assert page.evaluate("document.getElementById('filter').getAttribute('aria-invalid')") == "true"
            wait_for(page, "document.querySelectorAll('#log > .r').length === 4")
        # Two overlapping repetitions are allowed, as on the server: over 1,000 characters they end at once.
        _type(page, "/a*a*b/")
        _count(page, "0 matches")
        # An alternation of single characters is a class, not a risk; the long line ends where its search does.
        _type(page, "/(a|b)+$/")
        _count(page, "1 match")
        assert page.evaluate(DRAWN) == [["i", AS + "\n"]]
        assert _exceptions(page) == []
