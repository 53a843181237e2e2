"""The ``wsgi-logstream`` command (``python -m wsgi_logstream``).

Five subcommands, one idea: whatever you want to watch becomes a job whose
log any number of people can open in a browser (or ``curl -N``), leave and
come back to:

* ``run -- CMD ARGS``: a command, each line it prints a record;
* ``tail FILE...``: files, followed like ``tail -F``;
* ``serve MODULE:CALLABLE``: a Python callable, its ``logging`` the log;
* ``demo`` (the default): the demo site;
* ``check URL``: reads the probe through every hop to a stream and says
  whether lines arrive live, and if not who holds them.

``run``, ``tail`` and ``serve`` build their jobs app through :func:`make_jobs`
and are served by ``wsgiref`` (threaded) or, with ``--server gunicorn``, by
one gunicorn gthread worker (jobs live in one process). ``--help`` lists the
options, examples and exit statuses.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import ipaddress
import logging
import os
import secrets
import shlex
import signal
import socket
import sys
import threading
import traceback
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence
from urllib.parse import quote
from wsgiref.simple_server import make_server

from . import __version__
from .auth import TokenAuth
from .check import run_check
from .command import Command, CommandError
from .follow import Tail
from .operation import target_caller
from .options import Options
from .server import QuietHandler, ThreadingWSGIServer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from .jobs import JobHandle, JobsApp

__all__ = ["main", "make_jobs"]

EXIT_OK = 0
EXIT_BUFFERS = 1
EXIT_USAGE = 2
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
TOKEN_ENV = "WSGI_LOGSTREAM_TOKEN"
GUNICORN_THREADS = 64

EPILOG = """\
examples:
  wsgi-logstream                                the demo on http://127.0.0.1:8000/
  wsgi-logstream run -- make test               run a command and watch its output
  wsgi-logstream run --restart -- ./deploy.sh   ... and let the page run it again
  wsgi-logstream tail -n 50 /var/log/app.log    follow files like tail -F
  wsgi-logstream serve tasks:reindex            run a Python callable, watch what it logs
  wsgi-logstream run --host 0.0.0.0 --token auto -- ./migrate
                                                share on the network, only with the printed link
  wsgi-logstream check https://example.com/jobs/abc
                                                do lines arrive live through the proxies? who buffers?

exit status:
  0    stopped normally (check: the stream arrives live)
  1    check: the stream is buffered on the way
  2    usage error, or cannot start (bad option, port in use, cannot import); check: cannot tell
  126  run: the command is not executable
  127  run: the command is not found
  130  stopped by Ctrl-C (SIGINT); 143 by SIGTERM, 129 by SIGHUP

