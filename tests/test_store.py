"""The job store: what it keeps, for how long, and that the jobs app needs nothing more of it.

Retention is checked with stand-in jobs whose end times are set by the test,
so "an hour ago" needs no waiting; the last tests use real jobs through the
jobs app, with a store of the test's own.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.apps.core_client import TestApp
from wsgi_logstream import jobs
from wsgi_logstream.jobs import Job
from wsgi_logstream.store import JobStore, MemoryStore


class FakeJob:
    """Just what :class:`MemoryStore` reads from a job: id, created, ended, check_timeout()."""

    def __init__(self, job_id: str, created: float, ended: float | None = None) -> None:
        self.id = job_id
        self.created = created
        self.ended = ended
        self.timeout_checks = 0

    def check_timeout(self) -> None:
        self.timeout_checks += 1


def _store(**kwargs: Any) -> MemoryStore:
    return MemoryStore(**kwargs)


def _add(store: MemoryStore, *fakes: FakeJob) -> None:
    for fake in fakes:
        store.add(fake)  # type: ignore[arg-type]


def test_a_job_added_is_found_by_its_id_and_an_unknown_id_is_none() -> None:
    store = _store()
    job = FakeJob("a" * 16, time.time())
    _add(store, job)
    assert store.get("a" * 16) is job
    assert store.get("b" * 16) is None


def test_jobs_are_listed_newest_first() -> None:
    store = _store()
    now = time.time()
    _add(store, FakeJob("old", now - 30), FakeJob("new", now), FakeJob("mid", now - 10))
    assert [job.id for job in store.jobs()] == ["new", "mid", "old"]


def test_adding_a_taken_id_is_refused_and_keeps_the_first() -> None:
    store = _store()
    first = FakeJob("same", time.time())
    _add(store, first)
    with pytest.raises(ValueError, match="same"):
        _add(store, FakeJob("same", time.time()))
    assert store.get("same") is first


def test_finished_jobs_beyond_max_finished_go_oldest_ending_first() -> None:
    store = _store(max_finished=2)
    now = time.time()
    # Created in one order, ended in another: the one that ended first goes.
    _add(
        store,
        FakeJob("ended-second", now - 50, ended=now - 20),
        FakeJob("ended-first", now - 40, ended=now - 30),
        FakeJob("ended-last", now - 30, ended=now - 10),
    )
    assert store.get("ended-first") is None
    assert {job.id for job in store.jobs()} == {"ended-second", "ended-last"}


def test_running_jobs_are_never_forgotten_whatever_the_limits() -> None:
    store = _store(max_finished=0, keep_finished=0)
    now = time.time()
    _add(store, FakeJob("running-1", now - 7200), FakeJob("running-2", now), FakeJob("done", now - 5, ended=now - 1))
    assert {job.id for job in store.jobs()} == {"running-1", "running-2"}


def test_a_finished_job_is_forgotten_once_keep_finished_has_passed() -> None:
    store = _store(keep_finished=60)
    now = time.time()
    _add(store, FakeJob("recent", now - 100, ended=now - 30), FakeJob("stale", now - 200, ended=now - 90))
    assert store.get("stale") is None
    assert store.get("recent") is not None


def test_retention_is_lazy_and_applied_on_every_use() -> None:
    """No timer thread: a job goes when the store is next used, by get, jobs or add."""
    threads_before = threading.active_count()
    store = _store(keep_finished=60)
    now = time.time()
    job = FakeJob("j", now - 10, ended=now - 5)
    _add(store, job)
    assert threading.active_count() == threads_before
    assert store.get("j") is job
    job.ended = now - 120  # as if two minutes had passed
    assert [j.id for j in store.jobs()] == []
    assert store.get("j") is None


def test_every_use_lets_running_jobs_check_their_timeout() -> None:
    """A job whose ``timeout`` passed with no viewer still ends: the store asks it on each use."""
    store = _store()
    job = FakeJob("t", time.time())
    _add(store, job)
    store.get("t")
    store.jobs()
    assert job.timeout_checks >= 3


def test_the_store_interface_cannot_be_half_implemented() -> None:
    class Partial(JobStore):
        def add(self, job: Job) -> None:
            pass

    with pytest.raises(TypeError):
        Partial()  # type: ignore[abstract]


class DictStore(JobStore):
    """A store of the test's own: the jobs app must need nothing but the three methods."""

    def __init__(self) -> None:
        self.jobs_by_id: dict[str, Job] = {}
        self.calls: list[str] = []

    def add(self, job: Job) -> None:
        self.calls.append("add")
        self.jobs_by_id[job.id] = job

    def get(self, job_id: str) -> Job | None:
        self.calls.append("get")
        return self.jobs_by_id.get(job_id)

    def jobs(self) -> list[Job]:
        self.calls.append("jobs")
        return list(self.jobs_by_id.values())


def test_the_jobs_app_works_with_any_job_store() -> None:
    store = DictStore()
    app = jobs(lambda: None, store=store)
    client = TestApp(app)
    location = client.post("/", status=303).headers["Location"]
    job_id = location.rsplit("/", 1)[1]
    assert store.jobs_by_id[job_id].wait(10)
    assert client.get(location + "?format=ndjson").status_int == 200
    listed = client.get("/", headers={"Accept": "application/json"}).json["jobs"]
    assert [job["id"] for job in listed] == [job_id]
    assert {"add", "get", "jobs"} <= set(store.calls)


def test_a_store_that_is_not_a_job_store_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="store"):
        jobs(lambda: None, store=object())  # type: ignore[arg-type]
