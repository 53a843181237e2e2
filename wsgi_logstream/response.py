"""The WSGI iterable that turns a log reader into chunks of bytes.

It yields the format's head at once (its first write small: some proxies
decide on the first write whether to compress and hold a response), then,
each time it is asked for more, what the reader can take as one bounded chunk
(batching costs no latency: it never waits to fill a batch), a keep-alive
after ``heartbeat`` seconds of silence, and the end summary. The server's
thread blocks inside ``__next__`` only on the reader's wait, never on a lock.

``check`` is how a stream that nobody's runner will end still ends: it is
called at the log's deadline (and every ``recheck`` seconds, for a job whose
runner holds a lease) and settles the job's status, which closes the log when
the job timed out or was lost.

Several readers of one channel (a job's viewers) share the encoding of each
entry and of each chunk: see :func:`entry_encoder`.

``close()`` is what the server calls when the response ends or the client is
gone; it releases the reader at once and runs ``on_close``; calling it again
does nothing.
"""

from __future__ import annotations

import time
from typing import Callable, Hashable, Iterator, Sequence

from .channel import Entry, Reader
from .errors import StoreUnavailable
from .formats import Format, HtmlFormat, NdjsonFormat, SseFormat, TextFormat
from .store import LogReader

__all__ = ["FIRST_GAP", "FIRST_WRITE", "StreamResponse", "cache_key", "entry_encoder", "split_head"]

#: The most the first chunk carries. Caddy's ``encode`` compresses (and then
#: holds) a response whose first write is 512 bytes or more.
FIRST_WRITE = 480
#: How long the second chunk waits after the first. A proxy reads what has
#: arrived: the head and a job's history sent back to back would reach it as
#: one write over 512 bytes. A pause this short costs a viewer nothing it can
#: see; it makes the first read very likely to hold the head alone (the sure
#: way is still to leave stream paths out of a proxy's compression).
FIRST_GAP = 0.05


def split_head(head: bytes) -> tuple[bytes, bytes]:
    """A stream's first write and the rest of its head: every stream and the probe send them so."""
    return head[:FIRST_WRITE], head[FIRST_WRITE:]


class StreamResponse:
    def __init__(
        self,
        reader: LogReader,
        fmt: Format,
        *,
        title: str,
        started: float,
        heartbeat: float,
        on_close: Callable[[], None] | None = None,
        deadline: float | None = None,
        check: Callable[[], object] | None = None,
        recheck: float | None = None,
    ) -> None:
        self._reader = reader
        self._format = fmt
        # A channel's reader, with a format that can share its encoding: see entry_encoder. Only the key
        # here: the encoder is made (once per channel and key) when a second reader attaches, since an
        # object per response is memory every idle stream would hold.
        self._channel_reader = reader if isinstance(reader, Reader) else None
        self._key = cache_key(fmt) if self._channel_reader is not None else None
        # A reader that takes in its own way (a job's JournaledReader reads what the channel no longer
        # holds from the journal) still shares each entry's encoding, but not the channel's chunks.
        self._plain_take = type(reader).take is Reader.take
        # A plain stream's one reader (no history to keep) takes what it is live for as records, with no
        # entry made for each: ``Reader.take_records``, ``Format.records``. The latency path of every plain stream.
        self._live = type(reader) is Reader and not reader.channel.retain
        self._title = title
        self._started = started
        self._heartbeat = heartbeat
        self._on_close = on_close
        self._check = check
        self._recheck = recheck
        self._timeout_at = deadline  # time.monotonic() of the log's deadline
        self._deadline = self._next_due(time.monotonic())  # when check() is due next
        self._pending: list[bytes] = []
        self._second_after: float | None = None
        self._head = True
        self._finished = False
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._finished or self._closed:
            raise StopIteration
        if self._head:
            self._head = False
            first, rest = split_head(self._format.head(self._title, self._started))
            self._second_after = time.monotonic() + FIRST_GAP
            if rest:
                self._pending.append(rest)
            return first
        if self._second_after is not None:
            self._pause_before_second_write()
        if self._pending:
            return self._pending.pop()
        reader = self._reader
        quiet_until = 0.0  # set on the first pass that finds nothing: most passes find something
        woken = False
        shared, key = self._channel_reader, self._key
        live = shared if self._live else None
        while True:
            if live is not None:
                taken = live.take_records()
                if taken is not None:
                    return self._format.records(*taken)
            if shared is not None and key is not None and shared.channel.readers > 1:
                encoders = shared.channel.encoders
                encode = encoders.get(key)
                if encode is None:
                    encode = encoders[key] = entry_encoder(self._format, key)
                if self._plain_take:
                    missed, body = shared.take_encoded(key, encode)
                else:
                    missed, batch = reader.take()
                    body = encode(batch) if batch else None
                if body is not None or missed:  # something taken, even if it encodes to nothing
                    body = body or b""
                    return self._format.batch(missed, ()) + body if missed else body
            else:
                missed, batch = reader.take()
                if batch or missed:
                    return self._format.batch(missed, batch)
            if reader.at_end:
                self._finished = True
                summary = reader.summary
                assert summary is not None
                return self._format.end(summary, reader.missed, reader.next_seq)
            now = time.monotonic()
            if not quiet_until:
                quiet_until = now + self._heartbeat
            if self._deadline is not None and now >= self._deadline and self._check is not None:
                try:
                    self._check()  # may close the log: the next pass sends the summary
                except StoreUnavailable:
                    pass  # the store is down (the outage is logged once): look again at the next recheck
                if self._timeout_at is not None and now >= self._timeout_at:
                    self._timeout_at = None
                self._deadline = self._next_due(now)
                continue
            remaining = quiet_until - now
            if remaining <= 0 or (woken and remaining < self._heartbeat / 2):
                # Woken with nothing to send: another reader's timer ran out (a channel
                # keeps one timer for all its readers, see Reader.wait). Sending this
                # keep-alive a little early aligns the readers' clocks, so that the next
                # timer serves them all instead of waking everyone once per reader.
                return self._format.keepalive()
            if self._deadline is not None:
                remaining = min(remaining, self._deadline - now)
            reader.wait(remaining)
            woken = True

    def _next_due(self, now: float) -> float | None:
        due = [
            when
            for when in (self._timeout_at, None if self._recheck is None else now + self._recheck)
            if when is not None
        ]
        return min(due) if due else None

    def _pause_before_second_write(self) -> None:
        """Wait out ``FIRST_GAP``, but never at the cost of a line.

        The gap is for proxies that decide on their first read (see
        ``FIRST_WRITE``); an operation that logs fast can fill a plain
        stream's buffer in 50 ms (150,000 lines a second here), and the
        oldest lines would then be dropped before this reader took any. So
        the pause ends as soon as a quarter of the buffer is waiting.
        """
        until, self._second_after = self._second_after, None
        reader = self._channel_reader
        while True:
            pause = until - time.monotonic() if until is not None else 0.0
            if pause <= 0:
                return
            if reader is not None and reader.backlog >= reader.channel.max_entries // 4:
                return
            time.sleep(min(pause, 0.005))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._reader.close()
        if self._on_close is not None:
            callback, self._on_close = self._on_close, None
            callback()


