"""What the command prints on its own terminal: status lines, and its own logger's problems.

The streams are where records go; the terminal gets one line per event
(``... at http://...``, ``... ended``) and one line per problem of the
command itself, never a traceback (those are in the stream).
"""

from __future__ import annotations

import logging
import sys
import threading

__all__ = ["configure_logging", "say"]

_say_lock = threading.Lock()


def say(line: str) -> None:
    """One status line on stdout, whole: the end of a quick job is announced from another thread."""
    with _say_lock:
        sys.stdout.write(f"wsgi-logstream: {line}\n")
        sys.stdout.flush()


class _TerminalFormatter(logging.Formatter):
    """One line per problem on the terminal: tracebacks are in the stream, where they belong."""

    def format(self, record: logging.LogRecord) -> str:
        return f"wsgi-logstream: {record.getMessage()}"


def configure_logging() -> None:
    """Set up logging for the command's own process (never called by the library)."""
    # This process is ours: the streams are where records go. Without a handler on the
    # root logger, logging's last resort would echo every WARNING (every stderr line of a
    # command) on the terminal too.
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    own = logging.getLogger("wsgi_logstream")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_TerminalFormatter())
    own.addHandler(handler)
    own.propagate = False
