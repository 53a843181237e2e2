"""Jobs in-process: starting once, resuming exactly where a viewer left, forgetting on time.

Each test drives the jobs app directly (``TestApp`` for whole answers, ``call``
to read a live stream chunk by chunk). Targets that must be caught running
wait on an event the test sets, with a bound; nothing sleeps.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any, Callable, Iterator

import pytest

from tests.inproc import TestApp, call
from tests.servers import wait_until
from tests.wire import FORMATS, ndjson_objects, parse_sse, records, summary
from wsgi_logstream import cancelled, jobs, progress, wait_cancelled
from wsgi_logstream.jobs import JobHandle, JobsApp

log = logging.getLogger("tests.jobs")

URLSAFE = re.compile(r"[A-Za-z0-9_-]+")


@pytest.fixture
def make_app() -> Iterator[Callable[..., JobsApp]]:
    """A factory of jobs apps whose jobs are all ended when the test ends."""
    made: list[JobsApp] = []

    def make(target: Callable[..., Any], **options: Any) -> JobsApp:
        options.setdefault("formatter", "%(message)s")
        app = jobs(target, **options)
        made.append(app)
        return app

    yield make
    for app in made:
        assert app.shutdown(10), "a job did not end when cancelled"


def numbered(count: int, runs: list[int] | None = None) -> Callable[[], None]:
    """A target that logs ``line 1`` .. ``line <count>`` (one record each, seq 1..count)."""

    def target() -> None:
        if runs is not None:
            runs.append(1)
        for i in range(1, count + 1):
            log.info("line %d", i)

    return target


def finished(app: JobsApp, environ: dict[str, Any] | None = None) -> JobHandle:
    job = app.start(environ)
    assert job.wait(10), "the job did not finish"
    return job


def wait_finished(app: JobsApp, job_id: str) -> None:
    def ended() -> bool:
        record = app.lookup(job_id)
        return record is not None and record.finished

    wait_until(ended, 10, f"job {job_id} to finish")


# -- starting ------------------------------------------------------------------------------


def test_post_starts_the_target_once_and_redirects_to_the_jobs_url(make_app: Callable[..., JobsApp]) -> None:
    runs: list[int] = []
    app = make_app(numbered(3, runs))
    reply = TestApp(app).post("/", status=303)
    location = reply.headers["Location"]
    assert re.fullmatch(r"/[A-Za-z0-9_-]{16,}", location), location
    wait_finished(app, location[1:])
    assert runs == [1]


def test_refreshing_the_jobs_page_never_starts_another_run(make_app: Callable[..., JobsApp]) -> None:
    runs: list[int] = []
    app = make_app(numbered(3, runs))
    client = TestApp(app)
    location = client.post("/", status=303).headers["Location"]
    first = client.get(location + "?format=text").text
    second = client.get(location + "?format=text").text
    assert runs == [1]
    assert [line for line in first.splitlines() if line.startswith("line")] == ["line 1", "line 2", "line 3"]
    assert first.splitlines()[1:] == second.splitlines()[1:]
    assert [job.id for job in app.records()] == [location[1:]]


def test_the_location_is_below_the_mount_point(make_app: Callable[..., JobsApp]) -> None:
    app = make_app(numbered(1))
    location = TestApp(app, extra_environ={"SCRIPT_NAME": "/jobs"}).post("/jobs/", status=303).headers["Location"]
    assert location.startswith("/jobs/") and app.lookup(location.rsplit("/", 1)[1]) is not None


def test_the_target_gets_the_posted_form(make_app: Callable[..., JobsApp]) -> None:
    def target(environ: dict[str, Any]) -> None:
        log.info("form %s", environ["wsgi.input"].read().decode())

    app = make_app(target)
    client = TestApp(app)
    location = client.post("/", {"name": "ada"}, status=303).headers["Location"]
    wait_finished(app, location[1:])
    assert "form name=ada" in client.get(location + "?format=text").text


def test_post_is_405_when_starting_is_not_allowed_but_start_still_works(make_app: Callable[..., JobsApp]) -> None:
    runs: list[int] = []
    app = make_app(numbered(1, runs), allow_start=False)
    client = TestApp(app)
    reply = client.post("/", status=405)
    assert reply.headers["Allow"] == "GET, HEAD"
    assert runs == [] and app.records() == []
    job = finished(app)
    assert runs == [1]
    assert client.get(f"/{job.id}?format=text").status_int == 200


def test_a_job_started_in_code_gets_its_environ_and_can_be_waited_for(make_app: Callable[..., JobsApp]) -> None:
    go = threading.Event()

    def target(environ: dict[str, Any]) -> None:
        log.info("user %s", environ.get("REMOTE_USER"))
        go.wait(10)

    app = make_app(target)
    job = app.start({"REMOTE_USER": "ada"})
    assert not job.wait(0) and job.status == "running"
    go.set()
    assert job.wait(10) and job.status == "ok"
    assert "user ada" in TestApp(app).get(f"/{job.id}?format=text").text


def test_past_max_concurrent_a_post_is_503_and_nothing_starts(make_app: Callable[..., JobsApp]) -> None:
    go = threading.Event()
    runs: list[int] = []

    def target() -> None:
        runs.append(1)
        go.wait(10)

    app = make_app(target, max_concurrent=1)
    client = TestApp(app)
    client.post("/", status=303)
    reply = client.post("/", status=503)
    assert reply.headers["Retry-After"]
    go.set()
    for record in app.records():
        wait_finished(app, record.id)
    client.post("/", status=303)
    wait_until(lambda: len(runs) == 2, 10, "the second run")


# -- reading and resuming --------------------------------------------------------------------


def test_a_viewer_gets_the_history_then_live_lines_then_the_summary(make_app: Callable[..., JobsApp]) -> None:
    go = threading.Event()

    def target() -> None:
        log.info("before")
        go.wait(10)
        log.info("after")

    app = make_app(target)
    job = app.start()
    wait_until(lambda: job.record.records == 1, 10, "the first line")
    with call(app, "format=ndjson", path=f"/{job.id}") as stream:
        stream.read_until(b'"line":"before"')
        assert b"after" not in stream.body
        go.set()
        body = stream.read_to_end()
    assert [line for _, line in records(body, "ndjson")] == ["before", "after"]
    assert summary(body, "ndjson")["status"] == "ok"


@pytest.mark.parametrize("fmt", FORMATS)
def test_since_in_the_middle_returns_exactly_the_lines_after_it(make_app: Callable[..., JobsApp], fmt: str) -> None:
    app = make_app(numbered(10))
    job = finished(app)
    body = TestApp(app).get(f"/{job.id}?format={fmt}&since=4").body
    got = records(body, fmt)
    assert [line for _, line in got] == [f"line {i}" for i in range(5, 11)]
    if fmt != "text":
        assert [seq for seq, _ in got] == list(range(5, 11))


@pytest.mark.parametrize("fmt", FORMATS)
def test_since_zero_returns_every_line(make_app: Callable[..., JobsApp], fmt: str) -> None:
    app = make_app(numbered(10))
    job = finished(app)
    body = TestApp(app).get(f"/{job.id}?format={fmt}&since=0").body
    assert [line for _, line in records(body, fmt)] == [f"line {i}" for i in range(1, 11)]


def test_since_the_last_line_returns_only_the_summary(make_app: Callable[..., JobsApp]) -> None:
    app = make_app(numbered(10))
    job = finished(app)
    client = TestApp(app)
    for since in (10, 11):  # the last line, and the end event's id
        body = client.get(f"/{job.id}?format=ndjson&since={since}").body
        assert records(body, "ndjson") == []
        assert summary(body, "ndjson")["status"] == "ok"


def test_since_beyond_the_end_is_400(make_app: Callable[..., JobsApp]) -> None:
    app = make_app(numbered(10))
    job = finished(app)
    reply = TestApp(app).get(f"/{job.id}?format=ndjson&since=12", status=400)
    assert reply.text == "since=12 is beyond the newest event of this log (11)\n"


def test_a_running_job_refuses_a_since_past_its_last_line_and_serves_the_next_from_its_last(
    make_app: Callable[..., JobsApp],
) -> None:
    go = threading.Event()

    def target() -> None:
        log.info("line 1")
        log.info("line 2")
        assert go.wait(10)
        log.info("line 3")

    app = make_app(target)
    job = app.start()
    wait_until(lambda: job.record.next_seq == 3, message="two lines logged")
    # seq 3 does not exist yet: claiming to have it would silently skip it.
    TestApp(app).get(f"/{job.id}?format=ndjson&since=3", status=400)
    go.set()
    assert job.wait(10)
    body = TestApp(app).get(f"/{job.id}?format=ndjson&since=2").body
    assert records(body, "ndjson") == [(3, "line 3")]


MALFORMED = ["abc", "-1", "1e3", "1.5", "+1", " 1", "0x1", "9" * 19, "9" * 18, "²", "١", "1\x00"]


@pytest.mark.parametrize("value", MALFORMED, ids=ascii)
@pytest.mark.parametrize("where", ["query", "last-event-id"])
def test_a_malformed_resume_point_is_400_never_a_crash(
    make_app: Callable[..., JobsApp], value: str, where: str
) -> None:
    app = make_app(numbered(3))
    job = finished(app)
    if where == "query":
        from urllib.parse import quote

        stream = call(app, f"format=ndjson&since={quote(value)}", path=f"/{job.id}")
    else:
        stream = call(app, "format=sse", path=f"/{job.id}", headers={"Last-Event-ID": value})
    with stream:
        stream.read_to_end()
    assert stream.code == 400, (stream.status, stream.body)
    assert b"since" in stream.body


def test_a_viewer_behind_the_history_is_told_how_many_lines_it_missed(make_app: Callable[..., JobsApp]) -> None:
    app = make_app(numbered(20), max_history=5)
    job = finished(app)
    client = TestApp(app)
    objects = ndjson_objects(client.get(f"/{job.id}?format=ndjson&since=3").text)
    assert objects[1] == {"event": "dropped", "count": 12}  # 4..15 are gone
    assert objects[2]["seq"] == 16 and objects[2]["line"] == "line 16"
    assert [o["seq"] for o in objects if o["event"] == "log"] == [16, 17, 18, 19, 20]
    assert objects[-1]["dropped"] == 12
    text = client.get(f"/{job.id}?format=text&since=3").text.splitlines()
    assert text[1:3] == ["-- 12 lines dropped: not kept for this reader --", "line 16"]


def test_a_finished_job_answers_its_whole_log_in_one_batch(make_app: Callable[..., JobsApp]) -> None:
    app = make_app(numbered(50), heartbeat=60)
    job = finished(app)
    with call(app, "format=ndjson", path=f"/{job.id}") as stream:
        body = stream.read_to_end()
    assert len(stream.chunks) == 3, "head, every line at once, summary"
    assert [seq for seq, _ in records(stream.chunks[1], "ndjson")] == list(range(1, 51))
    assert summary(body, "ndjson")["records"] == 50


def test_last_event_id_resumes_sse_after_it(make_app: Callable[..., JobsApp]) -> None:
    app = make_app(numbered(10))
    job = finished(app)
    body = TestApp(app).get(f"/{job.id}?format=sse", headers={"Last-Event-ID": "7"}).body
    assert [seq for seq, _ in records(body, "sse")] == [8, 9, 10]
    assert [e.type for e in parse_sse(body).events][-1] == "end"


def test_last_event_id_wins_over_the_since_in_the_url(make_app: Callable[..., JobsApp]) -> None:
    """EventSource reconnects to the URL it was opened with (``?since=N`` included) and adds
    ``Last-Event-ID``: the header is the newer resume point, or every reconnect repeats lines."""
    app = make_app(numbered(10))
    job = finished(app)
    body = TestApp(app).get(f"/{job.id}?format=sse&detail=1&since=2", headers={"Last-Event-ID": "6"}).body
    assert [seq for seq, _ in records(body, "sse")] == [7, 8, 9, 10]


def test_an_sse_reconnect_after_the_end_is_204(make_app: Callable[..., JobsApp]) -> None:
    app = make_app(numbered(3))
    job = finished(app)
    client = TestApp(app)
    end_id = parse_sse(client.get(f"/{job.id}?format=sse").body).events[-1].id
    assert end_id == str(job.record.next_seq)
    reply = client.get(f"/{job.id}?format=sse", headers={"Last-Event-ID": end_id}, status=204)
    assert reply.body == b""


@pytest.mark.parametrize(
    "path", ["/AAAAAAAAAAAAAAAAAAAAAA", "/x", "/" + "a" * 65, "/..", "/a.b.c.d.e.f.g.h", "/{id}/nope", "/{id}/cancel/x"]
)
def test_an_unknown_job_or_path_is_404(make_app: Callable[..., JobsApp], path: str) -> None:
    app = make_app(numbered(1))
    job = finished(app)
    TestApp(app).get(path.format(id=job.id), status=404)


def test_cancelling_an_unknown_job_is_404(make_app: Callable[..., JobsApp]) -> None:
    app = make_app(numbered(1))
    TestApp(app).post("/AAAAAAAAAAAAAAAAAAAAAA/cancel", status=404)


# -- listing and forgetting ------------------------------------------------------------------


def test_the_index_lists_running_and_finished_jobs_as_html_and_json(make_app: Callable[..., JobsApp]) -> None:
    go = threading.Event()

    def target(environ: dict[str, Any]) -> None:
        progress(2, 4, "half")
        log.info("working")
        if environ.get("hold"):
            go.wait(10)

    app = make_app(target, title="Imports")
    client = TestApp(app)
    done = finished(app)
    running = app.start({"hold": True})
    wait_until(lambda: running.record.records == 1, 10, "the running job's line")
    listed = client.get("/", headers={"Accept": "application/json"})
    assert listed.content_type == "application/json" and "Accept" in listed.headers["Vary"]
    by_id = {job["id"]: job for job in listed.json["jobs"]}
    assert [job["id"] for job in listed.json["jobs"]] == [running.id, done.id], "newest first"
    assert by_id[running.id]["status"] == "running" and by_id[done.id]["status"] == "ok"
    assert by_id[done.id]["records"] == 1 and by_id[done.id]["summary"]["status"] == "ok"
    assert by_id[running.id]["progress"] == {"done": 2, "total": 4, "message": "half"}
    page = client.get("/")
    assert page.content_type == "text/html"
    assert f'href="/{running.id}"' in page.text and f'href="/{done.id}"' in page.text
    assert "<td>running</td>" in page.text and "<td>ok</td>" in page.text
    assert "Imports" in page.text and 'method="post"' in page.text
    go.set()


def test_finished_jobs_beyond_max_finished_are_forgotten_oldest_first(make_app: Callable[..., JobsApp]) -> None:
    app = make_app(numbered(1), max_finished=2)
    client = TestApp(app)
    first, second, third = (finished(app) for _ in range(3))
    client.get(f"/{first.id}", status=404)
    client.get(f"/{second.id}", status=200)
    client.get(f"/{third.id}", status=200)


def test_a_finished_job_is_forgotten_after_keep_finished_but_never_while_running(
    make_app: Callable[..., JobsApp],
) -> None:
    go = threading.Event()
    app = make_app(lambda: go.wait(10), keep_finished=0)
    client = TestApp(app)
    job = app.start()
    assert [j["id"] for j in client.get("/?format=json").json["jobs"]] == [job.id]
    go.set()
    assert job.wait(10)
    wait_until(lambda: client.get(f"/{job.id}", expect_errors=True).status_int == 404, 10, "the job to be forgotten")
    assert client.get("/?format=json").json["jobs"] == []


def test_job_ids_are_long_urlsafe_and_distinct(make_app: Callable[..., JobsApp]) -> None:
    app = make_app(lambda: None)
    ids = [finished(app).id for _ in range(100)]
    assert len(set(ids)) == 100
    for job_id in ids:
        assert len(job_id) >= 16 and URLSAFE.fullmatch(job_id), job_id


# -- cancelling --------------------------------------------------------------------------------


def test_cancel_makes_the_target_see_cancelled_and_the_job_end_cancelled(make_app: Callable[..., JobsApp]) -> None:
    def target() -> None:
        log.info("waiting")
        woke = wait_cancelled(10)
        log.info("woke=%s cancelled=%s", woke, cancelled())

    app = make_app(target)
    client = TestApp(app)
    job = app.start()
    wait_until(lambda: job.record.records == 1, 10, "the target to wait")
    client.get(f"/{job.id}/cancel", status=405)
    reply = client.post(f"/{job.id}/cancel", status=303)
    assert reply.headers["Location"] == f"/{job.id}"
    assert job.wait(10) and job.status == "cancelled"
    body = client.get(f"/{job.id}?format=ndjson").body
    assert [line for _, line in records(body, "ndjson")] == ["waiting", "woke=True cancelled=True"]
    assert summary(body, "ndjson")["status"] == "cancelled"


def test_cancel_answers_json_202_when_asked(make_app: Callable[..., JobsApp]) -> None:
    app = make_app(lambda: wait_cancelled(10))
    job = app.start()
    reply = TestApp(app).post(f"/{job.id}/cancel", headers={"Accept": "application/json"}, status=202)
    assert reply.json["id"] == job.id and reply.json["cancel_requested"] is True
    assert job.wait(10) and job.status == "cancelled"


# -- progress ------------------------------------------------------------------------------------


def _progressing() -> None:
    progress(1, 4, "loading")
    log.info("a line")
    progress(3)


def test_progress_reaches_ndjson_and_sse_as_events(make_app: Callable[..., JobsApp]) -> None:
    app = make_app(_progressing)
    job = finished(app)
    client = TestApp(app)
    objects = ndjson_objects(client.get(f"/{job.id}?format=ndjson").text)
    steps = [(o["seq"], o["done"], o["total"], o["message"]) for o in objects if o["event"] == "progress"]
    assert steps == [(1, 1, 4, "loading"), (3, 3, None, None)]
    events = [e for e in parse_sse(client.get(f"/{job.id}?format=sse").body).events if e.type == "progress"]
    assert [(e.id, json.loads(e.data)["done"]) for e in events] == [("1", 1), ("3", 3)]


def test_progress_reaches_text_as_lines_and_html_as_bars(make_app: Callable[..., JobsApp]) -> None:
    app = make_app(_progressing)
    job = finished(app)
    client = TestApp(app)
    text = client.get(f"/{job.id}?format=text").text.splitlines()
    assert text[1:4] == ["-- progress 1/4 (25%) loading --", "a line", "-- progress 3 --"]
    page = client.get(f"/{job.id}?format=html").text
    assert '<label class="pg" data-seq="1"><progress value="1" max="4"></progress> 1/4 (25%) loading</label>' in page
    assert '<label class="pg" data-seq="3"><progress></progress> 3</label>' in page
    assert 'data-resumable="1"' in page


# -- options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"max_history": 0}, ValueError, "max_history"),
        ({"max_history": -1}, ValueError, "max_history"),
        ({"max_history": True}, ValueError, "max_history"),
        ({"max_history": 1.5}, ValueError, "max_history"),
        ({"keep_finished": -1}, ValueError, "keep_finished"),
        ({"keep_finished": float("nan")}, ValueError, "keep_finished"),
        ({"keep_finished": "60"}, ValueError, "keep_finished"),
        ({"max_finished": -1}, ValueError, "max_finished"),
        ({"max_finished": True}, ValueError, "max_finished"),
        ({"allow_start": "yes"}, TypeError, "allow_start"),
        ({"heartbeat": 0}, ValueError, "heartbeat"),
        ({"no_such_option": 1}, TypeError, "no_such_option"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options: dict[str, Any], error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        jobs(lambda: None, **options)
