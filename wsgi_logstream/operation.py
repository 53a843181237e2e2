"""One run of a target: its worker thread, its sink, and how it ended.

The worker is a daemon thread (a greenlet under gevent) so that a target that
never returns cannot keep the interpreter from exiting. Whatever the target
raises, ``SystemExit`` and ``KeyboardInterrupt`` included, is turned into the
end summary and logged once to the host's ``wsgi_logstream`` logger; nothing
escapes the thread.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
import time
import traceback
from typing import Any, Awaitable, Callable

from . import capture
from .capture import Sink, install, run_bound
from .channel import Summary
from .options import Options
from .store import LogWriter

__all__ = ["Operation", "target_caller"]

_log = logging.getLogger("wsgi_logstream")


def target_caller(target: Callable[..., Any]) -> Callable[[dict[str, Any]], Any]:
    """How to call ``target``: with the request's environ if it takes a positional argument.

    An ``async def`` target (or any callable that returns an awaitable) is run
    to completion with ``asyncio.run`` in the operation's thread, in an event
    loop of its own: calling it alone only makes a coroutine, and the stream
    would report ``ok`` for work that never ran. The loop's tasks start from the
    thread's context, so their records reach the stream; the traceback shown
    for a failure starts at the target's frames, not asyncio's.
    """
    if not callable(target):
        raise TypeError(f"target must be callable, got {target!r}")
    asyncio_dir = os.path.dirname(asyncio.__file__) + os.sep

    async def wait_for(awaitable: Awaitable[Any]) -> Any:
        return await awaitable

    def run_to_completion(result: Any) -> Any:
        if not inspect.isawaitable(result):
            return result
        try:
            return asyncio.run(result if inspect.iscoroutine(result) else wait_for(result))
        except BaseException as exc:
            # Drop asyncio's own frames (runners, the event loop, the task) from
            # the traceback: from the first frame outside asyncio on, it is the target's.
            tb = exc.__traceback__
            while tb is not None and (
                tb.tb_frame.f_code.co_filename.startswith(asyncio_dir) or tb.tb_frame.f_code.co_filename == __file__
            ):
                tb = tb.tb_next
            if tb is None:
                raise
            raise exc.with_traceback(tb)  # noqa: B904 (the same exception: its cause and context stay)

    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return lambda environ: run_to_completion(target(environ))
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    required = [p for p in positional if p.default is p.empty and p.kind is not p.VAR_POSITIONAL]
    if len(required) > 1:
        raise TypeError(
            f"target {target!r} must take no argument or one (the WSGI environ), it requires {len(required)}"
        )
    if positional:
        return lambda environ: run_to_completion(target(environ))
    return lambda environ: run_to_completion(target())


# Frames of the machinery that calls the target: left out of the traceback shown to readers.
_OWN_FILES = frozenset({__file__, capture.__file__})


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the target's own first frame down."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename in _OWN_FILES:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


class Operation:
    """Runs ``call(environ)`` in a worker thread, its records going to ``log``.

    ``finish`` records how it ended (the first ending wins: a job may have been
    ended as timed out or lost by someone else first); ``cancel_event``, if
    given, is the flag a store raises when anyone asks the job to stop.
    """

    def __init__(
        self,
        call: Callable[[dict[str, Any]], Any],
        environ: dict[str, Any],
        options: Options,
        log: LogWriter,
        *,
        finish: Callable[[Summary], bool],
        cancel_event: threading.Event | None = None,
        on_finish: Callable[[Operation], None] | None = None,
        on_done: Callable[[], None] | None = None,
        name: str = "wsgi_logstream",
    ) -> None:
        install()
        self.log = log
        self.options = options
        self.started = time.time()
        deadline = time.monotonic() + options.timeout if options.timeout else None
        self.sink = Sink(
            log,
            level=options.level,
            loggers=options.loggers,
            formatter=options.formatter,
            redact=options.redact,
            deadline=deadline,
            cancel=cancel_event,
        )
        self._call = call
        self._environ = environ
        self._finish_log = finish
        self._on_finish = on_finish
        self._on_done = on_done
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        """Ask the target to stop; it sees :func:`wsgi_logstream.cancelled` turn true."""
        self.sink.cancel()

    def expire(self) -> bool:
        """End the stream with status ``timeout`` if the deadline passed. True if it did."""
        deadline = self.sink.deadline
        if deadline is None or self.log.closed or time.monotonic() < deadline:
            return False
        self.sink.cancel()
        return self._finish("timeout", f"timed out after {self.options.timeout:g}s", None)

    def _redacted(self, text: str | None) -> str | None:
        redact = self.options.redact
        return redact(text) if text is not None and redact is not None else text

    def _finish(self, status: str, error: str | None, trace: str | None) -> bool:
        summary = Summary(
            status=status,
            started=self.started,
            ended=time.time(),
            records=self.log.records,
            error=self._redacted(error),
            traceback=self._redacted(trace),
        )
        return self._finish_log(summary)

    def _run(self) -> None:
        status = "error"
        error: str | None = "the operation ended abnormally"
        trace: str | None = None
        try:
            try:
                run_bound(self.sink, lambda: self._call(self._environ))
            except BaseException as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                trace = _user_traceback(exc) if self.options.traceback else None
                # Outside run_bound: this goes to the host's logging, not to the stream.
                _log.error("operation %s failed: %s", self._thread.name, error, exc_info=True)
            else:
                timed_out = self.sink.deadline is not None and time.monotonic() >= self.sink.deadline
                if timed_out:
                    status, error = "timeout", f"timed out after {self.options.timeout:g}s"
                else:
                    status, error = ("cancelled" if self.sink.is_cancelled() else "ok"), None
        finally:
            self._environ = {}
            try:
                # Free the slot before the summary goes out: a client that reads
                # the end and asks again at once must not be refused with 503.
                if self._on_finish is not None:
                    self._on_finish(self)
            finally:
                try:
                    self._finish(status, error, trace)
                finally:
                    self.done.set()
                    if self._on_done is not None:
                        self._on_done()
