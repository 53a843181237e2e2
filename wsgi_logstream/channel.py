"""The bounded buffer between one operation and the people reading its log.

One producer (the operation, through its :class:`~wsgi_logstream.capture.Sink`)
appends entries; any number of readers each hold a cursor (the next sequence
number they want) instead of popping entries, so a stream and a job's many
viewers share one mechanism. The producer never blocks and never waits for a
reader: when the buffer is full the oldest entry goes (a live view cares most
about now) and a reader that had not read it learns how many it missed.

The lock is held only to number and append an entry or to copy a batch out;
never while anything is written to a socket.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Protocol, Sequence

__all__ = ["MAX_CHUNK_CHARS", "Channel", "Entry", "Reader", "Summary"]

#: Entries a journal collects before it writes them (see :mod:`wsgi_logstream.journal`).
FLUSH_ENTRIES = 512
#: A reader takes at most about this many characters of lines at a time, so a
#: viewer joining a long history gets it in bounded chunks, never as one.
MAX_CHUNK_CHARS = 256 * 1024


class Entry:
    """One thing that happened: a log record (``kind == "log"``), progress, or a section's start or end.

    A ``"section"`` entry (:mod:`wsgi_logstream.sections`) keeps its name in
    ``message``, ``"start"`` or ``"end"`` in ``line``, its depth (1 for the
    outermost) in ``levelno``, and, at its end, its status (``"ok"`` or
    ``"error"``) in ``levelname`` and its duration in seconds in ``done``.

    A ``"partial"`` entry is a log record's line while it is being rewritten
    with CR (a progress bar): the next state of that line, or its final
    ``"log"`` entry, takes the same sequence number and replaces it
    (``Channel.append_partial``).
    """

    __slots__ = ("created", "done", "kind", "levelname", "levelno", "line", "message", "name", "seq", "total")

    def __init__(
        self,
        kind: str,
        created: float,
        levelno: int = 0,
        levelname: str = "",
        name: str = "",
        message: str = "",
        line: str = "",
        done: float = 0.0,
        total: float | None = None,
    ) -> None:
        self.seq = 0
        self.kind = kind
        self.created = created
        self.levelno = levelno
        self.levelname = levelname
        self.name = name
        self.message = message
        self.line = line
        self.done = done
        self.total = total

    def __repr__(self) -> str:
        return f"<Entry {self.seq} {self.kind} {self.line or self.message!r}>"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for a store in another process."""
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Entry:
        entry = cls(
            str(data["kind"]),
            float(data["created"]),
            int(data.get("levelno", 0)),
            str(data.get("levelname", "")),
            str(data.get("name", "")),
            str(data.get("message", "")),
            str(data.get("line", "")),
            float(data.get("done", 0.0)),
            None if data.get("total") is None else float(data["total"]),
        )
        entry.seq = int(data["seq"])
        return entry