Every page is a job: GET / lists them, GET /<id> streams one (?format=text|html|sse|ndjson),
POST /<id>/cancel stops it (a command gets SIGTERM, then SIGKILL after --grace seconds).
"""


class UsageError(Exception):
    """A mistake in what was asked: printed as one line, exit status 2 (or ``exit_code``)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Stopped(BaseException):
    """Raised in the main thread by SIGTERM or SIGHUP, like KeyboardInterrupt by SIGINT."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


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


# -- arguments ----------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def _count(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}: {text!r}")
        return value

    return parse


def _serving_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("serving options")
    group.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    group.add_argument("--port", type=_count(0, 65535), default=8000, help="port (default: 8000; 0: any free one)")
    group.add_argument("--level", help="lowest level shown: DEBUG, INFO (default), WARNING, ERROR")
    group.add_argument("--format", metavar="FMT", help="logging format of each line, e.g. '%%(asctime)s %%(message)s'")
    group.add_argument("--title", help="the page title")
    group.add_argument(
        "--redact",
        metavar="REGEX",
        action="append",
        help="hide what REGEX matches in every line (repeatable; 'default' adds common secret patterns)",
    )
    group.add_argument(
        "--token",
        help=f"require this token ('auto': a random one; default: ${TOKEN_ENV}); "
        "browsers open the printed ?token= link once, scripts send 'Authorization: Bearer TOKEN'",
    )
    group.add_argument(
        "--server",
        choices=("wsgiref", "gunicorn"),
        default="wsgiref",
        help="wsgiref (default, threaded, stdlib) or gunicorn (one gthread worker; must be installed)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsgi-logstream",
        description="Watch a command, a file or a Python callable in a browser as it runs, "
        "and find which hop buffers a stream. With no command: the demo.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    common = _serving_options()
    raw = argparse.RawDescriptionHelpFormatter

    run = sub.add_parser(
        "run",
        parents=[common],
        formatter_class=raw,
        help="run a command and stream its output",
        description="Run CMD as a job: each stdout line is an INFO record, each stderr line a WARNING, "
        "on a logger named after the command; its exit status ends the job (non-zero: error).",
        epilog="example:\n  wsgi-logstream run --restart --grace 10 -- ./backup.sh --full\n\n"
        "Python children get PYTHONUNBUFFERED=1; run C programs that buffer a pipe under 'stdbuf -oL'.",
    )
    run.add_argument("--restart", action="store_true", help="let the page start the command again (POST /)")
    run.add_argument(
        "--grace",
        type=_non_negative_float,
        default=5.0,
        help="seconds between SIGTERM and SIGKILL when stopping it (default: 5)",
    )
    run.add_argument("--name", help="logger name for its lines (default: the command's file name)")
    run.add_argument("--history", type=_count(1, 10_000_000), default=10_000, help="lines kept (default: 10000)")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]", help="the command to run")
    run.set_defaults(handler=_run)

    tail = sub.add_parser(
        "tail",
        parents=[common],
        formatter_class=raw,
        help="follow files like tail -F",
        description="Follow FILEs like 'tail -F': new lines, truncation, rotation by rename, files that "
        "appear later. Each new viewer first gets the last N lines.",
        epilog="example:\n  wsgi-logstream tail -n 100 --interval 1 /var/log/nginx/error.log /var/log/app/*.log",
    )
    tail.add_argument("-n", "--lines", type=_count(0, 1_000_000), default=10, help="lines replayed (default: 10)")
    tail.add_argument(
        "--interval", type=_positive_float, default=0.25, help="seconds between polls of each file (default: 0.25)"
    )
    tail.add_argument("files", nargs="+", metavar="FILE")
    tail.set_defaults(handler=_tail)

    serve = sub.add_parser(
        "serve",
        parents=[common],
        formatter_class=raw,
        help="run a Python callable and stream what it logs",
        description="Import MODULE:CALLABLE (as gunicorn does, the current directory first on sys.path) and "
        "run it as a job at launch; it is called with no argument, or with the WSGI environ if it takes one. "
        "What it logs is the job's log; an exception ends it with status error and its traceback.",
        epilog="example:\n  wsgi-logstream serve myproject.tasks:rebuild_index --restart --level DEBUG",
    )
    serve.add_argument("target", metavar="MODULE:CALLABLE")
    serve.add_argument("--restart", action="store_true", help="let the page start it again (POST /)")
    serve.add_argument("--history", type=_count(1, 10_000_000), default=10_000, help="lines kept (default: 10000)")
    serve.set_defaults(handler=_serve_callable)

    demo = sub.add_parser(
        "demo",
        parents=[common],
        formatter_class=raw,
        help="serve the demo (the default)",
        description="Serve the demo: a pretend import, streamed in each format.",
    )
    demo.set_defaults(handler=_demo)

    check = sub.add_parser(
        "check",
        formatter_class=raw,
        help="find out whether a stream arrives live, and who buffers it",
        description="Ask URL (a stream of a wsgi_logstream app, or the probe app) for the probe: lines sent "
        "INTERVAL seconds apart, each stamped with its send time. Report line by line whether they arrive "
        "as sent or in bursts, and name the likely culprit (proxy, compression, CDN) and its fix.",
        epilog="exit status: 0 streams, 1 buffers, 2 cannot tell (no answer, not a stream).\n\n"
        "example:\n  wsgi-logstream check --as sse https://example.com/admin/logs/\n\n"
        "Colours on a terminal unless NO_COLOR is set.",
    )
    check.add_argument("url", metavar="URL")
    check.add_argument("--lines", type=_count(3, 1000), default=8, help="probe lines (default: 8)")
    check.add_argument("--interval", type=_positive_float, default=0.25, help="seconds between lines (default: 0.25)")
    check.add_argument("--size", type=_count(1, 65536), default=100, help="bytes per line (default: 100)")
    check.add_argument(
        "--as",
        dest="wire",
        choices=("html", "text", "sse", "ndjson"),
        default="html",
        help="the stream format to try (default: html, what a browser opens)",
    )
    check.add_argument("--timeout", type=_positive_float, help="give up after this many seconds")
    check.add_argument("--token", help=f"sent as 'Authorization: Bearer' (default: ${TOKEN_ENV})")
    check.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate")
    check.add_argument("--no-color", action="store_true", help="no colours, even on a terminal")
    check.set_defaults(handler=_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see ``--help``)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help", "--version")):
        args_list.insert(0, "demo")
    args = build_parser().parse_args(args_list)
    try:
        return int(args.handler(args))
    except UsageError as error:
        print(f"wsgi-logstream: error: {error}", file=sys.stderr)
        return error.exit_code


# -- subcommands ----------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    if args.interval * (args.lines - 1) > 30:
        raise UsageError("a probe lasts at most 30 seconds: lower --lines or --interval")
    return run_check(
        args.url,
        lines=args.lines,
        interval=args.interval,
        size=args.size,
        fmt=args.wire,
        timeout=args.timeout,
        token=args.token or os.environ.get(TOKEN_ENV) or None,
        insecure=args.insecure,
        color=False if args.no_color else None,
    )


def _run(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("run needs a command: wsgi-logstream run [options] -- CMD [ARGS...]")
    command = Command(argv, grace=args.grace, name=args.name)
    try:
        command.check()
    except CommandError as error:
        raise UsageError(str(error), error.exit_code) from None
    line = _short(shlex.join(argv))
    options = _stream_options(args, title=line, traceback=False)
    what = f"`{line}`"

    def build() -> Site:
        app = make_jobs(command, options, allow_start=args.restart, max_history=args.history)

        def start() -> list[str]:
            job = app.start()
            _announce_end(job, what, site.announced)
            return [job.url_path]

        site = Site(app, start, app.shutdown, command.kill_all)
        return site

    return _serve(args, build, what, grace=args.grace)


def _tail(args: argparse.Namespace) -> int:
    files: list[str] = args.files
    default_format = "%(message)s" if len(files) == 1 else "%(name)s: %(message)s"
    options = _stream_options(args, title="tail -F " + " ".join(files), formatter=default_format, traceback=False)
    target = Tail(files, lines=args.lines, interval=args.interval)
    what = "tail -F " + " ".join(shlex.quote(name) for name in files)

    def build() -> Site:
        # The job keeps up to 10000 lines so a live viewer never misses one in a burst;
        # a new viewer starts N lines from the end, as tail does.
        app = make_jobs(target, options, allow_start=False, max_history=max(args.lines, 10_000))
        replay = ReplayLast(app, args.lines)

        def start() -> list[str]:
            job = app.start()
            replay.jobs[job.url_path] = job
            return [job.url_path]

        return Site(replay, start, app.shutdown, lambda: None)

    return _serve(args, build, what, grace=2.0)


def _serve_callable(args: argparse.Namespace) -> int:
    target = import_target(args.target)
    options = _stream_options(args, title=args.target)
    what = args.target

    def build() -> Site:
        app = make_jobs(target, options, allow_start=args.restart, max_history=args.history)

        def start() -> list[str]:
            job = app.start()
            _announce_end(job, what, site.announced)
            return [job.url_path]

        site = Site(app, start, app.shutdown, lambda: None)
        return site

    return _serve(args, build, what, grace=5.0)


def _demo(args: argparse.Namespace) -> int:
    from .demo import make_app

    options = _stream_options(args)

    def build() -> Site:
        return Site(make_app(**options), lambda: ["/"], lambda timeout: None, lambda: None)

    return _serve(args, build, "the demo", grace=1.0, jobs_index=False)


# -- building blocks ------------------------------------------------------------


def _short(text: str, limit: int = 100) -> str:
    """One line of at most ``limit`` characters: a title, not the whole script of ``python -c``."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def make_jobs(target: Callable[..., Any], options: dict[str, Any], *, allow_start: bool, max_history: int) -> JobsApp:
    """The one place ``run``, ``tail`` and ``serve`` build their jobs app.

    Finished jobs stay viewable for as long as the command serves (the run
    people came to see must not vanish after an hour); the 100 most recent are kept.
    """
    from .jobs import jobs

    return jobs(target, max_history=max_history, allow_start=allow_start, keep_finished=float("inf"), **options)


