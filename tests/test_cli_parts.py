"""The command line's parts in process: arguments, token middleware, command lookup, the probe."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.inproc import fetch
from wsgi_logstream import __version__
from wsgi_logstream.auth import TokenAuth
from wsgi_logstream.cli import main
from wsgi_logstream.command import CommandError, describe_status, resolve
from wsgi_logstream.probe import probe_app


def _inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"inner saw {environ['QUERY_STRING']!r}".encode()]


def test_token_middleware_lets_in_a_bearer_or_a_cookie_and_nothing_else() -> None:
    app = TokenAuth(_inner, "tok-\u00e9", cookie_name="c")
    assert fetch(app, path="/job").code == 401
    assert fetch(app, path="/job", headers={"Authorization": "Bearer tok-"}).code == 401
    assert fetch(app, path="/job", headers={"Authorization": "Basic tok-\u00e9"}).code == 401
    assert fetch(app, path="/job", headers={"Authorization": "bearer  tok-\u00e9 "}).status == "200 OK"
    redirect = fetch(app, "a=1&token=tok-%C3%A9&b=2", path="/job")
    assert redirect.status == "303 See Other"
    assert redirect.header("Location") == "/job?a=1&b=2"
    set_cookie = redirect.header("Set-Cookie") or ""
    cookie = set_cookie.split(";", 1)[0]
    assert "; SameSite=Lax" in set_cookie and "; HttpOnly" in set_cookie
    assert fetch(app, path="/job", headers={"Cookie": f"other=1; {cookie}"}).status == "200 OK"
    assert fetch(app, path="/job", headers={"Cookie": "c=" + "0" * 64}).code == 401
    assert fetch(app, path="/job", headers={"Cookie": 'c="unterminated'}).code == 401
    assert fetch(app, "token=wrong", path="/job").code == 401
    assert fetch(app, "token=tok-%C3%A9&token=tok-%C3%A9", path="/job").code == 401


def test_token_in_the_query_of_a_post_is_taken_out_before_the_app_sees_it() -> None:
    app = TokenAuth(_inner, "t0ken")
    reply = fetch(app, "x=1&token=t0ken", path="/job", method="POST")
    assert reply.status == "200 OK"
    assert reply.body == b"inner saw 'x=1'"


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
    assert fetch(probe_app, "lines=0").code == 400
    assert fetch(probe_app, "interval=abc").code == 400
    assert fetch(probe_app, "lines=1000&interval=5").code == 400  # longer than 30 s
    reply = fetch(probe_app, "lines=3&interval=0.01&size=40&format=text")
    assert reply.status == "200 OK"
    assert reply.header("X-Accel-Buffering") == "no" and reply.header("Cache-Control") == "no-store"
    lines = reply.body.decode().splitlines()
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
