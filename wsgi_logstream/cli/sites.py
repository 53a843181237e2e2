"""What each subcommand serves: ``run``, ``tail``, ``serve``, ``demo``, and ``check`` (which serves nothing).

Each builds a :class:`~.lifecycle.Site` in the process that will serve it and
hands it to :func:`.serve.serve`; ``check`` reads a stream instead.
"""

from __future__ import annotations

import argparse
import os
import shlex
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..command import Command, CommandError
from ..follow import Tail
from ..probe import MAX_BYTES, MAX_SECONDS
from . import jobview
from .check import run_check
from .lifecycle import Site
from .parse import TOKEN_ENV, UsageError
from .serve import serve
from .targets import import_target, make_jobs, redacted, short, stream_options
from .terminal import say

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..jobs import JobHandle, JobsApp

__all__ = ["SUBCOMMANDS", "OneRunAtATime", "ReplayLast"]


def check(args: argparse.Namespace) -> int:
    if args.interval * (args.lines - 1) > MAX_SECONDS:
        raise UsageError(f"a probe lasts at most {MAX_SECONDS:g} seconds: lower --lines or --interval")
    if args.lines * args.size > MAX_BYTES:
        raise UsageError(f"a probe sends at most {MAX_BYTES} bytes: lower --lines or --size")
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


def _restartable(args: argparse.Namespace, target: Callable[..., object], options: dict[str, Any], what: str) -> Site:
    """The site of ``run`` and ``serve``: one job at launch, more on ``POST /`` with ``--restart``."""
    app = make_jobs(target, options, allow_start=args.restart, max_history=args.history, journal_dir=args.journal_dir)

    def start() -> list[str]:
        job = jobview.start(app)
        _announce_end(job, what, site.announced)
        return [jobview.job_path(job)]

    kill = target.kill_all if isinstance(target, Command) else (lambda: None)
    served: WSGIApplication = OneRunAtATime(app, args.concurrent) if args.restart else app
    site = Site(served, start, app.shutdown, kill)
    return site


def run(args: argparse.Namespace) -> int:
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
    line = short(shlex.join(argv))
    options = stream_options(args, title=line, traceback=False)
    what = f"`{redacted(options, line)}`"
    return serve(args, lambda: _restartable(args, command, options, what), what, grace=args.grace)


def tail(args: argparse.Namespace) -> int:
    files: list[str] = args.files
    default_format = "%(message)s" if len(files) == 1 else "%(name)s: %(message)s"
    options = stream_options(args, title="tail -F " + " ".join(files), formatter=default_format, traceback=False)
    target = Tail(files, lines=args.lines, interval=args.interval)
    what = "tail -F " + " ".join(shlex.quote(name) for name in files)

    def build() -> Site:
        # The job keeps up to 10000 lines so a live viewer never misses one in a burst;
        # a new viewer starts N lines from the end, as tail does.
        app = make_jobs(target, options, allow_start=False, max_history=max(args.lines, 10_000))
        replay = ReplayLast(app, args.lines)

        def start() -> list[str]:
            job = jobview.start(app)
            path = jobview.job_path(job)
            replay.jobs[path] = job
            return [path]

        return Site(replay, start, app.shutdown, lambda: None)

    return serve(args, build, what, grace=2.0)


def serve_callable(args: argparse.Namespace) -> int:
    target = import_target(args.target)
    options = stream_options(args, title=args.target)
    return serve(args, lambda: _restartable(args, target, options, args.target), args.target, grace=5.0)


def demo(args: argparse.Namespace) -> int:
    from ..demo import make_app

    options = stream_options(args)

    def build() -> Site:
        return Site(make_app(**options), lambda: ["/"], lambda timeout: None, lambda: None)

    return serve(args, build, "the demo", grace=1.0, jobs_index=False)


SUBCOMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": run,
    "tail": tail,
    "serve": serve_callable,
    "demo": demo,
    "check": check,
}


class OneRunAtATime:
    """``POST /`` (a restart) while ``limit`` runs are running is answered ``409 Conflict``.

    Without it, every POST started another copy of the command at once. The
    lock makes the count and the start one step (the jobs app adds the new
    job, running, before it answers), so quick POSTs cannot slip past it.
    """

    def __init__(self, app: JobsApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST" or (environ.get("PATH_INFO") or "/") != "/":
            return self.app(environ, start_response)
        with self._lock:
            if jobview.running(self.app) < self.limit:
                return self.app(environ, start_response)
        runs = "it is" if self.limit == 1 else f"{self.limit} runs are"
        body = (
            f"409 Conflict: {runs} still running; start again when it has ended "
            "(or run wsgi-logstream with --concurrent N)\n"
        ).encode()
        start_response(
            "409 Conflict",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]


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
            since = max(jobview.next_seq(job) - 1 - self.lines, 0)
            environ = dict(environ)
            environ["QUERY_STRING"] = f"{query}&since={since}" if query else f"since={since}"
        return self.app(environ, start_response)


def _announce_end(job: JobHandle, what: str, announced: threading.Event) -> None:
    """Say on the terminal when the job ends (after its URL was printed); its log stays served."""

    def wait() -> None:
        jobview.wait(job, None)
        announced.wait()
        say(f"{what} ended ({jobview.ending(job)}); its log stays here. Ctrl-C to stop.")

    threading.Thread(target=wait, name="wsgi-logstream-announce", daemon=True).start()
