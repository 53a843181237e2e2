"""Run a WSGI app in-process: by hand as a server would, or through WebTest; and snapshots of process state.

:func:`call` drives an app the way a server does (environ, ``start_response``,
an iterable the caller reads and must close), so a test can read part of a
stream, hold several streams open at once, or close one mid-way; :func:`fetch`
is the same call read to its end and closed. Both go through
:mod:`wsgiref.validate` unless told not to, so the WSGI contract is checked on
every in-process request; a test that breaks the contract on purpose (an
invalid environ, a second ``close()``) passes ``validate=False``.

:class:`TestApp` is WebTest's, imported here once with the warning its WebOb
import raises silenced. :func:`snapshot` and :func:`logging_snapshot` record
the process's threads, descriptors and logging setup, so a test can prove it
left nothing behind.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import warnings
from typing import Any, Callable, Iterable, Iterator
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

with warnings.catch_warnings():
    # WebOb imports the stdlib ``cgi`` module, deprecated since Python 3.11;
    # the suite turns warnings into errors, so import it once here, quietly.
    warnings.simplefilter("ignore", DeprecationWarning)
    from webtest import TestApp

__all__ = ["Call", "Chunks", "TestApp", "call", "environ_for", "fetch", "logging_snapshot", "snapshot"]


def environ_for(
    path: str = "/",
    query: str = "",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> dict[str, Any]:
    """A complete WSGI environ for one request, as ``wsgiref`` would build it."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(body),
    }
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    setup_testing_defaults(environ)
    return environ


class Chunks:
    """A response body read as a server reads it: chunk by chunk (``next``, ``read_until``) or to the end,
    then closed once; for a WSGI iterable (:class:`Call`) or a framework's streamed response."""

    def __init__(self, iterable: Iterable[bytes], close: Callable[[], object] | None = None) -> None:
        self._iterator: Iterator[bytes] = iter(iterable)
        self._close = close
        self.chunks: list[bytes] = []
        self.closed = False

    def next(self) -> bytes:
        """The next chunk (the server's ``next()``), which may block until there is one."""
        chunk = next(self._iterator)
        assert isinstance(chunk, bytes), f"the app yielded {type(chunk).__name__}, not bytes"
        self.chunks.append(chunk)
        return chunk

    def read_until(self, marker: bytes, max_chunks: int = 10_000) -> bytes:
        """Read chunks until ``marker`` is in the body; each ``next()`` is bounded by the app's heartbeat."""
        for _ in range(max_chunks):
            if marker in self.body:
                return self.body
            self.next()
        raise AssertionError(f"{marker!r} not in the first {max_chunks} chunks: {self.body[-300:]!r}")

    def read_to_end(self) -> bytes:
        """Every remaining chunk, then ``close()``; the whole body."""
        try:
            for chunk in self._iterator:
                assert isinstance(chunk, bytes), f"the app yielded {type(chunk).__name__}, not bytes"
                self.chunks.append(chunk)
        finally:
            self.close()
        return self.body

    @property
    def body(self) -> bytes:
        """The body read so far."""
        return b"".join(self.chunks)

    def close(self) -> None:
        """Close once, as a server does (tests that close twice call ``result.close()``)."""
        if self.closed:
            return
        self.closed = True
        if self._close is not None:
            self._close()

    def __enter__(self) -> Chunks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Call(Chunks):
    """One request made in-process: its status, headers and body, read chunk by chunk or to the end."""

    def __init__(self, app: Callable[..., Iterable[bytes]], environ: dict[str, Any], *, validate: bool = True) -> None:
        self.environ = environ
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.result = (validator(app) if validate else app)(environ, self._start_response)
        super().__init__(self.result, getattr(self.result, "close", None))

    def _start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        self.status = status
        self.headers = list(headers)

        def write(data: bytes) -> None:
            raise AssertionError("the app used the legacy write() callable")

        return write

    @property
    def code(self) -> int:
        """The status code (``status`` is the whole status line)."""
        return int(self.status.split()[0])

    def header(self, name: str) -> str | None:
        """The one value of header ``name`` (any case), ``None`` when absent; fails if it was sent twice."""
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, f"header {name} sent {len(values)} times"
        return values[0] if values else None

    @property
    def content_type(self) -> str:
        return self.header("Content-Type") or ""

    def __enter__(self) -> Call:
        return self


def call(
    app: Callable[..., Iterable[bytes]],
    query: str = "",
    *,
    path: str = "/",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    extra: dict[str, Any] | None = None,
    validate: bool = True,
) -> Call:
    """Call ``app`` in-process and return before reading the body; ``extra`` adds or replaces environ keys
    (``REMOTE_USER``, as a server would set it, or a deliberately invalid value with ``validate=False``)."""
    return Call(app, {**environ_for(path, query, method, headers, body), **(extra or {})}, validate=validate)


def fetch(app: Callable[..., Iterable[bytes]], query: str = "", **options: Any) -> Call:
    """:func:`call` (same ``options``), read to the end and closed: ``.code``, ``.header()`` and the whole ``.body``."""
    done = call(app, query, **options)
    done.read_to_end()
    return done


def logging_snapshot() -> dict[str, tuple[Any, ...]]:
    """Every logger's handlers, level, propagate and disabled flag, root included."""
    manager = logging.Logger.manager
    loggers: dict[str, logging.Logger] = {"": logging.getLogger()}
    for name, logger in list(manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            loggers[name] = logger
    return {
        name: (tuple(logger.handlers), logger.level, logger.propagate, logger.disabled)
        for name, logger in loggers.items()
    }


def snapshot() -> dict[str, int]:
    """Threads, file descriptors and logging handlers of this process now."""
    return {
        "threads": threading.active_count(),
        "fds": len(os.listdir("/proc/self/fd")),
        "handlers": sum(len(handlers) for handlers, *_ in logging_snapshot().values()),
    }
