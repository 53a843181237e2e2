"""``wsgi-logstream serve``, ``demo``, ``--token`` and ``--server gunicorn``, end to end."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.servers import Program, RawClient, free_port, process_gone, wait_until
from tests.test_cli_support import cli, printed_pids, python_command, read_ndjson

TASKS = textwrap.dedent(
    """
    import logging, os, time

    log = logging.getLogger("tasks")

    def slow():
        log.info("first step")
        deadline = time.monotonic() + 20
        while not os.path.exists(os.environ["RELEASE_FILE"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        log.debug("detail")
        log.info("second step")

    def fail():
        log.info("working")
        raise ValueError("boom at the end")
    """
)


def test_serve_streams_what_a_callable_logs_while_it_runs(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(TASKS)
    release = tmp_path / "release"
    with (
        cli("serve", "tasks:slow", cwd=tmp_path, env={"RELEASE_FILE": str(release)}) as running,
        RawClient(running.base, f"{running.job_path}?format=text") as client,
    ):
        client.read_until(b"INFO    tasks: first step\n")
        assert b"second step" not in client.body
        release.touch()
        body = client.read_to_end()
    assert b"tasks: second step" in body
    assert b"detail" not in body  # --level defaults to INFO
    assert body.splitlines()[-1].startswith(b"-- ok")


def test_serve_ends_with_error_and_traceback_when_the_callable_raises(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(TASKS)
    with cli("serve", "tasks:fail", "--level", "DEBUG", cwd=tmp_path) as running:
        events = read_ndjson(running.base, running.job_path)
    assert [e["message"] for e in events if e["event"] == "log"] == ["working"]
    end = events[-1]
    assert end["status"] == "error"
    assert end["error"] == "ValueError: boom at the end"
    assert 'raise ValueError("boom at the end")' in end["traceback"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_q9:main", "cannot import 'no_such_module_q9'"),
        ("tasks:missing", "'tasks' has no 'missing'"),
        ("tasks:log", "is not callable"),
    ],
)
def test_serve_exits_2_with_a_clear_message_when_the_target_cannot_be_had(
    tmp_path: Path, target: str, message: str
) -> None:
    (tmp_path / "tasks.py").write_text(TASKS)
    result = subprocess.run(
        [sys.executable, "-m", "wsgi_logstream", "serve", "--port", str(free_port()), target],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "http://" not in result.stdout


def test_no_subcommand_serves_the_demo() -> None:
    port = free_port()
    with (
        Program([sys.executable, "-m", "wsgi_logstream", "--port", str(port)], port) as demo,
        RawClient(demo.url, "/import?rows=3&delay=0.01&format=text") as client,
    ):
        body = client.read_to_end()
    assert b"row 3 imported" in body
    assert body.splitlines()[-1].startswith(b"-- ok")


def test_token_is_required_by_header_or_by_a_cookie_set_from_a_link() -> None:
    with cli("run", "--token", "s3cret-token-0f9c", command=("echo", "private")) as running:
        path = running.job_path
        assert f"{path}?token=s3cret-token-0f9c" in running.output()  # the link it prints
        with RawClient(running.base, f"{path}?format=text") as anonymous:
            anonymous.read_to_end()
        assert anonymous.status == 401
        with RawClient(running.base, f"{path}?format=text", {"Authorization": "Bearer wrong"}) as wrong:
            wrong.read_to_end()
        assert wrong.status == 401
        with RawClient(running.base, f"{path}?format=text", {"Authorization": "Bearer s3cret-token-0f9c"}) as bearer:
            assert b"private" in bearer.read_to_end()
        with RawClient(running.base, f"{path}?format=text&token=s3cret-token-0f9c") as link:
            link.read_to_end()
        assert link.status == 303
        assert link.headers["location"] == f"{path}?format=text"  # the token leaves the address bar
        cookie = link.headers["set-cookie"].split(";", 1)[0]
        assert "s3cret-token-0f9c" not in cookie
        assert "HttpOnly" in link.headers["set-cookie"]
        with RawClient(running.base, f"{path}?format=text", {"Cookie": cookie}) as browser:
            assert b"private" in browser.read_to_end()
        assert browser.status == 200


def test_listening_beyond_loopback_without_a_token_warns_who_can_read_the_logs() -> None:
    with cli("run", "--host", "0.0.0.0", command=("echo", "x")) as running:
        running.job_path  # noqa: B018 - wait until it serves
        assert "anyone who can reach this machine" in running.output()
    with cli("run", "--host", "0.0.0.0", "--token", "auto", command=("echo", "x")) as running:
        running.job_path  # noqa: B018
        assert "anyone who can reach" not in running.output()
        assert "?token=" in running.output()
    with cli("run", command=("echo", "x")) as running:
        running.job_path  # noqa: B018
        assert "warning" not in running.output()


FAMILY = """
import os, subprocess, time
child = subprocess.Popen(["sleep", "300"])
print("pids %d %d" % (os.getpid(), child.pid), flush=True)
time.sleep(300)
"""


@pytest.mark.servers
def test_run_under_gunicorn_streams_and_ctrl_c_leaves_no_child() -> None:
    with cli("run", "--server", "gunicorn", "--grace", "1", command=python_command(FAMILY)) as running:
        pids = printed_pids(running.base, running.job_path)
        assert len(pids) == 2 and not any(process_gone(pid) for pid in pids)
        code = running.stop(signal.SIGINT)
        assert code == 130, running.output()
        wait_until(
            lambda: all(process_gone(pid) for pid in pids), 15, f"processes {pids} to be gone:\n{running.output()}"
        )