@dataclass(frozen=True)
class Summary:
    """How an operation ended. ``status`` is ok, error, timeout or cancelled."""

    status: str
    started: float
    ended: float
    records: int
    error: str | None = None
    traceback: str | None = None

    @property
    def elapsed(self) -> float:
        return max(self.ended - self.started, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Summary:
        return cls(
            status=str(data["status"]),
            started=float(data["started"]),
            ended=float(data["ended"]),
            records=int(data["records"]),
            error=None if data.get("error") is None else str(data["error"]),
            traceback=None if data.get("traceback") is None else str(data["traceback"]),
        )


class Journal(Protocol):
    """Where a channel also hands its entries, in order (a job's file: :mod:`wsgi_logstream.journal`)."""

    #: Entries to write, added under the channel's lock (each line once, at its last state).
    pending: deque[Entry]

    def flush(self) -> None:
        """Write what is pending; called by the appending thread, outside the lock, once enough is."""


class Channel:
    """Numbered entries, bounded to ``max_entries``, read through cursors.

    With ``retain=False`` (a plain stream: one reader, no history) entries every
    reader has taken are released at once; with ``retain=True`` (a job) the
    last ``max_entries`` stay for readers who come later.
    """

    def __init__(self, max_entries: int, *, retain: bool = False) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries!r}")
        self.max_entries = max_entries
        self.retain = retain
        self.started = time.time()
        self.summary: Summary | None = None
        self._entries: deque[Entry] = deque(maxlen=max_entries)
        self._next = 1  # sequence number of the next entry
        self._records = 0
        self._lock = threading.Lock()
        self._readers: tuple[Reader, ...] = ()
        self._abandoned = False
        self.last_progress: Entry | None = None
        self._partial: Entry | None = None  # the newest entry, while it is a line being rewritten
        #: Where a job's entries are also written, beyond ``max_entries`` (:mod:`wsgi_logstream.journal`).
        self.journal: Journal | None = None

    # -- producer side ---------------------------------------------------------

    @property
    def closed(self) -> bool:
        """No more entries are accepted: the channel ended or was abandoned."""
        return self.summary is not None or self._abandoned

    @property
    def records(self) -> int:
        return self._records

    @property
    def next_seq(self) -> int:
        return self._next

    @property
    def first_seq(self) -> int:
        """Sequence number of the oldest entry still held."""
        with self._lock:
            return self._next - len(self._entries)

    def append_log(self, created: float, levelno: int, levelname: str, name: str, message: str, line: str) -> None:
        self._append(Entry("log", created, levelno, levelname, name, message, line))

    def append_progress(self, created: float, done: float, total: float | None, message: str | None) -> None:
        self._append(Entry("progress", created, message=message or "", done=done, total=total))

    def append_section(self, created: float, action: str, name: str, depth: int, status: str, elapsed: float) -> None:
        """A section starts or ends (see :class:`Entry` for where each field goes)."""
        self._append(Entry("section", created, depth, status, "", name, action, elapsed))

    def append_partial(
        self,
        created: float,
        levelno: int,
        levelname: str,
        name: str,
        message: str,
        line: str,
        *,
        final: bool,
    ) -> None:
        """A state of a line being rewritten with CR; ``final``: its last, a log record like any other.

        While the line's last state is the newest entry, a new state (or the
        final line) replaces it under the same sequence number, so a bar that
        moves a thousand times is one line of the history, not a thousand: the
        channel holds only its newest state, and readers that had taken the
        one it replaces are moved back by one to take it again (viewers
        replace the line with that number). Once anything else was appended
        after it, the old state stays as it was and the next one is a new line.
        """
        entry = Entry("log" if final else "partial", created, levelno, levelname, name, message, line)
        with self._lock:
            if self.summary is not None or self._abandoned:
                return
            current = self._partial
            journal = self.journal
            if current is None or current.seq != self._next - 1 or (current.name, current.levelno) != (name, levelno):
                if journal is not None and current is not None:
                    journal.pending.append(current)  # a state that stays: later lines came after it
                entry.seq = self._next
                self._next += 1
                self._entries.append(entry)
            else:
                entry.seq = current.seq
                entries = self._entries
                if entries and entries[-1] is current:
                    entries[-1] = entry
                else:  # a plain stream released it once read: hold the new state again
                    entries.append(entry)
                for reader in self._readers:
                    if reader.cursor > entry.seq:
                        reader.cursor = entry.seq
            if final:
                self._records += 1
                if journal is not None:
                    journal.pending.append(entry)
            self._partial = None if final else entry
        for reader in self._readers:
            reader.wake()
        if journal is not None and len(journal.pending) >= FLUSH_ENTRIES:
            journal.flush()

    def _append(self, entry: Entry) -> None:
        with self._lock:
            if self.summary is not None or self._abandoned:
                return
            journal = self.journal
            if journal is not None:
                if self._partial is not None:
                    journal.pending.append(self._partial)
                journal.pending.append(entry)
            self._partial = None
            entry.seq = self._next
            self._next += 1
            if entry.kind == "log":
                self._records += 1
            elif entry.kind == "progress":
                self.last_progress = entry
            self._entries.append(entry)
        for reader in self._readers:
            reader.wake()
        if journal is not None and len(journal.pending) >= FLUSH_ENTRIES:
            journal.flush()

    def close(self, summary: Summary) -> bool:
        """End the channel with ``summary``; later entries are ignored.

        Returns False (and changes nothing) if it was already closed.
        """
        with self._lock:
            if self.summary is not None:
                return False
            if self.journal is not None and self._partial is not None:
                self.journal.pending.append(self._partial)  # the line's last state, as it was left
            self.summary = summary
        for reader in self._readers:
            reader.wake()
        return True

    def abandon(self) -> None:
        """Nobody will read on: drop what is held and ignore what comes (the summary still lands)."""
        with self._lock:
            self._abandoned = True
            self._entries.clear()

    # -- reader side -----------------------------------------------------------

    def reader(self, since: int = 0) -> Reader:
        """A new cursor that reads entries with a sequence number above ``since``."""
        return self.attach(Reader(self, max(since + 1, 1)))

    def attach(self, reader: Reader) -> Reader:
        """Add ``reader`` (made for this channel) to those woken by appends."""
        with self._lock:
            self._readers = (*self._readers, reader)
        return reader

    def _detach(self, reader: Reader) -> None:
        with self._lock:
            self._readers = tuple(r for r in self._readers if r is not reader)

    def _take(self, reader: Reader) -> tuple[int, list[Entry]]:
        with self._lock:
            first = self._next - len(self._entries)
            cursor = reader.cursor
            missed = first - cursor if cursor < first else 0
            cursor = max(cursor, first)
            wanted = self._next - cursor
            if wanted <= 0:
                batch: list[Entry] = []
            elif wanted <= _SMALL:
                # The common case, a live reader a few entries behind: copy from the right.
                batch = list(itertools.islice(reversed(self._entries), wanted))
                batch.reverse()
                batch = _bounded(batch)
            else:
                batch = _bounded(itertools.islice(self._entries, len(self._entries) - wanted, None))
            reader.cursor = batch[-1].seq + 1 if batch else self._next
            if not self.retain and self._entries:
                low = min(r.cursor for r in self._readers) if self._readers else self._next
                if low >= self._next:
                    self._entries.clear()
                else:
                    while self._entries[0].seq < low:
                        self._entries.popleft()
        return missed, batch


