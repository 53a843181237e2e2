"""``wsgi-logstream check URL``: the buffering self-check against real servers and a real nginx."""

from __future__ import annotations

import gzip
import io
import os
import pty
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Program, RawClient, free_port, require_program, wait_until, wsgiref_server
from tests.test_cli_support import cli
from wsgi_logstream import logstream
from wsgi_logstream.cli.check import Arrival, Reading, analyse
from wsgi_logstream.probe import probe_app
from wsgi_logstream.response import FIRST_WRITE

LINES, INTERVAL = 5, 0.25


def _check(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "wsgi_logstream",
            "check",
            url,
            "--lines",
            str(LINES),
            "--interval",
            str(INTERVAL),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )


def test_check_reports_that_the_probe_app_streams_when_nothing_is_in_between() -> None:
    with wsgiref_server(probe_app) as url:
        result = _check(f"{url}/anything")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "result: STREAMS" in result.stdout
    assert result.stdout.count(" live\n") == LINES
    assert "\x1b[" not in result.stdout  # not a terminal: no colours


def test_check_reports_that_a_real_stream_streams_through_its_probe() -> None:
    # Every stream answers ?probe=1 with the probe (wired in the package's stream apps).
    with cli("demo") as demo:
        result = _check(f"{demo.base}/import?format=html", "--as", "sse")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "result: STREAMS" in result.stdout


NGINX_CONF = """
worker_processes 1;
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /buffered/ {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_buffering on;
            proxy_ignore_headers X-Accel-Buffering;
        }}
        location /honoured/ {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_buffering on;  # but the probe's X-Accel-Buffering: no turns it off
        }}
    }}
}}
"""


@pytest.fixture
def nginx_in_front_of_the_probe() -> Iterator[str]:
    nginx = require_program("nginx")
    with wsgiref_server(probe_app) as upstream, tempfile.TemporaryDirectory(prefix="nginx-check-") as tmp:
        Path(tmp).chmod(0o755)  # workers run unprivileged when nginx starts as root
        port = free_port()
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, upstream=upstream.rsplit(":", 1)[1]))
        with Program([nginx, "-p", f"{tmp}/", "-c", str(conf), "-g", "daemon off;"], port) as server:
            yield server.url


@pytest.mark.servers
def test_check_names_nginx_and_its_fix_when_nginx_buffers_the_stream(nginx_in_front_of_the_probe: str) -> None:
    result = _check(f"{nginx_in_front_of_the_probe}/buffered/")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "result: BUFFERED: all 5 lines arrived at once" in result.stdout
    assert "likely culprit: nginx" in result.stdout
    assert "proxy_buffering off;" in result.stdout
    assert "X-Accel-Buffering: (removed on the way)" in result.stdout


@pytest.mark.servers
def test_check_reports_streaming_through_nginx_when_x_accel_buffering_is_honoured(
    nginx_in_front_of_the_probe: str,
) -> None:
    result = _check(f"{nginx_in_front_of_the_probe}/honoured/")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "result: STREAMS" in result.stdout


class _CollectingGzip:
    """The classic compression middleware mistake: gzip the whole body, so send nothing until the end."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        captured: list[Any] = []
        body = self.app(environ, lambda status, headers, exc_info=None: captured.extend([status, headers]))
        try:
            data = gzip.compress(b"".join(body))
        finally:
            getattr(body, "close", lambda: None)()
        start_response(captured[0], [*captured[1], ("Content-Encoding", "gzip")])
        return [data]


def test_check_blames_compression_when_the_response_is_gzipped_on_the_way() -> None:
    with wsgiref_server(_CollectingGzip(probe_app)) as url:
        result = _check(f"{url}/")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "likely culprit: compression (Content-Encoding: gzip)" in result.stdout


def test_check_exits_2_when_nothing_answers_or_the_url_is_not_a_stream() -> None:
    result = _check(f"http://127.0.0.1:{free_port()}/")
    assert result.returncode == 2
    assert "error: no answer" in result.stdout

    def plain_page(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello\n"]

    with wsgiref_server(plain_page) as url:
        result = _check(f"{url}/")
    assert result.returncode == 2
    assert "the response had no probe lines" in result.stdout


def _reading(arrivals: list[float], interval: float = 0.25) -> Reading:
    reading = Reading(url="http://x/", expected=len(arrivals), interval=interval)
    for number, arrived in enumerate(arrivals, 1):
        sent = 1000.0 + (number - 1) * interval
        reading.lines.append(Arrival(number, sent, arrived, number * 100))
    return reading


def test_analysis_tells_live_lines_from_held_ones_whatever_the_clock_offset() -> None:
    offset = 3600.0  # the two clocks disagree by an hour: only differences count
    live = analyse(_reading([offset + 1000.0 + n * 0.25 + 0.01 * (n % 2) for n in range(6)]))
    assert live.streams and live.pattern == "live"
    at_end = analyse(_reading([offset + 1001.3] * 6))
    assert not at_end.streams and at_end.pattern == "end"
    start = analyse(_reading([offset + 1000.5, offset + 1000.5, offset + 1000.5, offset + 1000.75, offset + 1001.0]))
    assert start.pattern == "start"
    bursts = analyse(_reading([offset + t for t in (1000.5, 1000.5, 1000.5, 1001.25, 1001.25, 1001.25)]))
    assert bursts.pattern == "bursts" and "2 bursts" in bursts.summary


def _check_on_a_terminal(url: str, env: dict[str, str]) -> str:
    """Run check with its stdout on a pseudo-terminal; what it wrote there."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "wsgi_logstream", "check", url, "--lines", "3", "--interval", "0.05"],
            stdout=follower,
            stderr=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", "TERM": "xterm", **env},
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not data:
                break
            chunks.append(data)
        assert process.wait(30) == 0
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    return b"".join(chunks).decode()


