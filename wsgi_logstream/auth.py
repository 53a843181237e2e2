"""``TokenAuth``: let only people who hold a token read the logs.

Logs carry secrets and internals, and ``wsgi-logstream --host 0.0.0.0`` puts
them on the network. With ``--token`` every request must prove it holds the
token, in one of three ways:

* ``Authorization: Bearer <token>``, for ``curl`` and scripts;
* a cookie, which a browser gets by opening a link with ``?token=<token>``:
  that request is answered with a redirect to the same URL without the token
  (so it leaves the address bar and the history) and sets the cookie
  (``HttpOnly``, ``SameSite=Lax``, named after the port since cookies ignore
  ports);
* ``?token=`` on any other method, which is then taken out of the query
  string before the app sees it.

Anything else gets ``401``. Tokens are compared with :func:`hmac.compare_digest`,
and the cookie holds a hash of the token, not the token itself.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Iterable
from urllib.parse import parse_qsl, quote, urlencode

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["TokenAuth"]


class TokenAuth:
    """WSGI middleware: requests must carry ``token`` (see the module docstring)."""

    def __init__(self, app: WSGIApplication, token: str, *, cookie_name: str = "wsgi_logstream_token") -> None:
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        if token != token.strip() or any(ord(c) < 0x21 or ord(c) == 0x7F for c in token):
            raise ValueError("token must not contain spaces or control characters")
        self.app = app
        self.cookie_name = cookie_name
        self._token = token.encode("utf-8")
        self._cookie_value = hashlib.sha256(b"wsgi_logstream cookie\0" + self._token).hexdigest().encode()

    def _matches(self, offered: str) -> bool:
        # Encode first: compare_digest refuses non-ASCII str; on bytes it is constant-time.
        return hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), self._token)

    def _has_cookie(self, environ: WSGIEnvironment) -> bool:
        header = environ.get("HTTP_COOKIE", "")
        if self.cookie_name not in header:
            return False
        # Leniently, as browsers send it: ``name=value`` pairs split on ``;``. SimpleCookie drops
        # the whole header over one cookie it cannot parse (a JSON value, a space, a bare name)
        # that another app on the same host set, and the printed link would end in 401.
        found = False
        for pair in header.split(";"):
            name, equals, value = pair.strip().partition("=")
            if equals and name.strip() == self.cookie_name:
                offered = value.strip().strip('"').encode("latin-1", "replace")
                found = hmac.compare_digest(offered, self._cookie_value) or found
        return found

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and self._matches(credentials.strip()):
            return self.app(environ, start_response)
        if self._has_cookie(environ):
            return self.app(environ, start_response)
        query = environ.get("QUERY_STRING", "")
        if "token=" in query:
            pairs = parse_qsl(query, keep_blank_values=True)
            offered = [value for key, value in pairs if key == "token"]
            if len(offered) == 1 and self._matches(offered[0]):
                rest = urlencode([(key, value) for key, value in pairs if key != "token"])
                if environ.get("REQUEST_METHOD", "GET") in ("GET", "HEAD"):
                    return self._redirect(environ, start_response, rest)
                environ = dict(environ)
                environ["QUERY_STRING"] = rest
                return self.app(environ, start_response)
        return self._refuse(start_response)

    def _redirect(self, environ: WSGIEnvironment, start_response: StartResponse, query: str) -> list[bytes]:
        # WSGI paths are bytes decoded as latin-1: quote those bytes, not a re-encoding.
        raw = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1", "replace")
        # One leading slash: "//evil.example/x" in Location is another host (a scheme-relative URL).
        path = quote(b"/" + raw.lstrip(b"/"), safe="/;=,:@!$&'()*+~-._") if raw else ""
        location = (path or "/") + (f"?{query}" if query else "")
        secure = "; Secure" if environ.get("wsgi.url_scheme") == "https" else ""
        cookie = f"{self.cookie_name}={self._cookie_value.decode()}; Path=/; HttpOnly; SameSite=Lax{secure}"
        body = b"token accepted: redirecting to the page without it\n"
        start_response(
            "303 See Other",
            [
                ("Location", location),
                ("Set-Cookie", cookie),
                ("Cache-Control", "no-store"),
                ("Referrer-Policy", "no-referrer"),
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]

    def _refuse(self, start_response: StartResponse) -> list[bytes]:
        body = (
            b"401 Unauthorized: these logs need a token. Open the link with ?token= that wsgi-logstream "
            b"printed, or send 'Authorization: Bearer <token>'.\n"
        )
        start_response(
            "401 Unauthorized",
            [
                ("WWW-Authenticate", 'Bearer realm="wsgi-logstream"'),
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]
