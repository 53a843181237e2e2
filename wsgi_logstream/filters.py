"""``?level=WARNING&grep=REGEX``: the server-side filter every format takes.

The filter sits between a log reader and the format (:class:`FilteredReader`
wraps any :class:`~wsgi_logstream.store.LogReader`), so it applies alike to the
replayed history and to live lines, for a plain stream and a job, and to
``curl`` as much as to the page. What it leaves out is not "dropped": the
reader's ``missed`` still counts only lines the log lost, and sequence numbers
stay the log's own, so an SSE stream's ids (and ``Last-Event-ID``) and
``?since=`` resume exactly as without a filter.

Only records are filtered (``log`` entries and the ``partial`` states of a
line being rewritten): progress and section events always pass, so the shape
of the log (its sections, its bar) stays intact around the lines that match.

Python's :mod:`re` has no timeout, and a stranger's pattern runs in the
server's thread, so its cost is bounded five ways: a pattern is at most
:data:`MAX_PATTERN` characters; a repetition of something that itself repeats
or alternates (``(a+)+``, ``(a|aa)*``, the shapes that backtrack
exponentially) is refused with a ``400`` that says so; a pattern holds at most
:data:`MAX_REPEATS` unbounded repetitions (``foo.*bar[0-9]+`` is fine;
``a*a*a*b`` backtracks in O(n^4) and is refused); the ways a pattern may match
at one place, the product of its repetitions' counts (``a?`` two, ``\\d{1,3}``
three, an unbounded or wide one :data:`UNBOUNDED_CHOICES`), are at most
:data:`MAX_CHOICES` (``a?`` 18 times, or ``a{0,1000}`` three times, is refused);
atomic groups, possessive repetitions and conditionals are looked into as plain
groups are; and each line is searched on
its first :data:`MAX_SEARCHED` characters only. The worst that is left, two
overlapping repetitions on an adversarial line (``a*a*b`` over a thousand
``a``), costs about half a second per such line on this project's test
machine; patterns that fail fast on ordinary lines cost microseconds.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Sequence

from .channel import Entry, Summary
from .errors import HttpError

if TYPE_CHECKING:
    from .formats import Format
    from .store import LogReader

__all__ = [
    "MAX_CHOICES",
    "MAX_PATTERN",
    "MAX_REPEATS",
    "MAX_SEARCHED",
    "UNBOUNDED_CHOICES",
    "FilteredReader",
    "LineFilter",
    "attachment",
    "compile_grep",
    "parse_filter",
]

#: The longest ``grep`` pattern accepted, in characters.
MAX_PATTERN = 200
#: Characters of each line that ``grep`` searches (a longer line is searched on its start).
MAX_SEARCHED = 1000
#: Unbounded repetitions (``*``, ``+``, ``{n,}``) a ``grep`` pattern may hold.
MAX_REPEATS = 2
#: What an unbounded repetition, or a bounded one over a wider range, counts as among a pattern's choices
#: (:data:`MAX_CHOICES`): over :data:`MAX_SEARCHED` characters two of them (``a*a*b``) cost about what 14 optional
#: characters (``a?`` 14 times, 2**14 ways) cost.
UNBOUNDED_CHOICES = 128
#: The most ways a ``grep`` pattern may match at one place (the product of its repetitions' counts): four times
#: ``a*a*b``. Bounded repetitions backtrack too: ``a{0,1000}`` three times took 32 s a line, ``a?`` 18 times 1.8 s.
MAX_CHOICES = 4 * UNBOUNDED_CHOICES**2
_FILTERED_KINDS = ("log", "partial")

try:  # the standard library's own parser: what ``re.compile`` builds from the pattern
    from re import _constants as _sre_constants  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover (Python < 3.11)
    _sre_parse = None
    _sre_constants = None


class LineFilter:
    """Which records a reader keeps: ``levelno >= level`` and ``grep`` found in the line."""

    __slots__ = ("grep", "level", "pattern")

    def __init__(self, level: int = 0, grep: str | None = None) -> None:
        self.level = level
        self.pattern = grep
        self.grep: re.Pattern[str] | None = None if grep is None else re.compile(grep)

    def __repr__(self) -> str:
        return f"<LineFilter level={self.level} grep={self.pattern!r}>"

    def keeps(self, entry: Entry) -> bool:
        if entry.kind not in _FILTERED_KINDS:
            return True
        if entry.levelno < self.level:
            return False
        if self.grep is None:
            return True
        line = entry.line
        return self.grep.search(line if len(line) <= MAX_SEARCHED else line[:MAX_SEARCHED]) is not None


def _level(value: str) -> int:
    if value.isascii() and value.isdigit() and len(value) <= 3:
        return int(value)
    number = logging.getLevelName(value.upper())
    if isinstance(number, int):
        return number
    raise HttpError(400, f"level {value[:40]!r} is not a level: use a name (DEBUG, INFO, WARNING, ERROR) or a number")


def _children(op: Any, arg: Any) -> list[Any]:
    """The parsed sub-patterns below one item, whatever holds them.

    Every construct that holds a sub-pattern is here, so that none hides one
    from the checks: an atomic group ``(?>...)``, a possessive repetition and a
    conditional ``(?(1)yes|no)`` backtrack inside as much as a plain group does.
    """
    if op is _sre_constants.SUBPATTERN:
        return [arg[-1]]
    if op is _sre_constants.BRANCH:
        return list(arg[1])
    if op in (_sre_constants.MAX_REPEAT, _sre_constants.MIN_REPEAT, _POSSESSIVE):
        return [arg[2]]
    if op in (_sre_constants.ASSERT, _sre_constants.ASSERT_NOT):
        return [arg[1]]
    if op is _ATOMIC:
        return [arg]
    if op is _sre_constants.GROUPREF_EXISTS:
        return [branch for branch in arg[1:] if branch is not None]
    return []


def _repeats(items: Any) -> bool:
    """Whether the parsed pattern ``items`` repeats or alternates anywhere."""
    for op, arg in items:
        if op in (_sre_constants.MAX_REPEAT, _sre_constants.MIN_REPEAT, _POSSESSIVE) and arg[1] > 1:
            return True
        if op in (_sre_constants.BRANCH, _sre_constants.GROUPREF_EXISTS):
            return True
        if any(_repeats(child) for child in _children(op, arg)):
            return True
    return False


def _nested_repetition(items: Any) -> bool:
    """A repetition (``*``, ``+``, ``{n,}``) of something that repeats or alternates."""
    for op, arg in items:
        if op in (_sre_constants.MAX_REPEAT, _sre_constants.MIN_REPEAT) and arg[1] > 1 and _repeats(arg[2]):
            return True
        if any(_nested_repetition(child) for child in _children(op, arg)):
            return True
    return False


def _unbounded(items: Any) -> int:
    """How many unbounded repetitions the parsed pattern holds, at any depth."""
    count = 0
    for op, arg in items:
        if op in (_sre_constants.MAX_REPEAT, _sre_constants.MIN_REPEAT):
            count += arg[1] is _sre_constants.MAXREPEAT
        count += sum(_unbounded(child) for child in _children(op, arg))
    return count


def _choices(items: Any) -> int:
    """About how many ways the pattern may match at one place: what backtracking may try before it fails.

    Each repetition that may take more or fewer (``a?``, ``\\d{1,3}``, ``a*``)
    multiplies by how many counts it may take, an unbounded one or one over a
    wide range by :data:`UNBOUNDED_CHOICES`; of alternatives, the costliest
    counts. A possessive repetition takes one count.
    """
    total = 1
    for op, arg in items:
        if op in (_sre_constants.MAX_REPEAT, _sre_constants.MIN_REPEAT):
            low, high = arg[0], arg[1]
            wide = high is _sre_constants.MAXREPEAT or high - low + 1 > UNBOUNDED_CHOICES
            total *= (UNBOUNDED_CHOICES if wide else high - low + 1) * _choices(arg[2])
        elif op in (_sre_constants.BRANCH, _sre_constants.GROUPREF_EXISTS):
            total *= max((_choices(child) for child in _children(op, arg)), default=1)
        else:
            for child in _children(op, arg):
                total *= _choices(child)
    return total


_POSSESSIVE = getattr(_sre_constants, "POSSESSIVE_REPEAT", object())  # atomic already: never backtracks into
_ATOMIC = getattr(_sre_constants, "ATOMIC_GROUP", object())


def compile_grep(pattern: str) -> str:
    """``pattern`` checked (a ``400`` naming it if refused), returned as given."""
    shown = pattern if len(pattern) <= 60 else pattern[:57] + "..."
    if len(pattern) > MAX_PATTERN:
        raise HttpError(400, f"grep pattern longer than {MAX_PATTERN} characters")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise HttpError(400, f"grep {shown!r} is not a valid regular expression: {exc}") from None
    parsed = _sre_parse.parse(pattern) if _sre_parse is not None else None
    if parsed is not None and _unbounded(parsed) > MAX_REPEATS:
        raise HttpError(
            400,
            f"grep {shown!r} has more than {MAX_REPEATS} unbounded repetitions (*, +, {{n,}}): "
            "such patterns can take polynomial time per line, so they are refused",
        )
    if parsed is not None and _nested_repetition(parsed):
        raise HttpError(
            400,
            f"grep {shown!r} repeats a group that itself repeats or alternates (like (a+)+ or (a|b.)*): "
            "such patterns can take exponential time, so they are refused; write the group without the outer repetition",
        )
    if parsed is not None and _choices(parsed) > MAX_CHOICES:
        raise HttpError(
            400,
            f"grep {shown!r} has too many optional or variable repetitions (?, {{n,m}}, *, +) in a row: "
            "such patterns can take exponential time, so they are refused",
        )
    return pattern


def parse_filter(params: dict[str, str]) -> LineFilter | None:
    """The filter ``?level=`` and ``?grep=`` ask for, or None; a bad value is a ``400``."""
    level_value = params.get("level", "")
    grep_value = params.get("grep", "")
    if not level_value and not grep_value:
        return None
    level = _level(level_value) if level_value else 0
    grep = compile_grep(grep_value) if grep_value else None
    return LineFilter(level, grep)


class FilteredReader:
    """A :class:`~wsgi_logstream.store.LogReader` that passes on only what ``keep`` keeps.

    Everything else is the wrapped reader's: its cursor, what it missed, its end.
    """

    def __init__(self, reader: LogReader, line_filter: LineFilter) -> None:
        self._reader = reader
        self._keeps = line_filter.keeps

    @property
    def missed(self) -> int:
        return self._reader.missed

    @property
    def at_end(self) -> bool:
        return self._reader.at_end

    @property
    def summary(self) -> Summary | None:
        return self._reader.summary

    @property
    def next_seq(self) -> int:
        return self._reader.next_seq

    def take(self) -> tuple[int, Sequence[Entry]]:
        missed, batch = self._reader.take()
        return missed, [entry for entry in batch if self._keeps(entry)]

    def wait(self, timeout: float | None) -> None:
        self._reader.wait(timeout)

    def close(self) -> None:
        self._reader.close()


_EXTENSIONS = {"text": "log", "html": "html", "sse": "txt", "ndjson": "ndjson"}
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def attachment(title: str, fmt: Format) -> str:
    """A ``Content-Disposition`` that saves the log as a file named after ``title``."""
    stem = _UNSAFE_NAME.sub("-", title).strip("-.")[:60] or "log"
    return f'attachment; filename="{stem}.{_EXTENSIONS.get(fmt.name, "txt")}"'
