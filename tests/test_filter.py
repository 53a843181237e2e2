"""``?level=`` and ``?grep=``: the server filters every format, replay and live alike, and resumes stay exact."""

from __future__ import annotations

import logging
import threading
import time
from urllib.parse import quote

import pytest

from tests.inproc import call
from tests.wire import ndjson_objects, parse_sse
from wsgi_logstream import jobs, logstream

log = logging.getLogger("tests.filter")


def _mixed() -> None:
    for n in range(1, 31):
        if n % 10 == 0:
            log.error("disk %d failed", n)
        elif n % 5 == 0:
            log.warning("slow request %d ms", n * 100)
        else:
            log.info("line %d ok", n)


def _finished_job() -> tuple[object, str]:
    app = jobs(_mixed, formatter="%(levelname)s %(message)s")
    job = app.start()
    assert job.wait(10)
    return app, job.id


@pytest.mark.parametrize("fmt", ["text", "html", "sse", "ndjson"])
def test_the_level_and_grep_filters_apply_to_every_format_of_a_job(fmt: str) -> None:
    app, job_id = _finished_job()
    with call(app, f"format={fmt}&level=WARNING&grep={quote('slow|failed')}", path=f"/{job_id}") as stream:
        assert stream.code == 200
        body = stream.read_to_end().decode()
    for n in (5, 15, 25):
        assert f"slow request {n * 100} ms" in body
    for n in (10, 20, 30):
        assert f"disk {n} failed" in body
    assert "line 1 ok" not in body and "line 29 ok" not in body
    # Filtered lines are not lines this reader missed: no dropped marker, and the end says 0 dropped.
    markers = ("lines dropped: not kept for this reader", '<span class="drop">', '"event":"dropped"', "event: dropped")
    assert not any(marker in body for marker in markers)


def test_a_grep_alone_keeps_only_matching_lines_of_a_plain_stream() -> None:
    app = logstream(_mixed, formatter="%(levelname)s %(message)s")
    with call(app, "format=text&grep=" + quote(r"line [12]\d? ok")) as stream:
        body = stream.read_to_end().decode()
    lines = [line for line in body.splitlines() if line and not line.startswith("--")]
    assert lines == [
        f"INFO line {n} ok" for n in (1, 2, 11, 12, 13, 14, 16, 17, 18, 19, 21, 22, 23, 24, 26, 27, 28, 29)
    ]
    assert "30 lines, 0 dropped" in body  # the summary counts the log's records, not what the filter let through


def test_a_filtered_sse_stream_keeps_the_logs_own_ids_so_resuming_is_exact() -> None:
    app, job_id = _finished_job()
    with call(app, "format=sse&level=ERROR", path=f"/{job_id}") as stream:
        events = [event for event in parse_sse(stream.read_to_end()).events if event.type == "message"]
    assert [event.data for event in events] == ["ERROR disk 10 failed", "ERROR disk 20 failed", "ERROR disk 30 failed"]
    assert [event.id for event in events] == ["10", "20", "30"]
    with call(app, "format=sse&level=ERROR", path=f"/{job_id}", headers={"Last-Event-ID": "10"}) as resumed:
        again = [event for event in parse_sse(resumed.read_to_end()).events if event.type == "message"]
    assert [event.id for event in again] == ["20", "30"]


def test_an_ndjson_since_resume_with_a_filter_keeps_the_real_sequence_numbers() -> None:
    app, job_id = _finished_job()
    with call(app, "format=ndjson&level=WARNING&since=12", path=f"/{job_id}") as stream:
        objects = ndjson_objects(stream.read_to_end())
    assert [obj["seq"] for obj in objects if obj["event"] == "log"] == [15, 20, 25, 30]
    assert objects[-1]["event"] == "end" and objects[-1]["dropped"] == 0


def test_the_filter_applies_to_live_lines_as_they_come() -> None:
    release = threading.Event()
    logged = threading.Event()

    def target() -> None:
        log.info("before, unwanted")
        log.warning("before, wanted")
        logged.set()
        assert release.wait(10)
        log.info("after, unwanted")
        log.error("after, wanted")

    app = jobs(target, formatter="%(message)s", heartbeat=0.2)
    job = app.start()
    assert logged.wait(10)
    with call(app, "format=text&level=WARNING", path=f"/{job.id}") as stream:
        first = stream.read_until(b"before, wanted")
        assert job.status == "running"  # the replayed line came while the job is held
        release.set()
        rest = stream.read_to_end()
    body = (first + rest).decode()
    assert "before, wanted" in body and "after, wanted" in body
    assert "unwanted" not in body


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("grep=" + quote("([a-z]"), "is not a valid regular expression"),
        ("grep=" + quote("(a+)+$"), "exponential time"),
        ("grep=" + quote("(x|xy)*z"), "exponential time"),
        ("grep=" + quote("a*a*a*b"), "more than 2 unbounded repetitions"),
        ("grep=" + "a" * 201, "longer than 200"),
        ("level=LOUD", "is not a level"),
        ("grep=a&grep=b", "given more than once"),
    ],
)
def test_a_bad_filter_is_a_400_that_names_it_and_runs_nothing(query: str, says: str) -> None:
    ran = threading.Event()
    app = logstream(ran.set)
    with call(app, query) as answer:
        assert answer.code == 400
        assert says in answer.read_to_end().decode()
    assert not ran.is_set()


def test_a_catastrophic_shape_the_check_lets_through_is_bounded_by_the_searched_length() -> None:
    # A polynomial pattern on a huge line costs at most what MAX_SEARCHED characters cost.
    def target() -> None:
        log.info("a" * 1_000_000)

    app = logstream(target, formatter="%(message)s")
    started = time.monotonic()
    with call(app, "format=ndjson&grep=" + quote("a*a*b")) as stream:
        body = stream.read_to_end()
    assert b'"event":"log"' not in body
    assert b'"event":"end"' in body
    # Not a speed target: a safety bound (the unbounded search would take hours).
    assert time.monotonic() - started < 60


def test_a_plain_stream_with_download_is_an_attachment_named_after_its_title() -> None:
    app = logstream(_mixed, title="Nightly import: db/2")
    with call(app, "format=ndjson&download=1") as stream:
        assert stream.header("Content-Disposition") == 'attachment; filename="Nightly-import-db-2.ndjson"'
        assert b'"event":"end"' in stream.read_to_end()
