"""``wsgi-logstream run -- CMD``: a command's output as a job, end to end over real sockets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.servers import RawClient, free_port, process_gone, wait_until
from tests.test_cli_support import cli, printed_pids, python_command, read_ndjson
from tests.wire import ndjson_objects

# Prints a line, then waits (at most 20 s) for the file named in argv[1] before going on:
# the test creates it only after its client has read the first line.
HANDSHAKE = """
import os, sys, time
print("first line", flush=True)
deadline = time.monotonic() + 20
while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
    time.sleep(0.01)
print("second line released=%s" % os.path.exists(sys.argv[1]), file=sys.stderr, flush=True)
"""


def test_run_streams_each_line_while_the_command_is_still_running(tmp_path: Path) -> None:
    release = tmp_path / "release"
    with (
        cli("run", "--name", "slow", command=(*python_command(HANDSHAKE), str(release))) as running,
        RawClient(running.base, f"{running.job_path}?format=text") as client,
    ):
        client.read_until(b"INFO    slow: first line")
        assert b"slow: second line" not in client.body  # the command is blocked until we say so
        release.touch()
        body = client.read_to_end()
    assert b"WARNING slow: second line released=True" in body
    assert body.splitlines()[-1].startswith(b"-- ok (after ")


def test_run_non_zero_exit_ends_the_job_with_error_and_the_exit_status() -> None:
    with cli("run", command=("sh", "-c", "echo partial work; exit 3")) as running:
        events = read_ndjson(running.base, running.job_path)
    assert [e["message"] for e in events if e["event"] == "log"] == ["partial work"]
    assert events[-1]["event"] == "end"
    assert events[-1]["status"] == "error"
    assert "exit status 3" in events[-1]["error"]


# Writes bytes that are not UTF-8, then 1.5 MiB with no newline, then waits for the release file,
# then ends the long line: the first 1 MiB must arrive before the release.
ODD_OUTPUT = """
import os, sys, time
out = sys.stdout.buffer
out.write(b"bad \\xff\\xfe bytes\\n")
out.write(b"x" * (1024 * 1024 + 512 * 1024))
out.flush()
deadline = time.monotonic() + 20
while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
    time.sleep(0.01)
out.write(b"yz\\n")
out.flush()
"""


def test_run_escapes_invalid_utf8_and_splits_a_very_long_line_instead_of_holding_it(tmp_path: Path) -> None:
    release = tmp_path / "release"
    with (
        cli("run", command=(*python_command(ODD_OUTPUT), str(release))) as running,
        RawClient(running.base, f"{running.job_path}?format=ndjson") as client,
    ):
        client.read_until(b'"seq":2,', timeout=20)  # the first 1 MiB piece, while the line is unfinished
        release.touch()
        body = client.read_to_end()
    events = ndjson_objects(body)
    messages = [e["message"] for e in events if e["event"] == "log"]
    assert messages[0] == "bad \\udcff\\udcfe bytes"
    assert [len(m) for m in messages[1:]] == [1024 * 1024, 512 * 1024 + 2]
    assert messages[2].endswith("xyz")
    assert events[-1]["status"] == "ok"


def test_run_of_a_missing_command_exits_127_with_a_clear_message_before_serving() -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "wsgi_logstream", "run", "--port", str(port), "--", "no-such-command-zq7"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 127
    assert "no-such-command-zq7: command not found" in result.stderr
    assert "http://" not in result.stdout


def test_run_of_a_file_that_is_not_executable_exits_126(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    script.chmod(0o644)
    result = subprocess.run(
        [sys.executable, "-m", "wsgi_logstream", "run", "--port", str(free_port()), "--", str(script)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 126
    assert "not executable" in result.stderr


# Starts a grandchild (sleep) in its process group and prints both PIDs, then sleeps.
FAMILY = """
import os, subprocess, sys, time
grandchild = subprocess.Popen(["sleep", "300"])
print("pids %d %d" % (os.getpid(), grandchild.pid), flush=True)
time.sleep(300)
"""


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_stops_the_command_and_its_children(sig: int, status: int) -> None:
    with cli("run", "--grace", "2", command=python_command(FAMILY)) as running:
        pids = printed_pids(running.base, running.job_path)
        assert len(pids) == 2 and not any(process_gone(pid) for pid in pids)
        code = running.stop(sig)
        assert code == status, running.output()
        wait_until(
            lambda: all(process_gone(pid) for pid in pids), 10, f"processes {pids} to be gone:\n{running.output()}"
        )


IGNORES_SIGTERM = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("pids %d" % os.getpid(), flush=True)
time.sleep(300)
"""


def test_cancel_kills_a_command_that_ignores_sigterm_after_the_grace_period() -> None:
    with cli("run", "--grace", "0.5", command=python_command(IGNORES_SIGTERM)) as running:
        (pid,) = printed_pids(running.base, running.job_path)
        _cancel(running.base, running.job_path)
        events = read_ndjson(running.base, running.job_path)
        assert events[-1]["status"] == "cancelled"
        notices = [e["message"] for e in events if e["event"] == "log" and e["logger"] == "wsgi-logstream"]
        assert any("SIGKILL" in notice for notice in notices), notices
        assert process_gone(pid)


