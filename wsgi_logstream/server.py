"""A threaded ``wsgiref`` server for the demo and the command line (stdlib only), bounded against slow clients.

Streams are long-lived, so each connection gets a thread of its own (a pool
would run dry). What a slow or hostile client can take is bounded:

* **time to send a request head**: a connection that has not sent its whole
  request line and headers within ``header_timeout`` seconds (10) is closed;
  once the head is in, the response may last as long as the stream does;
* **connections**: at most ``max_connections`` at once (from the process's
  descriptor limit, at most 1000), so the server never reaches the limit where
  ``accept`` fails and nobody is served. When the server is full, a new
  connection takes the place of the oldest one that is *still sending its
  head* (the only kind a slowloris holds); only when every connection is
  being answered is the newcomer told ``503`` with ``Retry-After``;
* **the listen backlog** is 128 (the standard library's default is 5: a burst
  of viewers waited a second for a place in the queue).

So a slow client costs at most its own connection: hundreds of half-sent
requests from one host cannot lock out a normal request.
"""

from __future__ import annotations

import resource
import socket
import threading
import time
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

__all__ = ["HEADER_TIMEOUT", "QuietHandler", "ThreadingWSGIServer", "connection_limit"]

HEADER_TIMEOUT = 10.0
_RESERVED_FDS = 64  # for the jobs' pipes, files being followed, the listening socket, imports


def connection_limit(ceiling: int = 1000) -> int:
    """How many connections this process can hold and still open what its jobs need."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return ceiling
    return max(8, min(ceiling, soft - _RESERVED_FDS))


_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 5\r\n"
    b"Content-Length: 46\r\nConnection: close\r\n\r\n503 Service Unavailable: too many connections\n"
)


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per connection, with the bounds of the module docstring."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    header_timeout = HEADER_TIMEOUT
    max_connections: int | None = None  # None: connection_limit()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._heads: dict[socket.socket, float] = {}  # connections still sending their head, by arrival
        self._answering: set[socket.socket] = set()
        self._limit = self.max_connections or connection_limit()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if len(self._heads) + len(self._answering) >= self._limit:
                if not self._heads:
                    self._refuse(request)
                    return
                oldest = min(self._heads, key=self._heads.__getitem__)
                del self._heads[oldest]
                try:
                    oldest.shutdown(socket.SHUT_RDWR)  # its thread's read ends; that thread closes it
                except OSError:
                    pass
            self._heads[request] = time.monotonic()
        super().process_request(request, client_address)

    def _refuse(self, request: socket.socket) -> None:
        try:
            request.setblocking(False)
            request.send(_BUSY)
        except OSError:
            pass
        self.shutdown_request(request)

    def head_received(self, request: socket.socket) -> bool:
        """The connection sent its whole head: it is answered, and no longer evictable; False if it was evicted."""
        with self._lock:
            if self._heads.pop(request, None) is None:
                return False  # evicted while reading: what it read ended at the eviction, not at its end
            self._answering.add(request)
            return True

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._heads.pop(request, None)
                self._answering.discard(request)

    @property
    def connections(self) -> int:
        """Connections held now."""
        with self._lock:
            return len(self._heads) + len(self._answering)

    @property
    def answering(self) -> int:
        """Connections whose whole head is in (the app has them; they are not evicted)."""
        with self._lock:
            return len(self._answering)


class QuietHandler(WSGIRequestHandler):
    """Keeps request logs off the terminal, where the command prints its own status; enforces the head timeout."""

    server: ThreadingWSGIServer

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(getattr(self.server, "header_timeout", None))  # the head must be in by then

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        self.connection.settimeout(None)  # the head is in: the response lasts as long as the stream
        return not isinstance(self.server, ThreadingWSGIServer) or self.server.head_received(self.connection)

    def handle(self) -> None:
        try:
            super().handle()
        except (TimeoutError, ConnectionError):
            self.close_connection = True  # too slow to send its head, or gone: close, quietly

    def log_message(self, format: str, *args: Any) -> None:
        pass
