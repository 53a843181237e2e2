"""Running a command as a job target: each line it prints becomes a log record.

``Command(argv)`` is a job target (``wsgi_logstream.jobs(Command(argv))``):
each call runs the command once, with

* stdout lines logged at ``INFO`` and stderr lines at ``WARNING``, on a logger
  named after the command (``make`` for ``make -j4``); lines are decoded with
  ``errors="surrogateescape"`` (the formats show bad bytes escaped) and a line
  longer than 1 MiB is cut into pieces; a line the command rewrites with CR
  (a progress bar) is sent as it moves, a few states a second, each replacing
  the last, and then as its final state (see :mod:`wsgi_logstream.carriage`);
* GitHub Actions' workflow commands in its output read as such:
  ``::group::name`` opens a section of the log (:mod:`wsgi_logstream.sections`)
  and ``::endgroup::`` closes it (as on GitHub, groups do not nest: a group
  opened while one is open ends that one first; one left open ends with the
  command, failed if the command failed), and ``::error::message`` and
  ``::warning::message`` (with or without ``file=...`` parameters) are logged
  at ``ERROR`` and ``WARNING``; so a group in which an error was reported ends
  as failed;
* its exit status as the job's end: 0 is ``ok``, anything else raises
  :class:`CommandFailed` (``exit status 3``, ``killed by signal SIGKILL``), so
  the job ends with status ``error``;
* stdin from ``/dev/null``, ``WSGI_LOGSTREAM_TOKEN`` taken out of its
  environment (``env`` in a script would print it into the log) and
  ``PYTHONUNBUFFERED=1`` added to it, since a Python child writing to a pipe would otherwise hold
  its lines back in a block buffer (for C programs, run them under
  ``stdbuf -oL``).

The command runs in a process group of its own. When the job is cancelled
(:func:`wsgi_logstream.cancelled`), the whole group gets ``SIGTERM``, then
``SIGKILL`` after ``grace`` seconds, so what the command started dies with it.
When the command exits, processes it left running in its group are stopped
the same way: the job is over, nothing is left behind. A process that left
the group (``setsid``) but still writes the command's output is stopped with
it (found through /proc, see :func:`pipe_writers`); one that also closed its
output is out of reach (cgroups would be needed).
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from typing import Sequence

from .capture import cancelled, current_sink
from .carriage import PARTIAL_INTERVAL, RewriteSplitter
from .follow import MAX_LINE
from .sections import Section, start_section

__all__ = ["Command", "CommandError", "CommandFailed", "describe_status", "resolve"]

#: In-stream notices (stopping, signals) go to this logger, apart from the command's own lines.
NOTICE_LOGGER = "wsgi-logstream"
_POLL = 0.05
#: The ``wsgi-logstream`` command's token; never handed to the command it runs.
TOKEN_ENV = "WSGI_LOGSTREAM_TOKEN"


class CommandError(Exception):
    """The command cannot be started; ``exit_code`` is what a shell answers (127 or 126)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class CommandFailed(Exception):
    """The command ended with a non-zero exit status: the job ends with status ``error``."""


def resolve(program: str, search_path: str | None = None) -> str:
    """The file ``program`` names, as ``execvp`` finds it, or :class:`CommandError`.

    Checked before anything is served, so ``wsgi-logstream run -- typo`` says
    so at once instead of serving a page that shows the error.
    """
    if not program:
        raise CommandError("empty command name", 127)
    if "/" in program:
        if not os.path.exists(program):
            raise CommandError(f"{program}: no such file or directory", 127)
        if os.path.isdir(program):
            raise CommandError(f"{program}: is a directory", 126)
        if not os.access(program, os.X_OK):
            raise CommandError(f"{program}: permission denied (the file is not executable)", 126)
        return program
    not_executable = None
    directories = (os.environ.get("PATH", os.defpath) if search_path is None else search_path).split(os.pathsep)
    for directory in directories:
        candidate = os.path.join(directory or ".", program)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            not_executable = not_executable or candidate
    if not_executable is not None:
        raise CommandError(f"{program}: permission denied ({not_executable} is not executable)", 126)
    raise CommandError(f"{program}: command not found", 127)


