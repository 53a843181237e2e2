"""Watch a long-running operation's log in a browser as it happens, from any WSGI stack."""

from .app import logstream
from .capture import Thread, bind, cancelled, progress, wait_cancelled
from .errors import Refused
from .jobs import JobsApp, jobs
from .middleware import LogStreamMiddleware
from .redact import DEFAULT_REDACTIONS
from .sections import section

__version__ = "0.1.0.dev0"

__all__ = [
    "DEFAULT_REDACTIONS",
    "JobsApp",
    "LogStreamMiddleware",
    "Refused",
    "Thread",
    "bind",
    "cancelled",
    "jobs",
    "logstream",
    "progress",
    "section",
    "wait_cancelled",
]
