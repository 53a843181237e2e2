"""The options every stream takes, validated once, at construction.

``Options.from_kwargs`` is the one place that checks and normalises what a
user passed (a format string becomes a ``logging.Formatter``, a list of
patterns becomes one redacting callable), so a mistake is a ``ValueError`` or
``TypeError`` naming the option when the app is built, not a traceback on the
first request.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Pattern, Union

__all__ = ["DEFAULT_FORMAT", "DEFAULT_REDACTIONS", "REDACTED", "Options", "Redactor"]

DEFAULT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

#: Patterns for common secrets. Off by default; pass ``redact=True`` (or this
#: tuple, extended) to replace what they match with ``[redacted]``. Where a
#: pattern has a group named ``secret`` only that group is replaced, so the
#: key that names it stays readable (``password=[redacted]``). Each is linear
#: in the length of the line (no nested repetition), so a 10 MB line is safe;
#: each starts with a literal or a one-character lookahead so the regular
#: expression engine can skip ahead (about 10 µs for a 100-character line).
DEFAULT_REDACTIONS: tuple[str, ...] = (
    # Authorization: Bearer x / Basic x / any scheme, and a bare "Bearer x".
    r"(?i)(?=a)authorization[\"']?\s*[:=]\s*[\"']?(?:[A-Za-z]+\s+)?(?P<secret>[^\s\"',;]+)",
    r"(?i)(?=b)bearer\s+(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)",
    # key=value, key: value, "key": "value", also inside longer names (DB_PASSWORD, client_secret).
    r"(?i)(?=[pstack])(?:pass(?:word|wd)|pwd|secret|token|(?:api|access|private)[_-]?key|credentials?)"
    r"[\"']?\s*[:=]\s*[\"']?(?P<secret>[^\s\"'&,;]+)",
    r"(?i)(?=[sc])(?:set-)?cookie\s*:\s*(?P<secret>[^\r\n]+)",
    # Credentials in a URL: scheme://user:password@host keeps the user.
    r"://[^/\s:@]+:(?P<secret>[^/\s@]+)@",
    # Well-known token shapes: AWS key ids, GitHub, Slack, Stripe, Google, JWTs.
    r"A[KS]IA[0-9A-Z]{16}",
    r"gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}",
    r"xox[abposr]-[A-Za-z0-9-]{10,}",
    r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
    r"AIza[0-9A-Za-z_\-]{35}",
    r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
    # The body of a PEM private key block.
    r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----(?P<secret>[A-Za-z0-9+/=\s]+)",
)

REDACTED = "[redacted]"

Redactor = Callable[[str], str]
RedactSpec = Union[None, bool, str, Pattern[str], Redactor, Iterable[Union[str, Pattern[str]]]]

_ON_DISCONNECT = ("continue", "cancel")


def _positive(name: str, value: Any, *, integer: bool, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        want = "an int" if integer else "a number"
        raise TypeError(f"{name} must be {want}{' or None' if allow_none else ''}, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def _level(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError(f"level must be an int or a level name, got {value!r}")
    if isinstance(value, str):
        number = logging.getLevelName(value.upper())
        if not isinstance(number, int):
            raise ValueError(f"level {value!r} is not a logging level name")
        return number
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"level must be >= 0, got {value!r}")
        return value
    raise TypeError(f"level must be an int or a level name, got {value!r}")


def _loggers(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    try:
        names = tuple(value)
    except TypeError:
        raise TypeError(f"loggers must be a list of logger names or None, got {value!r}") from None
    if not names:
        raise ValueError("loggers must name at least one logger (None captures every logger)")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"loggers must be non-empty strings, got {name!r}")
    return names


class LineFormatter(logging.Formatter):
    """A ``logging.Formatter`` whose ``asctime`` formats each second once.

    ``time.strftime`` was 8% of a busy operation's thread; records logged in
    the same second share it. The output is the standard formatter's, byte
    for byte, and a ``datefmt`` or a changed ``converter`` turns the cache off.
    """

    _cached: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        msec_format = self.default_msec_format
        if datefmt or msec_format is None or self.converter is not time.localtime:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached = self._cached
        if cached[0] != second:
            cached = self._cached = (second, time.strftime(self.default_time_format, self.converter(record.created)))
        return msec_format % (cached[1], record.msecs)


def _formatter(value: Any) -> logging.Formatter:
    if value is None:
        return LineFormatter(DEFAULT_FORMAT)
    if isinstance(value, logging.Formatter):
        return value
    if isinstance(value, str):
        try:
            formatter = LineFormatter(value)
            formatter.format(logging.LogRecord("name", logging.INFO, __file__, 1, "message", None, None))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"formatter {value!r} is not a valid logging format: {exc}") from None
        return formatter
    raise TypeError(f"formatter must be a logging.Formatter or a format string, got {value!r}")


def _redactor(value: Any) -> Redactor | None:
    if value is None or value is False:
        return None
    if value is True:
        value = DEFAULT_REDACTIONS
    if callable(value) and not isinstance(value, (str, re.Pattern)):
        return value  # type: ignore[no-any-return]
    if isinstance(value, (str, re.Pattern)):
        value = (value,)
    try:
        patterns = tuple(value)
    except TypeError:
        raise TypeError(f"redact must be patterns, a callable or True, got {value!r}") from None
    compiled: list[Pattern[str]] = []
    for pattern in patterns:
        if isinstance(pattern, re.Pattern):
            if not isinstance(pattern.pattern, str):
                raise TypeError(f"redact patterns must be str patterns, got {pattern!r}")
            compiled.append(pattern)
        elif isinstance(pattern, str):
            try:
                compiled.append(re.compile(pattern))
            except re.error as exc:
                raise ValueError(f"redact pattern {pattern!r} is not a valid regular expression: {exc}") from None
        else:
            raise TypeError(f"redact patterns must be strings or compiled patterns, got {pattern!r}")
    if not compiled:
        return None
    return _PatternRedactor(tuple(compiled))


class _PatternRedactor:
    """Replaces every match of each pattern (or its ``secret`` group) with ``[redacted]``."""

    def __init__(self, patterns: tuple[Pattern[str], ...]) -> None:
        self.patterns = patterns

    def __call__(self, text: str) -> str:
        for pattern in self.patterns:
            text = pattern.sub(_replace_secret if "secret" in pattern.groupindex else REDACTED, text)
        return text


def _replace_secret(match: re.Match[str]) -> str:
    start, end = match.span("secret")
    if start < 0:  # the group did not take part in this match
        return REDACTED
    whole = match.string
    return whole[match.start() : start] + REDACTED + whole[end : match.end()]


@dataclass(frozen=True)
class Options:
    """Validated stream options; see :func:`wsgi_logstream.logstream` for each."""

    level: int = logging.INFO
    loggers: tuple[str, ...] | None = None
    formatter: logging.Formatter = field(default_factory=lambda: LineFormatter(DEFAULT_FORMAT))
    heartbeat: float = 15.0
    max_buffer: int = 10_000
    max_concurrent: int | None = None
    on_disconnect: str = "continue"
    title: str = "Log stream"
    timeout: float | None = None
    traceback: bool = True
    ansi: bool = False
    redact: Redactor | None = None

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> Options:
        unknown = set(kwargs) - set(cls.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        if "level" in kwargs:
            values["level"] = _level(kwargs["level"])
        if "loggers" in kwargs:
            values["loggers"] = _loggers(kwargs["loggers"])
        values["formatter"] = _formatter(kwargs.get("formatter"))
        if "heartbeat" in kwargs:
            values["heartbeat"] = float(_positive("heartbeat", kwargs["heartbeat"], integer=False))
        if "max_buffer" in kwargs:
            values["max_buffer"] = _positive("max_buffer", kwargs["max_buffer"], integer=True)
        if "max_concurrent" in kwargs:
            values["max_concurrent"] = _positive(
                "max_concurrent", kwargs["max_concurrent"], integer=True, allow_none=True
            )
        if "on_disconnect" in kwargs:
            if kwargs["on_disconnect"] not in _ON_DISCONNECT:
                raise ValueError(f"on_disconnect must be 'continue' or 'cancel', got {kwargs['on_disconnect']!r}")
            values["on_disconnect"] = kwargs["on_disconnect"]
        if "title" in kwargs:
            if not isinstance(kwargs["title"], str):
                raise TypeError(f"title must be a string, got {kwargs['title']!r}")
            values["title"] = kwargs["title"]
        if "timeout" in kwargs:
            values["timeout"] = _positive("timeout", kwargs["timeout"], integer=False, allow_none=True)
        for flag in ("traceback", "ansi"):
            if flag in kwargs:
                if not isinstance(kwargs[flag], bool):
                    raise TypeError(f"{flag} must be True or False, got {kwargs[flag]!r}")
                values[flag] = kwargs[flag]
        if "redact" in kwargs:
            values["redact"] = _redactor(kwargs["redact"])
        return cls(**values)
