"""The store contract: what every job store must do, run against each store.

The same tests run against :class:`MemoryStore` and against a store that keeps
nothing but plain data behind a process boundary (``tests/apps/dict_store.py``)
and against :class:`~wsgi_logstream.redis.RedisStore` on a real ``redis-server``
and on a real Redis Cluster of three masters (one of each per session, each
store under a key prefix of its own); a third-party
store passes them by adding itself to ``STORES``. They use
only the :class:`~wsgi_logstream.store.JobStore` interface, so a store that
passes is enough for the jobs app.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Callable, Iterator

import pytest

from tests.apps.dict_store import DictStore
from tests.inproc import TestApp
from tests.redis_server import RedisCluster, RedisServer, start_cluster, start_redis
from tests.servers import wait_until
from tests.wire import ndjson_objects
from wsgi_logstream import jobs
from wsgi_logstream.channel import Summary
from wsgi_logstream.record import JobRecord
from wsgi_logstream.redis import RedisStore
from wsgi_logstream.store import JobStore, MemoryStore

MakeStore = Callable[..., JobStore]


def _memory(**options: Any) -> Iterator[JobStore]:
    yield MemoryStore(**options)


def _dict(**options: Any) -> Iterator[JobStore]:
    store = DictStore(**options)
    try:
        yield store
    finally:
        store.shutdown()


def _redis(server: RedisServer, **options: Any) -> Iterator[JobStore]:
    store = RedisStore(server.url, prefix=f"contract-{uuid.uuid4().hex[:12]}", **options)
    try:
        yield store
    finally:
        store.close()


def _redis_cluster(server: RedisCluster, **options: Any) -> Iterator[JobStore]:
    store = RedisStore(server.url, cluster=True, prefix=f"contract-{uuid.uuid4().hex[:12]}", **options)
    try:
        yield store
    finally:
        store.close()


#: name -> a generator function that yields a store made with the given retention options.
STORES: dict[str, Callable[..., Iterator[JobStore]]] = {
    "memory": _memory,
    "dict-in-another-process": _dict,
    "redis": _redis,
    "redis-cluster": _redis_cluster,
}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.stop()


#: Stores that need a server program (-> the fixture that starts it): their runs are marked ``servers``.
_ON_SERVERS = {"redis": "redis_server", "redis-cluster": "redis_cluster"}


@pytest.fixture(
    params=[pytest.param(name, marks=[pytest.mark.servers] if name in _ON_SERVERS else []) for name in sorted(STORES)]
)
def make_store(request: pytest.FixtureRequest) -> Iterator[MakeStore]:
    made: list[Iterator[JobStore]] = []
    # A store on a server is given the server (started once per session).
    on = _ON_SERVERS.get(request.param)
    needs = {"server": request.getfixturevalue(on)} if on else {}

    def make(**options: Any) -> JobStore:
        factory = STORES[request.param](**needs, **options)
        made.append(factory)
        return next(factory)

    yield make
    for factory in made:
        for _ in factory:  # runs the generator's clean-up
            pass


def _record(job_id: str, created: float | None = None, **fields: Any) -> JobRecord:
    return JobRecord(id=job_id, title="t", created=time.time() if created is None else created, **fields)


def _begun(store: JobStore, job_id: str) -> Any:
    store.create(_record(job_id))
    log = store.open_log(job_id)
    assert log.begin(time.time())
    return log


def _end(log: Any, status: str = "ok", *, ended: float | None = None) -> None:
    now = time.time() if ended is None else ended
    assert log.finish(Summary(status, now, now, log.records))


def _read_all(store: JobStore, job_id: str, since: int = 0) -> tuple[int, list[tuple[int, str]]]:
    """(missed, [(seq, line)]) of a finished job's log from ``since``, as a viewer reads it."""
    reader = store.reader(job_id, since)
    missed, lines = 0, []
    deadline = time.monotonic() + 10
    try:
        while not reader.at_end:
            assert time.monotonic() < deadline, "the reader never reached the end"
            got_missed, entries = reader.take()
            missed += got_missed
            lines += [(entry.seq, entry.line or entry.message) for entry in entries]
            if not entries and not got_missed:
                reader.wait(1.0)
    finally:
        reader.close()
    return missed, lines


def test_a_job_created_is_found_by_its_id_and_an_unknown_id_is_none(make_store: MakeStore) -> None:
    store = make_store()
    store.create(_record("job-one-1", owner="ada"))
    found = store.get("job-one-1")
    assert found is not None and found.id == "job-one-1" and found.status == "queued" and found.owner == "ada"
    assert store.get("job-two-2") is None


