"""``--server gunicorn``: one gunicorn gthread worker, stopped cleanly, bounded against slow clients.

Jobs live in one process, so there is one worker; each viewer holds a thread
for as long as it watches. gunicorn's own settings bound what a client can
take, with one addition of ours:

* ``worker_connections`` = ``threads`` = :func:`~wsgi_logstream.server.connection_limit`
  (at most 256, and below the descriptor limit): every accepted connection
  has a thread, so a connection that is slow to send its request waits for
  nobody else's; past that many, new connections wait in the listen backlog
  (``backlog``, 2048 by default);
* gunicorn 27's gthread gives a connection that sends nothing 5 s before it
  gives the thread back, but one that has sent part of its head holds the
  thread while it reads the rest, with no time limit. :class:`HeadTimeoutWorker`
  puts ``--header-timeout`` on that read (10 s): a half-sent request is closed
  then, and the head is all it bounds (the response lasts as long as the stream);
* ``keepalive`` = 0: one request per connection (streams are long anyway), so
  every request is read under that timeout, and an idle connection is closed.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable

from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
from gunicorn.workers.gthread import ThreadWorker  # type: ignore[import-untyped]

from ..server import connection_limit
from .lifecycle import Site, shutdown
from .parse import EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, EXIT_USAGE, UsageError
from .terminal import configure_logging

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["HeadTimeoutWorker", "serve_gunicorn"]

_MAX_THREADS = 256


class HeadTimeoutWorker(ThreadWorker):  # type: ignore[misc]
    """gthread, with a time limit on reading a request's head (see the module docstring).

    A connection's deadline is set when it is accepted and dropped when its
    request is handed to the app; the worker's main loop (once a second, as
    for gunicorn's own keep-alive timeouts) shuts down the socket of any
    connection past it, so the thread reading the head sees the end of the
    connection and gives up quietly (gunicorn logs a socket timeout as an
    error with a traceback; an end of data it ignores).
    """

    head_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadlines: dict[Any, float] = {}
        self._head_lock = threading.Lock()

    def enqueue_req(self, conn: Any) -> None:
        if not conn.initialized:
            with self._head_lock:
                self._head_deadlines.setdefault(conn, time.monotonic() + self.head_timeout)
        super().enqueue_req(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        with self._head_lock:
            self._head_deadlines.pop(conn, None)  # the head is in: the response lasts as long as the stream
        return super().handle_request(req, conn)

    def finish_request(self, conn: Any, fs: Any) -> None:
        with self._head_lock:
            self._head_deadlines.pop(conn, None)  # answered, closed, or deferred (then closed within a second)
        super().finish_request(conn, fs)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        with self._head_lock:
            late = [conn for conn, deadline in self._head_deadlines.items() if deadline <= now]
            for conn in late:
                del self._head_deadlines[conn]
        for conn in late:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _WorkerStopper:
    """Stops a gunicorn worker's jobs when it is told to stop, from a thread, not a signal handler.

    gthread's own SIGQUIT handler shuts its thread pool down inside the handler:
    when the signal lands while the main thread holds the pool's lock (in
    ``submit``), or lands twice (Ctrl-C sends SIGINT to the whole process group
    and the master relays SIGQUIT), the worker deadlocks, the master SIGKILLs
    it, and the command it ran is left behind. Here the handlers only write a
    byte to a pipe (async-signal-safe) and mark the worker as no longer alive; a
    thread cancels the jobs, and the worker leaves its loop in the ordinary way.

    The stopper is made in the master and the thread in the worker, after the
    fork (:meth:`install`): Python 3.13 marks every thread handle of the parent
    as finished in a forked child, started or not, so a ``Thread`` made before
    the fork cannot be started in the worker ("thread already started").
    """

    def __init__(self, sites: list[Site], grace: float) -> None:
        self.sites = sites
        self.grace = grace
        self._read, self._write = os.pipe()
        self._thread: threading.Thread | None = None

    def install(self, worker: Any) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            worker.alive = False
            os.write(self._write, b"x")

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master relays Ctrl-C as SIGQUIT
        signal.signal(signal.SIGQUIT, handler)
        signal.signal(signal.SIGTERM, handler)
        self._thread = threading.Thread(target=self._wait, name="wsgi-logstream-stopper", daemon=True)
        self._thread.start()

    def _wait(self) -> None:
        os.read(self._read, 1)
        if self.sites:
            shutdown(self.sites[0], self.grace)

    def finish(self) -> None:
        """At worker exit: make sure the jobs were stopped, and wait for it."""
        if self._thread is None:  # the worker stopped before post_worker_init: no thread to ask
            if self.sites:
                shutdown(self.sites[0], self.grace)
        elif self._thread.is_alive():
            os.write(self._write, b"x")
            self._thread.join(self.grace + 10)


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve_gunicorn(
    args: argparse.Namespace, build: Callable[[], Site], announce: Callable[[int, list[str]], None], grace: float
) -> int:
    _check_port_free(args.host, args.port)
    connections = connection_limit(_MAX_THREADS)
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
        "worker_class": type("Worker", (HeadTimeoutWorker,), {"head_timeout": args.header_timeout}),
        "threads": connections,  # each viewer holds a thread for as long as it watches
        "worker_connections": connections,  # so every connection has a thread: a slow one waits for nobody
        "keepalive": 0,  # one request per connection: each head is read under the head timeout
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
            configure_logging()
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
