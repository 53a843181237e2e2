"""The command line's parts in process: arguments, token middleware, command lookup, the probe."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wsgi_logstream import __version__
from wsgi_logstream.auth import TokenAuth
from wsgi_logstream.cli import main
from wsgi_logstream.command import CommandError, describe_status, resolve
from wsgi_logstream.probe import probe_app


def _call(app: Any, path: str = "/job", query: str = "", **environ: Any) -> tuple[str, dict[str, str], bytes]:
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


def _inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"inner saw {environ['QUERY_STRING']!r}".encode()]


def test_token_middleware_lets_in_a_bearer_or_a_cookie_and_nothing_else() -> None:
    app = TokenAuth(_inner, "tok-\u00e9", cookie_name="c")
    assert _call(app)[0].startswith("401")
    assert _call(app, HTTP_AUTHORIZATION="Bearer tok-")[0].startswith("401")
    assert _call(app, HTTP_AUTHORIZATION="Basic tok-\u00e9")[0].startswith("401")
    assert _call(app, HTTP_AUTHORIZATION="bearer  tok-\u00e9 ")[0] == "200 OK"
    status, headers, _ = _call(app, query="a=1&token=tok-%C3%A9&b=2")
    assert status == "303 See Other"
    assert headers["Location"] == "/job?a=1&b=2"
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    assert "SameSite=Lax" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
    assert _call(app, HTTP_COOKIE=f"other=1; {cookie}")[0] == "200 OK"
    assert _call(app, HTTP_COOKIE="c=" + "0" * 64)[0].startswith("401")
    assert _call(app, HTTP_COOKIE='c="unterminated')[0].startswith("401")
    assert _call(app, query="token=wrong")[0].startswith("401")
    assert _call(app, query="token=tok-%C3%A9&token=tok-%C3%A9")[0].startswith("401")


def test_token_in_the_query_of_a_post_is_taken_out_before_the_app_sees_it() -> None:
    app = TokenAuth(_inner, "t0ken")
    status, _, body = _call(app, query="x=1&token=t0ken", REQUEST_METHOD="POST")
    assert status == "200 OK"
    assert body == b"inner saw 'x=1'"


def test_token_with_spaces_or_an_empty_token_is_refused() -> None:
    for bad in ("", " padded", "two words"):
        with pytest.raises(ValueError):
            TokenAuth(_inner, bad)


def test_command_lookup_answers_127_for_missing_and_126_for_not_executable(tmp_path: Path) -> None:
    assert resolve("sh").endswith("/sh")
    with pytest.raises(CommandError) as missing:
        resolve("no-such-command-zq7")
    assert missing.value.exit_code == 127
    plain = tmp_path / "plain"
    plain.write_text("echo\n")
    plain.chmod(0o644)
    with pytest.raises(CommandError) as not_executable:
        resolve(str(plain))
    assert not_executable.value.exit_code == 126
    with pytest.raises(CommandError) as on_path:
        resolve("plain", search_path=str(tmp_path))
    assert on_path.value.exit_code == 126
    with pytest.raises(CommandError) as directory:
        resolve(str(tmp_path))
    assert directory.value.exit_code == 126
    with pytest.raises(CommandError) as absent:
        resolve(str(tmp_path / "absent"))
    assert absent.value.exit_code == 127


def test_exit_statuses_are_described_as_a_shell_user_reads_them() -> None:
    assert describe_status(3) == "exit status 3"
    assert describe_status(-9) == "killed by signal SIGKILL"


def test_version_and_help_list_examples_and_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0
    assert __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for expected in ("examples:", "exit status:", "127", "130", "wsgi-logstream check"):
        assert expected in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--port", "0"], "run needs a command"),
        (["run", "--port", "0", "--redact", "(", "--", "true"], "redact pattern '(' is not a valid"),
        (["run", "--port", "0", "--level", "LOUD", "--", "true"], "level 'LOUD' is not a logging level"),
        (["run", "--port", "0", "--format", "%(nope)s", "--", "true"], "not a valid logging format"),
        (["serve", "--port", "0", "not a module"], "is not MODULE:CALLABLE"),
        (["check", "ftp://example.com/"], "not an http(s) URL"),
        (["check", "http://127.0.0.1:9/", "--lines", "200", "--interval", "1"], "at most 30 seconds"),
    ],
)
def test_mistakes_exit_2_with_a_message_naming_them(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err + captured.out


def test_port_in_use_exits_2_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["run", "--port", str(port), "--", "true"]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_probe_refuses_bad_parameters_and_sends_stream_headers() -> None:
    assert _call(probe_app, "/", "lines=0")[0].startswith("400")
    assert _call(probe_app, "/", "interval=abc")[0].startswith("400")
    assert _call(probe_app, "/", "lines=1000&interval=5")[0].startswith("400")  # longer than 30 s
    status, headers, body = _call(probe_app, "/", "lines=3&interval=0.01&size=40&format=text")
    assert status == "200 OK"
    assert headers["X-Accel-Buffering"] == "no" and headers["Cache-Control"] == "no-store"
    lines = body.decode().splitlines()
    assert lines[0].startswith("-- probe: started ")  # the text format's head, as a stream starts
    assert lines[1].startswith("probe start sent=") and lines[-1] == "probe end"
    lines = lines[1:]
    assert [line.split(" sent=")[0] for line in lines[1:-1]] == ["probe 1/3", "probe 2/3", "probe 3/3"]
    assert all(len(line) + 1 == 40 for line in lines[1:-1])


def test_the_package_runs_as_python_dash_m() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsgi_logstream", "--version"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and __version__ in result.stdout
