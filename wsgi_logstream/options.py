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
import time
from dataclasses import dataclass, field
from typing import Any

from .redact import DEFAULT_REDACTIONS, Redactor, redactor

__all__ = ["DEFAULT_FORMAT", "DEFAULT_REDACTIONS", "Options"]

DEFAULT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

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
            values["redact"] = redactor(kwargs["redact"])
            if values["redact"] is not None and "title" in values:  # shown in every format and the job list
                values["title"] = values["redact"](values["title"])
        return cls(**values)
