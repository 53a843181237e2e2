"""How a log record finds its stream, without touching the host's logging setup.

Each running operation has a :class:`Sink`. The worker thread that runs the
operation binds the sink to a :class:`contextvars.ContextVar`; every record
logged in that context (and in threads started with :class:`Thread` or
:func:`bind`) is routed to that sink and to no other. Routing by context rather
than by a handler on the root logger is what keeps concurrent requests apart.

Levels are the hard part. ``logger.info()`` asks ``Logger.isEnabledFor`` before
a record exists, so in a process that never configured logging (root at
WARNING) the operation's INFO records would never be made. Lowering a level is
global and would flood the host's own handlers. So, once and lazily (the first
time a stream is created, never at import), two methods of ``logging.Logger``
are wrapped:

* ``isEnabledFor`` answers as before, except that inside a stream it also says
  yes to what the stream captures;
* ``callHandlers`` hands the record to the stream bound to the current context,
  then calls the original only if the logger would have let the record through
  on its own.

Outside a stream both wrappers return exactly what the originals return; the
cost is one ``ContextVar.get`` per call (``docs/benchmarks.md`` has the figure).
Handlers are never added to or removed from any logger.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

from .redact import RecordRedactor, record_redactor

if TYPE_CHECKING:
    from .store import LogWriter

__all__ = ["Sink", "Thread", "bind", "cancelled", "current_sink", "install", "progress"]

_current: contextvars.ContextVar[Sink | None] = contextvars.ContextVar("wsgi_logstream_sink", default=None)
_install_lock = threading.Lock()
_installed = False
# What the wrappers call: the methods as install() found them, so that a wrapper
# another library installed earlier (Sentry wraps callHandlers) keeps working.
_original_is_enabled_for = logging.Logger.isEnabledFor
_original_call_handlers = logging.Logger.callHandlers
_stdlib_fast_path = True  # isEnabledFor is logging's own, so its cache may be read directly

_T = TypeVar("_T")


class Sink:
    """The receiving end of one operation's records.

    Filters by level and logger name, formats each record once (in the thread
    that logged it, since its arguments may change later) and appends the line
    to a log writer (a :class:`~wsgi_logstream.channel.Channel`, or a store's
    log), which never blocks.
    """

    __slots__ = (
        "_cancel",
        "_formatter",
        "_names",
        "_prefixes",
        "_records",
        "_redact",
        "channel",
        "deadline",
        "errors",
        "level",
    )

    def __init__(
        self,
        channel: LogWriter,
        *,
        level: int,
        loggers: tuple[str, ...] | None,
        formatter: logging.Formatter,
        redact: Callable[[str], str] | None = None,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.channel = channel  # where records go: a Channel, or a store's log
        self.level = level
        self._prefixes = loggers
        self._formatter = formatter
        self._redact = redact
        self._records: RecordRedactor | None = record_redactor(redact)  # this stream's own: it has state
        self._cancel = threading.Event() if cancel is None else cancel
        self.deadline = deadline  # time.monotonic() after which the operation is asked to stop
        self._names: dict[str, bool] = {}
        self.errors = 0  # ERROR (or worse) records emitted: a section in which this grows ends as failed

    def wants(self, name: str, levelno: int) -> bool:
        if levelno < self.level or self.channel.closed:
            return False
        if self._prefixes is None:
            return True
        known = self._names.get(name)
        if known is None:
            known = self._names[name] = any(name == p or name.startswith(p + ".") for p in self._prefixes)
        return known

    def emit(self, record: logging.LogRecord, restore: bool = True) -> None:
        """Format ``record`` and append it; ``restore=False`` when no host handler will see the record."""
        if restore or self._records is not None:
            line, message, name = self._render(record, restore)
        else:
            # _render's common case, inlined (one Python call fewer per record, in the operation's
            # thread): nothing to put back on the record, nothing to redact.
            try:
                line = self._formatter.format(record)
                state = record.__dict__
                message = state["message"] if "message" in state else record.getMessage()
            except Exception as exc:  # a broken formatter or bad %-args must not lose the record
                message = _fallback_message(record)
                line = f"{record.levelname} {record.name}: {message} [formatter failed: {exc!r}]"
            name = record.name
            if record.levelno >= 40:
                self.errors += 1
        self.channel.append_log(record.created, record.levelno, record.levelname, name, message, line)

    def rewrite(self, record: logging.LogRecord, *, final: bool) -> None:
        """A state of a line being rewritten with CR (:mod:`wsgi_logstream.carriage`); ``final``: its last."""
        if not self.wants(record.name, record.levelno):
            return
        line, message, name = self._render(record)
        append = getattr(self.channel, "append_partial", None)
        if append is not None:
            append(record.created, record.levelno, record.levelname, name, message, line, final=final)
        elif final:  # a writer that cannot rewrite a line keeps only its last state
            self.channel.append_log(record.created, record.levelno, record.levelname, name, message, line)

    def _render(self, record: logging.LogRecord, restore: bool = True) -> tuple[str, str, str]:
        """The record's line, message and logger name as the stream shows them."""
        state = record.__dict__
        if restore:
            line, message = self._format_restoring(record, state)
        else:
            # The record reaches no handler after this (the host's logger would not
            # have made it): the fields the formatter caches on it need no putting back.
            try:
                line = self._formatter.format(record)
                message = state["message"] if "message" in state else record.getMessage()
            except Exception as exc:  # a broken formatter or bad %-args must not lose the record
                message = _fallback_message(record)
                line = f"{record.levelname} {record.name}: {message} [formatter failed: {exc!r}]"
        name = record.name
        if record.levelno >= 40:
            self.errors += 1
        if self._records is not None:
            line, message = self._records.record(line, message)
            name = self._records(name)
        return line, message, name

    def _format_restoring(self, record: logging.LogRecord, state: dict[str, Any]) -> tuple[str, str]:
        # Formatter.format caches what it computes on the record (message,
        # asctime, and the traceback in exc_text, which later formatters reuse
        # instead of calling their own formatException). The stream formats
        # first, so the host's handlers would see the stream's choices: put the
        # record back as it came.
        saved_message, saved_asctime = state.get("message", _ABSENT), state.get("asctime", _ABSENT)
        saved_exc_text = record.exc_text
        try:
            line = self._formatter.format(record)
            message = state["message"] if "message" in state else record.getMessage()
        except Exception as exc:  # a broken formatter or bad %-args must not lose the record
            message = _fallback_message(record)
            line = f"{record.levelname} {record.name}: {message} [formatter failed: {exc!r}]"
        finally:
            record.exc_text = saved_exc_text
            if saved_message is _ABSENT:
                state.pop("message", None)
            else:
                state["message"] = saved_message
            if saved_asctime is _ABSENT:
                state.pop("asctime", None)
            else:
                state["asctime"] = saved_asctime
        return line, message

    def redacted(self, text: str) -> str:
        """``text`` with the stream's ``redact`` option applied (if any)."""
        return self._redact(text) if self._redact is not None and text else text

    def cancel(self) -> None:
        self._cancel.set()

    def is_cancelled(self) -> bool:
        if self._cancel.is_set():
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self._cancel.set()
            return True
        return False

    def wait_cancelled(self, timeout: float | None) -> bool:
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            timeout = remaining if timeout is None else min(timeout, remaining)
        self._cancel.wait(None if timeout is None else max(timeout, 0.0))
        return self.is_cancelled()


