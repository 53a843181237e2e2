"""``AllowedHosts``: answer only requests addressed to this server's own names.

A web page cannot read another site's responses, unless the other site *is*
its own: with DNS rebinding, ``evil.example`` first resolves to the
attacker's server (which sends the page), then to ``127.0.0.1``, and the
page's scripts read what a server on loopback answers, as same-origin. The
browser still sends ``Host: evil.example``, so a server that answers only the
names it was started for (as Django's ``ALLOWED_HOSTS`` and Jupyter's host
check do) gives such a page nothing but ``400``.

Names are matched case-insensitively, without the port and a trailing dot:

* ``"logs.example.com"``: that name; ``"127.0.0.1"``, ``"::1"``: that address
  (IPv6 written with or without brackets);
* ``".example.com"``: ``example.com`` and every name below it;
* ``"*"``: any name (the check is off).

``allow_ip_literals=True`` also lets in any IP address as ``Host`` (a server
bound to ``0.0.0.0`` is reached by the machine's addresses): an address in
``Host`` cannot be a rebinding, since the page's origin is then that address.
A request without ``Host`` (HTTP/1.0) is let in: browsers always send one.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["AllowedHosts", "host_name"]


def host_name(header: str) -> str:
    """The name in a ``Host`` header: no port, no brackets, no trailing dot, lower case."""
    header = header.strip()
    if header.startswith("["):
        name = header[1 : header.find("]")] if "]" in header else header[1:]
    else:
        name, _, port = header.partition(":")
        if header.count(":") != 1 or not (port.isdigit() or port == ""):
            name = header  # no port, or a bare IPv6 address
    return name.rstrip(".").lower()


def _normalise(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"allowed host names must be non-empty strings, got {name!r}")
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name if name in ("*", ".") else name.rstrip(".")


class AllowedHosts:
    """WSGI middleware: ``400`` for a ``Host`` that is not in ``hosts`` (see the module docstring)."""

    def __init__(self, app: WSGIApplication, hosts: Iterable[str], *, allow_ip_literals: bool = False) -> None:
        if isinstance(hosts, str):
            raise TypeError("hosts must be a list of names, not one string")
        names = {_normalise(name) for name in hosts}
        if not names and not allow_ip_literals:
            raise ValueError("hosts is empty: no request could be answered")
        self.app = app
        self.allow_any = "*" in names
        self.exact = frozenset(name for name in names if not name.startswith("."))
        self.suffixes = tuple(name for name in names if name.startswith("."))
        self.allow_ip_literals = allow_ip_literals

    def allows(self, host_header: str) -> bool:
        """Whether a request with this ``Host`` header is answered."""
        if self.allow_any:
            return True
        name = host_name(host_header)
        if name in self.exact or any(name.endswith(suffix) or name == suffix[1:] for suffix in self.suffixes):
            return True
        if self.allow_ip_literals:
            try:
                ipaddress.ip_address(name)
            except ValueError:
                return False
            return True
        return False

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST")
        if host is None or self.allows(host):
            return self.app(environ, start_response)
        shown = host.encode("ascii", "backslashreplace").decode("ascii")[:100]
        body = f"400 Bad Request: this server does not answer for the host {shown!r}\n".encode("ascii", "replace")
        start_response(
            "400 Bad Request",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
            ],
        )
        return [body]
