"""Times: ISO 8601 with its offset in NDJSON and SSE ``detail=1``, and the reader's own time zone in the page.

The wire formats keep ``time`` (the epoch, as before) and add ``ts``, the same
instant in UTC as ISO 8601 with microseconds and ``+00:00``, so a script in
any time zone reads it without knowing the server's. The text format does not
change. The page shows each line's time in the reader's time zone (Chromium's
zone is set by DevTools to one with a half-hour offset), or in UTC once the
reader asks, a choice the browser remembers.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.browser import Page, job_page, served, wait_for
from tests.inproc import TestApp
from tests.wire import ndjson_objects, parse_sse
from wsgi_logstream import logstream, progress
from wsgi_logstream.channel import Entry
from wsgi_logstream.escape import iso as _iso
from wsgi_logstream.escape import json_text as _json
from wsgi_logstream.records import record_json, record_object

log = logging.getLogger("tests.viewer_time")

KOLKATA = timezone(timedelta(hours=5, minutes=30))


def two_lines() -> None:
    log.info("one")
    progress(1, 2)
    log.warning("two")


def _checked(record: dict[str, object]) -> None:
    ts = str(record["ts"])
    parsed = datetime.fromisoformat(ts)
    assert ts.endswith("+00:00") and len(ts) == len("2026-11-30T21:54:31.123456+00:00")
    assert abs(parsed.timestamp() - float(record["time"])) < 1e-6  # type: ignore[arg-type]


def test_ndjson_records_carry_the_iso_time_in_utc_beside_the_epoch() -> None:
    objects = ndjson_objects(TestApp(logstream(two_lines)).get("/?format=ndjson").text)
    timed = [o for o in objects if o["event"] in ("log", "progress")]
    assert [o["event"] for o in timed] == ["log", "progress", "log"]
    for record in timed:
        _checked(record)


def test_sse_detail_records_carry_the_iso_time_and_plain_sse_and_text_do_not_change() -> None:
    app = TestApp(logstream(two_lines, formatter="%(message)s"))
    events = parse_sse(app.get("/?format=sse&detail=1").body).events
    timed = [json.loads(e.data) for e in events if e.type in ("message", "progress")]
    assert len(timed) == 3
    for record in timed:
        _checked(record)
    plain = [e.data for e in parse_sse(app.get("/?format=sse").body).events if e.type == "message"]
    assert plain == ["one", "two"]
    text = app.get("/?format=text").text.splitlines()
    assert text[1:4] == ["one", "-- progress 1/2 (50%) --", "two"]


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000000+00:00"),
        (1796075671.123456, "2026-11-30T21:54:31.123456+00:00"),
        (1796075671.9999996, "2026-11-30T21:54:32.000000+00:00"),  # rounds into the next second
        (float("nan"), None),
        (float("inf"), None),
        (1e20, None),  # no such year
    ],
)
def test_the_iso_time_is_exact_to_the_microsecond_and_none_for_a_time_that_is_not_one(
    epoch: float, expected: str | None
) -> None:
    assert _iso(epoch) == expected


def test_the_fast_json_of_a_record_is_its_exact_json_time_included() -> None:
    entry = Entry("log", 1796075671.5, 20, "INFO", "app", 'said "hi"', 'INFO app: said "hi"')
    entry.seq = 7
    assert record_json(entry) == _json(record_object(entry))
    assert json.loads(record_json(entry))["ts"] == "2026-11-30T21:54:31.500000+00:00"


# -- the page --------------------------------------------------------------------


#: The tab's clock is in a zone with a half-hour offset.
in_kolkata = pytest.mark.page(timezone="Asia/Kolkata")


def _clock(epoch: float, zone: timezone) -> str:
    ms = int(epoch * 1000)  # as JavaScript's Date keeps it: whole milliseconds, truncated
    when = datetime.fromtimestamp(ms // 1000, zone)
    return f"{when:%H:%M:%S}.{ms % 1000:03d}"


@pytest.mark.servers
@in_kolkata
def test_the_page_shows_each_lines_time_in_the_readers_zone_or_in_utc_when_asked(page: Page) -> None:
    def target() -> None:
        for i in range(1, 4):
            log.info("line %d", i)

    with job_page(page, target) as job_served:
        url, job = job_served.url, job_served.job
        assert job.wait(10)
        with urllib.request.urlopen(f"{url}/{job.id}?format=ndjson", timeout=10) as reply:
            records = ndjson_objects(reply.read())
        times = {r["seq"]: r["time"] for r in records if r["event"] == "log"}
        rows = "Object.fromEntries(Array.from(document.querySelectorAll('#log > [data-seq]'), (r) => [r.dataset.seq, r.dataset.time]))"
        job_served.open()
        wait_for(page, "document.querySelectorAll('#log > [data-time]').length === 3")
        assert page.evaluate(rows) == {str(seq): _clock(t, KOLKATA) for seq, t in times.items()}
        started = datetime.fromtimestamp(records[0]["time"], KOLKATA)  # the start event: the page's own
        assert page.evaluate("document.querySelector('header time').textContent") == (
            f"{started:%Y-%m-%d %H:%M:%S} +05:30"
        )
        assert page.evaluate("document.getElementById('tz').textContent") == "local time"
        page.evaluate("document.getElementById('tz').click()")
        wait_for(page, "document.getElementById('tz').textContent === 'UTC'")
        wait_for(page, "document.querySelectorAll('#log > [data-time]').length === 3")
        assert page.evaluate(rows) == {str(seq): _clock(t, UTC) for seq, t in times.items()}
        assert page.evaluate("document.querySelector('header time').textContent").endswith(" UTC")
        # The choice is kept: the page opened again shows UTC.
        page.navigate(f"{url}/{job.id}")
        wait_for(page, "document.querySelectorAll('#log > [data-time]').length === 3")
        assert page.evaluate(rows) == {str(seq): _clock(t, UTC) for seq, t in times.items()}
        page.evaluate("localStorage.clear()")


@pytest.mark.servers
@in_kolkata
def test_a_plain_stream_page_shows_its_lines_times_from_the_html_and_none_for_a_time_that_is_not_one(
    page: Page,
) -> None:
    stamped = logging.getLogger("tests.viewer_time.stamped")

    def target() -> None:
        # A logger filter runs before the record is captured: it sets the time the page must show.
        for created in (1796075671.5, float("nan")):

            def stamp(record: logging.LogRecord, created: float = created) -> bool:
                record.created = created
                return True

            stamped.addFilter(stamp)
            try:
                stamped.info("at %s", created)
            finally:
                stamped.removeFilter(stamp)

    app = logstream(target, formatter="%(message)s")
    with served(page, app) as url:
        page.navigate(f"{url}/?format=html")
        wait_for(page, "document.getElementById('end') !== null && document.querySelectorAll('#log > .r').length === 2")
        rows = page.evaluate(
            "Array.from(document.querySelectorAll('#log > .r'), (r) => [r.textContent, r.dataset.time ?? null])"
        )
        assert rows == [["at 1796075671.5\n", "03:24:31.500"], ["at nan\n", None]]  # Asia/Kolkata: UTC+05:30