def _stream_options(args: argparse.Namespace, **defaults: Any) -> dict[str, Any]:
    """Stream options from the command line, validated now so a mistake is exit 2, not a traceback later."""
    from .redact import DEFAULT_REDACTIONS

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
        Options.from_kwargs(**options)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return options


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


class ReplayLast:
    """Start a new viewer of a ``tail`` job ``lines`` lines from the end, as ``tail -n`` does.

    The job keeps far more history than that (so a live viewer keeps up through
    a burst); a request that does not say where to start (``?since=`` or
    ``Last-Event-ID``) is given ``since`` = the last ``lines`` entries.
    """

    def __init__(self, app: JobsApp, lines: int) -> None:
        self.app = app
        self.lines = lines
        self.jobs: dict[str, JobHandle] = {}

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        job = self.jobs.get(environ.get("PATH_INFO", "").rstrip("/"))
        query = environ.get("QUERY_STRING", "")
        asked = any(pair.partition("=")[0] == "since" for pair in query.split("&"))
        if job is not None and not asked and "HTTP_LAST_EVENT_ID" not in environ:
            record = job.record
            since = max((record.next_seq if record is not None else 1) - 1 - self.lines, 0)
            environ = dict(environ)
            environ["QUERY_STRING"] = f"{query}&since={since}" if query else f"since={since}"
        return self.app(environ, start_response)


