"""A threaded ``wsgiref`` server tuned for the core tests.

Like ``servers.wsgiref_server`` but with a listen backlog large enough for 50
clients connecting at once (socketserver's default of 5 makes the kernel drop
SYNs, and each dropped one costs the client a one-second retransmit), and an
optional small send buffer per connection so that a client that stops reading
fills the socket after kilobytes, not megabytes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

__all__ = ["serve"]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = True
    request_queue_size = 128


def _handler(sndbuf: int | None) -> type[WSGIRequestHandler]:
    class Handler(WSGIRequestHandler):
        def setup(self) -> None:
            if sndbuf is not None:
                self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            super().setup()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def serve(app: Any, *, sndbuf: int | None = None) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, server_class=_Server, handler_class=_handler(sndbuf))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