def describe_status(returncode: int) -> str:
    """``exit status 3`` or ``killed by signal SIGTERM`` (subprocess's negative codes)."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = str(-returncode)
    return f"killed by signal {name}"


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the process group; False if no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed its user (setuid): not ours to stop
        return False
    return True


def pipe_writers(inodes: set[int]) -> list[int]:
    """Processes, other than this one, holding a pipe of ``inodes`` open for writing (Linux's /proc).

    A child that calls ``setsid()`` (a daemon, ``setsid cmd &``) leaves the
    process group the command's signals reach, but while it writes to the
    command's stdout or stderr it holds the write end of our pipe, and /proc
    shows it. Only write ends count (``fdinfo``'s access mode): a process
    this host forked while the command ran holds our read end, and is not
    the command's. A process that holds a read end as well is not the
    command's either: the command never had one, but a process the host
    forked (``os.fork``, ``multiprocessing``) while ``Popen`` still held both
    ends has both. One that closed its output and left the group is out of
    reach without cgroups. Empty where /proc is not.
    """
    links = {f"pipe:[{inode}]" for inode in inodes}
    me = os.getpid()
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []
    # Never init: a service manager can hold our pipe (`systemd-run --pipe`), and it is not ours to stop.
    return [pid for pid in pids if pid != me and pid != 1 and _writes_only(pid, links)]


def _writes_only(pid: int, links: set[str]) -> bool:
    """Whether ``pid`` holds a write end of one of the pipes ``links`` names and no read end of any."""
    writes = False
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}") in links:
                if not _writes(pid, fd):
                    return False  # a read end: the host's own (forked) process
                writes = True
    except OSError:  # gone meanwhile, or not ours to look at (and so not ours to stop)
        return False
    return writes


def _writes(pid: int, fd: str) -> bool:
    with open(f"/proc/{pid}/fdinfo/{fd}") as info:
        for line in info:
            if line.startswith("flags:"):
                return int(line.split()[1], 8) & os.O_ACCMODE != os.O_RDONLY
    return False


def _stop_writer(pid: int, inodes: set[int], sig: int) -> bool:
    """Send ``sig`` to ``pid`` if it still is a writer of ``inodes``; False if it is not (or is gone).

    The pid came from a scan of /proc; between that scan and the signal the
    process may exit and its pid go to another. A pidfd pins the process: it
    is looked at again through the pidfd's pid, and signalled through the
    pidfd, so a pid reused meanwhile is never signalled. Without pidfds
    (Linux before 5.3) the look again narrows the window to the two calls.
    """
    links = {f"pipe:[{inode}]" for inode in inodes}
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except (OSError, AttributeError):  # no pidfds here: look again, then signal by pid
        if not _writes_only(pid, links):
            return False
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    try:
        if not _writes_only(pid, links):  # the pid now names the pidfd's process, or it is gone
            return False
        signal.pidfd_send_signal(pidfd, sig)
    except (ProcessLookupError, PermissionError):
        return False
    finally:
        os.close(pidfd)
    return True


def _signal_command(pgid: int, inodes: set[int], sig: int) -> bool:
    """Signal the command's process group and what escaped it still writing its output; False if none was left."""
    signalled = _signal_group(pgid, sig)
    for pid in pipe_writers(inodes):
        signalled = _stop_writer(pid, inodes, sig) or signalled
    return signalled


class Command:
    """A job target that runs ``argv`` (see the module docstring)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        grace: float = 5.0,
        name: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        max_line: int = MAX_LINE,
    ) -> None:
        if isinstance(argv, str) or not argv:
            raise ValueError("argv must be a non-empty list of strings (the command and its arguments)")
        if not grace >= 0:
            raise ValueError(f"grace must be >= 0 seconds, got {grace!r}")
        self.argv = list(argv)
        self.grace = float(grace)
        self.name = name or os.path.basename(self.argv[0]) or self.argv[0]
        self._env = env
        self._cwd = cwd
        self._max_line = max_line
        self._lock = threading.Lock()
        self._groups: dict[int, subprocess.Popen[bytes]] = {}

    def check(self) -> str:
        """The executable that will run; :class:`CommandError` if there is none."""
        return resolve(self.argv[0])

    @property
    def running(self) -> list[int]:
        """Process group ids of runs not yet over."""
        with self._lock:
            return list(self._groups)

    def kill_all(self) -> None:
        """``SIGKILL`` every process group still running: the last word at exit."""
        with self._lock:
            groups = list(self._groups.items())
        for pgid, process in groups:
            _signal_group(pgid, signal.SIGKILL)
            if process.poll() is None:
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    pass

    def _spawn(self) -> subprocess.Popen[bytes]:
        executable = resolve(self.argv[0])
        env = dict(os.environ if self._env is None else self._env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.pop(TOKEN_ENV, None)  # the command's own secret: `env` in a script would print it into the log
        try:
            return subprocess.Popen(
                self.argv,
                executable=executable,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: signals reach what it starts
                env=env,
                cwd=self._cwd,
            )
        except OSError as exc:
            raise CommandError(f"{self.argv[0]}: {exc.strerror or exc}", 127 if exc.errno == 2 else 126) from None

    def __call__(self) -> None:
        process = self._spawn()
        pgid = process.pid
        assert process.stdout is not None and process.stderr is not None
        # The pipes' identities: whoever still writes to them is the command's, in its group or not.
        inodes = {os.fstat(pipe.fileno()).st_ino for pipe in (process.stdout, process.stderr)}
        with self._lock:
            self._groups[pgid] = process
        groups = _Groups()
        try:
            returncode, stopped = self._pump(process, groups, inodes)
        finally:
            groups.close(failed=process.poll() != 0)
            if process.poll() is None:
                _signal_group(pgid, signal.SIGKILL)
                process.wait()
            _signal_command(pgid, inodes, signal.SIGKILL)  # anything still in its group, or writing its output
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
            with self._lock:
                self._groups.pop(pgid, None)
        notices = logging.getLogger(NOTICE_LOGGER)
        if stopped:
            notices.warning("%s (%s)", stopped, describe_status(returncode))
        if cancelled():
            return
        if returncode != 0:
            raise CommandFailed(describe_status(returncode))

    def _pump(self, process: subprocess.Popen[bytes], groups: _Groups, inodes: set[int]) -> tuple[int, str]:
        """Log the command's lines until it ends; stop it on cancel. Returns (status, what we did)."""
        assert process.stdout is not None and process.stderr is not None
        log = logging.getLogger(self.name)
        pgid = process.pid
        streams = {
            process.stdout.fileno(): (logging.INFO, RewriteSplitter(self._max_line)),
            process.stderr.fileno(): (logging.WARNING, RewriteSplitter(self._max_line)),
        }
        shown = dict.fromkeys(streams, 0.0)  # when each stream's rewritten line was last sent
        stopped = ""
        terminated_at: float | None = None
        killed = False
        exited_at: float | None = None
        with selectors.DefaultSelector() as selector:
            for fd in streams:
                selector.register(fd, selectors.EVENT_READ)
            while True:
                now = time.monotonic()
                if exited_at is None and process.poll() is not None:
                    exited_at = now
                    if terminated_at is None and _signal_command(pgid, inodes, signal.SIGTERM):
                        terminated_at = now
                        stopped = "the command exited; stopped the processes it left running"
                if terminated_at is None and cancelled():
                    _signal_command(pgid, inodes, signal.SIGTERM)
                    terminated_at = now
                    stopped = f"cancelled: sent SIGTERM to the command's process group (grace {self.grace:g}s)"
                if terminated_at is not None and not killed and now - terminated_at >= self.grace:
                    _signal_command(pgid, inodes, signal.SIGKILL)
                    killed = True
                    stopped += "; still running after the grace period: sent SIGKILL"
                if not selector.get_map():
                    if exited_at is not None:
                        break
                    time.sleep(_POLL)  # it closed its output but runs on
                    continue
                if exited_at is not None and now - exited_at >= self.grace + 1.0:
                    break  # its pipes are held open outside its process group: stop reading
                for key, _ in selector.select(_POLL):
                    fd = int(key.fd)
                    level, splitter = streams[fd]
                    data = os.read(fd, 65536)
                    if data:
                        lines = splitter.feed(data)
                    else:
                        selector.unregister(fd)
                        lines = splitter.flush()
                    for line, rewritten in lines:
                        if rewritten:  # a bar's last state: it replaces the states shown while it moved
                            emit_state(log, level, line, final=True)
                        elif not (line.startswith("::") and groups.handled(log, line)):
                            log.log(level, line)
                now = time.monotonic()
                for fd, (level, splitter) in streams.items():
                    if now - shown[fd] >= PARTIAL_INTERVAL:
                        state = splitter.partial()
                        if state is not None:
                            emit_state(log, level, state, final=False)
                            shown[fd] = now
        return process.wait(), stopped


def emit_state(logger: logging.Logger, level: int, text: str, *, final: bool) -> None:
    """Send a state of a line the command rewrites with CR to the stream (see :mod:`wsgi_logstream.carriage`)."""
    sink = current_sink()
    if sink is not None:
        sink.rewrite(logger.makeRecord(logger.name, level, "(command)", 0, text, (), None), final=final)


_WORKFLOW_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "notice": logging.INFO}


class _Groups:
    """The command's ``::group::`` section, if one is open, and its other workflow commands."""

    def __init__(self) -> None:
        self.open: Section | None = None

    def handled(self, log: logging.Logger, line: str) -> bool:
        """Act on ``line`` if it is a workflow command we know; True if it was one."""
        command, closed, rest = line[2:].partition("::")
        name, _, params = command.partition(" ")
        if not closed:
            return False
        if name == "group" and not params:
            self.close(failed=False)
            self.open = start_section(rest.strip() or "group")
            return True
        if name == "endgroup" and not params:
            self.close(failed=False)
            return True
        level = _WORKFLOW_LEVELS.get(name)
        if level is not None and rest:
            log.log(level, rest)
            return True
        return False

    def close(self, *, failed: bool) -> None:
        if self.open is not None:
            opened, self.open = self.open, None
            opened.end(failed=failed)
