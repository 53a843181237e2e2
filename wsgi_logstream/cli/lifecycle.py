"""A serving process's life: what it serves (:class:`Site`), the signals that stop it, and the stop.

SIGTERM and SIGHUP stop the command as Ctrl-C does: they raise
:class:`Stopped` in the main thread, the server loop ends, and
:func:`shutdown` cancels what runs and waits up to its grace period; a second
signal kills at once.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["Site", "Stopped", "shutdown", "stop_signals"]


@dataclass
class Site:
    """What a serving process serves, starts at launch, and stops at the end.

    Built in the process that serves (the gunicorn worker, after the fork,
    since threads do not survive a fork).
    """

    app: WSGIApplication
    start: Callable[[], list[str]]  # starts what runs at launch; returns the paths to announce
    stop: Callable[[float], object]  # cancels what runs and waits up to that many seconds
    kill: Callable[[], None]  # the last resort: SIGKILL whatever is left
    announced: threading.Event = field(default_factory=threading.Event)  # its URLs are printed


class Stopped(BaseException):
    """Raised in the main thread by SIGTERM or SIGHUP, like KeyboardInterrupt by SIGINT."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(128 + signum)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the server like Ctrl-C does (in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def shutdown(site: Site, grace: float) -> None:
    """Cancel what runs and wait for it; a second Ctrl-C or SIGTERM kills at once."""
    try:
        site.stop(grace + 2.0)
    except (KeyboardInterrupt, Stopped):
        print("wsgi-logstream: killing now", file=sys.stderr, flush=True)
    finally:
        site.kill()
