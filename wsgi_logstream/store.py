"""Where jobs live between requests: the store interface and its in-memory kind.

A store holds, for each job, a :class:`~wsgi_logstream.record.JobRecord`
(plain data) and its log (entries numbered from 1). Two kinds of code use it:

* the WSGI layer (:mod:`wsgi_logstream.jobs`): ``create``, ``get``, ``list``,
  ``finish``, ``request_cancel`` and ``reader``, and nothing else;
* a runner (the thread that runs a job here, or a task-queue worker in another
  process): ``open_log``, which gives it a :class:`JobLog` to append to, to
  finish, and to hear cancellation from.

:class:`JobStore` is a :class:`typing.Protocol`: a third-party store needs no
base class, and mypy checks it against this interface. The same contract tests
(``tests/test_store_contract.py``) run against every store this package ships
and against a test store that keeps nothing but plain data behind a process
boundary. Stores in another process can build their readers and logs from
three primitives with :mod:`wsgi_logstream.shared`.

:class:`MemoryStore` keeps jobs in this process: one worker process, any
number of threads. Retention is lazy (finished jobs are forgotten when the
store is next used), so no timer thread is left running in the host.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import replace
from typing import Protocol, Sequence, runtime_checkable

from .channel import Channel, Entry, Reader, Summary
from .journal import Budget, Journal, JournaledReader, check_journal_options
from .options import check_store_options
from .record import JobRecord, Progress

__all__ = ["JobLog", "JobStore", "LogReader", "LogWriter", "MemoryStore"]


class LogReader(Protocol):
    """One viewer's cursor into a job's log (what a stream response reads)."""

    @property
    def missed(self) -> int:
        """Entries this reader has lost so far (trimmed or never written)."""

    @property
    def at_end(self) -> bool:
        """The log is finished and this reader has taken everything."""

    @property
    def summary(self) -> Summary | None: ...

    @property
    def next_seq(self) -> int: ...

    def take(self) -> tuple[int, Sequence[Entry]]:
        """What is available now, in a bounded chunk: (entries missed just before it, entries)."""

    def wait(self, timeout: float | None) -> None:
        """Block until an entry may be available, the log ends, or ``timeout`` passes."""

    def close(self) -> None:
        """Release the reader; idempotent."""


class LogWriter(Protocol):
    """Where an operation's sink appends; it never blocks the operation."""

    @property
    def closed(self) -> bool:
        """True once nothing more is accepted (the log ended, or nobody reads on)."""

    @property
    def records(self) -> int: ...

    def append_log(self, created: float, levelno: int, levelname: str, name: str, message: str, line: str) -> None: ...

    def append_progress(self, created: float, done: float, total: float | None, message: str | None) -> None: ...


class JobLog(LogWriter, Protocol):
    """A runner's end of one job in a store."""

    #: Set when anyone, in any process, asks the job to stop.
    cancel_event: threading.Event

    def begin(self, started: float) -> bool:
        """Mark the job running; False if it must not run (cancelled or ended while queued)."""

    def finish(self, summary: Summary) -> bool:
        """End the job; False (and nothing changes) if it had already ended."""

    def close(self) -> None:
        """Release what the log holds (threads, connections); after ``finish``."""


@runtime_checkable
class JobStore(Protocol):
    """What the jobs app and the runners need from a store."""

    def create(self, record: JobRecord) -> None:
        """Keep a new job (its ``status`` is ``queued``); ``ValueError`` if its id is taken."""

    def get(self, job_id: str) -> JobRecord | None:
        """The job's record as stored, or None if unknown or forgotten."""

    def list(self) -> list[JobRecord]:
        """Queued, running and recent jobs, newest first."""

    def finish(self, job_id: str, summary: Summary) -> bool:
        """End the job as ``summary`` says, if it has not ended; True if this call ended it."""

    def request_cancel(self, job_id: str) -> bool:
        """Ask the job to stop (a queued one never starts). True if it was queued or running."""

    def reader(self, job_id: str, since: int) -> LogReader:
        """A cursor that reads the job's entries numbered above ``since``."""

    def open_log(self, job_id: str) -> JobLog:
        """The runner's end of the job's log."""


class _Job:
    """What :class:`MemoryStore` keeps per job: the record, its log and its cancel flag."""

    __slots__ = ("cancel_event", "channel", "journal", "record")

    def __init__(self, record: JobRecord, max_history: int) -> None:
        self.record = record
        self.channel = Channel(max_history, retain=True)
        self.cancel_event = threading.Event()
        self.journal: Journal | None = None

    def note(self, text: str) -> None:
        """A line from the library in the job's log (what its journal could not do)."""
        self.channel.append_log(time.time(), logging.WARNING, "WARNING", "wsgi_logstream", text, f"WARNING {text}")

    def current(self) -> JobRecord:
        """The record with the live figures of its log."""
        channel = self.channel
        last = channel.last_progress
        progress = None if last is None else Progress(last.done, last.total, last.message or None)
        return replace(
            self.record,
            records=channel.records,
            first_seq=channel.first_seq,
            next_seq=channel.next_seq,
            progress=progress,
        )


class _MemoryLog:
    """The runner's end of a job in a :class:`MemoryStore`: its channel, directly."""

    def __init__(self, store: MemoryStore, job: _Job) -> None:
        self._store = store
        self._job = job
        self.cancel_event = job.cancel_event
        channel = job.channel
        self.append_log = channel.append_log
        self.append_progress = channel.append_progress
        self.append_section = channel.append_section
        self.append_partial = channel.append_partial

    @property
    def closed(self) -> bool:
        return self._job.channel.closed

    @property
    def records(self) -> int:
        return self._job.channel.records

    def begin(self, started: float) -> bool:
        return self._store._begin(self._job, started)

    def finish(self, summary: Summary) -> bool:
        return self._store.finish(self._job.record.id, summary)

    def close(self) -> None:
        pass


