"""The batching log on a store that lives in this process: what it promises whatever the store is.

``ListStore`` is a small :class:`~wsgi_logstream.batching.BatchTarget` kept in
lists, which a test can hold (a write that does not return until the test
says so) or take down (every write raises ``StoreUnavailable``). The Redis
store's own tests run the same log against a real ``redis-server``.
"""

from __future__ import annotations

import threading
import time
from typing import Iterator

import pytest

from tests.servers import wait_until
from wsgi_logstream.batching import Batch, BatchingLog, Heard
from wsgi_logstream.channel import Entry, Summary
from wsgi_logstream.errors import StoreUnavailable


class ListStore:
    """A BatchTarget in lists: entries by sequence number, the last batch's figures, an answer to give."""

    def __init__(self) -> None:
        self.entries: dict[int, Entry] = {}
        self.batches: list[Batch] = []
        self.next_seq = 1
        self.answer = Heard.RUNNING
        self.down = False
        self.open = threading.Event()  # writes return only while it is set
        self.open.set()
        self.writing = threading.Event()  # set when a write has started
        self.ended: Summary | None = None
        self.failed: list[int] = []  # entries in each write refused while down

    def begin_job(self, job_id: str, started: float, lease_until: float) -> bool:
        return True

    def write_batch(self, job_id: str, batch: Batch) -> str:
        self.writing.set()
        assert self.open.wait(20), "the test never let the write through"
        if self.down:
            self.failed.append(len(batch.entries))
            raise StoreUnavailable("down")
        self.batches.append(batch)
        for entry in batch.entries:
            self.entries.setdefault(entry.seq, entry)
        self.next_seq = max(self.next_seq, batch.next_seq)
        return self.answer

    def finish_job(self, job_id: str, summary: Summary, next_seq: int) -> bool:
        if self.ended is not None:
            return False
        self.ended = summary
        self.next_seq = max(self.next_seq, next_seq)
        return True


@pytest.fixture
def store() -> Iterator[ListStore]:
    yield ListStore()


def _log(store: ListStore, **options: float) -> Iterator[BatchingLog]:
    log = BatchingLog(store, "job", **options)  # type: ignore[arg-type]
    assert log.begin(time.time())
    try:
        yield log
    finally:
        log.close()


@pytest.fixture
def log(store: ListStore) -> Iterator[BatchingLog]:
    yield from _log(store, buffer=100, poll=0.05)


def _line(log: BatchingLog, n: int) -> None:
    log.append_log(time.time(), 20, "INFO", "app", f"line {n}", f"line {n}")


def test_appending_never_waits_for_a_held_store_and_what_overflows_is_a_counted_gap(store: ListStore) -> None:
    made = _log(store, buffer=100, poll=5.0, lease=20.0)  # no renewal write during the test
    log = next(made)
    wait_until(lambda: store.batches, 10, "the first write")
    store.open.clear()
    store.writing.clear()
    _line(log, 1)
    assert store.writing.wait(10), "the writer never wrote"  # it now waits inside the store
    for n in range(2, 1001):  # all while the store holds the writer: appending does not wait for it
        _line(log, n)
    assert log.dropped == 1000 - 1 - 100  # the first is in flight, the buffer holds the last 100
    store.open.set()
    assert log.finish(Summary("ok", time.time(), time.time(), log.records))
    assert sorted(store.entries) == [1, *range(901, 1001)]
    assert store.next_seq == 1001 and log.records == 1000
    assert store.batches[-1].records == 1000 and store.batches[-1].next_seq == 1001
    made.close()


def test_a_batch_that_failed_is_written_again_and_nothing_is_written_twice(store: ListStore, log: BatchingLog) -> None:
    store.down = True
    for n in range(1, 51):
        _line(log, n)
    wait_until(lambda: any(store.failed), 10, "a write of entries to fail")
    store.down = False
    assert log.finish(Summary("ok", time.time(), time.time(), 50))
    assert sorted(store.entries) == list(range(1, 51)) and log.dropped == 0
    written = [entry.seq for batch in store.batches for entry in batch.entries]
    assert written == list(range(1, 51))


def test_a_cancel_the_store_reports_is_heard_and_the_log_goes_on(store: ListStore, log: BatchingLog) -> None:
    store.answer = Heard.CANCEL
    wait_until(log.cancel_event.is_set, 10, "the cancel to be heard")
    _line(log, 1)
    assert log.finish(Summary("cancelled", time.time(), time.time(), 1))
    assert sorted(store.entries) == [1]


def test_an_ending_by_someone_else_stops_the_writer_and_asks_the_operation_to_stop(
    store: ListStore, log: BatchingLog
) -> None:
    store.answer = Heard.ENDED
    _line(log, 1)
    wait_until(lambda: log.closed, 10, "the log to close")
    assert log.cancel_event.is_set()
    _line(log, 2)  # ignored: the job has ended
    assert sorted(store.entries) == [1]


def test_the_writer_renews_the_lease_while_nothing_is_logged(store: ListStore) -> None:
    before = time.time()
    for log in _log(store, lease=1.0, poll=0.05):
        wait_until(lambda: len(store.batches) >= 3, 10, "renewals")
        assert all(not batch.entries for batch in store.batches)
        assert store.batches[-1].lease_until > store.batches[0].lease_until >= before + 1.0
        assert log.finish(Summary("ok", time.time(), time.time(), 0))


def test_closing_a_log_stops_its_writer_thread(store: ListStore) -> None:
    for log in _log(store):
        names = [thread.name for thread in threading.enumerate()]
        assert "wsgi_logstream-writer-job" in names
        log.close()
        log.close()
        assert "wsgi_logstream-writer-job" not in [thread.name for thread in threading.enumerate()]
