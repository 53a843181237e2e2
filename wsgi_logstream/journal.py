"""The whole log of a job, kept in a file beyond the history held in memory.

A :class:`~wsgi_logstream.store.MemoryStore` made with ``journal_dir=`` gives
each job a journal: a file of the job's entries, one NDJSON object per line
(exactly the objects the NDJSON format sends), appended as the job runs. The
channel still holds the last ``max_history`` entries in memory for live
viewers; the journal is what lets a viewer who comes late replay from
``?since=N`` older than that (:class:`JournaledReader` reads the file in
bounded chunks, then goes on from memory) and what ``download`` sends.

Costs and bounds:

* The operation's thread only adds the entry to a queue under the channel's
  lock; encoding and writing happen in batches of :data:`FLUSH_ENTRIES`
  (in the thread that filled the batch, outside the channel's lock), and
  before any read, so a reader always finds everything appended so far.
* ``journal_max_bytes`` caps one job's file and ``journal_total_bytes`` all of
  a store's; to make room, the files of finished jobs go first, oldest first.
  A job that reaches a cap stops journaling: the journal keeps its beginning,
  memory keeps its end, and what lay between is reported as not kept, with a
  line in the log saying so. Files go with their jobs (``keep_finished``,
  ``max_finished``), with :meth:`MemoryStore.close`, and at exit.
* Finding ``since=N`` costs one seek: every :data:`INDEX_EVERY` lines the
  journal remembers where a line starts.

When the directory cannot be made or written (not a directory, read-only,
the disk full), the job goes on without (the rest of) its journal: one error
goes to the host's ``wsgi_logstream`` logger and one warning line into the
job's log, so its viewers know why the start of a long log is missing.

Intermediate states of a line being rewritten with CR are not journaled:
each line is written once, at its last state.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import threading
from collections import deque
from typing import Any, Callable, Sequence, TypedDict

from .channel import FLUSH_ENTRIES, MAX_CHUNK_CHARS, Channel, Entry, Reader
from .records import record_json, record_object

__all__ = [
    "FLUSH_ENTRIES",
    "INDEX_EVERY",
    "Budget",
    "Journal",
    "JournalOptions",
    "JournaledReader",
    "check_journal_options",
]

INDEX_EVERY = 1024
_READ_BLOCK = 256 * 1024
_host_log = logging.getLogger("wsgi_logstream")


class JournalOptions(TypedDict, total=False):
    """The journal's options, as :func:`~wsgi_logstream.jobs` takes them (see :class:`~wsgi_logstream.store.MemoryStore`)."""

    journal_dir: str | os.PathLike[str] | None
    journal_max_bytes: int
    journal_total_bytes: int


def check_journal_options(
    journal_dir: Any, journal_max_bytes: Any, journal_total_bytes: Any
) -> tuple[str | None, int, int]:
    """The journal options of a store, checked: ``TypeError``/``ValueError`` naming the bad one."""
    if journal_dir is not None and not isinstance(journal_dir, (str, os.PathLike)):
        raise TypeError(f"journal_dir must be a path (str or os.PathLike) or None, got {journal_dir!r}")
    for name, value in (("journal_max_bytes", journal_max_bytes), ("journal_total_bytes", journal_total_bytes)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int (bytes), got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value!r}")
    if journal_total_bytes < journal_max_bytes:
        raise ValueError(
            f"journal_total_bytes ({journal_total_bytes}) must be >= journal_max_bytes ({journal_max_bytes})"
        )
    return (None if journal_dir is None else os.fspath(journal_dir)), journal_max_bytes, journal_total_bytes


class Budget:
    """The bytes all of a store's journals may use, and which to delete to make room."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._journals: list[Journal] = []
        self._lock = threading.Lock()  # a leaf: nothing else is locked while it is held

    def add(self, journal: Journal) -> None:
        with self._lock:
            self._journals.append(journal)

    def reserve(self, journal: Journal, size: int) -> bool:
        """Take ``size`` bytes for ``journal``; delete finished jobs' journals to make room. False: no room."""
        with self._lock:
            if self.used + size > self.total:
                for victim in sorted((j for j in self._journals if j.ended is not None), key=lambda j: j.ended or 0):
                    if victim is journal:
                        continue
                    self._remove(victim, "deleted to make room for newer jobs (journal_total_bytes)")
                    if self.used + size <= self.total:
                        break
            if self.used + size > self.total:
                return False
            self.used += size
            return True

    def remove(self, journal: Journal) -> None:
        with self._lock:
            self._remove(journal, "the job was forgotten")

    def _remove(self, journal: Journal, why: str) -> None:
        if journal in self._journals:
            self._journals.remove(journal)
        self.used -= journal.size
        journal.discard(why)