# Marks an attribute the record did not have before the stream formatted it.
_ABSENT: Any = object()


def _fallback_message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        return f"{record.msg!r} % {record.args!r}"


def _host_enabled(logger: logging.Logger, level: int) -> bool:
    """The original ``isEnabledFor``: what the host's own configuration says."""
    if _stdlib_fast_path:
        # logging's own method, inlined: its per-level cache, without another Python call.
        try:
            return not logger.disabled and logger._cache[level]  # type: ignore[attr-defined,no-any-return]
        except (KeyError, AttributeError):
            pass
    return _original_is_enabled_for(logger, level)


def _is_enabled_for(self: logging.Logger, level: int) -> bool:
    sink = _current.get()
    if sink is None:
        # Outside a stream: the original's own fast path, then the original.
        # This runs for every disabled logger.debug() in the process.
        if not _stdlib_fast_path:
            return _original_is_enabled_for(self, level)
        try:
            return not self.disabled and self._cache[level]  # type: ignore[attr-defined,no-any-return]
        except (KeyError, AttributeError):
            return _original_is_enabled_for(self, level)
    # Sink.wants, inlined for the common case (every logger captured), and asked
    # before the host's answer (yes if either says yes): this runs in the
    # operation's thread for every record it logs, and the stream usually wants it.
    if (
        level >= sink.level
        and not self.disabled
        and not sink.channel.closed
        and self.manager.disable < level
        and (sink._prefixes is None or sink.wants(self.name, level))
    ):
        return True
    return _host_enabled(self, level)