def cache_key(fmt: Format) -> Hashable | None:
    """What the bytes of ``fmt.batch`` depend on besides its arguments; None: not shared between readers.

    Readers of one log whose formats have equal keys share each entry's
    encoding (:func:`entry_encoder`), which relies on ``batch(missed,
    entries)`` being ``batch(missed, [])`` (the dropped marker, or nothing)
    followed by ``batch(0, [entry])`` for each entry: true of the four formats
    (``tests/test_fanout.py`` checks it). Exact types only: a subclass may
    encode differently.
    """
    kind = type(fmt)
    if kind is TextFormat:
        key: Hashable = ("text", fmt.ansi)  # type: ignore[attr-defined]
    elif kind is SseFormat:
        key = ("sse", fmt.detail)  # type: ignore[attr-defined]  # retry_ms and last_id are only in the head
    elif kind is NdjsonFormat or kind is HtmlFormat:
        key = (fmt.name,)  # HtmlFormat's options are only in its head
    else:
        return None
    # One tuple per key for the process, not one per response: every idle stream holds its key.
    return _KEYS.setdefault(key, key)


_KEYS: dict[Hashable, Hashable] = {}


def entry_encoder(fmt: Format, key: Hashable) -> Callable[[Sequence[Entry]], bytes]:
    """``fmt.batch(0, entries)``, each entry encoded once for all readers whose formats share ``key``.

    A job watched by many people must not escape, frame and encode every
    line once per viewer. Each entry keeps its bytes per format key
    (``Entry.encoded``, released with the entry), and the channel keeps the
    last chunk per key (``Reader.take_encoded``): the first reader woken by an
    append encodes, the others send the same bytes. A lone reader (a plain
    stream) does not come here and pays for no cache. This relies on a batch
    being its dropped marker followed by its entries' bytes (see :func:`cache_key`).
    """
    batch = fmt.batch

    def encode(entries: Sequence[Entry]) -> bytes:
        parts = []
        for entry in entries:
            encoded = entry.encoded
            if encoded is None:
                encoded = entry.encoded = {}
            data = encoded.get(key)
            if data is None:
                data = encoded[key] = batch(0, (entry,))
            parts.append(data)
        return b"".join(parts)

    return encode
