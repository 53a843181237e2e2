"""The command is safe to expose: hosts it answers, one run at a time, slow clients, cookies, the token, the probe."""

from __future__ import annotations

import io
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from tests.servers import Program, RawClient, free_port, wait_until
from tests.test_cli_support import cli, python_command, read_ndjson
from tests.wire import summary
from wsgi_logstream.auth import TokenAuth
from wsgi_logstream.cli import main
from wsgi_logstream.hosts import AllowedHosts
from wsgi_logstream.probe import MAX_RUNNING, probe_app

TOKEN = "a-long-enough-token-0123"


def _request(port: int, head: str, timeout: float = 20.0) -> tuple[int, bytes]:
    """Send a whole request head (``Connection: close`` added) and read the answer: (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall((head.rstrip("\r\n") + "\r\nConnection: close\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):  # to the end: the server closes (Connection: close; the job ended)
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def _call(app: Any, path: str = "/", query: str = "", **environ: Any) -> tuple[str, dict[str, str], bytes]:
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"], captured["headers"] = status, dict(headers)

    env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": query, **environ}
    env.setdefault("wsgi.input", io.BytesIO(b""))
    result = app(env, start_response)
    try:
        body = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return captured["status"], captured["headers"], body


def _ok(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"inside"]


# -- DNS rebinding ---------------------------------------------------------------


def test_a_host_name_the_command_was_not_started_for_gets_400_so_a_rebound_page_reads_nothing() -> None:
    with cli("run", "--allow-host", "logs.example.test", command=("echo", "private")) as running:
        path, port = running.job_path, running.program.port
        status, body = _request(port, f"GET {path}?format=text HTTP/1.1\r\nHost: rebind.attacker.test:{port}")
        assert status == 400
        assert b"private" not in body
        assert _request(port, "GET / HTTP/1.1\r\nHost: attacker.test")[0] == 400
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST.:{port}", "logs.example.test"):
            status, body = _request(port, f"GET {path}?format=text HTTP/1.1\r\nHost: {host}")
            assert (host, status) == (host, 200)
            assert b"private" in body


def test_allowed_hosts_middleware_matches_names_ports_brackets_and_subdomains() -> None:
    app = AllowedHosts(_ok, ["127.0.0.1", "::1", ".example.com"])
    for host in ("127.0.0.1:80", "[::1]:8000", "example.com", "a.b.example.com.", "EXAMPLE.COM:1"):
        assert _call(app, HTTP_HOST=host)[0] == "200 OK", host
    for host in ("127.0.0.2", "example.com.evil.test", "notexample.com", "[::2]", ""):
        assert _call(app, HTTP_HOST=host)[0] == "400 Bad Request", host
    assert _call(app)[0] == "200 OK"  # HTTP/1.0 without Host: browsers always send one
    literal = AllowedHosts(_ok, ["localhost"], allow_ip_literals=True)
    assert _call(literal, HTTP_HOST="192.0.2.7:8000")[0] == "200 OK"
    assert _call(literal, HTTP_HOST="rebind.test")[0] == "400 Bad Request"
    with pytest.raises(TypeError):
        AllowedHosts(_ok, "localhost")


# -- one run at a time --------------------------------------------------------------


def test_a_restart_while_the_command_runs_is_409_and_quick_posts_start_no_second_copy(tmp_path: Any) -> None:
    gate = tmp_path / "go"
    script = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)\nprint('done')\n"
    with cli("run", "--restart", command=python_command(script)) as running:
        running.job_path  # noqa: B018 - the first run has started
        port = running.program.port
        answers = [_request(port, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0")[0] for _ in range(4)]
        assert answers == [409] * 4
        gate.write_text("go")
        wait_until(lambda: "ended (ok" in running.output(), 20, "the first run to end")
        assert _request(port, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0")[0] == 303


# -- the token -----------------------------------------------------------------------


def test_a_cookie_another_app_set_badly_does_not_hide_the_token_cookie() -> None:
    app = TokenAuth(_ok, TOKEN, cookie_name="c")
    _, headers, _ = _call(app, query=f"token={TOKEN}")
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    for other in ('prefs={"a": 1, "b": [2]}', "bare", "sp ace=x y", 'q="unterminated'):
        assert _call(app, HTTP_COOKIE=f"{other}; {cookie}")[0] == "200 OK", other
        assert _call(app, HTTP_COOKIE=f"{cookie};{other}")[0] == "200 OK", other
    assert _call(app, HTTP_COOKIE='prefs={"a": 1}; c=' + "0" * 64)[0].startswith("401")


def test_a_double_slash_path_after_a_valid_token_redirects_on_this_site() -> None:
    app = TokenAuth(_ok, TOKEN)
    for path in ("//evil.example/x", "///evil.example", "/\\evil.example"):
        status, headers, _ = _call(app, path=path, query=f"token={TOKEN}&format=text")
        assert status == "303 See Other"
        location = headers["Location"]
        assert location.startswith("/") and not location.startswith("//"), location
        assert "\\" not in location


def test_a_short_token_is_refused_with_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--token", "short-token", "--", "echo", "x"]) == 2
    assert "too short (11 characters; at least 16)" in capsys.readouterr().err


def test_the_command_it_runs_does_not_get_the_token_in_its_environment() -> None:
    with cli("run", command=("sh", "-c", "env; echo end"), env={"WSGI_LOGSTREAM_TOKEN": TOKEN}) as running:
        records = read_ndjson(running.base, running.job_path, {"Authorization": f"Bearer {TOKEN}"})
    messages = [record.get("message", "") for record in records]
    assert "end" in messages
    assert any(message.startswith("PATH=") for message in messages)  # it did print its environment
    assert not any(TOKEN in str(record) for record in records)


# -- the probe ------------------------------------------------------------------------


def test_one_small_request_can_no_longer_make_the_probe_send_65_megabytes() -> None:
    status, _, body = _call(probe_app, query="probe=1&lines=1000&size=65536&interval=0.01&format=text")
    assert status == "400 Bad Request"
    assert b"at most 1048576 bytes" in body


def test_probes_past_their_own_limit_get_503_with_retry_after_until_one_ends() -> None:
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        pass

    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": "lines=2&interval=0.01&format=text"}
    running = [probe_app(dict(env), start_response) for _ in range(MAX_RUNNING)]
    try:
        for probe in running:
            assert next(iter(probe)).startswith(b"-- probe: started")  # running: the text head is out
        status, headers, _ = _call(probe_app, query="lines=2&interval=0.01")
        assert status == "503 Service Unavailable"
        assert headers["Retry-After"] == "5"
        running.pop().close()  # type: ignore[attr-defined]
        assert _call(probe_app, query="lines=2&interval=0.01")[0] == "200 OK"
    finally:
        for probe in running:
            probe.close()  # type: ignore[attr-defined]


# -- what check prints ------------------------------------------------------------------


@contextmanager
def _raw_server(answer: bytes) -> Iterator[int]:
    """A loopback server that answers every connection with ``answer`` (a whole raw response)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def test_check_shows_escape_sequences_from_the_checked_server_as_visible_symbols(
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = b"oops \x1b]52;c;aGVsbG8=\x07 \x1b[2J gone\n"
    answer = (
        b"HTTP/1.1 502 Bad \x1b[2J Gateway\r\nServer: evil\x1b]52;c;aGk=\x07\r\nVia: 1.1 \x1b[31mred\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )
    with _raw_server(answer) as port:
        assert main(["check", f"http://127.0.0.1:{port}/x", "--no-color", "--timeout", "10"]) == 2
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "Server: evil\u241b]52;c;aGk=\u2407" in out
    assert "502 Bad \u241b[2J Gateway" in out
    assert "oops \u241b]52;c;aGVsbG8=\u2407" in out


# -- slow clients ---------------------------------------------------------------------------


def _half_sent(port: int, count: int, stack: ExitStack) -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        held.append(sock)
    return held


def _serving(port: int) -> bool:
    try:
        return _request(port, "GET /?format=json HTTP/1.1\r\nHost: 127.0.0.1", timeout=2)[0] == 200
    except OSError:
        return False


@pytest.mark.parametrize("server", ["wsgiref", pytest.param("gunicorn", marks=pytest.mark.servers)])
def test_a_half_sent_request_is_closed_after_the_header_timeout(server: str) -> None:
    with cli("run", "--server", server, "--header-timeout", "1", command=("echo", "x")) as running:
        running.job_path  # noqa: B018
        with socket.create_connection(("127.0.0.1", running.program.port), timeout=15) as slow:
            slow.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            started = time.monotonic()
            assert slow.recv(100) == b""  # closed by the server, with nothing sent: not the 15 s timeout
            took = time.monotonic() - started
            assert took < 14
            print(f"{server}: a half-sent request was closed after {took:.2f} s (--header-timeout 1)")
        assert "Traceback" not in running.output()  # a slow client is not news on the terminal


@pytest.mark.parametrize("server", ["wsgiref", pytest.param("gunicorn", marks=pytest.mark.servers)])
def test_a_normal_request_is_served_while_two_hundred_half_sent_requests_are_held(server: str) -> None:
    with cli("run", "--server", server, command=("echo", "x")) as running, ExitStack() as stack:
        running.job_path  # noqa: B018
        _half_sent(running.program.port, 200, stack)
        started = time.monotonic()
        assert wait_until(lambda: _serving(running.program.port), 10, "a normal request to be answered")
        print(
            f"{server}: with 200 half-sent requests held, a normal request answered in {time.monotonic() - started:.2f} s"
        )


def test_a_slowloris_past_the_descriptor_limit_does_not_lock_the_wsgiref_server_out() -> None:
    port = free_port()
    args = ["sh", "-c", 'ulimit -n 200 && exec "$@"', "sh", sys.executable, "-m", "wsgi_logstream", "run"]
    args += ["--port", str(port), "--", "echo", "x"]
    with Program(args, port) as program, ExitStack() as stack:
        wait_until(lambda: " at http://" in program.output(), 15, "the command to start")
        held = _half_sent(port, 300, stack)  # more than its 200 descriptors
        started = time.monotonic()
        assert wait_until(lambda: _serving(port), 15, "a normal request to be answered")
        print(
            f"wsgiref, 200 descriptors, 300 half-sent: a normal request answered in {time.monotonic() - started:.2f} s"
        )
        assert program.proc.poll() is None
        del held
        assert "Traceback" not in program.output()


# -- redaction of the command line ------------------------------------------------------------


def test_a_password_on_the_command_line_is_redacted_from_the_title_the_list_and_the_terminal() -> None:
    secret = "Xs3cr3tX"
    argv = ("sh", "-c", "echo ok", f"--password={secret}")
    with cli("run", "--redact", "default", command=argv) as running:
        path = running.job_path
        wait_until(lambda: "ended (ok" in running.output(), 20, "the run to end")
        bodies = {}
        for fmt in ("text", "html", "sse", "ndjson"):
            with RawClient(running.base, f"{path}?format={fmt}&detail=1") as client:
                bodies[fmt] = client.read_to_end()
            assert client.status == 200
        for name, query in (("list", "/"), ("list json", "/?format=json")):
            with RawClient(running.base, query) as client:
                bodies[name] = client.read_to_end()
            assert client.status == 200
        output = running.output()
    for name, body in bodies.items():
        assert secret.encode() not in body, name
    assert b"--password=[redacted]" in bodies["list json"]
    assert summary(bodies["text"], "text")["status"] == "ok"
    assert secret not in output and "--password=[redacted]" in output


def test_a_full_wsgiref_server_evicts_a_half_sent_request_first_and_answers_503_only_when_all_are_answered() -> None:
    from wsgiref.simple_server import make_server

    from wsgi_logstream.server import QuietHandler, ThreadingWSGIServer

    release = threading.Event()

    def slow(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        release.wait(20)
        return [b"ok\n"]

    class Small(ThreadingWSGIServer):
        max_connections = 2

    with make_server("127.0.0.1", 0, slow, Small, QuietHandler) as server, ExitStack() as stack:
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        stack.callback(thread.join, 10)
        stack.callback(server.shutdown)
        stack.callback(release.set)
        port = server.server_address[1]
        (half,) = _half_sent(port, 1, stack)
        answering = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
        answering.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        wait_until(lambda: server.connections == 2, 10, "both connections to be held")
        second = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
        second.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert half.recv(100) == b""  # the half-sent one made room, with no answer
        wait_until(lambda: server.answering == 2, 10, "the newcomer to be answered")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as third:
            third.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            refused = third.recv(4096)
        assert refused.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 5" in refused
        release.set()
        assert answering.recv(4096).startswith(b"HTTP/1.0 200 OK")