def _call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
    sink = _current.get()
    if sink is None:
        _original_call_handlers(self, record)
        return
    levelno = record.levelno
    # Only records the logger would have made without us reach the host's handlers.
    # (_host_enabled, inlined for logging's own isEnabledFor: one Python call fewer per record.)
    if _stdlib_fast_path:
        try:
            host = not self.disabled and self._cache[levelno]  # type: ignore[attr-defined]
        except (KeyError, AttributeError):
            host = _host_enabled(self, levelno)
    else:
        host = _host_enabled(self, levelno)
    # Sink.wants inlined, as above. A record handed to Logger.handle() directly
    # never met isEnabledFor, so this asks again rather than assume.
    if levelno >= sink.level and not sink.channel.closed and (sink._prefixes is None or sink.wants(self.name, levelno)):
        sink.emit(record, restore=host)
    if host:
        _original_call_handlers(self, record)


def install() -> None:
    """Wrap the two ``logging.Logger`` methods, once per process (idempotent)."""
    global _installed, _original_is_enabled_for, _original_call_handlers, _stdlib_fast_path
    with _install_lock:
        if _installed:
            return
        _original_is_enabled_for = logging.Logger.isEnabledFor
        _original_call_handlers = logging.Logger.callHandlers
        _stdlib_fast_path = getattr(_original_is_enabled_for, "__module__", None) == "logging"
        logging.Logger.isEnabledFor = _is_enabled_for  # type: ignore[method-assign]
        logging.Logger.callHandlers = _call_handlers  # type: ignore[method-assign]
        _installed = True


def current_sink() -> Sink | None:
    """The sink bound to the calling context, or None outside any stream."""
    return _current.get()


def run_bound(sink: Sink, func: Callable[[], _T]) -> _T:
    """Call ``func`` with ``sink`` bound to the current context."""
    token = _current.set(sink)
    try:
        return func()
    finally:
        _current.reset(token)


def cancelled() -> bool:
    """Whether the operation running in this context has been asked to stop.

    True once its client went away (with ``on_disconnect="cancel"``), its
    ``timeout`` passed, or a job was cancelled. Always False outside a stream.
    Cancellation is cooperative: the operation checks and returns.
    """
    sink = _current.get()
    return sink is not None and sink.is_cancelled()


def wait_cancelled(timeout: float) -> bool:
    """Sleep up to ``timeout`` seconds, waking early if the operation is cancelled.

    Returns :func:`cancelled`. Use it instead of ``time.sleep`` in loops that wait.
    """
    sink = _current.get()
    if sink is None:
        time.sleep(timeout)
        return False
    return sink.wait_cancelled(timeout)


def progress(done: float, total: float | None = None, message: str | None = None) -> None:
    """Report progress of the operation running in this context.

    Travels as its own event (SSE, ndjson), a line (text) or a progress bar
    (HTML). Does nothing outside a stream.
    """
    sink = _current.get()
    if sink is None or sink.channel.closed:
        return
    if total is not None and total < 0:
        raise ValueError(f"progress total must be >= 0, got {total!r}")
    note = None if message is None else sink.redacted(str(message))
    sink.channel.append_progress(time.time(), float(done), None if total is None else float(total), note)


def bind(func: Callable[..., _T]) -> Callable[..., _T]:
    """Return a callable that runs ``func`` in the caller's stream.

    ``threading.Thread`` and ``concurrent.futures`` workers start with an empty
    context before Python 3.14 (and gevent greenlets always do), so records they
    log reach no stream. ``executor.submit(bind(work), item)`` carries it over.
    """
    context = contextvars.copy_context()

    def bound(*args: Any, **kwargs: Any) -> _T:
        return context.copy().run(func, *args, **kwargs)

    return bound


class Thread(threading.Thread):
    """A ``threading.Thread`` whose records go to the stream that created it."""

    def __init__(
        self,
        group: None = None,
        target: Callable[..., object] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        daemon: bool | None = None,
    ) -> None:
        super().__init__(group, target, name, args, kwargs, daemon=daemon)
        self._stream_context = contextvars.copy_context()

    def run(self) -> None:
        self._stream_context.run(super().run)
