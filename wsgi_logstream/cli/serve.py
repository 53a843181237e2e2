"""Serving a site: the token, the allowed host names, the URLs printed, and the wsgiref server.

Every site is wrapped the same way, outermost first: :class:`~wsgi_logstream.hosts.AllowedHosts`
(only the names the command was started for, against DNS rebinding), then
:class:`~wsgi_logstream.auth.TokenAuth` with ``--token``. ``--server gunicorn``
is in :mod:`.arbiter`; the default is the bounded threaded ``wsgiref``
server of :mod:`wsgi_logstream.server`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import socket
import sys
from typing import TYPE_CHECKING, Callable
from urllib.parse import quote
from wsgiref.simple_server import make_server

from ..auth import TokenAuth
from ..hosts import AllowedHosts
from ..server import QuietHandler, ThreadingWSGIServer
from .lifecycle import Site, Stopped, shutdown, stop_signals
from .parse import EXIT_OK, EXIT_SIGINT, MIN_TOKEN_LENGTH, TOKEN_ENV, UsageError
from .terminal import configure_logging, say

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["allowed_hosts", "resolve_token", "serve"]

_WILDCARDS = ("", "0.0.0.0", "::")


def resolve_token(args: argparse.Namespace) -> str | None:
    """The token from ``--token`` or the environment (``auto``: a random one), checked."""
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if token == "auto":
        token = secrets.token_urlsafe(18)
    if token is not None:
        try:
            TokenAuth(lambda environ, start_response: [], token)
        except ValueError as exc:
            raise UsageError(f"--token: {exc}") from None
        if len(token) < MIN_TOKEN_LENGTH:
            raise UsageError(
                f"--token: too short ({len(token)} characters; at least {MIN_TOKEN_LENGTH}): "
                "a short token can be guessed. Use --token auto for a random one."
            )
    return token


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def allowed_hosts(host: str, extra: list[str]) -> tuple[list[str], bool]:
    """The ``Host`` names a command bound to ``host`` answers, and whether any IP address is one.

    Its bind address; on loopback ``localhost``, ``127.0.0.1`` and ``::1``;
    on every address (``0.0.0.0``, ``::``) also this machine's names and any
    IP address (a page cannot rebind an address); and the ``--allow-host`` names.
    """
    names = [host.strip("[]")] if host not in _WILDCARDS else []
    wildcard = host in _WILDCARDS
    if wildcard or _is_loopback(host):
        names += ["localhost", "127.0.0.1", "::1"]
    if wildcard:
        names += [socket.gethostname(), socket.getfqdn()]
    return names + list(extra), wildcard


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def serve(
    args: argparse.Namespace, build: Callable[[], Site], what: str, *, grace: float, jobs_index: bool = True
) -> int:
    """Serve what ``build`` builds until Ctrl-C or SIGTERM; the exit status."""
    token = resolve_token(args)
    host, port = args.host, args.port
    names, any_address = allowed_hosts(host, args.allow_host)
    try:
        AllowedHosts(_not_ready, names, allow_ip_literals=any_address)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--allow-host: {exc}") from None
    if not _is_loopback(host) and token is None:
        print(
            f"wsgi-logstream: warning: listening on {host} without --token: anyone who can reach this machine "
            f"on port {port} can read these logs (and cancel or restart what runs). Add --token auto.",
            file=sys.stderr,
            flush=True,
        )

    def wrap(site: Site) -> Site:
        if token is not None:
            site.app = TokenAuth(site.app, token, cookie_name=f"wsgi_logstream_token_{port}")
        site.app = AllowedHosts(site.app, names, allow_ip_literals=any_address)
        return site

    def announce(bound_port: int, paths: list[str]) -> None:
        base = f"http://{_url_host(host)}:{bound_port}"
        suffix = f"?token={quote(token, safe='')}" if token is not None else ""
        for path in paths:
            say(f"{what} at {base}{path}{suffix}")
        if jobs_index:
            say(f"all jobs at {base}/{suffix}  (Ctrl-C to stop)")
        else:
            say("Ctrl-C to stop")

    if args.server == "gunicorn":
        try:
            from .arbiter import serve_gunicorn
        except ImportError:
            raise UsageError("--server gunicorn: gunicorn is not installed (pip install gunicorn)") from None
        return serve_gunicorn(args, lambda: wrap(build()), announce, grace)
    return _serve_wsgiref(args, lambda: wrap(build()), announce, grace)


class _IPv6Server(ThreadingWSGIServer):
    address_family = socket.AF_INET6


def _serve_wsgiref(
    args: argparse.Namespace, build: Callable[[], Site], announce: Callable[[int, list[str]], None], grace: float
) -> int:
    server_class = _IPv6Server if ":" in args.host else ThreadingWSGIServer
    bounded: type[ThreadingWSGIServer] = type("Server", (server_class,), {"header_timeout": args.header_timeout})
    try:
        server: ThreadingWSGIServer = make_server(args.host, args.port, _not_ready, bounded, QuietHandler)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    configure_logging()
    code = EXIT_OK
    site: Site | None = None
    with server, stop_signals():
        try:
            site = build()
            server.set_app(site.app)
            announce(server.server_address[1], site.start())
            site.announced.set()
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            code = EXIT_SIGINT
        except Stopped as stop:
            code = stop.exit_code
        finally:
            if site is not None:
                print("wsgi-logstream: stopping", file=sys.stderr, flush=True)
                shutdown(site, grace)
    return code


def _not_ready(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain"), ("Retry-After", "1")])
    return [b"starting\n"]
