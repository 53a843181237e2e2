"""In-process helpers for the core tests: call a WSGI app by hand, read SSE as a browser does.

``call`` drives an app the way a server does (environ, ``start_response``, an
iterable the caller reads chunk by chunk and must close), so a test can read
part of a stream, hold several streams open at once, or close one mid-way.
``parse_sse`` follows the WHATWG EventSource parsing rules, so a test sees the
events a browser would dispatch, not what a regular expression guesses.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any, Callable, Iterable, Iterator
from wsgiref.util import setup_testing_defaults

with warnings.catch_warnings():
    # WebOb imports the stdlib ``cgi`` module, deprecated since Python 3.11;
    # the suite turns warnings into errors, so import it once here, quietly.
    warnings.simplefilter("ignore", DeprecationWarning)
    from webtest import TestApp

__all__ = ["Call", "SseEvent", "TestApp", "call", "logging_snapshot", "parse_sse"]


class Call:
    """One request made in-process: its status, headers and body iterator."""

    def __init__(self, app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> None:
        self.environ = environ
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.result = app(environ, self._start_response)
        self._iterator: Iterator[bytes] = iter(self.result)
        self.chunks: list[bytes] = []
        self.closed = False

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
        return int(self.status.split()[0])

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, f"header {name} sent {len(values)} times"
        return values[0] if values else None

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
        for chunk in self._iterator:
            assert isinstance(chunk, bytes)
            self.chunks.append(chunk)
        self.close()
        return self.body

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def close(self) -> None:
        """Close the iterable once, as a server does (tests that close twice call ``result.close()``)."""
        if self.closed:
            return
        self.closed = True
        close = getattr(self.result, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Call:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def environ_for(
    path: str = "/", query: str = "", method: str = "GET", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query}
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    setup_testing_defaults(environ)
    return environ


def call(
    app: Callable[..., Iterable[bytes]],
    query: str = "",
    *,
    path: str = "/",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Call:
    """Call ``app`` in-process; ``extra`` adds environ keys (``REMOTE_USER``, as a server would set it)."""
    return Call(app, {**environ_for(path, query, method, headers), **(extra or {})})


class SseEvent:
    def __init__(self, type: str, data: str, last_event_id: str) -> None:
        self.type = type
        self.data = data
        self.last_event_id = last_event_id

    def __repr__(self) -> str:
        return f"SseEvent({self.type!r}, {self.data!r}, id={self.last_event_id!r})"


_LINES = re.compile(r"\r\n|\r|\n")


def parse_sse(body: bytes) -> list[SseEvent]:
    """The events an EventSource dispatches for ``body`` (WHATWG HTML, "Parsing an event stream")."""
    text = body.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    events: list[SseEvent] = []
    data: list[str] = []
    event_type = ""
    last_id = ""
    lines = _LINES.split(text)
    # A last line without its end-of-line is incomplete and never processed.
    for line in lines[:-1]:
        if line == "":
            if data:
                events.append(SseEvent(event_type or "message", "\n".join(data), last_id))
            data, event_type = [], ""
            continue
        if line.startswith(":"):
            continue
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            event_type = value
        elif field == "id" and "\0" not in value:
            last_id = value
        # "retry" and unknown fields dispatch nothing.
    return events


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
