"""Jobs run by real Celery and RQ workers, watched through two gunicorn instances behind nginx, on one Redis.

The deployment (``tests/apps/deployment.py``) is the layout of
``examples/scaled/``: redis-server, two gunicorn instances of two workers
each behind nginx's ``upstream``, and the workers, every one a real process
started here and stopped by its id. The operation (``tests/apps/queue_tasks.py``)
logs ``first <key>`` and then waits for a file the test writes only after
every viewer has seen that line, so a pass proves the line was streamed while
the task was still blocked in the worker, without timing anything.

Every test runs for Celery and for RQ. Viewers are raw sockets reading SSE
(resumed with ``Last-Event-ID``) and NDJSON (resumed with ``?since=``), on
each instance directly and through nginx.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from typing import Any, Iterator

import pytest

from tests.apps.deployment import Deployment, Worker
from tests.servers import RawClient, wait_until
from tests.wire import ndjson_objects, parse_sse

pytestmark = pytest.mark.servers

KINDS = ("celery", "rq")
#: The lease the workers' store holds (seconds); a dead worker's job is lost within it plus a recheck.
LEASE = 2.0


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with Deployment(
        tmp_path_factory.mktemp("scaled"),
        app="tests.apps.queue_site:application",
        tasks="tests.apps.queue_tasks",
        rq_queue="logstream",
        lease=LEASE,
    ) as deployed:
        yield deployed


def _worker(deployment: Deployment, kind: str) -> Worker:
    return deployment.start_celery() if kind == "celery" else deployment.start_rq()


def _work_through(deployment: Deployment, kind: str, later_id: str) -> Worker:
    """Run a worker until the job ``later_id`` has run, then stop it (its output stays readable).

    The jobs queued before ``later_id`` are ahead of it: once it has run, the worker has taken them too.
    """
    worker = _worker(deployment, kind)
    try:
        wait_until(lambda: _record(deployment.url(0), kind, later_id)["status"] == "ok", 30, "the later job")
    finally:
        worker.stop()
    return worker


def _post(url: str, data: dict[str, str] | None = None, accept: str = "text/plain") -> tuple[int, str, str]:
    """POST a form without following redirects: (status, Location, body)."""
    body = "&".join(f"{k}={v}" for k, v in (data or {}).items()).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={"Accept": accept})
    request.add_header("Content-Type", "application/x-www-form-urlencoded")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as reply:
            return reply.status, reply.headers.get("Location", ""), reply.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers.get("Location", ""), error.read().decode()


def _record(base: str, kind: str, job_id: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{base}/{kind}/", headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        listed = json.load(reply)["jobs"]
    return next(job for job in listed if job["id"] == job_id)


def _start_job(deployment: Deployment, kind: str, key: str) -> str:
    status, location, body = _post(f"{deployment.nginx.url}/{kind}/", {"key": key})
    assert status == 303, f"{status} {body!r}\nnginx: {deployment.nginx.errors()[-2000:]}"
    return location.rsplit("/", 1)[1]


class Viewer:
    """One viewer of a job that reconnects as a browser would: SSE with Last-Event-ID, NDJSON with ``?since=``."""

    def __init__(self, base: str, path: str, fmt: str) -> None:
        self.base, self.path, self.fmt = base, path, fmt
        self.before: list[tuple[int, str]] = []  # (seq, message) from earlier connections
        self.end: dict[str, Any] | None = None
        self.connections = 0
        self.client: RawClient | None = None
        self.connect()

    def connect(self) -> None:
        self.close()
        self.before = self.seen()
        last = self.before[-1][0] if self.before else 0
        headers: dict[str, str] = {}
        if self.fmt == "sse":
            headers["Accept"] = "text/event-stream"
            if last:
                headers["Last-Event-ID"] = str(last)
            path = f"{self.path}?format=sse"
        else:
            path = f"{self.path}?format=ndjson&since={last}"
        self.client = RawClient(self.base, path, headers)
        self.connections += 1

    def _current(self) -> list[tuple[int, str]]:
        if self.client is None:
            return []
        found: list[tuple[int, str]] = []
        if self.fmt == "sse":
            for event in parse_sse(self.client.body).events:
                if event.type == "end":
                    self.end = json.loads(event.data)
                elif event.type == "message":  # data: the formatted line, "LEVEL logger: message"
                    found.append((int(event.id), event.data.split(": ", 1)[1]))
        else:
            body = self.client.body
            for data in ndjson_objects(body[: body.rfind(b"\n") + 1]):  # the lines received whole so far
                if data["event"] == "end":
                    self.end = data
                elif data["event"] == "log":
                    found.append((data["seq"], data["message"]))
        return found

    def seen(self) -> list[tuple[int, str]]:
        return self.before + self._current()

    def messages(self) -> list[str]:
        return [message for _seq, message in self.seen()]

    def _fill(self, deadline: float) -> bool:
        assert self.client is not None
        try:
            return self.client.fill(deadline)
        except OSError:  # reset by a server that was killed
            return False

    def read_until(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in message for message in self.messages()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.fmt} viewer on {self.base}: no {text!r} in {self.messages()}")
            if not self._fill(deadline):
                raise AssertionError(f"connection closed before {text!r}: {self.messages()} end={self.end}")

    def read_to_close(self, timeout: float = 20.0) -> None:
        """Read until the server closes the connection (the end, or a server that died)."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.fmt} viewer on {self.base} never closed: {self.messages()}")
        self._current()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def _expected(key: str) -> list[str]:
    return [f"detail {key}", f"second {key} cancelled=False", *(f"line {n} of {key}" for n in (1, 2, 3))]


