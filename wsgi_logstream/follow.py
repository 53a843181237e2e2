"""Reading lines from a growing file or pipe: ``tail -F`` by polling, and line splitting.

:class:`LineSplitter` turns bytes into lines as they come: it holds an
unfinished line until its newline, and cuts a line longer than ``max_line``
bytes (1 MiB) into pieces instead of holding it whole, so a program that never
prints a newline cannot make the process grow without bound. Lines are decoded
as UTF-8 with ``errors="surrogateescape"``: bytes that are not UTF-8 survive
as lone surrogates, which every stream format shows escaped (``\\udcff``).

:class:`Follower` follows one path the way ``tail -F`` does: it starts with
the last ``lines`` lines, then reads what is appended; it notices truncation
(reads again from the start), rotation by rename or deletion (finishes the old
file, then follows the new one from its start) and a file that appears later.
What it notices comes out as notices beside the lines. The standard library has
no portable file-change notification, so the caller polls (``wsgi-logstream
tail --interval``); each poll is one ``stat`` and one ``fstat``.

The last lines are found by reading backwards from the end in blocks, so a
large file is never read whole.
"""

from __future__ import annotations

import logging
import os
from typing import BinaryIO, Iterator, Sequence

from .capture import cancelled, wait_cancelled

__all__ = ["MAX_LINE", "Follower", "LineSplitter", "Tail", "last_lines_offset"]

MAX_LINE = 1 << 20
READ_SIZE = 64 * 1024
_BLOCK = 64 * 1024