_say_lock = threading.Lock()


def _say(line: str) -> None:
    """One status line on stdout, whole: the end of a quick job is announced from another thread."""
    with _say_lock:
        sys.stdout.write(f"wsgi-logstream: {line}\n")
        sys.stdout.flush()


def _announce_end(job: JobHandle, what: str, announced: threading.Event) -> None:
    """Say on the terminal when the job ends (after its URL was printed); its log stays served."""

    def wait() -> None:
        job.wait(None)
        announced.wait()
        record = job.record
        error = f": {record.error}" if record is not None and record.error else ""
        status = record.status if record is not None else "forgotten"
        _say(f"{what} ended ({status}{error}); its log stays here. Ctrl-C to stop.")

    threading.Thread(target=wait, name="wsgi-logstream-announce", daemon=True).start()


# -- serving --------------------------------------------------------------------


class _TerminalFormatter(logging.Formatter):
    """One line per problem on the terminal: tracebacks are in the stream, where they belong."""

    def format(self, record: logging.LogRecord) -> str:
        return f"wsgi-logstream: {record.getMessage()}"


def _configure_logging() -> None:
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


def _resolve_token(args: argparse.Namespace) -> str | None:
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if token == "auto":
        token = secrets.token_urlsafe(18)
    if token is not None:
        try:
            TokenAuth(lambda environ, start_response: [], token)
        except ValueError as exc:
            raise UsageError(f"--token: {exc}") from None
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


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(128 + signum)


@contextlib.contextmanager
def _signals() -> Iterator[None]:
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


def _shutdown(site: Site, grace: float) -> None:
    """Cancel what runs and wait for it; a second Ctrl-C or SIGTERM kills at once."""
    try:
        site.stop(grace + 2.0)
    except (KeyboardInterrupt, Stopped):
        print("wsgi-logstream: killing now", file=sys.stderr, flush=True)
    finally:
        site.kill()


def _serve(
    args: argparse.Namespace, build: Callable[[], Site], what: str, *, grace: float, jobs_index: bool = True
) -> int:
    token = _resolve_token(args)
    host, port = args.host, args.port
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
        return site

    def announce(bound_port: int, paths: list[str]) -> None:
        base = f"http://{_url_host(host)}:{bound_port}"
        suffix = f"?token={quote(token, safe='')}" if token is not None else ""
        for path in paths:
            _say(f"{what} at {base}{path}{suffix}")
        if jobs_index:
            _say(f"all jobs at {base}/{suffix}  (Ctrl-C to stop)")
        else:
            _say("Ctrl-C to stop")

    if args.server == "gunicorn":
        return _serve_gunicorn(args, lambda: wrap(build()), announce, grace)
    return _serve_wsgiref(args, lambda: wrap(build()), announce, grace)


