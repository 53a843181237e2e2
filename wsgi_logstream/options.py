"""The options every stream takes, typed once and validated once, at construction.

:class:`StreamOptions` and :class:`JobsOptions` name every option with its
type, so the factories take ``**options: Unpack[StreamOptions]`` and a caller's
checker catches a misspelt one. ``Options.from_kwargs`` (and
``split_jobs_options`` for jobs) is the one place, for the library and the
command line alike, that checks and normalises what a user passed (a format string becomes a ``logging.Formatter``, a list of
patterns becomes one redacting callable), so a mistake is a ``ValueError`` or
``TypeError`` naming the option when the app is built, not a traceback on the
first request.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping, TypedDict

from .guard import normalise_origins
from .redact import DEFAULT_REDACTIONS, Redactor, RedactSpec, redactor

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from .record import JobRecord

__all__ = [
    "DEFAULT_FORMAT",
    "DEFAULT_QUEUE_TIMEOUT",
    "DEFAULT_REDACTIONS",
    "JOBS_OPTIONS",
    "STORE_OPTIONS",
    "Authorize",
    "JobsSettings",
    "Options",
    "StreamOptions",
    "check_store_options",
    "default_owner",
    "positive",
]

DEFAULT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

_ON_DISCONNECT = ("continue", "cancel")


def positive(name: str, value: Any, *, integer: bool, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        want = "an int" if integer else "a number"
        raise TypeError(f"{name} must be {want}{' or None' if allow_none else ''}, got {value!r}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float: as infinite
        finite = False
    if not (value > 0 and finite):
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


Authorize = Callable[["WSGIEnvironment", str, "JobRecord | None"], bool]
"""``authorize(environ, action, job)``: may this request do ``action``? See :mod:`wsgi_logstream.errors`."""

#: ``owner(environ)``: who starts a job.
Owner = Callable[["WSGIEnvironment"], "str | None"]
#: ``form_fields(environ)``: hidden fields for the forms the pages render (a CSRF token).
FormFields = Callable[["WSGIEnvironment"], Mapping[str, str]]


class StreamOptions(TypedDict, total=False):
    """The keyword options of :func:`~wsgi_logstream.logstream`, typed for the caller's checker.

    A misspelt option is a type error in the caller's editor (``**options:
    Unpack[StreamOptions]``) and a ``TypeError`` naming it at run time.
    """

    level: int | str
    loggers: str | Iterable[str] | None
    formatter: logging.Formatter | str | None
    heartbeat: float
    max_buffer: int
    max_concurrent: int | None
    on_disconnect: Literal["continue", "cancel"]
    title: str
    timeout: float | None
    traceback: bool
    ansi: bool
    redact: RedactSpec
    authorize: Authorize | None
    allowed_origins: Iterable[str]


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
    authorize: Authorize | None = None
    allowed_origins: frozenset[str] = frozenset()

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> Options:
        """Check and normalise stream options; ``TypeError``/``ValueError`` naming a bad one."""
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
            values["heartbeat"] = float(positive("heartbeat", kwargs["heartbeat"], integer=False))
        if "max_buffer" in kwargs:
            values["max_buffer"] = positive("max_buffer", kwargs["max_buffer"], integer=True)
        if "max_concurrent" in kwargs:
            values["max_concurrent"] = positive(
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
            values["timeout"] = positive("timeout", kwargs["timeout"], integer=False, allow_none=True)
        for flag in ("traceback", "ansi"):
            if flag in kwargs:
                values[flag] = _flag(flag, kwargs[flag])
        if "redact" in kwargs:
            values["redact"] = redactor(kwargs["redact"])
            if values["redact"] is not None and "title" in values:  # shown in every format and the job list
                values["title"] = values["redact"](values["title"])
        if "authorize" in kwargs:
            values["authorize"] = _callable_or_none("authorize", kwargs["authorize"])
        if "allowed_origins" in kwargs:
            values["allowed_origins"] = normalise_origins(kwargs["allowed_origins"])
        return cls(**values)


#: Seconds a job handed to a task queue may stay ``queued`` before it is ``lost``: a broker that lost the
#: message, or no worker running, must not leave its viewers waiting for ever.
DEFAULT_QUEUE_TIMEOUT = 3600.0


@dataclass(frozen=True)
class JobsSettings:
    """The validated options only :func:`~wsgi_logstream.jobs` takes (the store's come apart)."""

    allow_start: bool = True
    owner: Owner | None = None
    form_fields: FormFields | None = None
    #: Seconds a queued job may wait for a worker to begin it (None: until its ``timeout``, if any).
    queue_timeout: float | None = DEFAULT_QUEUE_TIMEOUT

    @classmethod
    def from_kwargs(
        cls, *, allow_start: Any, owner: Any, form_fields: Any, queue_timeout: Any = DEFAULT_QUEUE_TIMEOUT
    ) -> JobsSettings:
        return cls(
            allow_start=_flag("allow_start", allow_start),
            owner=_callable_or_none("owner", owner),
            form_fields=_callable_or_none("form_fields", form_fields),
            queue_timeout=positive("queue_timeout", queue_timeout, integer=False, allow_none=True),
        )


STORE_OPTIONS = (
    "max_history",
    "keep_finished",
    "max_finished",
    "journal_dir",
    "journal_max_bytes",
    "journal_total_bytes",
)
JOBS_OPTIONS = ("allow_start", "store", "owner", "form_fields", "queue_timeout")


def check_store_options(*, max_history: Any, keep_finished: Any, max_finished: Any) -> tuple[int, float, int]:
    """The retention options every store takes, checked in one place."""
    if isinstance(max_history, bool) or not isinstance(max_history, int) or max_history < 1:
        raise ValueError(f"max_history must be an int >= 1, got {max_history!r}")
    if isinstance(keep_finished, bool) or not isinstance(keep_finished, (int, float)) or not keep_finished >= 0:
        raise ValueError(f"keep_finished must be a number of seconds >= 0, got {keep_finished!r}")
    if isinstance(max_finished, bool) or not isinstance(max_finished, int) or max_finished < 0:
        raise ValueError(f"max_finished must be an int >= 0, got {max_finished!r}")
    return max_history, float(keep_finished), max_finished


def default_owner(environ: WSGIEnvironment) -> str | None:
    """Who started a job: ``REMOTE_USER``, when the server or a middleware set it."""
    user = environ.get("REMOTE_USER")
    return str(user) if user else None


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _callable_or_none(name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a callable or None, got {value!r}")
    return value
