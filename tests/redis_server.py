"""A real ``redis-server`` for tests: its own free port and directory, stopped by its process id.

``start_redis(tmp_path)`` starts one and waits until it answers ``PING``;
``stop()`` ends it (SIGTERM, then SIGKILL) and ``start()`` brings it back on
the same port and directory, which is how a test takes Redis away from a
running job and gives it back. It keeps an RDB snapshot in its directory
(saved at shutdown, as a production Redis with ``save`` points does), so a
server stopped and started again has its data back; ``stop(signal.SIGKILL)``
loses what was not saved.

``start_cluster(tmp_path)`` starts a Redis Cluster of three masters (no
replicas), each a :class:`RedisServer` with ``--cluster-enabled yes`` and
its own directory and ``cluster-config-file``, joined with
``redis-cli --cluster create`` and returned once every node says
``cluster_state:ok``. A master stopped and started again (same port and
directory) rejoins with its slots and its saved data.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any, Sequence

from tests.servers import free_port, require_program, wait_until
from wsgi_logstream.record import JobRecord

__all__ = ["RedisCluster", "RedisServer", "start_cluster", "start_redis"]


class RedisServer:
    """One ``redis-server`` process; ``url`` is ``redis://127.0.0.1:<port>/0``."""

    def __init__(self, directory: Path, port: int | None = None, extra: Sequence[str] = ()) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.extra = list(extra)
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
            *self.extra,
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


class RedisCluster:
    """Three ``redis-server`` masters joined into one Redis Cluster; ``url`` is any one of them."""

    #: Milliseconds before the other masters call a silent one failed (and the cluster down), and so
    #: how soon a restarted master is taken back: short, so a test of an outage does not wait long.
    NODE_TIMEOUT = 1000

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.directory = directory
        self.nodes: list[RedisServer] = []
        for index in range(masters):
            extra = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.NODE_TIMEOUT),
                "--cluster-port", str(free_port()),  # the bus port: not port + 10000, which may be taken
            ]  # fmt: skip
            self.nodes.append(RedisServer(directory / f"node{index}", extra=extra))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def start(self) -> RedisCluster:
        """Start every master, join them (the first time), and wait until every one says the cluster is ok."""
        try:
            for node in self.nodes:
                node.start()
            if not (self.nodes[0].directory / "joined").exists():
                self._join()
                (self.nodes[0].directory / "joined").write_text("yes\n")
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _join(self) -> None:
        addresses = [f"127.0.0.1:{port}" for port in self.ports]
        args = [require_program("redis-cli"), "--cluster", "create", *addresses, "--cluster-replicas", "0"]
        done = subprocess.run([*args, "--cluster-yes"], capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            raise AssertionError(f"redis-cli --cluster create failed: {done.stdout!r} {done.stderr!r}")

    def info(self, port: int) -> str:
        """``CLUSTER INFO`` of one node ('' if it does not answer)."""
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"CLUSTER INFO\r\n")
                reply = b""
                while b"\r\n" not in reply or len(reply) < 40:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
                    if b"cluster_state:" in reply and reply.endswith(b"\r\n\r\n"):
                        break
                return reply.decode(errors="replace")
        except OSError:
            return ""

    def ok(self) -> bool:
        """Every running master says ``cluster_state:ok`` and knows every other one."""
        running = [node for node in self.nodes if node.running]
        return len(running) == len(self.nodes) and all("cluster_state:ok" in self.info(node.port) for node in running)

    def wait_ok(self, timeout: float = 30.0) -> None:
        wait_until(self.ok, timeout, f"cluster_state:ok on ports {self.ports}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_cluster(directory: Path, masters: int = 3) -> RedisCluster:
    """A started Redis Cluster of ``masters`` masters under ``directory``, each on a free port."""
    return RedisCluster(directory, masters).start()


def begun(store: Any, job_id: str) -> Any:
    """A new job of ``store``, begun: its log (the runner's end)."""
    store.create(JobRecord(id=job_id, title="t", created=time.time()))
    log = store.open_log(job_id)
    assert log.begin(time.time())
    return log


def log_line(log: Any, n: int) -> None:
    """Line ``n`` of a test job, as a runner appends it."""
    log.append_log(time.time(), 20, "INFO", "app", f"line {n}", f"INFO app: line {n}")
