"""The WSGI iterable that turns a channel reader into chunks of bytes.

It yields the format's head at once, then, each time it is asked for more,
everything the reader can take as one chunk (batching costs no latency: it
never waits to fill a batch), a keep-alive after ``heartbeat`` seconds of
silence, and the end summary. The server's thread blocks inside ``__next__``
only on the reader's event, never on a lock.

``close()`` is what the server calls when the response ends or the client is
gone; it releases the reader at once and runs ``on_close``; calling it again
does nothing.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator

from .channel import Reader
from .formats import Format

__all__ = ["StreamResponse"]


class StreamResponse:
    def __init__(
        self,
        reader: Reader,
        fmt: Format,
        *,
        title: str,
        heartbeat: float,
        head: bool = True,
        on_close: Callable[[], None] | None = None,
        deadline: float | None = None,
        on_deadline: Callable[[], object] | None = None,
    ) -> None:
        self._reader = reader
        self._format = fmt
        self._title = title
        self._heartbeat = heartbeat
        self._head = head
        self._on_close = on_close
        self._deadline = deadline  # time.monotonic() at which on_deadline ends the stream
        self._on_deadline = on_deadline
        self._finished = False
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._finished or self._closed:
            raise StopIteration
        if self._head:
            self._head = False
            return self._format.head(self._title, self._reader.channel.started)
        reader = self._reader
        quiet_until = time.monotonic() + self._heartbeat
        while True:
            missed, batch = reader.take()
            if batch or missed:
                return self._format.batch(missed, batch)
            channel = reader.channel
            if reader.at_end:
                self._finished = True
                assert channel.summary is not None
                return self._format.end(channel.summary, reader.missed, channel.next_seq)
            now = time.monotonic()
            if self._deadline is not None and now >= self._deadline and self._on_deadline is not None:
                self._on_deadline()  # closes the channel: the next pass sends the summary
                self._deadline = None
                continue
            remaining = quiet_until - now
            if remaining <= 0:
                return self._format.keepalive()
            if self._deadline is not None:
                remaining = min(remaining, self._deadline - now)
            reader.wait(remaining)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._reader.close()
        if self._on_close is not None:
            callback, self._on_close = self._on_close, None
            callback()