def _cancel(base: str, job_path: str) -> None:
    """Cancel the job as a script does (JSON: 202, no redirect)."""
    request = urllib.request.Request(f"{base}{job_path}/cancel", method="POST", data=b"")
    request.add_header("Accept", "application/json")
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 202


def _post(url: str) -> int:
    request = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


def test_page_can_start_the_command_again_only_with_restart() -> None:
    with cli("run", command=("echo", "hello")) as running:
        assert _post(f"{running.base}/") == 405
    with cli("run", "--restart", command=("echo", "hello")) as running:
        first = running.job_path
        wait_until(lambda: "ended (ok" in running.output(), 20, "the first run to end")  # one run at a time
        with RawClient(running.base, "/", method="POST", headers={"Content-Length": "0"}) as client:
            client.read_to_end()
        assert client.status == 303
        second = client.headers["location"]
        assert second != first
        events = read_ndjson(running.base, second)
    assert [e["message"] for e in events if e["event"] == "log"] == ["hello"]


def test_processes_a_command_leaves_running_are_stopped_when_it_exits() -> None:
    with cli("run", "--grace", "1", command=("sh", "-c", 'sleep 300 & echo "pids $!"')) as running:
        events = read_ndjson(running.base, running.job_path)
    (pid,) = [int(e["message"].split()[1]) for e in events if e["event"] == "log" and e["logger"] == "sh"]
    assert events[-1]["status"] == "ok"
    assert any("stopped the processes it left running" in e["message"] for e in events if e["event"] == "log")
    wait_until(lambda: process_gone(pid), 10, f"the left-behind sleep {pid} to be gone")


# Leaves a sleep in a session of its own (setsid: out of reach of the group's signals) holding its stdout, and exits.
LEAVES_ESCAPED = """
import subprocess
escaped = subprocess.Popen(["sleep", "300"], start_new_session=True)
print("pids %d" % escaped.pid, flush=True)
"""


def test_a_process_that_left_the_commands_group_but_writes_its_output_is_stopped_with_it() -> None:
    with cli("run", "--grace", "1", command=python_command(LEAVES_ESCAPED)) as running:
        events = read_ndjson(running.base, running.job_path)
    (pid,) = [int(e["message"].split()[1]) for e in events if e["event"] == "log" and e["message"].startswith("pids")]
    assert events[-1]["status"] == "ok"
    assert any("stopped the processes it left running" in e["message"] for e in events if e["event"] == "log")
    wait_until(lambda: process_gone(pid), 10, f"the escaped sleep {pid} to be gone")


ESCAPES = """
import os, subprocess, time
escaped = subprocess.Popen(["sleep", "300"], start_new_session=True)
print("pids %d %d" % (os.getpid(), escaped.pid), flush=True)
time.sleep(300)
"""


def test_cancel_stops_a_child_that_left_the_commands_process_group() -> None:
    with cli("run", "--grace", "0.5", command=python_command(ESCAPES)) as running:
        pids = printed_pids(running.base, running.job_path)
        assert len(pids) == 2 and os.getpgid(pids[1]) != os.getpgid(pids[0])
        _cancel(running.base, running.job_path)
        events = read_ndjson(running.base, running.job_path)
        assert events[-1]["status"] == "cancelled"
        wait_until(lambda: all(process_gone(pid) for pid in pids), 10, f"processes {pids} to be gone")


def test_journal_dir_keeps_the_whole_run_beyond_history_and_is_cleaned_at_exit(tmp_path: Path) -> None:
    source = "for n in range(1, 51): print('line', n)"
    with cli("run", "--history", "10", "--journal-dir", str(tmp_path), command=python_command(source)) as running:
        events = read_ndjson(running.base, running.job_path)
        assert [e["message"] for e in events if e["event"] == "log"] == [f"line {n}" for n in range(1, 51)]
        with RawClient(running.base, f"{running.job_path}/log.txt") as client:
            body = client.read_to_end().decode()
        assert client.status == 200
        assert [line.split(": ", 1)[1] for line in body.splitlines() if "INFO" in line] == [
            f"line {n}" for n in range(1, 51)
        ]
        assert list(tmp_path.iterdir()), "the journal is written under --journal-dir"
        assert running.stop() == 143  # SIGTERM: stopped as asked
    assert list(tmp_path.iterdir()) == []


def test_journal_dir_must_be_a_writable_directory(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsgi_logstream", "run", "--journal-dir", str(tmp_path / "missing"), "--", "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "--journal-dir: not a directory" in result.stderr, result.stderr


def test_level_format_and_redact_options_shape_every_line() -> None:
    script = 'echo "stdout line"; echo "login pw=hunter2 failed" >&2'
    options = ("--level", "WARNING", "--format", "%(levelname)s|%(name)s|%(message)s", "--redact", r"(?<=pw=)\w+")
    with (
        cli("run", *options, "--title", "Nightly", command=("sh", "-c", script)) as running,
        RawClient(running.base, f"{running.job_path}?format=text") as client,
    ):
        body = client.read_to_end().decode()
    lines = body.splitlines()
    assert lines[0].startswith("-- Nightly: started")
    assert lines[1:-1] == ["WARNING|sh|login pw=[redacted] failed"]