def test_creating_a_taken_id_is_refused_and_keeps_the_first(make_store: MakeStore) -> None:
    store = make_store()
    store.create(_record("same-id-1", owner="first"))
    with pytest.raises(ValueError, match="same-id-1"):
        store.create(_record("same-id-1", owner="second"))
    found = store.get("same-id-1")
    assert found is not None and found.owner == "first"


def test_jobs_are_listed_newest_first(make_store: MakeStore) -> None:
    store = make_store()
    now = time.time()
    for job_id, age in (("old-job-1", 30), ("new-job-1", 0), ("mid-job-1", 10)):
        store.create(_record(job_id, created=now - age))
    assert [record.id for record in store.list()] == ["new-job-1", "mid-job-1", "old-job-1"]


def test_a_begun_job_is_running_and_its_record_follows_its_log(make_store: MakeStore) -> None:
    store = make_store()
    log = _begun(store, "running-1")
    log.append_log(time.time(), 20, "INFO", "app", "one", "INFO app: one")
    log.append_progress(time.time(), 1, 4, "a quarter")
    log.append_log(time.time(), 30, "WARNING", "app", "two", "WARNING app: two")

    def written() -> JobRecord | None:  # a store across the network writes in batches, a moment later
        record = store.get("running-1")
        return record if record is not None and record.next_seq == 4 else None

    record = wait_until(written, 10, "the entries to reach the store")
    assert record.status == "running" and record.started is not None
    assert (record.records, record.first_seq, record.next_seq) == (2, 1, 4)
    assert record.progress is not None and (record.progress.done, record.progress.total) == (1, 4)
    assert record.progress.message == "a quarter"


def test_entries_are_read_from_any_sequence_number_and_the_end_carries_the_summary(make_store: MakeStore) -> None:
    store = make_store()
    log = _begun(store, "reading-1")
    for n in range(1, 6):
        log.append_log(time.time(), 20, "INFO", "app", f"line {n}", f"line {n}")
    now = time.time()
    assert log.finish(Summary("error", now, now, 5, error="ValueError: bad row"))
    assert _read_all(store, "reading-1") == (0, [(n, f"line {n}") for n in range(1, 6)])
    assert _read_all(store, "reading-1", since=3) == (0, [(4, "line 4"), (5, "line 5")])
    reader = store.reader("reading-1", 5)
    assert reader.take() == (0, []) or reader.at_end
    assert reader.at_end and reader.summary is not None
    assert (reader.summary.status, reader.summary.error, reader.next_seq) == ("error", "ValueError: bad row", 6)
    reader.close()
    record = store.get("reading-1")
    assert record is not None and record.status == "error" and record.ended is not None and record.finished


def test_the_first_ending_wins(make_store: MakeStore) -> None:
    store = make_store()
    log = _begun(store, "ending-1")
    now = time.time()
    assert store.finish("ending-1", Summary("timeout", now, now, 0, error="timed out after 1s"))
    assert not log.finish(Summary("ok", now, now, 0))
    record = store.get("ending-1")
    assert record is not None and record.status == "timeout" and record.error == "timed out after 1s"
    log.append_log(time.time(), 20, "INFO", "app", "late", "late")
    assert _read_all(store, "ending-1") == (0, [])


def test_a_cancel_reaches_the_runner_and_a_cancelled_queued_job_never_starts(make_store: MakeStore) -> None:
    store = make_store()
    log = _begun(store, "cancel-running")
    assert store.request_cancel("cancel-running")
    wait_until(log.cancel_event.is_set, 10, "the runner to hear of the cancel")
    record = store.get("cancel-running")
    assert record is not None and record.cancel_requested and record.status == "running"

    store.create(_record("cancel-queued"))
    assert store.request_cancel("cancel-queued")
    record = store.get("cancel-queued")
    assert record is not None and record.status == "cancelled"
    assert not store.open_log("cancel-queued").begin(time.time())
    assert not store.request_cancel("cancel-queued")  # already ended
    assert not store.request_cancel("no-such-job")


def test_beginning_a_queued_job_replaces_the_time_it_had_to_be_begun_by(make_store: MakeStore) -> None:
    store = make_store()
    start_by = time.time() + 1000
    store.create(_record("start-by", lease_until=start_by))
    record = store.get("start-by")
    assert record is not None and record.lease_until == pytest.approx(start_by)
    log = store.open_log("start-by")
    assert log.begin(time.time())
    record = store.get("start-by")
    # Its runner's own lease (a store in several processes) or none: never the queued job's.
    assert record is not None and record.status == "running"
    assert record.lease_until is None or record.lease_until < start_by - 900
    _end(log)


def test_a_worker_cannot_begin_a_queued_job_past_its_lease_even_if_nobody_has_looked_yet(
    make_store: MakeStore,
) -> None:
    store = make_store()
    now = time.time()
    store.create(_record("late-job", created=now - 10, lease_until=now - 5))
    log = store.open_log("late-job")
    # Had it begun, the first look would end it as lost while it ran.
    assert not log.begin(now)
    log.close()
    record = store.get("late-job")
    assert record is not None and record.status == "queued"


