"""The operation's end of a channel: log records appended with no lock, numbered by whoever reads.

A captured ``logger.info`` runs in the operation's thread, and the operation is what people are
waiting for. Taking a lock (about 2k instructions under ``bench/hotpath.py``) and making an
:class:`~wsgi_logstream.entry.Entry` (about 3k) per record cost it more than the rest of the
stream's work on that record; here the record goes into a list as one tuple (about 1.5k), and the
work that can wait is done later, under the lock, in one loop over many records, by whichever
thread *drains* the inbox: the reader about to take them (usually), or the operation's own thread
once :data:`DRAIN_AT` records are waiting (what bounds memory when nobody reads).

Why the numbers stay exact without a lock on the append: ``list.append`` is one C call, atomic under
the GIL, so records from several threads of one operation (``capture.Thread``, ``bind``) land in one
order, each thread's in its own order; the drain takes exactly the first ``count`` of them (the slice
and the delete are each atomic, and appends only add at the end) and numbers them in that order under
the channel's lock, the only place numbers are given. Progress and sections, which are rare, drain
the inbox and append under the lock (so do rewritten lines: :class:`~wsgi_logstream.channel.Channel`).
"""

from __future__ import annotations

import threading
from collections import deque

from .entry import Entry, Journal, Record

__all__ = ["DRAIN_AT", "FLUSH_ENTRIES", "Inbox"]

#: Entries a journal collects before it writes them (see :mod:`wsgi_logstream.journal`).
FLUSH_ENTRIES = 512
#: Log records that may wait unnumbered before the operation's thread numbers them itself: readers
#: normally do it first; this bounds what a channel nobody reads holds beyond its ``max_entries``,
#: and leaves a reader that lags one scheduler slice (5 ms: about 700 records) the work of catching up.
DRAIN_AT = 1024


