"""The bounded buffer between one operation and the people reading its log.

One producer (the operation, through its :class:`~wsgi_logstream.capture.Sink`)
appends entries; any number of readers each hold a cursor (the next sequence
number they want) instead of popping entries, so a stream and a job's many
viewers share one mechanism. The producer never blocks and never waits for a
reader: when the buffer is full the oldest entry goes (a live view cares most
about now) and a reader that had not read it learns how many it missed.

A log record is appended with no lock (:mod:`wsgi_logstream.inbox`, the
channel's producer side); the lock is held only to number what was appended,
to append the rarer entries (progress, sections, rewritten lines) or to copy a
batch out; never while anything is written to a socket.

Waking readers costs the producer O(1) per entry, however many readers there
are: they all wait on one shared event per channel (see :meth:`Reader.wait`),
which the producer sets only if it is not set already. A job watched by a
thousand people must not make its operation loop over a thousand readers for
every line it logs.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Callable, Hashable, Iterable, Sequence

from .entry import Entry, Record, Summary
from .inbox import DRAIN_AT, FLUSH_ENTRIES, Inbox

__all__ = ["DRAIN_AT", "FLUSH_ENTRIES", "MAX_CHUNK_CHARS", "Channel", "Entry", "Reader", "Summary"]

#: A reader takes at most about this many characters of lines at a time, so a
#: viewer joining a long history gets it in bounded chunks, never as one.
MAX_CHUNK_CHARS = 256 * 1024


class Channel(Inbox):
    """Numbered entries, bounded to ``max_entries``, read through cursors.

    With ``retain=False`` (a plain stream: one reader, no history) entries every
    reader has taken are released at once; with ``retain=True`` (a job) the
    last ``max_entries`` stay for readers who come later.
    """

    def __init__(self, max_entries: int, *, retain: bool = False) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries!r}")
        super().__init__(max_entries)
        self.max_entries = max_entries
        self.retain = retain
        self.started = time.time()
        self.summary: Summary | None = None
        # A dict used as an ordered set: a job's thousands of viewers come and go in O(1) each. Made
        # for a second reader: a lone one (every plain stream's) is kept beside it, as the dict is 224
        # bytes that each idle stream would hold.
        self._readers: dict[Reader, None] | None = None
        self._lone: Reader | None = None
        #: How many readers are attached now (a plain attribute: each viewer reads it per chunk).
        self.readers = 0
        self._abandoned = False
        self._timer_at = _NEVER  # when a reader waiting on _wakeup with a timeout will set it: see Reader.wait
        #: The last chunk each shared format encoded: ``cache_key -> (first seq, last seq, bytes)``.
        #: Readers woken by the same entry usually take the same range, so all but the first
        #: send the same bytes object (``Reader.take_encoded``). Both dicts are made when a second
        #: reader attaches (``attach``): a lone reader shares nothing, and an idle stream holds them.
        self.chunks: dict[object, tuple[int, int, bytes]] = _UNSHARED_CHUNKS
        #: The shared encoder per format key (``response.entry_encoder``): one per channel, not one per viewer.
        self.encoders: dict[object, Callable[[Sequence[Entry]], bytes]] = _UNSHARED_ENCODERS

    # -- producer side ---------------------------------------------------------

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
            self._drain()
            if self.closed:
                return
            current = self._partial
            journal = self.journal
            if current is None or current.seq != self._next - 1 or (current.name, current.levelno) != (name, levelno):
                if journal is not None and current is not None:
                    journal.pending.append(current)  # a state that stays: later lines came after it
                entry.seq = self._next
                self._next += 1
                self._chars = entry.end = self._chars + len(line) + len(message)
                self._entries.append(entry)
            else:
                entry.seq = current.seq
                self._chars = entry.end = (
                    current.end - len(current.line) - len(current.message) + len(line) + len(message)
                )
                # The shared chunks name entries by sequence number, and this one now holds other bytes.
                self.chunks.clear()
                entries = self._entries
                if entries and entries[-1] is current:
                    entries[-1] = entry
                else:  # a plain stream released it once read: hold the new state again
                    entries.append(entry)
                for reader in self._attached():
                    if reader.cursor > entry.seq:
                        reader.cursor = entry.seq
            if final:
                self._records += 1
                if journal is not None:
                    journal.pending.append(entry)
            self._partial = None if final else entry
        self._wake()
        self._flush_journal()

    def close(self, summary: Summary) -> bool:
        """End the channel with ``summary``; later entries are ignored.

        Returns False (and changes nothing) if it was already closed.
        """
        with self._lock:
            if self.summary is not None:
                return False
            self._drain()  # what was appended before the close is held; _drain drops what comes after
            if self.journal is not None and self._partial is not None:
                self.journal.pending.append(self._partial)  # the line's last state, as it was left
            self.summary = summary
            self.closed = True
        self._wake_all()
        return True

    def abandon(self) -> None:
        """Nobody will read on: drop what is held and ignore what comes (the summary still lands)."""
        with self._lock:
            self._drain()  # counted in records, as appended before
            self._abandoned = True
            self.closed = True
            self._entries.clear()
            self._inbox.clear()
            self.chunks.clear()

    # -- reader side -----------------------------------------------------------

    def reader(self, since: int = 0) -> Reader:
        """A new cursor that reads entries with a sequence number above ``since``."""
        return self.attach(Reader(self, max(since + 1, 1)))

    def attach(self, reader: Reader) -> Reader:
        """Add ``reader`` (made for this channel) to those woken by appends."""
        with self._lock:
            if self._readers is None and self._lone is None:
                self._lone = reader
                self.readers = 1
                return reader
            if self._readers is None:
                self._readers = {} if self._lone is None else {self._lone: None}
                self._lone = None
            if self.chunks is _UNSHARED_CHUNKS:
                # Before ``readers`` says 2: a response that sees it so finds the dicts to share in.
                self.chunks, self.encoders = {}, {}
            self._readers[reader] = None
            self.readers = len(self._readers)
        return reader

    def _detach(self, reader: Reader) -> None:
        with self._lock:
            if self._lone is reader:
                self._lone = None
                self.readers = 0
            elif self._readers is not None:
                self._readers.pop(reader, None)
                self.readers = len(self._readers)

    def _attached(self) -> Iterable[Reader]:
        if self._readers is not None:
            return self._readers
        return () if self._lone is None else (self._lone,)

    def _take(self, reader: Reader) -> tuple[int, list[Entry]]:
        with self._lock:
            if self._inbox:  # (the test, not the call: a thousand viewers each take per line)
                self._drain()
            first = self._next - len(self._entries)
            cursor = reader.cursor
            missed = first - cursor if cursor < first else 0
            cursor = max(cursor, first)
            wanted = self._next - cursor
            entries = self._entries
            if wanted <= 0:
                batch: list[Entry] = []
            else:
                start = len(entries) - wanted
                head = entries[start]
                # Entry.end counts characters cumulatively: one subtraction says whether all
                # that is wanted fits in a chunk, so only an oversized take (a long history)
                # is walked entry by entry. Thousands of viewers each take hundreds of
                # entries per wake-up when a job logs fast: no per-entry loop for them.
                if self._chars - head.end + len(head.line) + len(head.message) <= MAX_CHUNK_CHARS:
                    if wanted <= _SMALL:
                        # A live reader a few entries behind: copy from the right.
                        batch = list(itertools.islice(reversed(entries), wanted))
                        batch.reverse()
                    else:
                        batch = list(itertools.islice(entries, start, None))
                else:
                    batch = _bounded(itertools.islice(entries, start, None))
            reader.cursor = batch[-1].seq + 1 if batch else self._next
            if not self.retain:
                self._release_taken()
        if self.journal is not None:
            self._flush_journal()
        return missed, batch

    def _take_records(self, reader: Reader) -> tuple[int, list[Record]] | None:
        """The inbox's records, numbered as :meth:`_drain` would, for a plain stream's reader that is live.

        A plain stream keeps nothing once read, so its one reader's records can go
        from the inbox to its format with no :class:`Entry` made for them. None: the
        general take must run (another reader or a history to keep, entries held,
        a reader that missed some, a closed channel, or over :data:`MAX_CHUNK_CHARS`
        waiting, which are then held here as entries and taken in bounded chunks).
        """
        lock = self._lock
        lock.acquire()  # rather than ``with``, which costs CPython 3.11 about a thousand instructions more
        try:
            inbox = self._inbox
            count = len(inbox)
            if (
                not count
                or self._entries
                or self._lone is not reader
                or self.retain
                or self.closed
                or self.journal is not None
                or reader.cursor != self._next
            ):
                return None
            batch = inbox[:count]
            del inbox[:count]  # appends go on meanwhile: see _drain
            chars = self._chars
            for record in batch:
                chars += len(record[5]) + len(record[4])
            if chars - self._chars > MAX_CHUNK_CHARS and count > 1:
                self._hold(batch)
                return None
            first = self._next
            self._next = reader.cursor = first + count
            self._chars = chars
            self._records += count
            self._partial = None  # a line being rewritten stays at its last state (see _drain)
        finally:
            lock.release()
        return first, batch

    def _release_taken(self) -> None:
        """Drop the entries every reader has taken (a plain stream keeps no history). Under the lock."""
        if not self._entries:
            return
        if self._lone is not None:
            low = self._lone.cursor
        elif self._readers:
            low = min(r.cursor for r in self._readers)
        else:
            low = self._next
        if low >= self._next:
            self._entries.clear()
        else:
            while self._entries[0].seq < low:
                self._entries.popleft()

    def _take_encoded(
        self, reader: Reader, key: Hashable, encode: Callable[[Sequence[Entry]], bytes]
    ) -> tuple[int, bytes | None]:
        """Like :meth:`_take`, but ``encode(entries)``, shared by readers (None: nothing taken).

        Readers woken by the same append usually want the same range: the first encodes it (outside the
        lock) into ``chunks``; the others find it there without copying an entry (thousands of viewers
        each take hundreds of entries per wake-up when a job logs fast).
        """
        with self._lock:
            if self._inbox:
                self._drain()
            entries = self._entries
            first = self._next - len(entries)
            cursor = reader.cursor
            missed = first - cursor if cursor < first else 0
            cursor = max(cursor, first)
            wanted = self._next - cursor
            if wanted <= 0:
                reader.cursor = self._next
                return missed, None
            start = len(entries) - wanted
            head = entries[start]
            whole = self._chars - head.end + len(head.line) + len(head.message) <= MAX_CHUNK_CHARS
            if whole:
                chunk = self.chunks.get(key)
                if chunk is not None and chunk[0] == cursor and chunk[1] == self._next - 1:
                    reader.cursor = self._next
                    return missed, chunk[2]
                batch = list(itertools.islice(entries, start, None))
            else:
                batch = _bounded(itertools.islice(entries, start, None))
            reader.cursor = batch[-1].seq + 1
            if not self.retain:
                self._release_taken()
        if self.journal is not None:
            self._flush_journal()
        body = encode(batch)
        if self.chunks is _UNSHARED_CHUNKS:  # called with one reader: the shared empty dict stays empty
            self.chunks = {}
        # Readers racing here each store a correct chunk; the last one stays.
        self.chunks[key] = (batch[0].seq, batch[-1].seq, body)
        return missed, body


_SMALL = 256
_NEVER = float("inf")
# What a channel has until a second reader attaches: empty, and never written (only readers of a
# channel with two or more share chunks and encoders, and attach() makes them theirs first).
_UNSHARED_CHUNKS: dict[object, tuple[int, int, bytes]] = {}
_UNSHARED_ENCODERS: dict[object, Callable[[Sequence[Entry]], bytes]] = {}


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

    @property
    def backlog(self) -> int:
        """Entries appended that this reader has not taken yet (numbered or still in the inbox)."""
        channel = self.channel
        return channel._next - self.cursor + len(channel._inbox)

    def take(self) -> tuple[int, Sequence[Entry]]:
        """Everything available now: (entries missed since the last take, entries)."""
        if self.cursor >= self.channel._next and not self.channel._inbox:
            # Nothing new (read without the lock: a stale answer only sends the caller
            # to wait(), which checks again after arming). Each viewer asks once more
            # after every chunk it sends: this spares that call the lock.
            return 0, []
        missed, batch = self.channel._take(self)
        self.missed += missed
        return missed, batch

    def take_records(self) -> tuple[int, list[Record]] | None:
        """The log records waiting, as ``(first seq, records)``, for ``Format.records``; None: call :meth:`take`.

        A plain stream's live reader takes them so, with no entry made (``Channel._take_records``).
        """
        channel = self.channel
        if not channel._inbox or channel._entries:  # read without the lock: the call checks again under it
            return None
        return channel._take_records(self)

    def take_encoded(self, key: Hashable, encode: Callable[[Sequence[Entry]], bytes]) -> tuple[int, bytes | None]:
        """:meth:`take`, as bytes: ``encode(entries)``, shared with the channel's other readers under ``key``.

        ``key`` names the encoding (see ``response.cache_key``): readers with equal
        keys must encode equal entries to equal bytes.
        """
        if self.cursor >= self.channel._next and not self.channel._inbox:
            return 0, None
        missed, body = self.channel._take_encoded(self, key, encode)
        self.missed += missed
        return missed, body

    def wait(self, timeout: float | None) -> None:
        """Block until an entry may be available, the channel closes, or ``timeout``.

        All of a channel's readers wait on one event, which the producer sets (once) after an append. A set
        event cannot be cleared (other readers may not have woken from it yet): the first reader back swaps in
        a fresh one, under the lock, so that no reader waits on an event nobody will set.
        """
        channel = self.channel
        with channel._lock:
            event = channel._wakeup
            if event.is_set():
                channel._timer_at = _NEVER  # before the new event is seen: its timer is not the old one's
                event = channel._wakeup = threading.Event()
                channel._armed = True
            # Re-check after arming: an append since our last take set the old event, not this one.
            # An append after this check finds _armed up and sets the event we hold.
            if self.cursor < channel._next or channel._inbox or channel.summary is not None:
                return
            # One timer per channel, not one per waiting reader (a timer made and cancelled per
            # wait cost a thousand viewers a quarter of the worker): a reader whose deadline is no
            # earlier than the event's timer waits without one; the timer's holder sets the event
            # when it runs out and every reader looks at its own clock. Under the lock: this event's.
            timed = False
            if timeout is not None:
                due = time.monotonic() + timeout
                if due < channel._timer_at:
                    channel._timer_at = due
                    timed = True
        if not timed:
            event.wait()
            return
        try:
            event.wait(timeout)
        finally:
            if not event.is_set():  # our timer ran out (or the wait was interrupted): wake the rest
                event.set()

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
