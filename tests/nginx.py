"""nginx in front of gunicorn with ``examples/nginx.conf``, and the site the deploy tests put behind it.

:class:`Nginx` renders the example config for a free loopback port, an
upstream and a temporary directory, checks it with ``nginx -t`` (so a bad
config fails with nginx's own message), and runs nginx in the foreground as a
:class:`servers.Program`, stopped by PID. The rendering changes nothing of the
example but its placeholders, plus what a test run needs and a real host has
already: log, pid and temporary paths inside the temporary directory.

``application`` is the WSGI site behind it (gunicorn imports it as
``tests.nginx:application``; it needs nothing but the standard library and the
package). Its operation works like ``tests/apps/handshake.py``: it logs
``first K`` and then waits (at most 30 s) until the test asks ``/release?key=K``,
which the test does only after its client has seen that line, so a pass proves
the line was streamed while the operation was blocked. It then logs
``second K`` and three numbered lines. The site also counts, per key, the
operations started, the requests that reached a stream route (an
EventSource's reconnection included) and the stream responses not yet closed,
and serves an ordinary page and a page that follows a stream with
``EventSource``.

The deployment tests also share :func:`gunicorn_with` (gunicorn with one of
the example configs), :func:`handshake` and :func:`assert_ended_ok` from here.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import parse_qs

from tests.servers import ROOT, Program, RawClient, free_port, require_program
from tests.wire import summary
from wsgi_logstream import LogStreamMiddleware

EXAMPLE_CONF = ROOT / "examples" / "nginx.conf"
_PLACEHOLDER = re.compile(r"@[A-Z_]+@")
_TEMP_PATH = re.compile(r"--http-([a-z-]+)-temp-path=")


def _temp_path_directives(nginx: str, tmp: Path) -> list[str]:
    """A ``*_temp_path`` inside ``tmp`` for each module this nginx was built with."""
    built = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=10, check=True).stderr
    return [f"{name.replace('-', '_')}_temp_path {tmp / name};" for name in _TEMP_PATH.findall(built)]


class Nginx:
    """nginx serving ``conf`` (the example by default) on a free loopback port, proxying to ``upstream``.

    ``http_extra`` is added at the top of the ``http`` block (a test's variation
    on the example, e.g. ``proxy_ignore_headers X-Accel-Buffering;``).
    ``placeholders`` fills a config's other ``@NAME@`` placeholders (a second upstream server).
    """

    def __init__(
        self,
        upstream: str,
        *,
        conf: Path = EXAMPLE_CONF,
        http_extra: Iterable[str] = (),
        placeholders: dict[str, str] | None = None,
    ) -> None:
        nginx = require_program("nginx")
        self.tmp = Path(tempfile.mkdtemp(prefix="nginx-"))
        # Workers run as an unprivileged user when nginx starts as root: let them in.
        self.tmp.chmod(0o755)
        self.port = free_port()
        values = {"@LISTEN@": f"127.0.0.1:{self.port}", "@UPSTREAM@": upstream, **(placeholders or {})}
        text = "".join(
            line if line.lstrip().startswith("#") else _PLACEHOLDER.sub(lambda m: values.get(m[0], m[0]), line)
            for line in conf.read_text().splitlines(keepends=True)
        )
        left = [
            name
            for line in text.splitlines()
            if not line.lstrip().startswith("#")
            for name in _PLACEHOLDER.findall(line)
        ]
        assert not left, f"{conf} has placeholders tests/nginx.py does not fill: {left}"
        local = [f"access_log {self.tmp / 'access.log'};", *_temp_path_directives(nginx, self.tmp), *http_extra]
        head = "http {\n" + "".join(f"    {line}\n" for line in local)
        text, found = re.subn(r"^http \{\n", head, text, count=1, flags=re.M)
        assert found, f"{conf} has no 'http {{' block"
        self.conf = self.tmp / "nginx.conf"
        self.conf.write_text(text)
        self.error_log = self.tmp / "error.log"
        args = [
            nginx,
            "-p",
            f"{self.tmp}/",
            "-c",
            str(self.conf),
            "-g",
            f"daemon off; pid {self.tmp / 'nginx.pid'}; error_log {self.error_log} info;",
        ]
        checked = subprocess.run([*args, "-t"], capture_output=True, text=True, timeout=30)
        if checked.returncode != 0:
            shutil.rmtree(self.tmp)
            raise AssertionError(f"nginx -t rejects the rendered {conf.name}:\n{checked.stderr}\n{text}")
        try:
            self.program = Program(args, self.port)
        except BaseException:
            shutil.rmtree(self.tmp)
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def errors(self) -> str:
        """nginx's error log so far (for assertion messages)."""
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def stop(self) -> None:
        try:
            self.program.stop()
            self.program.log.unlink(missing_ok=True)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)  # nginx made its temp dirs as its worker user

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the site behind nginx ------------------------------------------------------------------

log = logging.getLogger("deploy.site")
_lock = threading.Lock()
_releases: dict[str, threading.Event] = {}
_released_prefixes: set[str] = set()  # /release?key=P* : every operation whose key starts with P, now or later
runs: Counter[str] = Counter()  # operations started, per key
requests: Counter[str] = Counter()  # requests that reached a stream route, per key (204 answers included)
_open = Counter[str]()  # _open["streams"]: stream responses the server has not closed yet
STREAM_PATHS = ("/ops/run", "/events/run")