class _IPv6Server(ThreadingWSGIServer):
    address_family = socket.AF_INET6


def _serve_wsgiref(
    args: argparse.Namespace, build: Callable[[], Site], announce: Callable[[int, list[str]], None], grace: float
) -> int:
    server_class = _IPv6Server if ":" in args.host else ThreadingWSGIServer
    try:
        server = make_server(args.host, args.port, _not_ready, server_class, QuietHandler)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    _configure_logging()
    code = EXIT_OK
    site: Site | None = None
    with server, _signals():
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
                _shutdown(site, grace)
    return code


def _not_ready(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain"), ("Retry-After", "1")])
    return [b"starting\n"]


class _WorkerStopper:
    """Stops a gunicorn worker's jobs when it is told to stop, from a thread, not a signal handler.

    gthread's own SIGQUIT handler shuts its thread pool down inside the handler:
    when the signal lands while the main thread holds the pool's lock (in
    ``submit``), or lands twice (Ctrl-C sends SIGINT to the whole process group
    and the master relays SIGQUIT), the worker deadlocks, the master SIGKILLs
    it, and the command it ran is left behind. Here the handlers only write a
    byte to a pipe (async-signal-safe) and mark the worker as no longer alive; a
    thread cancels the jobs, and the worker leaves its loop in the ordinary way.
    """

    def __init__(self, sites: list[Site], grace: float) -> None:
        self.sites = sites
        self.grace = grace
        self._read, self._write = os.pipe()
        self._thread = threading.Thread(target=self._wait, name="wsgi-logstream-stopper", daemon=True)

    def install(self, worker: Any) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            worker.alive = False
            os.write(self._write, b"x")

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master relays Ctrl-C as SIGQUIT
        signal.signal(signal.SIGQUIT, handler)
        signal.signal(signal.SIGTERM, handler)
        self._thread.start()

    def _wait(self) -> None:
        os.read(self._read, 1)
        if self.sites:
            _shutdown(self.sites[0], self.grace)

    def finish(self) -> None:
        """At worker exit: make sure the jobs were stopped, and wait for it."""
        if self._thread.is_alive():
            os.write(self._write, b"x")
            self._thread.join(self.grace + 10)
        elif self._thread.ident is None and self.sites:
            _shutdown(self.sites[0], self.grace)


def _serve_gunicorn(
    args: argparse.Namespace, build: Callable[[], Site], announce: Callable[[int, list[str]], None], grace: float
) -> int:
    try:
        from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
        from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
    except ImportError:
        raise UsageError("--server gunicorn: gunicorn is not installed (pip install gunicorn)") from None
    _check_port_free(args.host, args.port)
    sites: list[Site] = []
    stopper = _WorkerStopper(sites, grace)

    def post_worker_init(worker: Any) -> None:
        stopper.install(worker)
        bound = worker.sockets[0].getsockname()[1] if worker.sockets else args.port
        announce(bound, sites[0].start())
        sites[0].announced.set()

    def worker_exit(server: Any, worker: Any) -> None:
        stopper.finish()

    settings = {
        "bind": f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}",
        "workers": 1,  # jobs live in one process
        "worker_class": "gthread",
        "threads": GUNICORN_THREADS,  # each viewer holds a thread for as long as it watches
        "graceful_timeout": int(grace) + 10,
        "loglevel": "warning",
        "post_worker_init": post_worker_init,
        "worker_exit": worker_exit,
        "proc_name": "wsgi-logstream",
        "control_socket_disable": True,
    }

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in settings.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> WSGIApplication:
            _configure_logging()
            sites.append(build())
            return sites[0].app

    class StopCode(Arbiter):  # type: ignore[misc]
        exit_code = EXIT_OK

        def handle_int(self) -> None:
            self.exit_code = EXIT_SIGINT
            super().handle_int()

        def handle_term(self) -> None:
            self.exit_code = EXIT_SIGTERM
            super().handle_term()

    arbiter = StopCode(Application())
    try:
        arbiter.run()
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            return int(exit_.code) if isinstance(exit_.code, int) else EXIT_USAGE
    return int(arbiter.exit_code)
