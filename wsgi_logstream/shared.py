"""Readers and logs for a store in another process, built from a few primitives.

A store that keeps jobs outside this process (Redis, a database, a test store
behind a ``multiprocessing`` manager) need not write its own cursor logic. It
implements :class:`EntryLog` (mark a job running, append numbered entries,
read them from a sequence number, wait for newer ones) and returns :class:`StoreReader` and
:class:`StoreLog` from ``reader()`` and ``open_log()``.

Sequence numbers are assigned by the one runner of a job, so a gap between
two entries a reader gets means entries that never reached the store (a
writer that had to drop them) or were trimmed: the reader counts the gap as
missed, exactly as an in-memory reader counts what fell out of its buffer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from .channel import MAX_CHUNK_CHARS, Entry, Summary
from .record import Progress

if TYPE_CHECKING:
    from .store import JobStore

__all__ = ["READ_LIMIT", "EntryLog", "LogSlice", "PolledEvent", "StoreLog", "StoreReader"]

#: Entries a reader asks for at a time.
READ_LIMIT = 1000


@dataclass(frozen=True)
class LogSlice:
    """What a read returns: entries above a sequence number, and where the log stands."""

    entries: Sequence[Entry]
    next_seq: int
    summary: Summary | None


class EntryLog(Protocol):
    """The primitives :class:`StoreReader` and :class:`StoreLog` need."""

    def begin(self, job_id: str, started: float) -> bool:
        """Mark a queued job running, atomically; False if it is not queued, its cancel was asked, or ``started``
        is past its ``lease_until`` (no worker began it in time: a viewer may already be settling it lost).

        The time by which the job had to be begun (its ``lease_until`` while
        queued) is over: the runner's own lease replaces it, or none.
        """

    def append(self, job_id: str, entries: Sequence[Entry], progress: Progress | None) -> None:
        """Add entries (numbered by the runner, increasing) and the job's last progress, if any."""

    def read(self, job_id: str, after: int, limit: int) -> LogSlice | None:
        """Up to ``limit`` entries numbered above ``after``; None if the job is unknown."""

    def wait(self, job_id: str, after: int, timeout: float) -> None:
        """Return when an entry above ``after`` may exist, the job ended, or ``timeout`` passed."""


class StoreReader:
    """A :class:`~wsgi_logstream.store.LogReader` over an :class:`EntryLog`."""

    def __init__(self, log: EntryLog, job_id: str, since: int) -> None:
        self._log = log
        self._job_id = job_id
        self.cursor = max(since + 1, 1)
        self.missed = 0
        self._summary: Summary | None = None
        self._next = self.cursor
        self._pending: list[Entry] = []

    @property
    def summary(self) -> Summary | None:
        return self._summary

    @property
    def next_seq(self) -> int:
        return self._next

    @property
    def at_end(self) -> bool:
        return self._summary is not None and not self._pending and self.cursor >= self._next

    def take(self) -> tuple[int, Sequence[Entry]]:
        if not self._pending:
            got = self._log.read(self._job_id, self.cursor - 1, READ_LIMIT)
            if got is None:
                return 0, ()
            self._pending = list(got.entries)
            self._next = max(got.next_seq, self._next)
            self._summary = got.summary
        missed = 0
        batch: list[Entry] = []
        size = 0
        while self._pending:
            entry = self._pending[0]
            if entry.seq < self.cursor:
                self._pending.pop(0)
                continue
            if entry.seq > self.cursor:
                if batch:
                    break  # the gap is reported at the start of the next chunk, where it is
                missed = entry.seq - self.cursor
                self.cursor = entry.seq
            size += len(entry.line) + len(entry.message)
            if size > MAX_CHUNK_CHARS and batch:
                break
            batch.append(self._pending.pop(0))
            self.cursor += 1
        if not batch and not self._pending and self._summary is not None and self.cursor < self._next:
            missed = self._next - self.cursor  # entries at the end that never reached the store
            self.cursor = self._next
        self.missed += missed
        return missed, batch

    def wait(self, timeout: float | None) -> None:
        if self._pending or (self._summary is not None and self.cursor >= self._next):
            return
        self._log.wait(self._job_id, self.cursor - 1, 30.0 if timeout is None else timeout)

    def close(self) -> None:
        self._pending = []


class PolledEvent(threading.Event):
    """An event that is also set when ``check()`` says so, asked at most every ``interval`` seconds.

    How a runner in one process hears of a cancel asked in another without a
    thread of its own: the operation's ``cancelled()`` and ``wait_cancelled()``
    ask the event, and the event asks the store now and then.
    """

    def __init__(self, check: Callable[[], bool], interval: float = 0.5) -> None:
        super().__init__()
        self._check = check
        self._interval = interval
        self._next_check = 0.0

    def is_set(self) -> bool:
        if super().is_set():
            return True
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self._interval
            if self._check():
                self.set()
                return True
        return False

    def wait(self, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            remaining = self._interval if end is None else min(self._interval, end - time.monotonic())
            if remaining <= 0:
                return False
            super().wait(remaining)
        return True


def _cancel_requested(store: JobStore, job_id: str) -> bool:
    record = store.get(job_id)
    return record is None or record.cancel_requested or record.finished


class StoreLog:
    """A :class:`~wsgi_logstream.store.JobLog` that writes each entry to an :class:`EntryLog` as it comes.

    Simple and synchronous: one round trip per entry on the operation's
    thread. Good for stores whose writes are cheap (a test store); a network
    store batches instead.
    """

    def __init__(self, store: JobStore, log: EntryLog, job_id: str, *, begin: bool = True) -> None:
        self._store = store
        self._log = log
        self._job_id = job_id
        self._next = 1
        self._records = 0
        self._closed = False
        self._lock = threading.Lock()
        self.cancel_event: threading.Event = PolledEvent(lambda: _cancel_requested(store, job_id))

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def records(self) -> int:
        return self._records

    def begin(self, started: float) -> bool:
        return self._log.begin(self._job_id, started)

    def append_log(self, created: float, levelno: int, levelname: str, name: str, message: str, line: str) -> None:
        self._append(Entry("log", created, levelno, levelname, name, message, line), None)

    def append_progress(self, created: float, done: float, total: float | None, message: str | None) -> None:
        entry = Entry.progress(created, done, total, message)
        self._append(entry, Progress(done, total, message))

    def append_section(self, created: float, action: str, name: str, depth: int, status: str, elapsed: float) -> None:
        self._append(Entry.section(created, action, name, depth, status, elapsed), None)

    def _append(self, entry: Entry, progress: Progress | None) -> None:
        with self._lock:
            if self._closed:
                return
            entry.seq = self._next
            self._next += 1
            if entry.kind == "log":
                self._records += 1
            self._log.append(self._job_id, [entry], progress)

    def finish(self, summary: Summary) -> bool:
        with self._lock:
            self._closed = True
        return self._store.finish(self._job_id, summary)

    def close(self) -> None:
        self._closed = True