def _key(environ: dict[str, Any]) -> str:
    return parse_qs(environ.get("QUERY_STRING", "")).get("key", ["k"])[0]


def _release(key: str) -> None:
    with _lock:
        if key.endswith("*"):
            prefix = key[:-1]
            _released_prefixes.add(prefix)
            for name, event in _releases.items():
                if name.startswith(prefix):
                    event.set()
        else:
            _releases.setdefault(key, threading.Event()).set()


def operation(environ: dict[str, Any]) -> None:
    key = _key(environ)
    with _lock:
        runs[key] += 1
        event = _releases.setdefault(key, threading.Event())
        if any(key.startswith(prefix) for prefix in _released_prefixes):
            event.set()
    try:
        log.info("first %s", key)
        released = event.wait(30)
        log.info("second %s released=%s", key, released)
        for number in (1, 2, 3):
            log.info("line %d of %s", number, key)
    finally:
        with _lock:
            _releases.pop(key, None)


PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>An ordinary page</title></head><body>'
    + "".join(f"<p>Paragraph {n} of an ordinary page, which nginx buffers and compresses.</p>" for n in range(60))
    + "</body></html>"
).encode()

# Follows /events/run with EventSource and records what it sees. It never calls
# close(): the test proves EventSource stops by itself (the library's 204).
SSE_PAGE = b"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>EventSource</title></head>
<body><pre id="seen"></pre><script>
window.received = []; window.ended = null; window.opens = 0; window.errors = 0;
const source = new EventSource("/events/run" + location.search);
window.source = source;
source.onopen = () => { window.opens += 1; };
source.onerror = () => { window.errors += 1; };
source.onmessage = (event) => {
  window.received.push(event.data);
  document.getElementById("seen").textContent += event.data + "\\n";
};
source.addEventListener("end", (event) => { window.ended = JSON.parse(event.data); });
</script></body></html>
"""


def _site(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    path = environ.get("PATH_INFO", "")
    key = _key(environ)
    content_type = "text/plain; charset=utf-8"
    if path == "/release":
        _release(key)
        body = b"released\n"
    elif path == "/count":
        with _lock:
            body = json.dumps({"runs": runs[key], "requests": requests[key], "open": _open["streams"]}).encode()
        content_type = "application/json"
    elif path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/page":
        body, content_type = PAGE, "text/html; charset=utf-8"
    elif path == "/sse.html":
        body, content_type = SSE_PAGE, "text/html; charset=utf-8"
    else:
        start_response("404 Not Found", [("Content-Type", content_type), ("Content-Length", "10")])
        return [b"not found\n"]
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


_streams = LogStreamMiddleware(_site, dict.fromkeys(STREAM_PATHS, operation), heartbeat=5, title="Deploy test")


class _Counted:
    """A stream's iterable, counted as open until the server calls ``close()``."""

    def __init__(self, inner: Iterable[bytes]) -> None:
        self._inner = inner
        self._closed = False
        with _lock:
            _open["streams"] += 1

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._inner)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            with _lock:
                _open["streams"] -= 1


def application(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    if environ.get("PATH_INFO") not in STREAM_PATHS:
        return _streams(environ, start_response)
    with _lock:
        requests[_key(environ)] += 1
    return _Counted(_streams(environ, start_response))


# --- helpers the deployment tests share ------------------------------------------------------

EXAMPLES = ROOT / "examples"


def gunicorn_with(conf: str, app: str, *extra: str, env: dict[str, str] | None = None) -> Program:
    """gunicorn with ``examples/<conf>`` as its config, on a free loopback port, one worker.

    One worker, because a test's release must reach the process whose
    operation waits for it; ``extra`` flags override the config file.
    """
    port = free_port()
    args = [
        require_program("gunicorn"),
        "--config",
        str(EXAMPLES / conf),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        *extra,
        app,
    ]
    return Program(args, port, env=env)


def django_example(env: dict[str, str], setup: Iterable[list[str]] = (["-m", "tests.apps.django_site"],)) -> Program:
    """The Django example under gunicorn, once each ``setup`` command has run with this Python and ``env``: by
    default ``tests/apps/django_site.py``, which migrates the database (``EXAMPLE_DJANGO_DB``) and makes the users."""
    for args in setup:
        subprocess.run(
            [sys.executable, *args],
            cwd=ROOT,
            env={**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])},
            check=True,
            timeout=120,
            stdout=subprocess.DEVNULL,
        )
    return gunicorn_with(
        "gunicorn.conf.py", "examples.django_project.wsgi:application", "--graceful-timeout", "1", env=env
    )


def handshake(client: RawClient, key: str, release_url: str) -> bytes:
    """Read ``first <key>`` while the operation waits for us, then release it and read to the end."""
    client.read_until(f"first {key}".encode())
    assert f"second {key}".encode() not in client.body, "the operation went on before it was released"
    with urllib.request.urlopen(release_url, timeout=10) as reply:
        assert reply.status == 200
    return client.read_to_end()


def assert_ended_ok(fmt: str, body: bytes) -> None:
    """``body`` ends with the format's end summary, status ok (read by ``tests.wire.summary``)."""
    end = summary(body, fmt)
    assert end["status"] == "ok", end
