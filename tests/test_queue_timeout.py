"""A job handed to a task queue that no worker begins in time is ``lost``, not ``queued`` for ever.

A broker can lose a message (a Redis broker restarted without persistence, a
queue purged) and a deployment can run no worker at all: the job's viewers must
not wait on it for ever. ``queue_timeout`` (with ``runner=``) is the lease a
queued job is given; a worker that comes later never starts it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.inproc import TestApp
from tests.servers import wait_until
from tests.wire import ndjson_objects
from wsgi_logstream import jobs
from wsgi_logstream.record import JobRecord
from wsgi_logstream.runner import new_job, run_job
from wsgi_logstream.store import JobStore

from .test_store_contract import MakeStore, make_store, redis_cluster, redis_server  # noqa: F401 - fixtures


class LostRunner:
    """A broker that takes every job and never delivers it."""

    def __init__(self) -> None:
        self.taken: list[str] = []

    def submit(self, store: JobStore, record: JobRecord, payload: dict[str, Any]) -> None:
        self.taken.append(record.id)


@pytest.fixture
def store(make_store: MakeStore) -> JobStore:  # noqa: F811 - the imported fixture, by name
    """Each store of the contract suite: memory, plain data in another process, Redis."""
    return make_store()


def _never_called() -> None:
    raise AssertionError("a job ran that should not have")


def test_a_queued_job_no_worker_begins_within_queue_timeout_is_lost_for_every_viewer(store: JobStore) -> None:
    runner = LostRunner()
    app = TestApp(jobs(_never_called, store=store, runner=runner, queue_timeout=0.3))
    job_id = app.post("/", status=303).headers["Location"].rsplit("/", 1)[1]
    record = store.get(job_id)
    assert record is not None and record.status == "queued" and record.lease_until is not None

    # A viewer who came while it was queued: its stream ends with the job, not with its heartbeat.
    events = ndjson_objects(app.get(f"/{job_id}?format=ndjson").body)
    end = events[-1]
    assert end["event"] == "end" and end["status"] == "lost"
    assert end["error"] == "no worker began this job within 0.3s"
    listed = app.get("/", headers={"Accept": "application/json"}).json["jobs"]
    assert [(job["id"], job["status"]) for job in listed] == [(job_id, "lost")]

    # The broker delivers it after all: the worker does not start it.
    assert run_job(store, job_id, _never_called) is None
    record = store.get(job_id)
    assert record is not None and record.status == "lost"


def test_a_worker_that_begins_a_queued_job_in_time_is_not_bounded_by_queue_timeout(store: JobStore) -> None:
    runner = LostRunner()
    app = TestApp(jobs(_never_called, store=store, runner=runner, queue_timeout=0.5))
    job_id = app.post("/", status=303).headers["Location"].rsplit("/", 1)[1]
    began = time.time()

    def target() -> None:
        # Running for longer than the queue's bound: the job is not lost for it.
        wait_until(lambda: time.time() > began + 1.0, 5, "the queue's bound to pass")
        record = store.get(job_id)
        assert record is not None and record.status == "running"
        listed = app.get("/", headers={"Accept": "application/json"}).json["jobs"]
        assert [(job["id"], job["status"]) for job in listed] == [(job_id, "running")]

    summary = run_job(store, job_id, target)
    assert summary is not None and summary.status == "ok", summary


def test_queue_timeout_is_checked_and_needs_a_runner() -> None:
    with pytest.raises(TypeError, match=r"queue_timeout .*runner="):
        jobs(_never_called, queue_timeout=10)
    with pytest.raises(ValueError, match="queue_timeout must be > 0"):
        jobs(_never_called, runner=LostRunner(), queue_timeout=0)
    with pytest.raises(TypeError, match="queue_timeout must be a number or None"):
        jobs(_never_called, runner=LostRunner(), queue_timeout="1h")  # type: ignore[typeddict-item]
    app = jobs(_never_called, runner=LostRunner(), queue_timeout=None)
    job_id = TestApp(app).post("/", status=303).headers["Location"].rsplit("/", 1)[1]
    record = app.store.get(job_id)
    assert record is not None and record.lease_until is None and record.status == "queued"


def test_new_job_takes_queue_timeout_as_the_jobs_app_does(store: JobStore) -> None:
    job_id = new_job(store, title="Nightly import", queue_timeout=0.2)
    record = store.get(job_id)
    assert record is not None and record.lease_until == pytest.approx(record.created + 0.2)
    wait_until(lambda: time.time() > record.created + 0.2, 5, "the queue's bound to pass")
    assert run_job(store, job_id, _never_called) is None
    record = store.get(job_id)
    assert record is not None and record.status == "lost" and record.error == "no worker began this job within 0.2s"
    unbounded = store.get(new_job(store, queue_timeout=None))
    assert unbounded is not None and unbounded.lease_until is None
    with pytest.raises(TypeError, match="queue_timeout"):
        new_job(store, queue_timeout="soon")  # type: ignore[arg-type]