@pytest.mark.parametrize("kind", KINDS)
def test_a_queued_job_streams_from_the_worker_to_both_instances_and_survives_a_restart_of_every_gunicorn(
    deployment: Deployment, kind: str
) -> None:
    key = f"restart-{kind}"
    job_id = _start_job(deployment, kind, key)
    record = _record(deployment.url(0), kind, job_id)
    assert record["status"] == "queued" and record["started"] is None, record
    path = f"/{kind}/{job_id}"
    viewers = [
        Viewer(deployment.url(0), path, "sse"),
        Viewer(deployment.url(1), path, "ndjson"),
        Viewer(deployment.nginx.url, path, "sse"),
    ]
    worker = _worker(deployment, kind)
    try:
        for viewer in viewers:
            viewer.read_until(f"first {key}")
        record = _record(deployment.url(1), kind, job_id)
        assert record["status"] == "running" and record["started"] is not None, record
        # Every gunicorn process goes (SIGKILL, master and workers) while the task runs on.
        for index in range(len(deployment.ports)):
            deployment.kill_gunicorn(index)
        for viewer in viewers:
            viewer.read_to_close()
            assert viewer.end is None, f"the stream ended while the job ran: {viewer.end}"
        for index in range(len(deployment.ports)):
            deployment.start_gunicorn(index)
        for viewer in viewers:
            viewer.connect()
        deployment.release(key)
        for viewer in viewers:
            viewer.read_to_close()
        for viewer in viewers:
            seqs = [seq for seq, _message in viewer.seen()]
            assert seqs == list(range(1, len(seqs) + 1)), f"a gap or a duplicate across the restart: {seqs}"
            messages = viewer.messages()
            assert messages[0].startswith(f"first {key} pid=") and messages[1:] == _expected(key), messages
            assert viewer.end is not None and viewer.end["status"] == "ok", viewer.end
            assert viewer.connections == 2
        record = _record(deployment.nginx.url, kind, job_id)
        assert record["status"] == "ok" and record["ended"] >= record["started"], record
    finally:
        for viewer in viewers:
            viewer.close()
        worker.stop()
    worker_log = worker.output()
    # The worker's own log is as the queue set it up: Celery's hijacked root logger at INFO shows the
    # task's INFO records as it would without this library; RQ logs only its own logger's. Neither shows
    # the DEBUG record the job captured.
    assert f"detail {key}" not in worker_log
    if kind == "celery":
        assert "ready." in worker_log and f"first {key}" in worker_log
    else:
        assert "Listening on" in worker_log and f"first {key}" not in worker_log


@pytest.mark.parametrize("kind", KINDS)
def test_a_cancel_posted_to_either_instance_reaches_the_task_in_the_worker(deployment: Deployment, kind: str) -> None:
    worker = _worker(deployment, kind)
    try:
        for index in (0, 1):
            key = f"cancel-{kind}-{index}"
            job_id = _start_job(deployment, kind, key)
            viewer = Viewer(deployment.url(1 - index), f"/{kind}/{job_id}", "sse")
            try:
                viewer.read_until(f"first {key}")
                (deployment.hold / f"{key}.cancel-asked").write_text(repr(time.time()))
                status, _location, body = _post(
                    f"{deployment.url(index)}/{kind}/{job_id}/cancel", accept="application/json"
                )
                assert status == 202, body
                viewer.read_until(f"cancelled {key} after", timeout=10)
                viewer.read_to_close()
                assert viewer.end is not None and viewer.end["status"] == "cancelled", viewer.end
                took = float(viewer.messages()[-1].rsplit(" ", 1)[1])
                print(f"{kind}: cancel posted to instance {index} reached the task after {took:.3f}s")
            finally:
                viewer.close()
    finally:
        worker.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_a_job_cancelled_while_queued_never_starts(deployment: Deployment, kind: str) -> None:
    cancelled_id = _start_job(deployment, kind, f"never-{kind}")
    status, _location, body = _post(f"{deployment.url(1)}/{kind}/{cancelled_id}/cancel", accept="application/json")
    assert status == 202 and json.loads(body)["status"] == "cancelled", body
    key = f"after-{kind}"
    later_id = _start_job(deployment, kind, key)
    deployment.release(key)
    worker = _work_through(deployment, kind, later_id)  # the queue holds the cancelled job first
    record = _record(deployment.url(0), kind, cancelled_id)
    assert record["status"] == "cancelled" and record["records"] == 0 and record["next_seq"] == 1, record
    viewer = Viewer(deployment.nginx.url, f"/{kind}/{cancelled_id}", "ndjson")
    try:
        viewer.read_to_close()
    finally:
        viewer.close()
    assert viewer.seen() == [] and viewer.end is not None and viewer.end["status"] == "cancelled", viewer.end
    if kind == "celery":  # the task was delivered, and returned without running the operation
        assert f"Task tests.apps.queue_tasks.celery_operation[{cancelled_id}] succeeded" in worker.output()


