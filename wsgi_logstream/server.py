"""A threaded ``wsgiref`` server for the demo and the command line (stdlib only)."""

from __future__ import annotations

from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

__all__ = ["QuietHandler", "ThreadingWSGIServer"]


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per connection; streams are long-lived, so a pool would run dry."""

    daemon_threads = True
    allow_reuse_address = True


class QuietHandler(WSGIRequestHandler):
    """Keeps request logs off the terminal, where the command prints its own status."""

    def log_message(self, format: str, *args: Any) -> None:
        pass
