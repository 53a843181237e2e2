"""The command's arguments: the parser, its option types, exit statuses and usage errors.

Nothing here serves or runs anything; :mod:`wsgi_logstream.cli` hands the
parsed arguments to the subcommand that :mod:`.sites` (or :mod:`.check`) defines.
"""

from __future__ import annotations

import argparse
import os
from typing import Callable

from .. import __version__
from ..command import TOKEN_ENV

__all__ = ["EPILOG", "HEADER_TIMEOUT", "MIN_TOKEN_LENGTH", "TOKEN_ENV", "UsageError", "build_parser"]

EXIT_OK = 0
EXIT_BUFFERS = 1
EXIT_USAGE = 2
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
MIN_TOKEN_LENGTH = 16
HEADER_TIMEOUT = 10.0

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


def _directory(text: str) -> str:
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"not a directory: {text!r}")
    if not os.access(text, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"not writable: {text!r}")
    return text


def _add_history_options(parser: argparse.ArgumentParser) -> None:
    """What a run keeps: ``--history`` lines in memory for viewers, and its whole log with ``--journal-dir``."""
    parser.add_argument(
        "--history", type=_count(1, 10_000_000), default=10_000, help="lines kept in memory (default: 10000)"
    )
    parser.add_argument(
        "--journal-dir",
        type=_directory,
        metavar="DIR",
        help="keep each run's whole log in a file under DIR (deleted at exit, not after SIGKILL): replay from any "
        "line and download of the whole log, beyond --history (at most 64 MiB a run)",
    )


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
        help=f"require this token, at least {MIN_TOKEN_LENGTH} characters ('auto': a random one; default: ${TOKEN_ENV}); "
        "browsers open the printed ?token= link once, scripts send 'Authorization: Bearer TOKEN'",
    )
    group.add_argument(
        "--allow-host",
        metavar="NAME",
        action="append",
        default=[],
        help="also answer requests for this host name (repeatable; '.example.com' takes its subdomains too). "
        "Other Host headers get 400, against DNS rebinding",
    )
    group.add_argument(
        "--header-timeout",
        type=_positive_float,
        default=HEADER_TIMEOUT,
        metavar="SECONDS",
        help=f"close a connection that has not sent a whole request head in this time (default: {HEADER_TIMEOUT:g})",
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
        "--concurrent",
        type=_count(1, 1000),
        default=1,
        metavar="N",
        help="with --restart: how many runs at once (default: 1; a restart past it is answered 409)",
    )
    run.add_argument(
        "--grace",
        type=_non_negative_float,
        default=5.0,
        help="seconds between SIGTERM and SIGKILL when stopping it (default: 5)",
    )
    run.add_argument("--name", help="logger name for its lines (default: the command's file name)")
    _add_history_options(run)
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]", help="the command to run")

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
    serve.add_argument(
        "--concurrent",
        type=_count(1, 1000),
        default=1,
        metavar="N",
        help="with --restart: how many runs at once (default: 1; a restart past it is answered 409)",
    )
    _add_history_options(serve)

    sub.add_parser(
        "demo",
        parents=[common],
        formatter_class=raw,
        help="serve the demo (the default)",
        description="Serve the demo: a pretend import, streamed in each format.",
    )

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
    return parser
