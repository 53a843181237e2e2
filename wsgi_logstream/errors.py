"""Every answer that is not a stream: one error type that carries its status.

Anything that can be wrong with a request (a bad parameter, an unknown job, a
method not served, a refusal, a store that is down) is raised as an
:class:`HttpError` and answered by :func:`error_response` with a one-line
``text/plain`` message: never a traceback, never a page that runs script.

:class:`Refused` is the public one: an ``authorize`` hook raises it to refuse
with its own message or with ``401`` instead of ``403``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse

__all__ = ["RETRY_AFTER", "HttpError", "Refused", "StoreUnavailable", "error_response", "status_line", "unavailable"]

#: Seconds a client is asked to wait before it tries again after a 503.
RETRY_AFTER = 5

# RFC 9110's names where Python's (before 3.13) are older.
_PHRASES = {413: "Content Too Large", 422: "Unprocessable Content"}


def status_line(status: int) -> str:
    """``404 Not Found``: the WSGI status string for a code."""
    phrase = _PHRASES.get(status) or HTTPStatus(status).phrase
    return f"{status} {phrase}"


class HttpError(Exception):
    """A request answered with ``status`` (an int) and a one-line ``message``."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error code (400-599), got {status!r}")
        self.status = status
        self.message = message
        self.headers = list(headers)


class Refused(Exception):
    """Raised by an ``authorize`` hook: refuse with ``message`` and ``status`` (403, or 401 to ask for a login).

    A ``401`` carries ``WWW-Authenticate: <challenge>``, as HTTP requires; the
    default names the bearer scheme, which no browser answers with a password
    dialog. Pass the scheme your login uses.
    """

    def __init__(
        self, message: str = "not allowed", *, status: int = 403, challenge: str = 'Bearer realm="wsgi_logstream"'
    ) -> None:
        super().__init__(message)
        if status not in (401, 403, 404):
            raise ValueError(f"status must be 401, 403 or 404, got {status!r}")
        if not isinstance(challenge, str) or not challenge or "\n" in challenge or "\r" in challenge:
            raise ValueError(f"challenge must be one line naming an auth scheme, got {challenge!r}")
        self.message = message
        self.status = status
        self.challenge = challenge

    def http_error(self) -> HttpError:
        headers = [("WWW-Authenticate", self.challenge)] if self.status == 401 else []
        return HttpError(self.status, self.message, headers)


class StoreUnavailable(Exception):
    """Raised by a job store that cannot reach its backend (Redis down): answered as a ``503``, never a traceback."""


def unavailable(message: str) -> HttpError:
    """A ``503`` that asks the client to retry in :data:`RETRY_AFTER` seconds."""
    return HttpError(503, message, [("Retry-After", str(RETRY_AFTER))])


def error_response(start_response: StartResponse, error: HttpError) -> list[bytes]:
    body = (error.message.rstrip("\n") + "\n").encode("utf-8", "backslashreplace")
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        *error.headers,
    ]
    start_response(status_line(error.status), headers)
    return [body]
