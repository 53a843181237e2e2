"""Helpers for the ``wsgi-logstream`` command's end-to-end tests (no tests here).

:func:`cli` starts ``python -m wsgi_logstream SUBCOMMAND --port P ...`` as a
subprocess on a free loopback port (a :class:`servers.Program`, in a session
of its own, so a signal sent to it reaches nothing else) and waits until it
has printed the URL of the job it started.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.servers import Program, RawClient, free_port, wait_until
from tests.wire import ndjson_objects

URL = re.compile(r" at (http://127\.0\.0\.1:\d+(/[A-Za-z0-9_-]*)?)")


class Cli:
    """A running ``wsgi-logstream`` and what it printed."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.base = program.url

    def output(self) -> str:
        return self.program.output()

    @property
    def job_path(self) -> str:
        """The path of the job it announced first (``/<id>``)."""
        match = wait_until(lambda: URL.search(self.output()), 15, "the command to print its job's URL")
        return match.group(2) or "/"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        return self.program.stop(sig)


@contextlib.contextmanager
def cli(
    subcommand: str,
    *options: str,
    command: tuple[str, ...] = (),
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Cli]:
    """``wsgi-logstream SUBCOMMAND --port P OPTIONS [-- COMMAND]`` running until the block ends."""
    port = free_port()
    args = [sys.executable, "-m", "wsgi_logstream", subcommand, "--port", str(port), *options]
    if command:
        args += ["--", *command]
    program = Program(args, port, cwd=cwd, env=env)
    running = Cli(program)
    try:
        yield running
    finally:
        program.stop()
        program.log.unlink(missing_ok=True)


def read_ndjson(base: str, path: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The whole ndjson stream at ``path`` (which must end)."""
    separator = "&" if "?" in path else "?"
    with RawClient(base, f"{path}{separator}format=ndjson", headers) as client:
        body = client.read_to_end()
    assert client.status == 200, (client.status, body[:300])
    return ndjson_objects(body)


def python_command(source: str) -> tuple[str, ...]:
    """A command that runs ``source`` with this Python."""
    return (sys.executable, "-c", source)


def printed_pids(base: str, job_path: str) -> list[int]:
    """The PIDs a command printed as its first line (``pids 12 34``), read while it runs."""
    with RawClient(base, f"{job_path}?format=ndjson") as client:
        body = client.read_until(b'"line":', timeout=20)  # a record's "line" comes after its "message"
    match = re.search(rb'"message":"pids ([0-9 ]+)"', body)
    assert match, body
    return [int(pid) for pid in match.group(1).split()]
