"""A job's log for a store across the network: the operation never waits for the store.

The operation's thread only numbers each entry and puts it in a bounded
buffer in this process; a writer thread (a greenlet under gevent) takes
whatever has gathered and writes it to the store in one call (a pipelined
batch, a script), so a job that logs 100,000 lines a second costs the store
a few hundred round trips, not 100,000, and batching adds no delay: the
writer never waits to fill a batch, it takes what came while the last write
was in flight.

The same writer keeps the job alive and listening: every ``poll`` seconds,
with or without entries, its write renews the runner's lease (so a runner
that dies is seen as ``lost`` once the lease runs out) and brings back
whether anyone, in any process, asked the job to stop, which sets
the log's ``cancel_event``.

When the store is slow or unreachable the buffer holds up to ``buffer``
entries; beyond that the oldest go. Entries are numbered before they are
buffered, so what never reaches the store is a gap in the sequence numbers,
and every reader counts a gap as missed lines: nothing is lost silently. The
operation itself goes on.

A store gives this module three primitives (:class:`BatchTarget`): begin a
job, write a batch (entries, where the log stands, the new lease; it answers
whether the job is still wanted), finish a job. Any store can use it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol, Sequence

from .channel import Entry, Summary
from .errors import StoreUnavailable
from .record import Progress

__all__ = ["Batch", "BatchTarget", "BatchingLog", "Heard"]

_log = logging.getLogger("wsgi_logstream")


class Heard:
    """What a write learns of its job: it runs on, someone asked it to stop, it ended, or it is gone."""

    RUNNING = "running"
    CANCEL = "cancel"
    ENDED = "ended"
    GONE = "gone"


@dataclass(frozen=True)
class Batch:
    """One write: entries in order, and where the log stands after them."""

    entries: Sequence[Entry]
    #: The last progress among ``entries``, if any.
    progress: Progress | None
    #: The sequence number after everything written so far, dropped entries included.
    next_seq: int
    #: Log records numbered so far up to ``next_seq`` (dropped ones included).
    records: int
    #: Until when the runner promises to be alive (epoch seconds).
    lease_until: float


class BatchTarget(Protocol):
    """The primitives a store gives :class:`BatchingLog`."""

    def begin_job(self, job_id: str, started: float, lease_until: float) -> bool:
        """Mark a queued job running with a lease, atomically; False if it is not queued or its cancel was asked."""

    def write_batch(self, job_id: str, batch: Batch) -> str:
        """Append the batch (skipping entries already written), renew the lease; a :class:`Heard` value.

        Raises :class:`~wsgi_logstream.errors.StoreUnavailable` when the store cannot be reached.
        """

    def finish_job(self, job_id: str, summary: Summary, next_seq: int) -> bool:
        """End the job, first ending wins; ``next_seq`` counts entries that never reached the store."""


class BatchingLog:
    """A :class:`~wsgi_logstream.store.JobLog` that writes in batches from a bounded buffer.

    - ``buffer`` (10000): entries held while the store is slow or down; the
      oldest go beyond it, and readers count them as missed.
    - ``lease`` (10.0): seconds the runner's lease lasts from each write.
    - ``poll`` (0.5): seconds between writes when nothing is logged: how soon
      a cancel asked elsewhere is heard, and how often the lease is renewed.
    - ``finish_wait`` (5.0): seconds ``finish`` waits for the buffer to drain
      and for the store to take the ending; then the rest counts as dropped.
    """

    #: Entries written at most in one call.
    MAX_BATCH = 2000
    #: Seconds between tries while the store is unreachable.
    RETRY = 0.5

    def __init__(
        self,
        target: BatchTarget,
        job_id: str,
        *,
        buffer: int = 10_000,
        lease: float = 10.0,
        poll: float = 0.5,
        finish_wait: float = 5.0,
    ) -> None:
        self._target = target
        self.job_id = job_id
        self._buffer: deque[Entry] = deque()
        self._buffered_records = 0  # log records (not progress) in the buffer
        self._max = buffer
        self._lease = lease
        self._poll = poll
        self._finish_wait = finish_wait
        self._next = 1
        self._records = 0
        self._written_next = 1  # next_seq as the store has it
        self.dropped = 0  # entries that never reached the store
        self._closed = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()  # set when the writer has nothing left to write
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cancel_event = threading.Event()
        self._failed = False
        self._exited = False

    # -- LogWriter, on the operation's thread ------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def records(self) -> int:
        return self._records

    def append_log(self, created: float, levelno: int, levelname: str, name: str, message: str, line: str) -> None:
        self._append(Entry("log", created, levelno, levelname, name, message, line))

    def append_progress(self, created: float, done: float, total: float | None, message: str | None) -> None:
        self._append(Entry.progress(created, done, total, message))

    def append_section(self, created: float, action: str, name: str, depth: int, status: str, elapsed: float) -> None:
        self._append(Entry.section(created, action, name, depth, status, elapsed))

    def _append(self, entry: Entry) -> None:
        with self._lock:
            if self._closed:
                return
            entry.seq = self._next
            self._next += 1
            if entry.kind == "log":
                self._records += 1
            buffer = self._buffer
            if len(buffer) >= self._max:
                if buffer.popleft().kind == "log":
                    self._buffered_records -= 1
                self.dropped += 1
            buffer.append(entry)
            if entry.kind == "log":
                self._buffered_records += 1
        if not self._wake.is_set():
            self._wake.set()

    # -- JobLog --------------------------------------------------------------------------

    def begin(self, started: float) -> bool:
        if not self._target.begin_job(self.job_id, started, time.time() + self._lease):
            return False
        self._thread = threading.Thread(target=self._run, name=f"wsgi_logstream-writer-{self.job_id}", daemon=True)
        self._thread.start()
        return True

    def finish(self, summary: Summary) -> bool:
        """Write what is buffered (for up to ``finish_wait``), then end the job in the store."""
        with self._lock:
            self._closed = True
        deadline = time.monotonic() + self._finish_wait
        if self._thread is not None:
            self._idle.clear()
            if not self._exited:  # checked after the clear: a writer that exits now sets _idle after it
                self._wake.set()
                self._idle.wait(self._finish_wait)
        self._stop_writer(max(deadline - time.monotonic(), 0.1))
        with self._lock:
            self.dropped += len(self._buffer)  # what could not be written in time
            self._buffer.clear()
            self._buffered_records = 0
            next_seq = self._next
        while True:
            try:
                return self._target.finish_job(self.job_id, summary, next_seq)
            except StoreUnavailable:
                if time.monotonic() >= deadline:
                    _log.error(
                        "job %s: could not record its ending (%s): the store is unreachable",
                        self.job_id,
                        summary.status,
                    )
                    return False
                time.sleep(self.RETRY)  # the operation has ended: waiting here holds nobody up

    def close(self) -> None:
        """Stop the writer (without finishing the job); idempotent."""
        with self._lock:
            self._closed = True
        self._stop_writer(self._finish_wait)

    def _stop_writer(self, timeout: float) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the writer thread ---------------------------------------------------------------

    def _take(self) -> Batch:
        with self._lock:
            buffer = self._buffer
            count = min(len(buffer), self.MAX_BATCH)
            entries = [buffer.popleft() for _ in range(count)]
            self._buffered_records -= sum(1 for entry in entries if entry.kind == "log")
            if buffer:
                next_seq = buffer[0].seq  # what was dropped before it is counted when it is written
                records = self._records - self._buffered_records
            else:
                next_seq, records = self._next, self._records
        progress = None
        for entry in reversed(entries):
            if entry.kind == "progress":
                progress = Progress(entry.done, entry.total, entry.message or None)
                break
        return Batch(entries, progress, next_seq, records, time.time() + self._lease)

    def _give_back(self, entries: Sequence[Entry]) -> None:
        """Entries a failed write took: back at the front, the oldest dropped beyond the bound."""
        with self._lock:
            buffer = self._buffer
            buffer.extendleft(reversed(entries))
            self._buffered_records += sum(1 for entry in entries if entry.kind == "log")
            while len(buffer) > self._max:
                if buffer.popleft().kind == "log":
                    self._buffered_records -= 1
                self.dropped += 1

    def _run(self) -> None:
        try:
            self._write_until_stopped()
        finally:
            self._exited = True
            self._idle.set()

    def _write_until_stopped(self) -> None:
        next_poll = 0.0
        while True:
            now = time.monotonic()
            if not self._buffer and not self._stop.is_set():
                self._idle.set()
                self._wake.wait(max(next_poll - now, 0.0))
            self._wake.clear()
            if self._stop.is_set() and not self._buffer:
                return
            now = time.monotonic()
            if not self._buffer and now < next_poll:
                continue
            batch = self._take()
            try:
                heard = self._target.write_batch(self.job_id, batch)
            except StoreUnavailable:
                self._give_back(batch.entries)
                if self._stop.wait(self.RETRY):
                    return
                continue
            except Exception:
                # A bug, not an outage: these entries cannot be written; count them, keep the job going.
                if not self._failed:  # once per log: a bug repeats with every batch
                    self._failed = True
                    _log.exception(
                        "job %s: a batch of %d entries could not be written", self.job_id, len(batch.entries)
                    )
                with self._lock:
                    self.dropped += len(batch.entries)
                continue
            next_poll = time.monotonic() + self._poll
            if heard == Heard.CANCEL:
                self.cancel_event.set()
            elif heard in (Heard.ENDED, Heard.GONE):
                # Ended by someone else (a viewer saw it time out or lost) or forgotten: stop writing.
                with self._lock:
                    self._closed = True
                    self.dropped += len(self._buffer)
                    self._buffer.clear()
                    self._buffered_records = 0
                if heard == Heard.ENDED:
                    self.cancel_event.set()
                return