class Journal:
    """One job's journal file (see the module docstring)."""

    def __init__(
        self,
        path: str,
        *,
        max_bytes: int,
        budget: Budget,
        note: Callable[[str], None],
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._budget = budget
        self._note = note  # tells the job's viewers (a line in its log)
        #: Entries appended and not yet written; the channel adds, the flusher takes (both atomic).
        self.pending: deque[Entry] = deque()
        self.size = 0  # bytes written and good
        self.last_seq = 0  # the newest sequence number written
        self.ended: float | None = None  # when the job ended: finished jobs' files go first
        self.stopped: str | None = None  # why nothing more is written, once it is so
        self._index: list[int] = []  # sequence numbers at every INDEX_EVERY-th line ...
        self._offsets: list[int] = []  # ... and where each of those lines starts
        self._lines = 0
        self._unsent: list[str] = []  # notes for the job's log, sent once the lock is released
        self._notes: set[str] = set()  # the notes sent: they go in the journal whatever the caps
        self._lock = threading.Lock()
        self._fd: int | None = None
        budget.add(self)
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self._fail(f"cannot create {path}: {exc.strerror or exc}; this job keeps only its last lines, in memory")
            self._send_notes()

    # -- writing -----------------------------------------------------------------

    def flush(self) -> None:
        """Write what is pending (in order: one flusher at a time)."""
        with self._lock:
            pending = self.pending
            if not pending:
                return
            lines: list[bytes] = []
            seqs: list[int] = []
            while pending:
                entry = pending.popleft()
                if entry.name == "wsgi_logstream" and entry.message in self._notes:
                    # The journal's own note goes in even past a cap: the last line of a journal
                    # that stopped says why, where the lines it could not keep would have been.
                    if lines:
                        self._write(lines, seqs)
                        lines, seqs = [], []
                    if self._fd is not None and self.stopped != _DISCARDED:
                        line = _encode(entry)
                        if self._append([line], [entry.seq]):
                            self._budget.used += len(line)  # past the caps by this one line
                elif self.stopped is None:
                    lines.append(_encode(entry))
                    seqs.append(entry.seq)
            if lines:
                self._write(lines, seqs)
            if self.stopped == _DISCARDED:
                self._close_fd()  # discarded while this flush held the lock
        self._send_notes()

    def _send_notes(self) -> None:
        while self._unsent:
            self._note(self._unsent.pop(0))

    def _write(self, lines: list[bytes], seqs: list[int]) -> None:
        if self.stopped is not None:
            return
        fits = 0
        room = self.max_bytes - self.size
        total = 0
        for line in lines:
            if total + len(line) > room:
                break
            total += len(line)
            fits += 1
        if fits < len(lines):
            self._stop(
                f"the journal reached journal_max_bytes ({self.max_bytes} bytes): "
                f"lines from {seqs[fits]} on are kept only in memory (the last max_history)"
            )
        if not fits or self._fd is None:
            return
        if not self._budget.reserve(self, total):
            self._stop(
                "the journals reached journal_total_bytes: "
                f"lines from {seqs[0]} on are kept only in memory (the last max_history)"
            )
            return
        if not self._append(lines[:fits], seqs[:fits]):
            self._budget.used -= total  # nothing of this batch counts

    def _append(self, lines: list[bytes], seqs: list[int]) -> bool:
        """Write ``lines`` whole or not at all; False (and the journal stopped) if the file refused them."""
        assert self._fd is not None
        data = b"".join(lines)
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            try:
                os.ftruncate(self._fd, self.size)  # no half line at the end
            except OSError:
                pass
            self._fail(
                f"cannot write {self.path}: {exc.strerror or exc}; lines from {seqs[0]} on are kept only in memory"
            )
            return False
        offset = self.size
        for line, seq in zip(lines, seqs, strict=True):
            if self._lines % INDEX_EVERY == 0:
                self._index.append(seq)
                self._offsets.append(offset)
            self._lines += 1
            offset += len(line)
        self.size = offset
        self.last_seq = seqs[-1]
        return True

    def _stop(self, why: str) -> None:
        if self.stopped is None:
            self.stopped = why
            self._unsent.append(f"journal: {why}")
            self._notes.add(f"journal: {why}")

    def _fail(self, why: str) -> None:
        if self.stopped is None:
            _host_log.error("wsgi_logstream journal: %s", why)
        self._stop(why)

    def discard(self, why: str) -> None:
        """Delete the file (retention, or room for newer jobs); reads find nothing from now on.

        Called with the store's budget locked, so it must not wait for this
        journal's lock (a flush holding it may be waiting for the budget): the
        descriptor is closed here if the lock is free, else by the flush that
        holds it, never while a write may use it (its number could be reused).
        """
        self.stopped = _DISCARDED
        try:
            os.unlink(self.path)
        except OSError:
            pass
        self.size = 0
        self.last_seq = 0
        self._index, self._offsets = [], []
        if self._lock.acquire(blocking=False):
            try:
                self._close_fd()
            finally:
                self._lock.release()

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """Write what is pending and close the file (it stays, for readers, until discarded)."""
        self.flush()
        with self._lock:
            self._close_fd()

    # -- reading -----------------------------------------------------------------

    def read(self, cursor: int) -> list[Entry]:
        """Entries from sequence number ``cursor`` on, in order: a bounded chunk (empty: none kept there)."""
        self.flush()
        with self._lock:
            index, offsets, end = self._index, self._offsets, self.size  # discard() may replace them meanwhile
            if cursor > self.last_seq or not index:
                return []
            offset = offsets[max(bisect.bisect_right(index, cursor) - 1, 0)]
        entries: list[Entry] = []
        chars = 0
        try:
            with open(self.path, "rb") as file:
                file.seek(offset)
                rest = b""
                while offset < end and chars <= MAX_CHUNK_CHARS:
                    block = file.read(min(_READ_BLOCK, end - offset))
                    if not block:
                        break
                    offset += len(block)
                    lines = (rest + block).split(b"\n")
                    rest = lines.pop()
                    for line in lines:
                        if _seq(line) < cursor:
                            continue
                        entry = _decode(line)
                        entries.append(entry)
                        chars += len(entry.line) + len(entry.message)
                        if chars > MAX_CHUNK_CHARS:
                            break
        except OSError:  # deleted to make room, or the disk went away: nothing here any more
            return entries
        return entries


def _encode(entry: Entry) -> bytes:
    try:
        return (record_json(entry) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: the careful way, as the NDJSON format does
        return (json.dumps(record_object(entry), ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")


def _seq(line: bytes) -> int:
    start = line.index(b'"seq":') + 6
    end = line.index(b",", start)
    return int(line[start:end])


def _number(value: Any, default: float = 0.0) -> float:
    return float(value) if isinstance(value, (int, float)) else default


def _decode(line: bytes) -> Entry:
    obj = json.loads(line)
    event = obj["event"]
    created = _number(obj.get("time"), float("nan"))
    if event == "section":
        entry = Entry(
            "section",
            created,
            int(obj.get("depth", 1)),
            str(obj.get("status", "")),
            "",
            str(obj.get("name", "")),
            str(obj.get("action", "")),
            _number(obj.get("elapsed")),
        )
    elif event == "progress":
        total = obj.get("total")
        entry = Entry(
            "progress",
            created,
            message=obj.get("message") or "",
            done=_number(obj.get("done")),
            total=None if total is None else float(total),
        )
    else:
        entry = Entry(
            "partial" if obj.get("partial") else "log",
            created,
            int(obj.get("levelno", 0)),
            str(obj.get("level", "")),
            str(obj.get("logger", "")),
            str(obj.get("message", "")),
            str(obj.get("line", "")),
        )
    entry.seq = int(obj["seq"])
    return entry


_DISCARDED = "discarded"


class JournaledReader(Reader):
    """A channel reader that takes from the journal what the channel no longer holds."""

    def __init__(self, channel: Channel, cursor: int, journal: Journal) -> None:
        super().__init__(channel, cursor)
        self._journal = journal
        # Read from the journal a little before the channel's oldest entry, so that entries the
        # channel drops between the check and the take are not lost to the race.
        self._slack = min(channel.max_entries // 2, 1024)

    def take(self) -> tuple[int, Sequence[Entry]]:
        journal = self._journal
        cursor = self.cursor
        channel = self.channel
        first = channel.first_seq
        full = channel.next_seq - first >= channel.max_entries  # only then may entries go while we look
        if journal.stopped != _DISCARDED and (cursor < first or (full and cursor < first + self._slack)):
            entries = journal.read(cursor)
            if entries:
                missed = entries[0].seq - cursor
                self.cursor = entries[-1].seq + 1
                self.missed += missed
                return missed, entries
        return super().take()
