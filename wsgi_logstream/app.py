"""``logstream(target, **options)``: a WSGI app that streams what ``target`` logs.

Each request runs ``target`` once, in a worker thread of its own, and streams
the records logged in that thread (and in threads it starts through
:class:`wsgi_logstream.Thread` or :func:`wsgi_logstream.bind`) as they happen,
in the format the request asks for. Nothing else in the process sees them, and
nothing the process logs elsewhere reaches the stream.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .assets import ASSET_PREFIX, asset_prefix, serve_asset
from .channel import Channel
from .formats import HtmlFormat
from .operation import Operation, target_caller
from .options import Options
from .probe import probe_app
from .request import (
    STREAM_HEADERS,
    BadRequest,
    allow,
    choose_format,
    environ_for_target,
    error_response,
    make_format,
    query_params,
    reject_body,
)
from .response import StreamResponse

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["LogStreamApp", "logstream"]

RETRY_AFTER = "5"


class LogStreamApp:
    """The WSGI application :func:`logstream` returns."""

    methods = ("GET", "HEAD", "POST")

    def __init__(self, target: Callable[..., Any], options: Options) -> None:
        self.target = target
        self.options = options
        self._call = target_caller(target)
        self._slots = threading.BoundedSemaphore(options.max_concurrent) if options.max_concurrent else None
        self._running = 0
        self._count_lock = threading.Lock()

    @property
    def running(self) -> int:
        """How many operations started by this app are still running."""
        return self._running

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(ASSET_PREFIX):  # the page's script and style: never runs the operation
            return serve_asset(environ, start_response, path[len(ASSET_PREFIX) :])
        try:
            allow(self.methods, environ)
            params = query_params(environ)
            if params.get("probe") == "1":
                return probe_app(environ, start_response)  # timed lines for `wsgi-logstream check`; runs nothing
            name = choose_format(environ, params)
            reject_body(environ)
            if name == "sse" and environ.get("HTTP_LAST_EVENT_ID") is not None:
                # EventSource reconnecting after the end (or a cut): a plain
                # stream cannot resume, and re-running the operation would be
                # wrong. 204 tells EventSource to stop. Jobs can resume.
                start_response("204 No Content", [("Cache-Control", "no-cache")])
                return []
        except BadRequest as error:
            return error_response(start_response, error)
        fmt = make_format(name, params, ansi=self.options.ansi)
        if isinstance(fmt, HtmlFormat):
            fmt.assets = asset_prefix(environ)
        headers = [("Content-Type", fmt.media_type), *STREAM_HEADERS, *fmt.headers]
        if environ.get("REQUEST_METHOD") == "HEAD":
            start_response("200 OK", headers)
            return []
        try:
            target_environ = environ_for_target(environ)
        except BadRequest as error:
            return error_response(start_response, error)
        if self._slots is not None and not self._slots.acquire(blocking=False):
            return error_response(
                start_response,
                BadRequest(
                    "503 Service Unavailable",
                    f"too many operations running (max_concurrent={self.options.max_concurrent}); retry later",
                    [("Retry-After", RETRY_AFTER)],
                ),
            )
        with self._count_lock:
            self._running += 1
        channel = Channel(self.options.max_buffer)
        operation = Operation(self._call, target_environ, self.options, channel, on_finish=self._finished)
        reader = channel.reader()
        operation.start()
        start_response("200 OK", headers)
        return StreamResponse(
            reader,
            fmt,
            title=self.options.title,
            heartbeat=self.options.heartbeat,
            on_close=lambda: self._closed(operation),
            deadline=operation.sink.deadline,
            on_deadline=operation.expire,
        )

    def _finished(self, operation: Operation) -> None:
        with self._count_lock:
            self._running -= 1
        if self._slots is not None:
            self._slots.release()

    def _closed(self, operation: Operation) -> None:
        # The reader is gone: nobody will read what the target logs from now on,
        # so stop formatting it (closing the channel) and, if asked, cancel.
        if not operation.channel.closed:
            if self.options.on_disconnect == "cancel":
                operation.cancel()
            operation.channel.abandon()


def logstream(target: Callable[..., Any], **options: Any) -> LogStreamApp:
    """Return a WSGI application that runs ``target`` per request and streams its log.

    ``target`` is any callable; it is called as ``target(environ)`` if it takes
    a positional argument, else as ``target()``.

    Options (keyword-only, validated here):

    - ``level`` (``logging.INFO``): the lowest level captured, an int or a name.
      Captured even where the process's loggers are set higher.
    - ``loggers`` (every logger): names whose records are captured, with their
      children (``"app"`` takes ``"app.db"``).
    - ``formatter``: a ``logging.Formatter`` or a format string for each line.
    - ``heartbeat`` (15): seconds of silence before a keep-alive is sent.
    - ``max_buffer`` (10000): lines held for a slow client; beyond it the oldest
      go and the client is told how many it missed.
    - ``max_concurrent`` (unlimited): operations running at once; past it a
      request gets ``503`` with ``Retry-After`` and nothing runs.
    - ``on_disconnect`` (``"continue"``): or ``"cancel"``, which makes
      :func:`wsgi_logstream.cancelled` true when the client goes away.
    - ``title`` (``"Log stream"``): the HTML page title and first text line.
    - ``timeout`` (none): seconds after which the stream ends with status
      ``timeout`` and the operation is asked to stop.
    - ``traceback`` (True): show a failed operation's traceback in the stream.
    - ``ansi`` (False): let ANSI colour sequences through in the text format.
    - ``redact`` (off): regular expressions (or a callable ``str -> str``, or
      ``True`` for :data:`DEFAULT_REDACTIONS`) whose matches are replaced with
      ``[redacted]`` in every line before it leaves the process.
    """
    return LogStreamApp(target, Options.from_kwargs(**options))
