"""Ceiling: a bare WSGI generator yielding pre-formatted lines, one per chunk.

No ``logging``, no queue, no thread: what the server alone can carry, line by
line, and how soon a line written by the application reaches the client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import workload

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-cache")])
    return workload.bare_lines(workload.params(environ))
