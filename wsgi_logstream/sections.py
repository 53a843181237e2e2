"""Named, nested sections of a log, which the page folds.

::

    with wsgi_logstream.section("Migrate database"):
        ...

A section is two entries of the log, its start and its end (``kind ==
"section"``, see :class:`~wsgi_logstream.channel.Entry`), so it travels like
anything else: resumable by sequence number, kept in a job's history and
journal, the same for every viewer. Its end carries a status and a duration:
``"error"`` if the block raised or an ``ERROR`` (or worse) record was logged
in the operation while it was open, else ``"ok"``.

How each format shows them (:mod:`wsgi_logstream.formats`): ndjson ``{"event": "section",
"seq", "time", "action": "start"|"end", "name", "depth"}`` (the end adds
``"status": "ok"|"error"`` and ``"elapsed"``); sse ``event: section`` with
that object; text ``-- section start: name --`` and ``-- section end: name
(ok, 1.2s) --``; html ``<details open class="sec" data-seq data-depth>``
with ``<summary>name</summary>``, and at the end a line
``<span class="sec-end ok|error" data-status data-elapsed>`` then
``</details>``, inside the log's ``<pre>`` (not conforming, as ``<pre>``
holds phrasing content, but every parser nests it there and ``</pre>``
closes one left open). The start goes out before the outcome is known, so
with JavaScript off every section stays open; the script folds clean ones.

Sections nest per context (a :class:`contextvars.ContextVar` holds the open
ones), so a thread started with :class:`wsgi_logstream.Thread` opens its own
inside its parent's. Outside a stream :func:`section` does nothing. A log
that cannot hold section entries (a third-party store's writer without
``append_section``) gets a plain line at the start and the end instead.

A command's output opens and closes them with GitHub Actions' workflow
commands, ``::group::name`` and ``::endgroup::`` (:mod:`wsgi_logstream.command`).
"""

from __future__ import annotations

import contextvars
import time
from types import TracebackType

from .capture import Sink, current_sink

__all__ = ["Section", "section", "start_section"]

_open: contextvars.ContextVar[tuple[Section, ...]] = contextvars.ContextVar("wsgi_logstream_sections", default=())


class Section:
    """An open section; :meth:`end` closes it (once)."""

    __slots__ = ("_errors", "_sink", "_started", "depth", "ended", "name", "status")

    def __init__(self, sink: Sink | None, name: str, depth: int) -> None:
        self._sink = sink
        self.name = name
        self.depth = depth
        self._started = time.monotonic()
        self._errors = sink.errors if sink is not None else 0
        self.ended = False
        self.status: str | None = None

    def __repr__(self) -> str:
        return f"<Section {self.name!r} depth={self.depth} status={self.status}>"

    def end(self, *, failed: bool = False) -> str:
        """Close the section; its status is ``"error"`` if ``failed`` or an ERROR was logged in it."""
        if self.ended:
            return self.status or "ok"
        self.ended = True
        stack = _open.get()
        if self in stack:
            _open.set(tuple(s for s in stack if s is not self))
        sink = self._sink
        self.status = "error" if failed or (sink is not None and sink.errors > self._errors) else "ok"
        if sink is not None:
            _write(sink, "end", self.name, self.depth, self.status, time.monotonic() - self._started)
        return self.status


def start_section(name: str) -> Section:
    """Open a section in the calling context's stream; close it with :meth:`Section.end`."""
    if not isinstance(name, str):
        raise TypeError(f"a section's name must be a string, got {name!r}")
    sink = current_sink()
    stack = _open.get()
    opened = Section(sink, sink.redacted(name) if sink is not None else name, len(stack) + 1)
    if sink is not None:
        _open.set((*stack, opened))
        _write(sink, "start", opened.name, opened.depth, "", 0.0)
    return opened


class section:  # a context manager, named like contextlib's
    """``with section("name"):`` -- a section of the log, folded on the page; see the module docstring."""

    __slots__ = ("_name", "_section")

    def __init__(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"a section's name must be a string, got {name!r}")
        self._name = name
        self._section: Section | None = None

    def __enter__(self) -> Section:
        self._section = start_section(self._name)
        return self._section

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._section is not None:
            self._section.end(failed=kind is not None and not issubclass(kind, GeneratorExit))


def _write(sink: Sink, action: str, name: str, depth: int, status: str, elapsed: float) -> None:
    channel = sink.channel
    if channel.closed:
        return
    append = getattr(channel, "append_section", None)
    if append is not None:
        append(time.time(), action, name, depth, status, elapsed)
        return
    # A writer that knows no sections: say it in a line rather than say nothing.
    text = f"section start: {name}" if action == "start" else f"section end: {name} ({status}, {elapsed:.1f}s)"
    channel.append_log(time.time(), 20, "INFO", "wsgi_logstream", text, text)
