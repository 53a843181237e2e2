"""Real servers for tests: wsgiref in a thread, programs as subprocesses, raw sockets.

Every wait here is on a condition with a bound; nothing sleeps and hopes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import psutil

import wsgi_logstream

ROOT = Path(__file__).resolve().parent.parent
#: The package under test and the directory it is imported from: the checkout in a development venv, the venv's
#: site-packages when scripts/test runs the suite against the installed wheel (the tree has no package then).
PACKAGE_DIR = Path(wsgi_logstream.__file__).resolve().parent
PACKAGE_ROOT = PACKAGE_DIR.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, message: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def process_gone(pid: int) -> bool:
    """No such process, or only its zombie (it may exit between any two looks at it)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Signal the process group ``proc`` leads (started with ``start_new_session``) and wait for it; SIGKILL
    after ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = True
    request_queue_size = 128  # tests open dozens of connections at once


class _QuietHandler(WSGIRequestHandler):
    sndbuf: int | None = None

    def setup(self) -> None:
        if self.sndbuf is not None:
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def wsgiref_server(app: Any, *, sndbuf: int | None = None) -> Iterator[str]:
    """Serve ``app`` with a threaded ``wsgiref`` server; yields its base URL.

    ``sndbuf`` shrinks each connection's send buffer, so that a client that
    stops reading fills the socket after kilobytes, not megabytes.
    """
    handler = type("Handler", (_QuietHandler,), {"sndbuf": sndbuf})
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30.0) -> None:
    def ready() -> bool:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode} before listening on {port}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(ready, timeout, f"a server on port {port}")


def require_program(name: str) -> str:
    """The path of ``name``; a clear failure (not a skip) when it is missing."""
    for candidate in (VENV_BIN / name, Path("/usr/sbin") / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} is not installed: run scripts/test, which installs it")
    return found


class Program(contextlib.AbstractContextManager["Program"]):
    """A server program started as a subprocess, stopped by PID."""

    def __init__(self, args: list[str], port: int, *, cwd: Path | None = None, env: dict[str, str] | None = None):
        self.args = args
        self.port = port
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"prog-{os.getpid()}-{port}.log"
        self._log_file = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), str(ROOT / "tests"), full_env.get("PYTHONPATH")])
        )
        self.proc = subprocess.Popen(
            args,
            cwd=cwd or ROOT,
            env=full_env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_port(port, self.proc)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        stop_group(self.proc, sig, timeout)
        self._log_file.close()
        return self.proc.returncode

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)


def gunicorn(
    app: str,
    *,
    worker_class: str = "gthread",
    threads: int = 8,
    workers: int = 1,
    extra: tuple[str, ...] = (),
) -> Program:
    """Start gunicorn serving ``app`` (``module:callable``) on a free loopback port."""
    port = free_port()
    args = [
        require_program("gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--threads",
        str(threads),
        "--graceful-timeout",
        "5",
        "--log-level",
        "warning",
        *extra,
        app,
    ]
    return Program(args, port)


class RawClient(contextlib.AbstractContextManager["RawClient"]):
    """An HTTP/1.1 client on a raw socket that reads the body as it arrives."""

    def __init__(self, url: str, path: str, headers: dict[str, str] | None = None, method: str = "GET"):
        host_port = url.split("//", 1)[1]
        host, port = host_port.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host_port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.raw = b""
        self.status = 0
        self.headers: dict[str, str] = {}
        self._body_start = -1

    def fill(self, deadline: float) -> bool:
        """Receive once (until ``deadline`` at most); False when the server closed."""
        return self._fill(deadline)

    def _fill(self, deadline: float) -> bool:
        self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        if not data:
            return False
        self.raw += data
        if self._body_start < 0 and b"\r\n\r\n" in self.raw:
            head, _, _ = self.raw.partition(b"\r\n\r\n")
            self._body_start = len(head) + 4
            first, *rest = head.decode("latin-1").split("\r\n")
            self.status = int(first.split()[1])
            for line in rest:
                key, _, value = line.partition(":")
                self.headers[key.strip().lower()] = value.strip()
        return True

    @property
    def body(self) -> bytes:
        """The body received so far, de-chunked if the response is chunked."""
        if self._body_start < 0:
            return b""
        data = self.raw[self._body_start :]
        if self.headers.get("transfer-encoding", "").lower() != "chunked":
            return data
        return dechunk_body(data, complete=False)

    def read_until(self, marker: bytes, timeout: float = 10.0) -> bytes:
        """Read until ``marker`` is in the body; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while marker not in self.body:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {marker!r}; got {self.body[-500:]!r}")
            if not self._fill(deadline):
                if marker in self.body:
                    break
                raise AssertionError(f"connection closed before {marker!r}; got {self.body[-500:]!r}")
        return self.body

    def read_to_end(self, timeout: float = 30.0) -> bytes:
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for the end; got {self.body[-500:]!r}")
        return self.body

    def close(self) -> None:
        self.sock.close()

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- raw sockets, for clients a RawClient is too polite to be ----------------------


def dechunk_body(data: bytes, *, complete: bool = True) -> bytes:
    """A chunked body's data; with ``complete`` it must end with the last chunk, else what has arrived so far."""
    out: list[bytes] = []
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            assert not complete, f"a chunked body cut inside a chunk size: {data[pos : pos + 40]!r}"
            return b"".join(out)
        size = int(data[pos:end].split(b";")[0] or b"0", 16)
        if size == 0:
            return b"".join(out)
        if end + 2 + size > len(data):
            assert not complete, f"a chunked body cut inside a chunk of {size} bytes"
            return b"".join([*out, data[end + 2 : end + 2 + size]])
        out.append(data[end + 2 : end + 2 + size])
        pos = end + 2 + size + 2


def dechunk(raw: bytes) -> bytes:
    """The body of a whole raw response (head included), de-chunked; fails on a chunked body that was cut."""
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        return body
    return dechunk_body(body)


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].split(":")
    return host, int(port)


def stuck_socket(url: str, path: str) -> socket.socket:
    """A connection with a 4 KiB receive buffer that has sent its request and reads nothing yet."""
    host, port = _host_port(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect((host, port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
    return sock


def read_all(sock: socket.socket, timeout: float = 60) -> bytes:
    """Everything until the server closes the connection (head included)."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        assert time.monotonic() < deadline, "the stream did not end"
        chunk = sock.recv(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def half_closed(url: str, path: str) -> bytes:
    """Send the request, shut down the sending side, read the whole response body."""
    host, port = _host_port(url)
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        sock.shutdown(socket.SHUT_WR)
        return dechunk(read_all(sock, timeout=30))


def stats(url: str, key: str = "") -> dict[str, Any]:
    """``/stats`` of ``tests/apps/hostile_app.py``."""
    with urllib.request.urlopen(f"{url}/stats?key={key}", timeout=10) as reply:
        return json.loads(reply.read())  # type: ignore[no-any-return]