_SMALL = 256


def _bounded(entries: Iterable[Entry]) -> list[Entry]:
    """The leading entries that fit in :data:`MAX_CHUNK_CHARS` (at least one)."""
    batch: list[Entry] = []
    size = 0
    for entry in entries:
        size += len(entry.line) + len(entry.message)
        if size > MAX_CHUNK_CHARS and batch:
            break
        batch.append(entry)
    return batch


class Reader:
    """A cursor into a :class:`Channel`, for one consumer thread."""

    def __init__(self, channel: Channel, cursor: int) -> None:
        self.channel = channel
        self.cursor = cursor
        self.missed = 0  # entries this reader lost because it fell behind
        self._event = threading.Event()

    def wake(self) -> None:
        if not self._event.is_set():
            self._event.set()

    def take(self) -> tuple[int, Sequence[Entry]]:
        """Everything available now: (entries missed since the last take, entries)."""
        missed, batch = self.channel._take(self)
        self.missed += missed
        return missed, batch

    def wait(self, timeout: float | None) -> None:
        """Block until an entry may be available, the channel closes, or ``timeout``."""
        self._event.clear()
        # Re-check after clearing: an append between our last take and the clear
        # would otherwise be a lost wake-up.
        if self.cursor < self.channel.next_seq or self.channel.summary is not None:
            return
        self._event.wait(timeout)

    @property
    def at_end(self) -> bool:
        """The channel is closed and this reader has taken everything."""
        return self.channel.summary is not None and self.cursor >= self.channel.next_seq

    @property
    def summary(self) -> Summary | None:
        return self.channel.summary

    @property
    def next_seq(self) -> int:
        return self.channel.next_seq

    def close(self) -> None:
        self.channel._detach(self)
