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
entry: see :func:`shared_batch`.

``close()`` is what the server calls when the response ends or the client is
gone; it releases the reader at once and runs ``on_close``; calling it again
does nothing.
"""

from __future__ import annotations

import time
from typing import Callable, Hashable, Iterator, Sequence

from .channel import Channel, Entry, Reader
from .formats import Format
from .store import LogReader

__all__ = ["FIRST_WRITE", "StreamResponse", "shared_batch"]

#: The most the first chunk carries. Caddy's ``encode`` compresses (and then
#: holds) a response whose first write is 512 bytes or more.
FIRST_WRITE = 480


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
        self._batch: Callable[[int, Sequence[Entry]], bytes] = fmt.batch
        key = fmt.cache_key()
        if key is not None and isinstance(reader, Reader):
            channel = reader.channel

            def batch(missed: int, entries: Sequence[Entry]) -> bytes:
                return shared_batch(channel, fmt, key, missed, entries)

            self._batch = batch
        self._title = title
        self._started = started
        self._heartbeat = heartbeat
        self._on_close = on_close
        self._check = check
        self._recheck = recheck
        self._timeout_at = deadline  # time.monotonic() of the log's deadline
        self._deadline = self._next_due(time.monotonic())  # when check() is due next
        self._pending: list[bytes] = []
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
            head = self._format.head(self._title, self._started)
            if len(head) > FIRST_WRITE:
                self._pending.append(head[FIRST_WRITE:])
                return head[:FIRST_WRITE]
            return head
        if self._pending:
            return self._pending.pop()
        reader = self._reader
        quiet_until = 0.0  # set on the first pass that finds nothing: most passes find something
        while True:
            missed, batch = reader.take()
            if batch or missed:
                return self._batch(missed, batch)
            if reader.at_end:
                self._finished = True
                summary = reader.summary
                assert summary is not None
                return self._format.end(summary, reader.missed, reader.next_seq)
            now = time.monotonic()
            if not quiet_until:
                quiet_until = now + self._heartbeat
            if self._deadline is not None and now >= self._deadline and self._check is not None:
                self._check()  # may close the log: the next pass sends the summary
                if self._timeout_at is not None and now >= self._timeout_at:
                    self._timeout_at = None
                self._deadline = self._next_due(now)
                continue
            remaining = quiet_until - now
            if remaining <= 0:
                return self._format.keepalive()
            if self._deadline is not None:
                remaining = min(remaining, self._deadline - now)
            reader.wait(remaining)

    def _next_due(self, now: float) -> float | None:
        due = [
            when
            for when in (self._timeout_at, None if self._recheck is None else now + self._recheck)
            if when is not None
        ]
        return min(due) if due else None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._reader.close()
        if self._on_close is not None:
            callback, self._on_close = self._on_close, None
            callback()


def shared_batch(channel: Channel, fmt: Format, key: Hashable, missed: int, entries: Sequence[Entry]) -> bytes:
    """``fmt.batch(missed, entries)``, encoding each entry once for all of ``channel``'s readers.

    A job watched by many people must not escape, frame and encode every line
    once per viewer. With more than one reader attached, each entry keeps its
    bytes per format key (``Entry.encoded``, released with the entry), and the
    channel keeps the last chunk per key, since readers woken by the same
    append usually take the same range: the first reader encodes, the others
    find the chunk (or join the entries' bytes). A single reader (a plain
    stream) pays for no cache. Relies on a batch being its dropped marker
    followed by its entries' bytes, which ``Format.cache_key`` promises.
    """
    if channel.readers < 2 or not entries:
        return fmt.batch(missed, entries)
    first, last = entries[0].seq, entries[-1].seq
    chunk = channel.chunks.get(key)
    if chunk is not None and chunk[0] == first and chunk[1] == last:
        body = chunk[2]
    else:
        parts = []
        for entry in entries:
            encoded = entry.encoded
            if encoded is None:
                encoded = entry.encoded = {}
            data = encoded.get(key)
            if data is None:
                data = encoded[key] = fmt.batch(0, (entry,))
            parts.append(data)
        body = b"".join(parts)
        # Concurrent readers may race here: each stores a correct chunk, the last one stays.
        channel.chunks[key] = (first, last, body)
    return fmt.batch(missed, ()) + body if missed else body
