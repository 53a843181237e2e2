"""A browser-like HTTP session for tests against a real server: cookies, forms, and streams read as they come.

:class:`Session` keeps the cookies a server sets (a login's session, a CSRF
cookie), sends whole requests with :mod:`http.client`, and opens streams as
:class:`servers.RawClient` (read chunk by chunk) with the same cookies.
"""

from __future__ import annotations

import http.client
import re
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

from tests.servers import RawClient

__all__ = ["Answer", "Session", "hidden_field"]


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def hidden_field(body: bytes | str, name: str) -> str:
    """The value of the (first) hidden input called ``name`` in a page."""
    text = body.decode() if isinstance(body, bytes) else body
    found = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', text)
    if found is None:
        raise AssertionError(f"no field {name!r} in {text[:500]!r}")
    return found.group(1)


class Session:
    def __init__(self, url: str) -> None:
        self.url = url
        host, port = url.split("//", 1)[1].split(":")
        self.host, self.port = host, int(port)
        self.cookies: dict[str, str] = {}

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def _keep(self, set_cookies: list[str]) -> None:
        for line in set_cookies:
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(line)
            for name, morsel in cookie.items():
                if morsel["max-age"] == "0" or (not morsel.value and morsel["expires"]):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    def request(
        self, method: str, path: str, form: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> Answer:
        """One whole request (redirects are not followed): its status, headers and body."""
        all_headers = self._headers(headers)
        body = None
        if form is not None:
            body = urlencode(form, doseq=True).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif method == "POST":
            body = b""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=all_headers)
            reply = connection.getresponse()
            data = reply.read()
            self._keep(reply.headers.get_all("Set-Cookie") or [])
            return Answer(reply.status, {k.lower(): v for k, v in reply.getheaders()}, data)
        finally:
            connection.close()

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, form: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Answer:
        return self.request("POST", path, form, headers)

    def runs(self, key: str) -> int:
        """How many times the test sites' gated target ran for ``key`` (``/t/runs/<key>``)."""
        return int(self.get(f"/t/runs/{key}").body)

    def start_job(self, key: str, csrf_field: str) -> str:
        """Start a gated job with the token the jobs page's form carries in ``csrf_field``; the job's path."""
        token = hidden_field(self.get("/t/jobs/").body, csrf_field)
        reply = self.post(f"/t/jobs/?key={key}", {csrf_field: token})
        assert reply.status == 303, reply.text
        return reply.headers["location"]

    def stream(self, path: str, headers: dict[str, str] | None = None) -> RawClient:
        """A GET read as it arrives, with this session's cookies."""
        return RawClient(self.url, path, headers=self._headers(headers))