class LineSplitter:
    """Bytes in, complete lines out (without ``\\n`` or ``\\r\\n``), long lines cut."""

    def __init__(self, max_line: int = MAX_LINE, errors: str = "surrogateescape") -> None:
        if max_line < 4:
            raise ValueError(f"max_line must be >= 4, got {max_line!r}")
        self.max_line = max_line
        self.errors = errors
        self._buffer = bytearray()
        self._scanned = 0  # bytes at the start of the buffer known to hold no newline

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held."""
        return len(self._buffer)

    def _decode(self, data: bytes | bytearray) -> str:
        if data.endswith(b"\r"):
            data = data[:-1]
        return bytes(data).decode("utf-8", self.errors)

    def feed(self, data: bytes) -> list[str]:
        """The lines ``data`` completes (and the pieces of over-long ones)."""
        buffer = self._buffer
        buffer += data
        lines = []
        start = 0
        limit = self.max_line
        while True:
            newline = buffer.find(b"\n", max(start, self._scanned), start + limit + 1)
            if newline >= 0:
                lines.append(self._decode(buffer[start:newline]))
                start = newline + 1
                self._scanned = start
            elif len(buffer) - start > limit:
                cut = start + limit
                # Back off to a character boundary so a UTF-8 sequence is not split in two.
                while cut > start + limit - 3 and (buffer[cut] & 0xC0) == 0x80:
                    cut -= 1
                lines.append(bytes(buffer[start:cut]).decode("utf-8", self.errors))
                start = cut
                self._scanned = start
            else:
                self._scanned = len(buffer)
                break
        if start:
            del buffer[:start]
            self._scanned -= start
        return lines

    def flush(self) -> list[str]:
        """The unfinished line, if any (at end of input): it is a line too."""
        if not self._buffer:
            return []
        line = self._decode(self._buffer)
        self._buffer = bytearray()
        self._scanned = 0
        return [line]


def last_lines_offset(file: BinaryIO, lines: int) -> int:
    """Where the last ``lines`` lines of ``file`` start, reading backwards in blocks.

    An unfinished last line counts as a line, as in ``tail``.
    """
    end = file.seek(0, os.SEEK_END)
    if lines <= 0 or end == 0:
        return end
    position = end
    file.seek(end - 1)
    if file.read(1) == b"\n":
        position = end - 1  # the newline that ends the last line separates nothing
    wanted = lines
    while position > 0:
        start = max(0, position - _BLOCK)
        file.seek(start)
        block = file.read(position - start)
        index = len(block)
        while True:
            index = block.rfind(b"\n", 0, index)
            if index < 0:
                break
            wanted -= 1
            if wanted == 0:
                return start + index + 1
        position = start
    return 0


class Follower:
    """One path followed like ``tail -F``; :meth:`poll` yields what happened since the last poll.

    Each item is ``("line", text)`` or ``("notice", text)``. The generator may
    be abandoned half way (on cancel): the position is kept per read.
    """

    def __init__(self, path: str, *, lines: int = 10, max_line: int = MAX_LINE) -> None:
        self.path = path
        self.lines = lines
        self._max_line = max_line
        self._file: BinaryIO | None = None
        self._identity: tuple[int, int] | None = None
        self._position = 0
        self._splitter = LineSplitter(max_line)
        self._started = False  # the first poll replays the last lines; later opens read from the start
        self._problem: str | None = None  # the last "cannot open" notice, said once

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _read(self) -> Iterator[tuple[str, str]]:
        assert self._file is not None
        while True:
            data = self._file.read(READ_SIZE)
            if not data:
                return
            self._position += len(data)
            for line in self._splitter.feed(data):
                yield "line", line

    def _finish_file(self) -> Iterator[tuple[str, str]]:
        for line in self._splitter.flush():
            yield "line", line
        self.close()
        self._identity = None

    def poll(self) -> Iterator[tuple[str, str]]:
        try:
            stat: os.stat_result | None = os.stat(self.path)
        except OSError as exc:
            stat = None
            missing = exc.strerror or str(exc)
        if self._file is not None:
            # Lines written to the old file before it was renamed or deleted come first.
            yield from self._read()
            if stat is None or (stat.st_dev, stat.st_ino) != self._identity:
                yield from self._finish_file()
                if stat is None:
                    self._problem = f"{self.path!r} has become inaccessible: {missing}"
                    yield "notice", self._problem
                    return
                yield "notice", f"{self.path!r} has been replaced; following new file"
                self._problem = None
            else:
                size = os.fstat(self._file.fileno()).st_size
                if size < self._position:
                    for line in self._splitter.flush():
                        yield "line", line
                    yield "notice", f"{self.path}: file truncated"
                    self._file.seek(0)
                    self._position = 0
                    yield from self._read()
                return
        if stat is None:
            problem = f"cannot open {self.path!r} for reading: {missing}"
            if self._problem is None:
                self._problem = problem
                yield "notice", problem
            self._started = True
            return
        try:
            file = open(self.path, "rb", buffering=0)  # noqa: SIM115 - kept open across polls, closed in close()
        except OSError as exc:
            problem = f"cannot open {self.path!r} for reading: {exc.strerror or exc}"
            if problem != self._problem:
                self._problem = problem
                yield "notice", problem
            self._started = True
            return
        self._file = file
        opened = os.fstat(file.fileno())
        self._identity = (opened.st_dev, opened.st_ino)
        if not self._started:
            self._position = last_lines_offset(file, self.lines)
        else:
            if self._problem is not None:
                yield "notice", f"{self.path!r} has appeared; following new file"
            self._position = 0
        self._started = True
        self._problem = None
        file.seek(self._position)
        yield from self._read()


class Tail:
    """A job target that follows ``paths`` until the job is cancelled.

    Lines are logged at ``INFO`` and notices (truncated, replaced, missing) at
    ``WARNING``, on a logger named after the path as given.
    """

    def __init__(self, paths: Sequence[str], *, lines: int = 10, interval: float = 0.25) -> None:
        if isinstance(paths, str) or not paths:
            raise ValueError("paths must be a non-empty list of file names")
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.paths = list(paths)
        self.lines = lines
        self.interval = interval

    def __call__(self) -> None:
        followers = [(Follower(path, lines=self.lines), logging.getLogger(path)) for path in self.paths]
        try:
            while True:
                for follower, log in followers:
                    for kind, text in follower.poll():
                        log.log(logging.INFO if kind == "line" else logging.WARNING, text)
                        if cancelled():
                            return
                if wait_cancelled(self.interval):
                    return
        finally:
            for follower, _ in followers:
                follower.close()