class Inbox:
    """The producer's state of a channel: its entries, its numbering, its wake-up, its journal."""

    def __init__(self, max_entries: int) -> None:
        self._entries: deque[Entry] = deque(maxlen=max_entries)
        # Records appended and not yet numbered. A list, not a deque: an idle stream's is 56 bytes, not 600.
        self._inbox: list[Record] = []
        self._drain_at = min(max_entries, DRAIN_AT)
        self._next = 1  # sequence number of the next entry (once the inbox is drained)
        self._records = 0
        self._chars = 0  # characters appended so far (Entry.end)
        self._lock = threading.Lock()
        # One event for every reader: see Reader.wait for how it is re-armed.
        self._wakeup = threading.Event()
        self._armed = True  # a reader may be waiting on _wakeup: see Channel._wake
        #: True once no more entries are accepted (ended or abandoned). A plain
        #: attribute, not a property: the operation's thread reads it per record.
        self.closed = False
        self._partial: Entry | None = None  # the newest entry, while it is a line being rewritten
        #: Where a job's entries are also written, beyond ``max_entries`` (:mod:`wsgi_logstream.journal`).
        self.journal: Journal | None = None
        self.last_progress: Entry | None = None

    @property
    def records(self) -> int:
        """Log records appended so far (what a summary counts). Under the lock, always: a reader that
        took records from the inbox (``_drain``, ``Channel._take_records``) has emptied it before it
        counts them, and a count read between the two would miss them."""
        with self._lock:
            self._drain()
            records = self._records
        self._flush_journal()
        return records

    @property
    def next_seq(self) -> int:
        if self._inbox:
            self._drain_now()
        return self._next

    @property
    def first_seq(self) -> int:
        """Sequence number of the oldest entry still held."""
        with self._lock:
            self._drain()
            return self._next - len(self._entries)

    @property
    def held(self) -> int:
        """Entries held: at most ``max_entries``, plus at most ``DRAIN_AT`` records not yet numbered."""
        return len(self._entries) + len(self._inbox)

    def append_log(self, created: float, levelno: int, levelname: str, name: str, message: str, line: str) -> None:
        """A log record, from the operation's thread: no lock, no object but one tuple (see the module)."""
        if self.closed:  # a record racing close() lands in the inbox and _drain drops it
            return
        inbox = self._inbox
        inbox.append((created, levelno, levelname, name, message, line))
        # Channel._wake, inlined: while readers are busy, nothing more than this test. A reader raises
        # _armed before it looks at the inbox, and this looks at _armed after the append: either the
        # reader sees the record or this sees _armed up and sets the event it waits on.
        if self._armed:
            self._armed = False
            self._wakeup.set()
        if len(inbox) >= self._drain_at:
            self._drain_now()

    def append_progress(self, created: float, done: float, total: float | None, message: str | None) -> None:
        self._append(Entry.progress(created, done, total, message))

    def append_section(self, created: float, action: str, name: str, depth: int, status: str, elapsed: float) -> None:
        self._append(Entry.section(created, action, name, depth, status, elapsed))

    def _append(self, entry: Entry) -> None:
        with self._lock:
            self._drain()
            if self.closed:
                return
            journal = self.journal
            if journal is not None:
                if self._partial is not None:
                    journal.pending.append(self._partial)
                journal.pending.append(entry)
            self._partial = None
            entry.seq = self._next
            self._next += 1
            self._chars = entry.end = self._chars + len(entry.line) + len(entry.message)
            if entry.kind == "log":
                self._records += 1
            elif entry.kind == "progress":
                self.last_progress = entry
            self._entries.append(entry)
        self._wake()
        self._flush_journal()

    def _wake(self) -> None:
        """Wake every waiting reader, at O(1) cost whatever their number.

        ``_armed``: a reader put a fresh event in place since the last wake-up (only then is anyone to wake).
        A reader raises it under the lock before it re-checks for entries, so an entry appended after that
        check always finds it up and sets the event the reader waits on (see :meth:`~wsgi_logstream.channel.Reader.wait`).
        """
        if self._armed:
            self._armed = False
            self._wakeup.set()

    def _wake_all(self) -> None:
        self._armed = False
        self._wakeup.set()

    def _drain_now(self) -> None:
        with self._lock:
            self._drain()
        self._flush_journal()

    def _flush_journal(self) -> None:
        """Write a job's journal once enough is pending: in whichever thread drained it, outside the lock."""
        journal = self.journal
        if journal is not None and len(journal.pending) >= FLUSH_ENTRIES:
            journal.flush()

    def _drain(self) -> None:
        """Number the inbox's records and hold them as entries, in the order they were appended. Under the lock.

        Appends go on meanwhile: the slice and the delete each take exactly the first ``count`` records.
        """
        inbox = self._inbox
        count = len(inbox)
        if not count:
            return
        batch = inbox[:count]
        del inbox[:count]
        if self.closed:
            return  # appended after close() drained: ignored, like any later entry
        self._hold(batch)

    def _hold(self, batch: list[Record]) -> None:
        """Number ``batch`` (records just taken from the inbox) and hold them as entries. Under the lock."""
        journal = self.journal
        if journal is not None and self._partial is not None:
            journal.pending.append(self._partial)
        self._partial = None
        seq, chars = self._next, self._chars
        hold = self._entries.append
        new = object.__new__
        # Entry.__init__'s work, spelled out: a drained batch is the hot loop of every stream's reader,
        # and making an entry this way costs about a third less than calling the class.
        for created, levelno, levelname, name, message, line in batch:
            entry = new(Entry)
            entry.seq = seq
            entry.kind = "log"
            entry.created = created
            entry.levelno = levelno
            entry.levelname = levelname
            entry.name = name
            entry.message = message
            entry.line = line
            entry.done = 0.0
            entry.total = None
            chars += len(line) + len(message)
            entry.end = chars
            entry.encoded = None
            hold(entry)
            seq += 1
            if journal is not None:
                journal.pending.append(entry)
        self._next, self._chars = seq, chars
        self._records += len(batch)
