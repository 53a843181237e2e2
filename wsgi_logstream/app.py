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

from .channel import Channel
from .errors import unavailable
from .operation import Operation, target_caller
from .options import Options, StreamOptions
from .pipeline import authorize, open_stream, refuse_cross_site, respond
from .probe import probe_app
from .request import environ_for_target, is_probe, parse_stream_request, query_params

if TYPE_CHECKING:
    from typing import Unpack

    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["LogStreamApp", "logstream"]


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
        return respond(environ, start_response, self._serve)

    def _serve(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if is_probe(query_params(environ)):
            authorize(self.options, environ, "stream")  # a refused client gets no answer but the refusal
            return probe_app(environ, start_response)  # timed lines for `wsgi-logstream check`; runs nothing
        request = parse_stream_request(environ, self.methods)
        if request.last_event_id is not None:
            # EventSource reconnecting after the end (or a cut): a plain stream
            # cannot resume, and re-running the operation would be wrong. 204
            # tells EventSource to stop. Jobs can resume.
            start_response("204 No Content", [("Cache-Control", "no-store")])
            return []
        authorize(self.options, environ, "stream")
        fmt = request.make_format(ansi=self.options.ansi)
        if request.head_only:
            return open_stream(start_response, request, fmt, _no_reader, title="", started=0.0, heartbeat=1.0)
        refuse_cross_site(self.options, environ)  # an <img> or a form on another site must not run it
        target_environ = environ_for_target(environ)
        if self._slots is not None and not self._slots.acquire(blocking=False):
            raise unavailable(
                f"too many operations running (max_concurrent={self.options.max_concurrent}); retry later"
            )
        with self._count_lock:
            self._running += 1
        channel = Channel(self.options.max_buffer)
        operation = Operation(
            self._call, target_environ, self.options, channel, finish=channel.close, on_finish=self._finished
        )
        reader = channel.reader()
        operation.start()
        return open_stream(
            start_response,
            request,
            fmt,
            lambda: reader,
            title=self.options.title,
            started=operation.started,
            heartbeat=self.options.heartbeat,
            on_close=lambda: self._closed(operation, channel),
            deadline=operation.sink.deadline,
            check=operation.expire,
        )

    def _finished(self, operation: Operation) -> None:
        with self._count_lock:
            self._running -= 1
        if self._slots is not None:
            self._slots.release()

    def _closed(self, operation: Operation, channel: Channel) -> None:
        # The reader is gone: nobody will read what the target logs from now on,
        # so stop formatting it (abandoning the channel) and, if asked, cancel.
        if not channel.closed:
            if self.options.on_disconnect == "cancel":
                operation.cancel()
            channel.abandon()


def _no_reader() -> Any:
    raise AssertionError("a HEAD request reads no log")


def logstream(target: Callable[..., Any], **options: Unpack[StreamOptions]) -> LogStreamApp:
    """Return a WSGI application that runs ``target`` per request and streams its log.

    ``target`` is any callable; it is called as ``target(environ)`` if it takes
    a positional argument, else as ``target()``.

    Options (keyword-only, validated here; :class:`~wsgi_logstream.options.StreamOptions`
    types them for your checker):

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
    - ``authorize`` (none): ``authorize(environ, action, job)`` is asked before
      anything runs or is shown (here ``action`` is ``"stream"`` and ``job``
      None); anything but ``True`` is a ``403`` and nothing runs. Raise
      :class:`~wsgi_logstream.Refused` for another message or a ``401``.
    - ``allowed_origins`` (none): other origins (``https://admin.example.com``)
      whose pages may start operations here; a browser request from any other
      site is refused with ``403``.
    """
    return LogStreamApp(target, Options.from_kwargs(**options))
