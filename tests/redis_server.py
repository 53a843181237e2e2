"""A real ``redis-server`` for tests: its own free port and directory, stopped by its process id.

``start_redis(tmp_path)`` starts one and waits until it answers ``PING``;
``stop()`` ends it (SIGTERM, then SIGKILL) and ``start()`` brings it back on
the same port and directory, which is how a test takes Redis away from a
running job and gives it back. It keeps an RDB snapshot in its directory
(saved at shutdown, as a production Redis with ``save`` points does), so a
server stopped and started again has its data back; ``stop(signal.SIGKILL)``
loses what was not saved.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import IO

from tests.servers import free_port, require_program, wait_until

__all__ = ["RedisServer", "start_redis"]


class RedisServer:
    """One ``redis-server`` process; ``url`` is ``redis://127.0.0.1:<port>/0``."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> RedisServer:
        """Start (or start again) on the same port and directory; returns once it answers PING."""
        if self.running:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - closed in stop()
        args = [
            require_program("redis-server"),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "3600 1",
            "--appendonly", "no",
            "--daemonize", "no",
            "--maxmemory-policy", "noeviction",
            "--loglevel", "warning",
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._log_file = log
        try:
            wait_until(self._answers, 20, f"redis-server on port {self.port}")
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.proc.returncode}: {self.output()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def output(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """End the server by its pid (SIGKILL if it does not go within ``timeout``); idempotent."""
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout)
            self.proc = None
        log = self._log_file
        self._log_file = None
        if log is not None:
            log.close()

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_redis(directory: Path, port: int | None = None) -> RedisServer:
    """A started ``redis-server`` in ``directory`` (a test's ``tmp_path``) on a free port."""
    server = RedisServer(directory, port)
    return server.start()