@pytest.mark.parametrize("kind", KINDS)
def test_a_job_no_worker_begins_within_queue_timeout_is_lost_and_a_later_worker_skips_it(
    deployment: Deployment, kind: str
) -> None:
    key = f"unbegun-{kind}"
    job_id = _start_job(deployment, f"{kind}-bounded", key)
    # No worker runs: a viewer of the queued job sees it end as lost, within the bound and its recheck.
    viewer = Viewer(deployment.url(1), f"/{kind}-bounded/{job_id}", "ndjson")
    try:
        viewer.read_to_close(timeout=1.0 + 2 * 1.0 + 10)
    finally:
        viewer.close()
    assert viewer.seen() == [] and viewer.end is not None and viewer.end["status"] == "lost", viewer.end
    assert viewer.end["error"] == "no worker began this job within 1s"
    later = f"after-unbegun-{kind}"
    later_id = _start_job(deployment, kind, later)
    deployment.release(key)  # were the lost job run after all, it would not wait
    deployment.release(later)
    worker = _work_through(deployment, kind, later_id)  # the queue holds the lost job first
    record = _record(deployment.url(0), f"{kind}-bounded", job_id)
    assert record["status"] == "lost" and record["records"] == 0 and record["next_seq"] == 1, record
    # The worker took the lost job and returned at once: the operation, which logs first of all, never ran.
    took = f"Job OK ({job_id})" if kind == "rq" else f"Task tests.apps.queue_tasks.celery_operation[{job_id}] succeeded"
    assert took in worker.output()


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_of_the_worker_running_a_job_ends_every_viewer_with_lost(deployment: Deployment, kind: str) -> None:
    key = f"killed-{kind}"
    job_id = _start_job(deployment, kind, key)
    path = f"/{kind}/{job_id}"
    # One viewer came while the job was queued (no lease yet), one after the worker took it.
    viewers = [Viewer(deployment.url(0), path, "sse")]
    worker = _worker(deployment, kind)
    viewers.append(Viewer(deployment.url(1), path, "ndjson"))
    try:
        for viewer in viewers:
            viewer.read_until(f"first {key}")
        # The process running the job: a pool child of Celery's worker; RQ's work horse, which RQ puts in
        # a session of its own. It goes with the worker, at once.
        job_pid = int(viewers[0].messages()[0].rsplit("pid=", 1)[1])
        killed = time.monotonic()
        os.kill(job_pid, signal.SIGKILL)
        worker.stop(signal.SIGKILL)
        bound = LEASE + 2 * 1.0 + 5  # the lease, the viewers' recheck, and room for a loaded machine
        for viewer in viewers:
            viewer.read_to_close(timeout=bound)
            assert viewer.end is not None and viewer.end["status"] == "lost", viewer.end
        print(f"{kind}: every viewer saw 'lost' {time.monotonic() - killed:.2f}s after the SIGKILL (lease {LEASE}s)")
    finally:
        for viewer in viewers:
            viewer.close()
    assert _record(deployment.nginx.url, kind, job_id)["status"] == "lost"


@pytest.mark.parametrize(
    ("kind", "interrupted_by"), [("celery", "SoftTimeLimitExceeded"), ("rq", "JobTimeoutException")]
)
def test_the_queue_sees_its_own_task_id_and_its_time_limit_ends_the_job_as_error(
    deployment: Deployment, kind: str, interrupted_by: str
) -> None:
    job_id = _start_job(deployment, f"{kind}-limited", "limited")
    viewer = Viewer(deployment.url(0), f"/{kind}-limited/{job_id}", "ndjson")
    worker = _worker(deployment, kind)
    try:
        viewer.read_to_close(timeout=30)
    finally:
        viewer.close()
        worker.stop()
    # The target ran in the worker's own thread: the queue's per-thread state names this job.
    assert viewer.messages() == [f"task id {job_id}"]
    assert viewer.end is not None and viewer.end["status"] == "error", viewer.end
    assert viewer.end["error"].startswith(interrupted_by), viewer.end