class MemoryStore:
    """Jobs in a dict in this process: one worker process, any number of threads.

    - ``max_history`` (10000): entries each job's log keeps for viewers who
      come later; older ones are dropped, and a reader that wanted them is told
      how many it missed.
    - ``keep_finished`` (3600): seconds a finished job stays listed and viewable.
    - ``max_finished`` (100): finished jobs kept at most; the oldest go first.
    - ``journal_dir`` (none): a directory in which each job keeps its whole
      log in a file, beyond ``max_history`` (:mod:`wsgi_logstream.journal`):
      replay from any line and download of the whole log. The store writes
      in a directory of its own inside it, deleted by :meth:`close` or at exit.
    - ``journal_max_bytes`` (64 MiB): the most one job's journal holds.
    - ``journal_total_bytes`` (1 GiB): the most all of this store's journals
      hold; finished jobs' journals are deleted first to make room.
    """

    def __init__(
        self,
        *,
        max_history: int = 10_000,
        keep_finished: float = 3600.0,
        max_finished: int = 100,
        journal_dir: str | os.PathLike[str] | None = None,
        journal_max_bytes: int = 64 << 20,
        journal_total_bytes: int = 1 << 30,
    ) -> None:
        self.max_history, self.keep_finished, self.max_finished = check_store_options(
            max_history=max_history, keep_finished=keep_finished, max_finished=max_finished
        )
        self.journal_dir, self.journal_max_bytes, journal_total_bytes = check_journal_options(
            journal_dir, journal_max_bytes, journal_total_bytes
        )
        self._budget = Budget(journal_total_bytes)
        self._own_dir: str | None = None  # made on first use, inside journal_dir
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    def _journal_for(self, job: _Job) -> Journal | None:
        if self.journal_dir is None:
            return None
        if self._own_dir is None:
            try:
                os.makedirs(self.journal_dir, exist_ok=True)
                self._own_dir = tempfile.mkdtemp(prefix="wsgi-logstream-", dir=self.journal_dir)
            except OSError as exc:
                why = f"cannot use journal_dir {self.journal_dir!r}: {exc.strerror or exc}"
                logging.getLogger("wsgi_logstream").error("wsgi_logstream journal: %s", why)
                job.note(f"journal: {why}; this job keeps only its last {self.max_history} lines, in memory")
                return None
            weakref.finalize(self, shutil.rmtree, self._own_dir, True)
        path = os.path.join(self._own_dir, f"{job.record.id}.ndjson")
        return Journal(path, max_bytes=self.journal_max_bytes, budget=self._budget, note=job.note)

    def close(self) -> None:
        """Delete every journal this store wrote (its jobs stay, with what they hold in memory)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            if job.journal is not None:
                self._budget.remove(job.journal)
                job.journal = None
                job.channel.journal = None
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None

    def create(self, record: JobRecord) -> None:
        with self._lock:
            if record.id in self._jobs:
                raise ValueError(f"job id {record.id!r} is already taken")
            job = self._jobs[record.id] = _Job(record, self.max_history)
            job.journal = job.channel.journal = self._journal_for(job)
            self._prune()

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            self._prune()
            job = self._jobs.get(job_id)
        return None if job is None else job.current()

    def list(self) -> list[JobRecord]:
        with self._lock:
            self._prune()
            held = list(self._jobs.values())
        return sorted((job.current() for job in held), key=lambda record: record.created, reverse=True)

    def finish(self, job_id: str, summary: Summary) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.record.finished:
                return False
            job.record = job.record.ended_with(summary)
        job.cancel_event.set()  # whatever still runs for it is told to stop
        job.channel.close(summary)
        if job.journal is not None:
            job.journal.close()
            job.journal.ended = time.time()
        return True

    def request_cancel(self, job_id: str) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.record.finished:
                return False
            job.record = replace(job.record, cancel_requested=True)
            queued = job.record.status == "queued"
        job.cancel_event.set()
        if queued:
            now = time.time()
            self.finish(job_id, Summary("cancelled", now, now, 0))
        return True

    def reader(self, job_id: str, since: int) -> Reader:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        if job.journal is not None:
            return job.channel.attach(JournaledReader(job.channel, max(since + 1, 1), job.journal))
        return job.channel.reader(since)

    def open_log(self, job_id: str) -> JobLog:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return _MemoryLog(self, job)

    def _begin(self, job: _Job, started: float) -> bool:
        with self._lock:
            if job.record.status != "queued" or job.cancel_event.is_set():
                return False
            if job.record.lease_until is not None and started > job.record.lease_until:
                return False  # no worker began it in time: it is lost, whether anyone has looked yet or not
            # In this process: no lease (a queued job's time to be begun is over once it is).
            job.record = replace(job.record, status="running", started=started, lease_until=None)
            return True

    def _prune(self) -> None:
        now = time.time()
        finished = [(job.record.ended or 0.0, job_id) for job_id, job in self._jobs.items() if job.record.finished]
        finished.sort()
        excess = len(finished) - self.max_finished
        for position, (ended, job_id) in enumerate(finished):
            if position < excess or now - ended > self.keep_finished:
                job = self._jobs.pop(job_id)
                if job.journal is not None:
                    self._budget.remove(job.journal)
