"""What the hosting server allows: today, whether a job's thread can run once its request has ended.

A job (:func:`wsgi_logstream.jobs`) runs in a thread of its own and must go on
after the ``POST`` that started it has been answered. uWSGI, by default, runs
Python without threads: it never releases the GIL while a worker waits for
the next request, so a job's thread stops as soon as the response is sent and
moves only while some request (someone watching the job) runs Python code.
Nothing fails; the job just freezes. uWSGI's ``--enable-threads`` (or
``--threads N``, or ``enable-threads = true`` in its ini file) is the fix.

uWSGI tells the application which way it runs: it puts ``uwsgi.version`` in
every request's environ, and its ``uwsgi`` module (importable only inside
uWSGI) has ``has_threads`` and the parsed options in ``opt``. This module
reads them; it imports ``uwsgi`` only when the environ says the request came
from uWSGI, so it costs nothing anywhere else.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Mapping

__all__ = ["UWSGI_THREADS_HELP", "threads_disabled_reason", "uwsgi_threads_disabled_reason"]

UWSGI_THREADS_HELP = (
    "uWSGI runs this app without threads, so a job would freeze as soon as this response is sent: "
    "start uWSGI with --enable-threads (or --threads N, or 'enable-threads = true' in its ini file)"
)


def threads_disabled_reason(environ: Mapping[str, Any]) -> str | None:
    """Why a job started by this request would freeze, or ``None`` when threads run.

    Only uWSGI is detected: other servers either run threads or (gevent's)
    patch them into greenlets, and a job runs under both.
    """
    if "uwsgi.version" not in environ:
        return None
    module = sys.modules.get("uwsgi")
    if module is None:
        try:
            module = importlib.import_module("uwsgi")
        except ImportError:  # a WSGI test client that copies uWSGI's environ keys, outside uWSGI
            return None
    return uwsgi_threads_disabled_reason(module)


def uwsgi_threads_disabled_reason(uwsgi: Any) -> str | None:
    """The reason (:data:`UWSGI_THREADS_HELP`) if the ``uwsgi`` module given says threads are off.

    ``has_threads`` is uWSGI's own answer (it is set from ``--enable-threads``
    and ``--threads``, from the command line and ini files alike); ``opt`` is
    read only when ``has_threads`` is missing. When gevent has patched
    ``threading`` (uWSGI's ``--gevent-monkey-patch``), a job's "thread" is a
    greenlet that runs without uWSGI's threads, so nothing is reported.
    """
    if _threading_is_green():
        return None
    options = _options(getattr(uwsgi, "opt", {}))
    has_threads = getattr(uwsgi, "has_threads", None)
    if has_threads is None:
        has_threads = _truthy(options.get("enable-threads")) or "threads" in options
    return None if has_threads else UWSGI_THREADS_HELP


def _threading_is_green() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


def _options(opt: Any) -> dict[str, Any]:
    """``uwsgi.opt`` with ``str`` keys (uWSGI gives ``str``; older builds ``bytes``)."""
    if not isinstance(opt, Mapping):
        return {}
    return {key.decode("latin-1") if isinstance(key, bytes) else str(key): value for key, value in opt.items()}


def _truthy(value: Any) -> bool:
    """An option's value as uWSGI parses it: a flag is ``True``; an ini value is bytes such as ``b"true"``."""
    if isinstance(value, list):  # an option given twice: the last one wins
        value = value[-1] if value else None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "y", "t")
    return bool(value)
