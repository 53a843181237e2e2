"""A scaled-out deployment for tests: redis-server, gunicorn instances behind nginx, Celery and RQ workers.

Every program is real, started as a subprocess with its own port and
directory, and stopped by its process id. The layout is the one in
``examples/scaled/`` (its ``nginx.conf`` with two upstream servers); the
WSGI app and the workers' task module are the test's choice.

A gunicorn instance can be killed and started again on the same port (what a
deploy of the web tier does); a worker can be started after jobs were
queued (so a test sees them wait) and killed with SIGKILL (so it sees them
lost).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import IO

import psutil

from tests.nginx import Nginx
from tests.redis_server import RedisServer, start_redis
from tests.servers import ROOT, Program, free_port, require_program, stop_group, wait_until

SCALED = ROOT / "examples" / "scaled"


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH")]))
    return env


class Worker:
    """A queue worker process (its own session), ready once ``ready`` appears in its log."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str], ready: str) -> None:
        self.log = log
        self._file: IO[bytes] = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._file, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_until(lambda: self._ready(ready), 60, f"{args[1]} worker ready ({log})")
        except BaseException:
            self.stop()
            raise

    def _ready(self, marker: str) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.output()}")
        return marker in self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Signal the worker's whole process group (its pool children too) and wait for it.

        RQ's work horse has a process group of its own: any child still alive
        after the worker is gone is killed by its id.
        """
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        stop_group(self.proc, sig, timeout)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
                child.wait(timeout)
        self._file.close()


class Deployment(contextlib.AbstractContextManager["Deployment"]):
    """Two gunicorn instances of ``app`` (``workers`` processes each) behind nginx, on one Redis.

    Celery's broker and RQ's queue are in database 0, the jobs (the Redis
    store) in database 1. Workers are started by :meth:`start_celery` and
    :meth:`start_rq`.
    """

    def __init__(
        self,
        tmp: Path,
        *,
        app: str,
        tasks: str,
        rq_queue: str,
        workers: int = 2,
        lease: float = 3.0,
    ) -> None:
        self.tmp = tmp
        self.app = app
        self.tasks = tasks
        self.rq_queue = rq_queue
        self.workers = workers
        self.hold = tmp / "hold"
        self.hold.mkdir()
        self._stack = contextlib.ExitStack()
        self.gunicorns: list[Program | None] = []
        self.queue_workers: list[Worker] = []
        self._started = 0
        try:
            self.redis: RedisServer = self._stack.enter_context(start_redis(tmp / "redis"))
            broker = f"redis://127.0.0.1:{self.redis.port}/0"
            store_url = f"redis://127.0.0.1:{self.redis.port}/1"
            self.env = _env(
                {
                    "LOGSTREAM_STORE": store_url,
                    "LOGSTREAM_BROKER": broker,
                    "LOGSTREAM_HOLD": str(self.hold),
                    "LOGSTREAM_LEASE": str(lease),
                    "REDIS_URL": f"redis://127.0.0.1:{self.redis.port}",
                }
            )
            self.ports = [free_port(), free_port()]
            for index in range(2):
                self.gunicorns.append(None)
                self.start_gunicorn(index)
            self._stack.callback(self._stop_all)
            first, second = (f"127.0.0.1:{port}" for port in self.ports)
            self.nginx = self._stack.enter_context(
                Nginx(first, conf=SCALED / "nginx.conf", placeholders={"@SECOND_UPSTREAM@": second})
            )
        except BaseException:
            self._stop_all()
            self._stack.close()
            raise

    # -- gunicorn ----------------------------------------------------------------------------------

    def url(self, index: int) -> str:
        """The base URL of gunicorn instance ``index`` (not through nginx)."""
        return f"http://127.0.0.1:{self.ports[index]}"

    def start_gunicorn(self, index: int) -> Program:
        args = [
            require_program("gunicorn"),
            "--config",
            str(ROOT / "examples" / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{self.ports[index]}",
            "--workers",
            str(self.workers),
            "--log-level",
            "warning",
            self.app,
        ]
        program = Program(args, self.ports[index], env=self.env)
        self.gunicorns[index] = program
        return program

    def kill_gunicorn(self, index: int) -> None:
        """SIGKILL the instance's master and workers at once (a host gone, a crash)."""
        program = self.gunicorns[index]
        if program is not None:
            program.stop(signal.SIGKILL)
            program.log.unlink(missing_ok=True)
            self.gunicorns[index] = None

    # -- workers -----------------------------------------------------------------------------------

    def _name(self, kind: str) -> str:
        """A name no earlier worker of this deployment had: a worker killed with SIGKILL stays registered
        in Redis for a while (RQ refuses a new worker of the same name), and its log must not be read as
        the new one's."""
        self._started += 1
        return f"{kind}{self._started}"

    def start_celery(self, concurrency: int = 1) -> Worker:
        name = self._name("celery")
        log = self.tmp / f"{name}.log"
        args = [
            require_program("celery"),
            "-A",
            self.tasks,
            "worker",
            "--loglevel",
            "INFO",
            "--logfile",
            str(log),
            "--hostname",
            f"{name}@%h",
            "--pool",
            "prefork",
            "--concurrency",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        worker = Worker(args, log, self.env, "ready.")
        self.queue_workers.append(worker)
        return worker

    def start_rq(self) -> Worker:
        name = self._name("rq")
        log = self.tmp / f"{name}.log"
        args = [
            require_program("rq"),
            "worker",
            "--url",
            self.env["LOGSTREAM_BROKER"],
            "--name",
            name,
            "--logging_level",
            "INFO",
            self.rq_queue,
        ]
        worker = Worker(args, log, self.env, "Listening on")
        self.queue_workers.append(worker)
        return worker

    # -- the operation's hold ----------------------------------------------------------------------

    def release(self, key: str) -> None:
        (self.hold / key).write_text("go")

    def _stop_all(self) -> None:
        for worker in self.queue_workers:
            worker.stop()
        self.queue_workers = []
        for index in range(len(self.gunicorns)):
            program = self.gunicorns[index]
            if program is not None:
                program.stop()
                program.log.unlink(missing_ok=True)
                self.gunicorns[index] = None

    def close(self) -> None:
        self._stack.close()

    def __exit__(self, *exc: object) -> None:
        self.close()
