"""Jobs in Redis across real processes: two gunicorn instances, one real ``redis-server``.

Each test starts its own ``redis-server`` (free port, its own directory) and
gunicorn instances of ``tests/apps/redis_jobs.py`` (one with threads, one
with gevent, which monkey-patches threading), all sharing one key prefix. A
job's operation is held by Redis keys the test sets, so every "while it
runs" below is proven by a job that cannot have ended yet.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from tests.redis_server import RedisServer, start_redis
from tests.servers import Program, RawClient, gunicorn, wait_until
from tests.wire import ndjson_objects, parse_text, records, summary

pytestmark = pytest.mark.servers

FORMATS = ("ndjson", "sse", "text", "html")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


@contextlib.contextmanager
def instance(
    server: RedisServer, prefix: str, *, worker_class: str = "gthread", workers: int = 2, **env: str
) -> Iterator[Program]:
    saved = dict(os.environ)
    os.environ.update({"REDIS_URL": server.url, "LOGSTREAM_PREFIX": prefix, **env})
    try:
        program = gunicorn("tests.apps.redis_jobs:app", worker_class=worker_class, workers=workers)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    with program:
        yield program


def request(
    base: str, path: str, method: str = "GET", headers: dict[str, str] | None = None, *, body: bool = True
) -> tuple[int, dict[str, str], bytes]:
    """One request; with ``body=False`` the body of a ``200`` (a stream) is left unread."""
    host, port = base.split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return (
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read() if body or response.status != 200 else b"",
        )
    finally:
        conn.close()


def start_job(base: str, query: str) -> str:
    status, headers, body = request(base, f"/jobs/?{query}", "POST")
    assert status == 303, body
    return headers["location"]


def listed(base: str) -> dict[str, str]:
    status, _, body = request(base, "/jobs/", headers={"Accept": "application/json"})
    assert status == 200, body
    return {job["id"]: job["status"] for job in json.loads(body)["jobs"]}


def log_seqs(body: bytes, fmt: str) -> list[tuple[int, str]]:
    """(seq, line) of every log line a viewer got; text has no seq, so its lines are numbered by their text."""
    if fmt == "text":
        return [(int(line[5:]), line) for line in parse_text(body).lines]
    return [(int(seq or 0), line) for seq, line in records(body, fmt)]


def end_status(body: bytes, fmt: str) -> str:
    return str(summary(body, fmt)["status"])


def expected(first: int, last: int) -> list[tuple[int, str]]:
    return [(n, f"line {n:05d}") for n in range(first, last + 1)]


def test_a_job_started_through_one_instance_is_listed_streamed_resumed_and_cancelled_through_another(
    redis_server: RedisServer,
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    with instance(redis_server, prefix) as a, instance(redis_server, prefix, worker_class="gevent") as b:
        location = start_job(a.url, f"first=5&gate=never-{prefix}")  # held until cancelled
        job_id = location.rsplit("/", 1)[1]
        assert listed(b.url) == {job_id: "running"}
        with (
            RawClient(b.url, f"{location}?format=ndjson") as live,
            RawClient(b.url, f"{location}?format=ndjson&since=3") as resumed,
            RawClient(b.url, f"{location}?format=sse", {"Last-Event-ID": "2"}) as reconnected,
        ):
            for client in (live, resumed, reconnected):
                client.read_until(b"line 00005")
            status, _, _ = request(b.url, f"{location}/cancel", "POST")
            assert status == 303
            bodies = {
                name: c.read_to_end(20) for name, c in (("live", live), ("resumed", resumed), ("sse", reconnected))
            }
        assert log_seqs(bodies["live"], "ndjson") == expected(1, 5)
        assert log_seqs(bodies["resumed"], "ndjson") == expected(4, 5)
        assert log_seqs(bodies["sse"], "sse") == expected(3, 5)
        for name, body in bodies.items():
            assert end_status(body, "sse" if name == "sse" else "ndjson") == "cancelled", name
        assert listed(a.url) == {job_id: "cancelled"}
        status, _, body = request(a.url, f"{location}?format=text")
        assert status == 200 and summary(body, "text")["status"] == "cancelled"


def test_many_viewers_spread_over_instances_get_identical_sequences_in_every_format(
    redis_server: RedisServer,
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    gate = f"gate-{prefix}"
    control = redis.Redis.from_url(redis_server.url)
    with (
        control,
        instance(redis_server, prefix) as a,
        instance(redis_server, prefix, worker_class="gevent") as b,
    ):
        location = start_job(a.url, f"first=100&gate={gate}&then=1900")
        viewers = [
            (fmt, RawClient(base, f"{location}?format={fmt}"))
            for base in (a.url, b.url)
            for fmt in FORMATS
            for _ in range(2)
        ]
        try:
            for _, client in viewers:
                client.read_until(b"line 00100")
            control.set(gate, 1)  # only now, with every viewer mid-stream, does the job go on
            bodies = [(fmt, client.read_to_end(60)) for fmt, client in viewers]
        finally:
            for _, client in viewers:
                client.close()
    for fmt, body in bodies:
        assert log_seqs(body, fmt) == expected(1, 2000), fmt
        assert end_status(body, fmt) == "ok", fmt


def _worker_pids(program: Program) -> list[int]:
    return [child.pid for child in psutil.Process(program.proc.pid).children()]


def test_killing_the_worker_that_runs_a_job_ends_every_viewer_with_lost_within_the_lease(
    redis_server: RedisServer,
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    lease = 2.0
    with (
        instance(redis_server, prefix, workers=1, LOGSTREAM_LEASE=str(lease)) as a,
        instance(redis_server, prefix, worker_class="gevent", LOGSTREAM_LEASE=str(lease)) as b,
    ):
        location = start_job(a.url, f"first=3&gate=never-{prefix}")
        viewers = [(fmt, RawClient(b.url, f"{location}?format={fmt}")) for fmt in FORMATS]
        try:
            for _, client in viewers:
                client.read_until(b"line 00003")
            (worker,) = _worker_pids(a)
            killed = time.monotonic()
            os.kill(worker, signal.SIGKILL)
            # The bound: the lease, a viewer's recheck (1 s), and room for a loaded machine.
            bodies = [(fmt, client.read_to_end(lease + 1 + 10)) for fmt, client in viewers]
            waited = time.monotonic() - killed
        finally:
            for _, client in viewers:
                client.close()
        for fmt, body in bodies:
            assert log_seqs(body, fmt) == expected(1, 3), fmt
            assert end_status(body, fmt) == "lost", fmt
        assert waited >= lease - 0.5  # ended by the lease running out, not by anything sooner
        job_id = location.rsplit("/", 1)[1]
        assert listed(b.url)[job_id] == "lost"
        assert listed(a.url)[job_id] == "lost"  # the restarted worker agrees


def test_while_redis_is_down_job_requests_get_503_the_job_runs_on_and_viewers_after_see_the_rest(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    until = f"until-{prefix}"
    tally = tmp_path / "tally"
    buffer = 100

    def logged() -> int:
        return int(tally.read_text() or 0) if tally.exists() else 0

    control = redis.Redis.from_url(redis_server.url)
    with control, instance(redis_server, prefix, LOGSTREAM_BUFFER=str(buffer)) as a:
        location = start_job(a.url, f"until={until}&every=0.002&tally={tally}")
        with RawClient(a.url, f"{location}?format=ndjson") as during:
            during.read_until(b"line 00050")
            redis_server.stop()  # SIGTERM: Redis saves its snapshot, as a production one does
            at_stop = logged()

            # A worker may answer a look at the job from the record its viewers shared in the last quarter
            # second (RedisStore.FRESH): a stream then starts and waits. After that, every look is a 503.
            def stream_refused() -> tuple[int, dict[str, str], bytes] | None:
                got = request(a.url, location, body=False)  # a stream that started is left unread
                return got if got[0] != 200 else None

            answers = [wait_until(stream_refused, 10, "the stream's request to get 503")]
            answers += [request(a.url, "/jobs/", method) for method in ("GET", "POST")]
            for status, headers, body in answers:
                assert status == 503, body
                assert headers["retry-after"].isdigit() and b"unavailable" in body and b"Traceback" not in body
            assert request(a.url, "/hello")[2] == b"hello\n"
            status, _, body = request(a.url, "/plain?format=text")
            assert status == 200 and b"plain line" in body
            # The operation goes on meanwhile, past what its buffer holds: some lines must be dropped.
            wait_until(lambda: logged() > at_stop + 2 * buffer, 20, "the job to log on while Redis is down")
            redis_server.start()
            wait_until(lambda: request(a.url, "/jobs/")[0] == 200, 20, "the jobs app to serve again")
            control.set(until, 1)
            body_during = during.read_to_end(30)
        status, _, body_after = request(a.url, f"{location}?format=ndjson")
    assert status == 200
    for body in (body_during, body_after):
        objects = ndjson_objects(body)
        end = objects[-1]
        assert end["event"] == "end" and end["status"] == "ok"
        lines = [(o["seq"], o["line"]) for o in objects if o["event"] == "log"]
        seqs = [seq for seq, _ in lines]
        assert seqs == sorted(set(seqs)), "no duplicate, in order"
        assert all(line == f"line {seq:05d}" for seq, line in lines), "each line where it was numbered"
        # Every line is either shown or counted as dropped: none is lost silently.
        assert len(lines) + end["dropped"] == end["records"] == end["seq"] - 1
        assert end["dropped"] >= buffer, "what the buffer could not hold is counted and shown"
        assert seqs[-1] == end["records"] > at_stop + 2 * buffer, "the rest, after the restart"
    assert log_seqs(body_during, "ndjson") == log_seqs(body_after, "ndjson")