def test_a_log_keeps_max_history_entries_and_a_reader_is_told_what_it_missed(make_store: MakeStore) -> None:
    store = make_store(max_history=5)
    log = _begun(store, "history-1")
    for n in range(1, 13):
        log.append_log(time.time(), 20, "INFO", "app", f"line {n}", f"line {n}")
    _end(log)
    missed, lines = _read_all(store, "history-1")
    assert missed == 7 and lines == [(n, f"line {n}") for n in range(8, 13)]
    record = store.get("history-1")
    assert record is not None and (record.first_seq, record.next_seq, record.records) == (8, 13, 12)


def test_a_waiting_reader_wakes_when_an_entry_arrives(make_store: MakeStore) -> None:
    store = make_store()
    log = _begun(store, "waiting-1")
    reader = store.reader("waiting-1", 0)
    got: list[str] = []

    def read() -> None:
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            _missed, entries = reader.take()
            got.extend(entry.line for entry in entries)
            if not entries:
                reader.wait(5.0)

    thread = threading.Thread(target=read)
    thread.start()
    log.append_log(time.time(), 20, "INFO", "app", "hello", "hello")
    thread.join(15)
    reader.close()
    _end(log)
    assert got == ["hello"]


def test_finished_jobs_go_after_keep_finished_but_running_ones_never(make_store: MakeStore) -> None:
    store = make_store(keep_finished=0.0)
    running = _begun(store, "stays-running")
    done = _begun(store, "finishes-now")
    _end(done)
    wait_until(lambda: store.get("finishes-now") is None, 10, "the finished job to be forgotten")
    assert store.get("stays-running") is not None
    assert [record.id for record in store.list()] == ["stays-running"]
    _end(running)


def test_finished_jobs_beyond_max_finished_go_oldest_ending_first(make_store: MakeStore) -> None:
    store = make_store(max_finished=2)
    logs = {job_id: _begun(store, job_id) for job_id in ("ends-second", "ends-first", "ends-last", "runs-on")}
    now = time.time()
    for offset, job_id in enumerate(("ends-first", "ends-second", "ends-last")):
        _end(logs[job_id], ended=now - 3 + offset)
    assert store.get("ends-first") is None
    assert {record.id for record in store.list()} == {"ends-second", "ends-last", "runs-on"}
    _end(logs["runs-on"])


def _timed_out_app(store: JobStore) -> Any:
    gate = threading.Event()

    def stuck() -> None:
        gate.wait(30)  # ignores cancelled(): only the deadline can end it

    return jobs(stuck, store=store, timeout=1), gate


def test_a_job_that_nobody_watches_reports_timeout_at_the_first_look_after_its_deadline(
    make_store: MakeStore,
) -> None:
    app, gate = _timed_out_app(make_store())
    client = TestApp(app)
    location = client.post("/", status=303).headers["Location"]
    job_id = location.rsplit("/", 1)[1]
    record = app.store.get(job_id)
    assert record is not None and record.deadline is not None
    # Wait, without looking through the app, until the deadline has passed.
    wait_until(lambda: time.time() > record.deadline, 10, "the deadline to pass")
    listed = json.loads(client.get("/", headers={"Accept": "application/json"}).text)["jobs"]
    assert [(job["id"], job["status"]) for job in listed] == [(job_id, "timeout")]
    assert listed[0]["summary"]["error"] == "timed out after 1s"
    text = client.get(location + "?format=text").text
    assert text.splitlines()[-1].startswith("-- timeout: timed out after 1s")
    gate.set()
    assert app.shutdown(10), "the job's thread did not return"


def test_a_whole_job_runs_through_the_jobs_app_on_every_store(make_store: MakeStore) -> None:
    import logging

    log = logging.getLogger("contract")

    def work() -> None:
        for n in range(1, 21):
            log.info("row %d", n)

    app = jobs(work, store=make_store(), formatter="%(message)s")
    client = TestApp(app)
    location = client.post("/", status=303).headers["Location"]
    job_id = location.rsplit("/", 1)[1]

    def ended() -> bool:
        record = app.lookup(job_id)
        return record is not None and record.finished

    wait_until(ended, 10, "the job to end")
    lines = client.get(location + "?format=text").text.splitlines()
    assert lines[1:-1] == [f"row {n}" for n in range(1, 21)]
    assert lines[-1].startswith("-- ok (after ")
    resumed = ndjson_objects(client.get(location + "?format=ndjson&since=18").text)
    assert [obj["seq"] for obj in resumed if obj["event"] == "log"] == [19, 20]