def test_check_uses_colours_and_a_progress_bar_on_a_terminal_unless_no_color_is_set() -> None:
    with wsgiref_server(probe_app) as url:
        coloured = _check_on_a_terminal(url, {})
        plain = _check_on_a_terminal(url, {"NO_COLOR": "1"})
    assert "\x1b[32mresult: STREAMS" in coloured
    assert re.search(r"\r\x1b\[K\[[#.]{30}\] [0-3]/3 lines", coloured)  # the progress bar
    assert "result: STREAMS" in plain
    assert "\x1b[3" not in plain


@pytest.mark.parametrize("fmt", ["text", "html", "sse", "ndjson"])
def test_the_probe_is_dressed_as_a_real_stream_of_its_format_headers_and_first_write(fmt: str) -> None:
    gate = threading.Event()
    real_app = logstream(lambda: gate.wait(10), title="probe")

    def first(app: Any, query: str) -> tuple[str, dict[str, str], bytes]:
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            captured["status"], captured["headers"] = status, dict(headers)

        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SCRIPT_NAME": "", "QUERY_STRING": query}
        environ["wsgi.input"] = io.BytesIO(b"")
        body = app(environ, start_response)
        try:
            chunk = next(iter(body))
        finally:
            gate.set()
            body.close()
        return captured["status"], captured["headers"], chunk

    _, real_headers, real_chunk = first(real_app, f"format={fmt}")
    status, probe_headers, probe_chunk = first(probe_app, f"format={fmt}&lines=3&interval=0.01")
    assert status == "200 OK"
    assert probe_headers == real_headers
    assert len(probe_chunk) <= FIRST_WRITE < 512  # under Caddy's threshold for compressing, as the page is
    assert probe_chunk.split(b"probe")[0] == real_chunk.split(b"probe")[0]  # the same head up to the title
    if fmt == "html":
        # The page's head, now short (its script and style are files): a job's, at the site's root.
        assert abs(len(probe_chunk) - len(real_chunk)) <= len(' data-resumable="1"') + 2


CADDYFILE = """\
{{
    admin off
    auto_https off
    storage file_system {tmp}/storage
}}
:{port} {{
    encode gzip
    reverse_proxy 127.0.0.1:{upstream}
}}
"""


@pytest.mark.servers
def test_check_agrees_with_the_page_through_caddys_encode_gzip(tmp_path: Path) -> None:
    caddy = require_program("caddy")
    gate = tmp_path / "go"
    script = (
        f"import os, time\nprint('first line', flush=True)\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)\n"
    )
    with cli("run", command=(sys.executable, "-c", script)) as running:
        path = running.job_path
        port = free_port()
        conf = tmp_path / "Caddyfile"
        conf.write_text(CADDYFILE.format(tmp=tmp_path, port=port, upstream=running.program.port))
        env = {"XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path)}
        with Program([caddy, "run", "--config", str(conf), "--adapter", "caddyfile"], port, env=env) as proxy:
            # The page, as a browser asks for it, while the command still runs.
            with RawClient(proxy.url, f"{path}?format=html", {"Accept-Encoding": "gzip"}) as page:
                wait_until(lambda: page.fill(time.monotonic() + 1) and page.status, 15, "the page's headers")
                compressed = page.headers.get("content-encoding") == "gzip"
                if not compressed:
                    page.read_until(b"first line", timeout=15)  # live: its first line while the command runs
            result = _check(f"{proxy.url}{path}")
        gate.write_text("go")
    print(f"through Caddy encode gzip: page compressed={compressed}, check exit {result.returncode}")
    # Caddy decides on what its first read of the response holds: compressed, the page waits for the end.
    # Whatever Caddy decides for the page, it decides for the probe, and check says so.
    if compressed:
        assert result.returncode == 1, result.stdout + result.stderr
        assert "compression (Content-Encoding: gzip)" in result.stdout
    else:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "result: STREAMS" in result.stdout
