"""What the command runs: a ``MODULE:CALLABLE`` imported as gunicorn does, and the jobs app around it.

:func:`make_jobs` is the one place ``run``, ``tail`` and ``serve`` build their
jobs app, and :func:`stream_options` the one place the command's stream
options become keyword arguments, checked by the library's own
:meth:`wsgi_logstream.options.Options.from_kwargs` (a mistake is exit 2 at
launch, not a traceback on the first request).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any, Callable

from ..operation import target_caller
from ..options import Options
from .parse import UsageError

if TYPE_CHECKING:
    from ..jobs import JobsApp

__all__ = ["import_target", "make_jobs", "redacted", "short", "stream_options"]


def short(text: str, limit: int = 100) -> str:
    """One line of at most ``limit`` characters: a title, not the whole script of ``python -c``."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def make_jobs(
    target: Callable[..., Any],
    options: dict[str, Any],
    *,
    allow_start: bool,
    max_history: int,
    journal_dir: str | None = None,
) -> JobsApp:
    """The one place ``run``, ``tail`` and ``serve`` build their jobs app.

    Finished jobs stay viewable for as long as the command serves (the run
    people came to see must not vanish after an hour); the 100 most recent are kept.
    """
    from ..jobs import jobs

    return jobs(
        target,
        max_history=max_history,
        allow_start=allow_start,
        keep_finished=float("inf"),
        journal_dir=journal_dir,
        **options,
    )


def stream_options(args: argparse.Namespace, **defaults: Any) -> dict[str, Any]:
    """Stream options from the command line, validated now so a mistake is exit 2, not a traceback later."""
    from ..redact import DEFAULT_REDACTIONS

    options = dict(defaults)
    if args.level:
        options["level"] = args.level
    if args.format:
        options["formatter"] = args.format
    if args.title:
        options["title"] = args.title
    if args.redact:
        patterns: list[str] = []
        for pattern in args.redact:
            patterns.extend(DEFAULT_REDACTIONS if pattern == "default" else [pattern])
        options["redact"] = patterns
    try:
        Options.from_kwargs(**options)  # which also passes the title (a command line) through the redactor
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return options


def redacted(options: dict[str, Any], text: str) -> str:
    """``text`` (a command line) through the redactor the options give the lines, for the terminal."""
    redact = Options.from_kwargs(redact=options["redact"]).redact if "redact" in options else None
    return redact(text) if redact is not None else text


def import_target(spec: str) -> Callable[..., Any]:
    """``module:callable`` (or ``module:obj.attr``; the callable defaults to ``main``), imported as gunicorn does."""
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "main"
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise UsageError(f"{spec!r} is not MODULE:CALLABLE (e.g. myproject.tasks:reindex)")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UsageError(f"cannot import {module_name!r}: {exc} (run from the directory that holds it)") from None
        raise UsageError(f"importing {module_name!r} failed:\n{traceback.format_exc().rstrip()}") from None
    except Exception:
        raise UsageError(f"importing {module_name!r} failed:\n{traceback.format_exc().rstrip()}") from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"{module_name!r} has no {attribute!r}") from None
    if not callable(target):
        raise UsageError(f"{spec} is not callable: {target!r}")
    try:
        target_caller(target)
    except TypeError as exc:
        raise UsageError(str(exc)) from None
    return target  # type: ignore[no-any-return]
