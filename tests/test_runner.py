"""``run_job`` and the ``runner`` option of ``jobs()``: a job run by whoever can reach the store.

Every test runs against each store of the contract suite: :class:`MemoryStore`,
the test store that keeps nothing but plain data in another process
(``tests/apps/dict_store.py``) and the Redis store on a real redis-server, so
what ``run_job`` needs of a store is the store interface and nothing more.
The "worker" here is a thread of the test; the Celery and RQ tests run the
same function in real worker processes.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from typing import Any, Callable

import pytest

from tests.inproc import TestApp, logging_snapshot
from tests.servers import wait_until
from wsgi_logstream import Thread, cancelled, jobs, wait_cancelled
from wsgi_logstream.channel import Entry
from wsgi_logstream.record import JobRecord
from wsgi_logstream.runner import Runner, new_job, payload_from_environ, run_job
from wsgi_logstream.store import JobStore, MemoryStore

from .test_store_contract import MakeStore, make_store, redis_cluster, redis_server  # noqa: F401 - fixtures

log = logging.getLogger("tests.runner")


@pytest.fixture
def store(make_store: MakeStore) -> JobStore:  # noqa: F811 - the imported fixture, by name
    """Each store of the contract suite: memory, plain data in another process, Redis."""
    return make_store()


def _lines(store: JobStore, job_id: str) -> list[str]:
    reader = store.reader(job_id, 0)
    try:
        entries: list[Entry] = []
        while True:
            _missed, batch = reader.take()
            if not batch:
                return [entry.line for entry in entries if entry.kind == "log"]
            entries.extend(batch)
    finally:
        reader.close()


def _record(store: JobStore, job_id: str) -> JobRecord:
    record = store.get(job_id)
    assert record is not None
    return record


def _in_worker(func: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``func`` in a thread, as a worker would; its result lands in the list."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(func()), daemon=True)
    thread.start()
    return thread, result


def test_a_job_run_by_run_job_gets_its_records_and_those_of_its_threads_and_ends_ok(store: JobStore) -> None:
    job_id = new_job(store, title="Import")
    assert _record(store, job_id).status == "queued"
    before = logging_snapshot()

    def target(rows: int, *, table: str) -> str:
        for row in range(rows):
            log.info("%s row %d", table, row)
        helper = Thread(target=lambda: log.info("from a helper thread"))
        helper.start()
        helper.join()
        return "done"

    summary = run_job(store, job_id, target, 3, table="users", options={"formatter": "%(message)s"})
    assert summary is not None and summary.status == "ok"
    record = _record(store, job_id)
    assert record.status == "ok" and record.started is not None and record.ended is not None
    assert record.records == 4
    assert _lines(store, job_id) == ["users row 0", "users row 1", "users row 2", "from a helper thread"]
    assert logging_snapshot() == before, "run_job changed the process's logging configuration"


def test_the_process_own_logging_sees_only_what_it_would_have_seen(
    store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = new_job(store)
    caplog.set_level(logging.WARNING, logger="tests.runner")

    def target() -> None:
        log.info("an info line for the job only")
        log.warning("a warning the host logs as well")

    run_job(store, job_id, target, options={"formatter": "%(message)s"})
    assert _lines(store, job_id) == ["an info line for the job only", "a warning the host logs as well"]
    assert [r.getMessage() for r in caplog.records if r.name == "tests.runner"] == ["a warning the host logs as well"]


def test_a_target_that_raises_ends_the_job_as_error_with_its_traceback_and_run_job_returns(store: JobStore) -> None:
    job_id = new_job(store)

    def target() -> None:
        log.info("about to fail")
        raise LookupError("no such table")

    summary = run_job(store, job_id, target)
    assert summary is not None and summary.status == "error"
    record = _record(store, job_id)
    assert record.status == "error" and record.error == "LookupError: no such table"
    assert record.traceback is not None and "in target" in record.traceback


def test_a_job_cancelled_while_queued_never_starts(store: JobStore) -> None:
    job_id = new_job(store)
    assert store.request_cancel(job_id)
    calls: list[int] = []
    assert run_job(store, job_id, lambda: calls.append(1)) is None
    assert calls == []
    assert _record(store, job_id).status == "cancelled"


def test_a_job_delivered_twice_runs_once(store: JobStore) -> None:
    job_id = new_job(store)
    calls: list[int] = []
    first = run_job(store, job_id, lambda: calls.append(1))
    second = run_job(store, job_id, lambda: calls.append(2))
    assert first is not None and first.status == "ok"
    assert second is None and calls == [1]


def test_a_cancel_asked_through_the_store_makes_cancelled_true_in_the_running_target(store: JobStore) -> None:
    job_id = new_job(store)
    started = threading.Event()

    def target() -> None:
        log.info("waiting to be cancelled")
        started.set()
        assert wait_cancelled(10), "the cancel never reached the target"
        log.info("cancelled=%s", cancelled())

    worker, result = _in_worker(lambda: run_job(store, job_id, target, options={"formatter": "%(message)s"}))
    assert started.wait(10)
    assert _record(store, job_id).status == "running"
    store.request_cancel(job_id)
    worker.join(10)
    assert not worker.is_alive()
    assert result[0] is not None and result[0].status == "cancelled"
    assert _record(store, job_id).status == "cancelled"
    assert _lines(store, job_id) == ["waiting to be cancelled", "cancelled=True"]


def test_a_job_timeout_counts_from_its_creation_and_ends_it_as_timeout(store: JobStore) -> None:
    job_id = new_job(store, timeout=0.5)

    def target() -> None:
        assert wait_cancelled(10), "the deadline never reached the target"

    summary = run_job(store, job_id, target)
    assert summary is not None and summary.status == "timeout" and summary.error == "timed out after 0.5s"
    assert _record(store, job_id).status == "timeout"


def test_a_job_whose_deadline_passed_in_the_queue_never_starts() -> None:
    store = MemoryStore()
    job_id = new_job(store, timeout=0.01)
    wait_until(lambda: (_record(store, job_id).deadline or 0) < time.time(), 5, "the deadline")
    calls: list[int] = []
    assert run_job(store, job_id, lambda: calls.append(1)) is None
    assert calls == [] and _record(store, job_id).status == "timeout"


def test_run_job_refuses_an_unknown_job_and_options_that_do_not_apply() -> None:
    store = MemoryStore()
    with pytest.raises(KeyError):
        run_job(store, "no-such-job-id", lambda: None)
    job_id = new_job(store)
    with pytest.raises(TypeError, match="heartbeat"):
        run_job(store, job_id, lambda: None, options={"heartbeat": 1})
    with pytest.raises(ValueError, match="level"):
        run_job(store, job_id, lambda: None, options={"level": "LOUD"})
    with pytest.raises(TypeError, match="callable"):
        run_job(store, job_id, "not a function")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        new_job(store, timeout=0)
    assert _record(store, job_id).status == "queued"


# -- jobs(runner=...) -----------------------------------------------------------------------------


class ListRunner:
    """A runner that only keeps what it is given, as a broker would; the test is the worker."""

    def __init__(self) -> None:
        self.submitted: list[tuple[JobStore, JobRecord, dict[str, Any]]] = []

    def submit(self, store: JobStore, record: JobRecord, payload: dict[str, Any]) -> None:
        json.dumps(payload)  # what goes through a broker must be plain data
        self.submitted.append((store, record, payload))


def _listed_status(client: TestApp, job_id: str) -> str:
    listed = client.get("/", headers={"Accept": "application/json"}).json["jobs"]
    return str(next(job["status"] for job in listed if job["id"] == job_id))


def _never_called() -> None:
    raise AssertionError("the web process ran a job it handed to a runner")


def test_a_post_to_a_jobs_app_with_a_runner_queues_the_job_and_a_worker_runs_it(store: JobStore) -> None:
    runner = ListRunner()
    assert isinstance(runner, Runner)
    app = jobs(_never_called, store=store, runner=runner, formatter="%(message)s", title="Reindex")
    client = TestApp(app)
    reply = client.post("/?shard=2", {"index": "users", "full": "1"}, status=303)
    job_id = reply.headers["Location"].rsplit("/", 1)[1]
    listed = client.get("/", headers={"Accept": "application/json"}).json["jobs"]
    assert [(job["id"], job["status"]) for job in listed] == [(job_id, "queued")]
    [(given_store, record, payload)] = runner.submitted
    assert given_store is store and record.id == job_id and record.status == "queued"
    assert payload == {
        "job_id": job_id,
        "title": "Reindex",
        "owner": None,
        "query": {"shard": "2"},
        "form": {"index": "users", "full": "1"},
    }

    def task(payload: dict[str, Any]) -> None:
        log.info("reindexing %s shard %s", payload["form"]["index"], payload["query"]["shard"])

    run_job(store, payload["job_id"], task, payload, options={"formatter": "%(message)s"})
    text = client.get(f"/{job_id}?format=text").text
    assert "reindexing users shard 2" in text and "-- ok (after" in text
    assert _listed_status(client, job_id) == "ok"


def test_a_queued_job_shown_to_a_viewer_ends_when_a_worker_runs_it(store: JobStore) -> None:
    runner = ListRunner()
    app = jobs(_never_called, store=store, runner=runner, formatter="%(message)s")
    job_id = TestApp(app).post("/", status=303).headers["Location"].rsplit("/", 1)[1]
    viewer, body = _in_worker(lambda: TestApp(app).get(f"/{job_id}?format=text").text)
    wait_until(lambda: store.get(job_id) is not None, 5, "the job")
    run_job(store, job_id, lambda: log.info("ran in the worker"), options={"formatter": "%(message)s"})
    viewer.join(15)
    assert not viewer.is_alive()
    assert "ran in the worker" in body[0] and "-- ok (after" in body[0]


def test_a_queued_job_with_a_json_body_gets_it_in_its_payload(store: JobStore) -> None:
    runner = ListRunner()
    client = TestApp(jobs(_never_called, store=store, runner=runner))
    client.post("/", json.dumps({"ids": [1, 2]}), headers={"Content-Type": "application/json"}, status=303)
    assert runner.submitted[0][2]["json"] == {"ids": [1, 2]}


def test_a_body_a_queued_job_cannot_carry_is_refused_with_a_short_4xx(store: JobStore) -> None:
    runner = ListRunner()
    client = TestApp(jobs(_never_called, store=store, runner=runner))
    reply = client.post("/", b"\x00\x01", headers={"Content-Type": "application/octet-stream"}, status=415)
    assert "application/x-www-form-urlencoded" in reply.text and "Traceback" not in reply.text
    reply = client.post("/", b"{not json", headers={"Content-Type": "application/json"}, status=400)
    assert "not valid JSON" in reply.text
    assert runner.submitted == [] and store.list() == []


class BrokenRunner:
    def submit(self, store: JobStore, record: JobRecord, payload: dict[str, Any]) -> None:
        raise ConnectionError("broker unreachable")


def test_a_job_the_runner_cannot_queue_answers_503_and_ends_as_error(store: JobStore) -> None:
    client = TestApp(jobs(_never_called, store=store, runner=BrokenRunner()))
    reply = client.post("/", status=503)
    assert "could not be queued" in reply.text and "Traceback" not in reply.text
    [record] = store.list()
    assert record.status == "error" and record.error == "could not be queued: broker unreachable"


def test_a_cancel_posted_for_a_queued_job_ends_it_and_the_worker_then_skips_it(store: JobStore) -> None:
    runner = ListRunner()
    client = TestApp(jobs(_never_called, store=store, runner=runner))
    job_id = client.post("/", status=303).headers["Location"].rsplit("/", 1)[1]
    client.post(f"/{job_id}/cancel", status=303)
    assert _listed_status(client, job_id) == "cancelled"
    assert run_job(store, job_id, _never_called) is None


def test_jobs_refuses_a_runner_without_submit_and_max_concurrent_beside_a_runner() -> None:
    with pytest.raises(TypeError, match="runner must have a submit"):
        jobs(_never_called, runner=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_concurrent"):
        jobs(_never_called, runner=ListRunner(), max_concurrent=2)


def test_a_handle_of_a_queued_job_waits_for_the_worker_through_the_store(store: JobStore) -> None:
    runner = ListRunner()
    app = jobs(_never_called, store=store, runner=runner)
    handle = app.start({"QUERY_STRING": "n=1"})
    assert handle.status == "queued" and not handle.wait(0.05)
    assert len(runner.submitted) == 1
    payload = runner.submitted[0][2]
    assert payload["job_id"] == handle.id and payload["query"] == {"n": "1"}
    worker, _result = _in_worker(lambda: run_job(store, handle.id, lambda: log.info("ran")))
    assert handle.wait(10)
    worker.join(10)
    assert handle.status == "ok"


def test_payload_from_environ_is_plain_json_data() -> None:
    record = JobRecord(id="abcdefgh12", title="T", created=0.0, owner="ada")
    environ = {
        "QUERY_STRING": "a=1&a=2&b=",
        "CONTENT_TYPE": "application/x-www-form-urlencoded; charset=utf-8",
        "wsgi.input": io.BytesIO(b"name=%C3%A9t%C3%A9"),
    }
    payload = payload_from_environ(environ, record)
    assert json.loads(json.dumps(payload)) == payload
    assert payload["query"] == {"a": "2", "b": ""} and payload["form"] == {"name": "été"}
    assert payload["owner"] == "ada"
