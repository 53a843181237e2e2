"""Carriage returns: a line rewritten with CR is shown as its last state.

A progress bar (tqdm, pip, curl, docker) draws itself by writing ``\\r`` and
the line again, thousands of times, before its final newline. A terminal
shows one line that moves; a log viewer that turns each ``\\r`` into a line
break shows thousands. Here:

* **A logged message holding CR** (``log.info("10%\\r50%\\r100%")``) is kept
  as logged: NDJSON's ``message`` and ``line`` (and SSE with ``detail=1``)
  carry the raw text for scripts, and SSE its lines as several ``data:``
  fields as before. The text and HTML formats show each line of it at its
  last state, as a terminal would: :func:`last_state`
  keeps, of each line (``\\r\\n`` and ``\\n`` end lines), the text after its
  last CR that is followed by text (a trailing CR rewrites nothing). When the
  record's message is part of its formatted line, only the message is folded,
  so the timestamp and level in front of it stay.

* **A command's output** (``wsgi-logstream run``, :class:`RewriteSplitter`)
  is read as it comes, not line by line: while a line is being rewritten its
  current state is sent, at most every :data:`PARTIAL_INTERVAL` seconds, as a
  ``partial`` entry, and its final state (when its newline comes) as an
  ordinary record. The channel gives each state of one line the same sequence
  number and keeps only the newest (:meth:`~wsgi_logstream.channel.Channel.append_partial`),
  so the intermediate states never count as lines of the history and a bar
  cannot fill ``max_history``. A line's bytes before its last CR are dropped
  as they are read, so a bar that runs for hours without a newline holds one
  state in memory, not all of them (NDJSON then carries the final state of
  such a line, not every state it went through).

How the formats show it (:mod:`wsgi_logstream.formats`): a ``partial`` entry (a line a command is still rewriting) is,
in ndjson, the record's object with ``"partial": true``; in sse, ``event:
partial`` with that object and no ``id:`` (so ``Last-Event-ID`` stays at the
last complete line); in html, ``<span class="r i p" data-partial="1"
data-seq="N">``; in text, nothing. Its next state, or its final record, has
the same seq and replaces it; the page's style hides a state another element
follows, for JavaScript off.
"""

from __future__ import annotations

import re

__all__ = ["PARTIAL_INTERVAL", "RewriteSplitter", "fold", "last_state"]

#: Seconds between two states of a rewritten line sent to viewers (a few a second: a bar that moves).
PARTIAL_INTERVAL = 0.25

_BREAKS = re.compile(r"\r\n|\n")
_STATE = re.compile(r"[^\r]*\r+(?=[^\r\n])")  # a state that a later CR, followed by text, rewrites


def last_state(text: str) -> str:
    """``text`` with each of its lines at the state a terminal would end on.

    >>> last_state("10%\\r50%\\r100%")
    '100%'
    >>> last_state("a\\r\\nb\\rc\\r")
    'a\\nc'
    """
    if "\r" not in text:
        return text
    lines = _BREAKS.split(text)
    return "\n".join(_STATE.sub("", line).rstrip("\r") if "\r" in line else line for line in lines)


def fold(line: str, message: str) -> str:
    """A record's ``line`` as the text and HTML formats show it: the parts rewritten with CR at their last state.

    Only its ``message`` is folded when the line holds it, so the time and level in front of it stay.
    """
    if "\r" not in line:
        return line
    at = line.rfind(message) if message and "\r" in message else -1
    if at >= 0:
        return line[:at] + last_state(message) + line[at + len(message) :]
    return last_state(line)


class RewriteSplitter:
    """Bytes of a command's output in, lines out; a line rewritten with CR keeps only its current state.

    :meth:`feed` returns the lines ``data`` completes, each as ``(text,
    rewritten)``; :meth:`partial` is the current state of the unfinished line
    while it is being rewritten (None otherwise, or if unchanged since it was
    last asked). Lines longer than ``max_line`` bytes are cut into pieces, as
    :class:`~wsgi_logstream.follow.LineSplitter` does; bytes are decoded with
    ``errors``.
    """

    def __init__(self, max_line: int, errors: str = "surrogateescape") -> None:
        if max_line < 4:
            raise ValueError(f"max_line must be >= 4, got {max_line!r}")
        self.max_line = max_line
        self.errors = errors
        self._line = bytearray()  # the unfinished line's current state
        self._cr = False  # a CR was read and no text yet after it: the next text rewrites the line
        self._rewritten = False  # the unfinished line was rewritten at least once
        self._changed = False  # its state changed since partial() was last asked

    def feed(self, data: bytes) -> list[tuple[str, bool]]:
        lines: list[tuple[str, bool]] = []
        line = self._line
        position = 0
        size = len(data)
        next_cr = next_lf = -1  # where the next CR and LF are (found once, not once per line)
        while position < size:
            if self._cr and data[position] == 0x0A:  # CR LF: a line break, also across two reads
                self._cr = False
                lines.append(self._finish())
                position += 1
                continue
            if next_cr < position:
                next_cr = data.find(b"\r", position)
                if next_cr < 0:
                    next_cr = size
            if next_lf < position:
                next_lf = data.find(b"\n", position)
                if next_lf < 0:
                    next_lf = size
            stop = min(next_cr, next_lf)
            if stop > position:
                if self._cr:  # text after a CR: the line is drawn again from its start
                    self._cr = False
                    del line[:]
                    self._rewritten = True
                line += data[position:stop]
                self._changed = True
                while len(line) > self.max_line:
                    cut = self._cut(line)
                    lines.append((self._decode(line[:cut]), self._rewritten))
                    del line[:cut]
                    self._rewritten = False
            if stop == size:
                break
            if stop == next_lf:
                self._cr = False
                lines.append(self._finish())
            else:
                self._cr = True
            position = stop + 1
        return lines

    def _finish(self) -> tuple[str, bool]:
        done = (self._decode(self._line), self._rewritten)
        del self._line[:]
        self._rewritten = self._changed = False
        return done

    def partial(self) -> str | None:
        """The unfinished line's state if it is being rewritten and changed since last asked."""
        if not (self._rewritten and self._changed and self._line):
            return None
        self._changed = False
        return self._decode(self._line)

    def flush(self) -> list[tuple[str, bool]]:
        """The unfinished line, if any (at end of input): it is a line too."""
        if not self._line:
            return []
        done = [(self._decode(self._line), self._rewritten)]
        self._line = bytearray()
        self._cr = self._rewritten = self._changed = False
        return done

    def _decode(self, data: bytes | bytearray) -> str:
        return bytes(data).decode("utf-8", self.errors)

    def _cut(self, line: bytearray) -> int:
        cut = self.max_line
        # Back off to a character boundary so a UTF-8 sequence is not split in two.
        while cut > self.max_line - 3 and (line[cut] & 0xC0) == 0x80:
            cut -= 1
        return cut
