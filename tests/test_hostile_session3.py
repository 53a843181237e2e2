"""Hostile review of what landed on main in session 3: one-URL assets, queue_timeout, --journal-dir,
the command's stop of processes that left its group, and the page's /regex/ bound.

Each test names the attack in its sentence; the ones that hold prove a safety claim with real processes,
the ones that found a fault fail without its fix (see CHANGELOG.md, Fixed, and docs/reliability.md).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

import pytest

from tests.apps import django_site  # sets Django up, for the one-URL Django view
from tests.browser import Page, job_page, wait_for
from tests.inproc import call
from tests.servers import wait_until
from wsgi_logstream import jobs, logstream
from wsgi_logstream.assets import load
from wsgi_logstream.channel import FLUSH_ENTRIES, Summary
from wsgi_logstream.command import Command, CommandFailed, _stop_writer, pipe_writers
from wsgi_logstream.filters import compile_grep
from wsgi_logstream.options import positive
from wsgi_logstream.record import JobRecord
from wsgi_logstream.runner import new_job, run_job
from wsgi_logstream.store import MemoryStore


def _alive(process: subprocess.Popen[bytes]) -> bool:
    return process.poll() is None


@pytest.fixture()
def pipe() -> Iterator[tuple[int, int, int]]:
    """A pipe as the command's output is: its read and write fds and its inode."""
    read, write = os.pipe()
    try:
        yield read, write, os.fstat(read).st_ino
    finally:
        os.close(read)
        os.close(write)


def _sleeper(*fds: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "300"], pass_fds=fds, stdin=subprocess.DEVNULL)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(10)


def test_a_process_the_host_forked_holding_both_ends_of_the_output_pipe_is_not_taken_for_the_commands(
    pipe: tuple[int, int, int],
) -> None:
    # The host forks (os.fork, multiprocessing) while Popen still holds both ends: the fork has both, the
    # command's own processes only ever the write end.
    read, write, inode = pipe
    host_fork = _sleeper(read, write)
    escaped = _sleeper(write)  # the control: a writer only, as a setsid daemon of the command is
    try:
        found = pipe_writers({inode})
        assert escaped.pid in found
        assert host_fork.pid not in found
        assert not _stop_writer(host_fork.pid, {inode}, signal.SIGKILL)
        assert _alive(host_fork)
    finally:
        _stop(host_fork)
        _stop(escaped)


def test_the_host_and_a_process_reading_the_output_are_never_writers(pipe: tuple[int, int, int]) -> None:
    read, _, inode = pipe  # this process holds both ends, as the host does while it spawns
    reader = _sleeper(read)
    try:
        assert pipe_writers({inode}) == []
        assert not _stop_writer(os.getpid(), {inode}, signal.SIGKILL)
        assert _alive(reader)
    finally:
        _stop(reader)


def _next_pid_is(pid: int) -> bool:
    try:
        fd = os.open("/proc/sys/kernel/ns_last_pid", os.O_WRONLY)
    except OSError:
        return False
    try:
        os.write(fd, str(pid - 1).encode())
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def test_a_pid_reused_between_the_scan_and_the_signal_is_not_signalled(pipe: tuple[int, int, int]) -> None:
    _, write, inode = pipe
    for _attempt in range(20):  # other processes on the machine may take the pid first: try again
        escaped = _sleeper(write)
        assert pipe_writers({inode}) == [escaped.pid]  # the scan finds it ...
        pid = escaped.pid
        _stop(escaped)  # ... it exits, and its pid goes to another process before the signal
        if not _next_pid_is(pid):
            pytest.skip("cannot choose the next pid (/proc/sys/kernel/ns_last_pid needs CAP_SYS_ADMIN)")
        stranger = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL)
        try:
            if stranger.pid != pid:
                continue
            assert not _stop_writer(pid, {inode}, signal.SIGKILL)
            assert _alive(stranger)
            return
        finally:
            _stop(stranger)
    pytest.skip("another process took the reused pid each time")


LEAVES_ESCAPED = """
import subprocess
escaped = subprocess.Popen(["sleep", "300"], start_new_session=True)
print("pids %d" % escaped.pid, flush=True)
"""


def test_a_command_that_leaves_an_escaped_writer_stops_only_its_own_and_not_a_sibling_commands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sibling = Command([sys.executable, "-c", "import time; time.sleep(300)"], grace=0.5, name="sibling")
    leaver = Command([sys.executable, "-c", LEAVES_ESCAPED], grace=0.5, name="leaver")
    ended: list[str] = []

    def run_sibling() -> None:
        try:
            sibling()
        except CommandFailed as failed:
            ended.append(str(failed))

    runner = threading.Thread(target=run_sibling)
    runner.start()
    try:
        wait_until(lambda: bool(sibling.running), 20, "the sibling command to start")
        (sibling_pgid,) = sibling.running
        with caplog.at_level(logging.INFO, logger="leaver"):
            leaver()
        (escaped,) = [int(r.getMessage().split()[1]) for r in caplog.records if r.getMessage().startswith("pids")]
        wait_until(lambda: _gone(escaped), 10, "the escaped sleep to be stopped")
        os.killpg(sibling_pgid, 0)  # the sibling's group is untouched: this raises if it was stopped
        assert sibling.running == [sibling_pgid]
    finally:
        sibling.kill_all()
        runner.join(20)
    assert not runner.is_alive() and ended == ["killed by signal SIGKILL"]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# -- queue_timeout: a worker beginning as a viewer settles the job lost ------------------------------------------


def test_run_job_on_a_job_past_its_lease_settles_it_lost_and_never_calls_the_target() -> None:
    store = MemoryStore()
    now = time.time()
    store.create(JobRecord(id="late-run", title="t", created=now - 10, lease_until=now - 5))
    called: list[int] = []
    assert run_job(store, "late-run", lambda: called.append(1)) is None
    record = store.get("late-run")
    assert called == [] and record is not None and record.status == "lost"
    assert record.error is not None and "no worker began this job" in record.error


class _BeginsAfterTheRead:
    """A store whose get() lets a worker begin the job right after the record was read, then lets the lease pass:
    the interleaving of a viewer's look and a worker's begin that made a running job end ``lost``."""

    def __init__(self, inner: MemoryStore, job_id: str, lease_until: float) -> None:
        self.inner = inner
        self.job_id = job_id
        self.lease_until = lease_until
        self.log: Any = None

    def get(self, job_id: str) -> JobRecord | None:
        record = self.inner.get(job_id)
        if self.log is None:
            self.log = self.inner.open_log(self.job_id)
            assert self.log.begin(time.time())  # in time: before the lease
            wait_until(lambda: time.time() > self.lease_until, 10, "the lease to pass")
        return record

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_job_a_worker_began_in_time_is_not_settled_lost_by_a_look_that_read_it_queued() -> None:
    inner = MemoryStore()
    lease_until = time.time() + 0.2
    inner.create(JobRecord(id="raced-job", title="t", created=time.time(), lease_until=lease_until))
    store = _BeginsAfterTheRead(inner, "raced-job", lease_until)
    app = jobs(lambda: None, runner=_NoRunner(), store=store)  # type: ignore[arg-type]
    try:
        seen = app.lookup("raced-job")
        assert seen is not None and seen.status == "queued"  # as read, before the worker began it
        record = inner.get("raced-job")
        assert record is not None and record.status == "running", record  # not lost while it runs
        store.log.finish(Summary("ok", time.time(), time.time(), 0))
    finally:
        store.log.close()
        app.shutdown()


class _NoRunner:
    def submit(self, store: Any, record: JobRecord, payload: Any) -> None:
        raise AssertionError("nothing is submitted here")


def test_many_queued_jobs_past_their_lease_are_all_settled_lost_by_one_listing_and_a_cancel_then_changes_nothing() -> (
    None
):
    store = MemoryStore(max_finished=1000)
    now = time.time()
    for n in range(500):
        store.create(JobRecord(id=f"queued-{n:04d}", title="t", created=now - 10, lease_until=now - 1))
    app = jobs(lambda: None, runner=_NoRunner(), store=store)
    try:
        listed = app.records()
        assert len(listed) == 500 and {record.status for record in listed} == {"lost"}
        assert not store.request_cancel("queued-0000")  # settled: a cancel after it is no ending of its own
        record = app.lookup("queued-0000")
        assert record is not None and record.status == "lost" and not record.cancel_requested
    finally:
        app.shutdown()


@pytest.mark.parametrize("option", ["queue_timeout", "timeout", "heartbeat"])
def test_an_integer_too_large_for_a_float_is_a_value_error_naming_the_option(option: str) -> None:
    with pytest.raises(ValueError, match=option):
        positive(option, 10**400, integer=False)
    with pytest.raises(ValueError, match="queue_timeout"):
        new_job(MemoryStore(), queue_timeout=10**400)


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), 10**400, -1, True], ids=["nan", "inf", "10**400", "-1", "True"]
)
def test_new_job_refuses_a_timeout_that_is_no_deadline(value: Any) -> None:
    store = MemoryStore()
    with pytest.raises(ValueError, match="timeout"):
        new_job(store, timeout=value)
    assert store.list() == []


# -- --journal-dir: a full disk, and what is left on disk ----------------------------------------------------------


def _read_lines(store: MemoryStore, job_id: str) -> tuple[int, list[str]]:
    reader = store.reader(job_id, 0)
    missed, lines = 0, []
    try:
        while not reader.at_end:
            got, entries = reader.take()
            missed += got
            lines += [entry.message for entry in entries]
            if not entries and not got:
                reader.wait(1.0)
    finally:
        reader.close()
    return missed, lines


def test_a_journal_on_a_full_disk_says_so_and_every_line_still_reaches_its_viewers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines_written = 3 * FLUSH_ENTRIES  # the journal writes every FLUSH_ENTRIES lines: the failure is met mid-run
    store = MemoryStore(journal_dir=str(tmp_path), max_history=4 * FLUSH_ENTRIES)
    try:
        store.create(JobRecord(id="first-job", title="t", created=time.time()))  # makes the store's own dir
        (own,) = tmp_path.iterdir()
        assert own.stat().st_mode & 0o777 == 0o700  # nobody else may list it, nor plant a link in it
        assert (own / "first-job.ndjson").stat().st_mode & 0o777 == 0o600
        (own / "full-disk.ndjson").symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk
        store.create(JobRecord(id="full-disk", title="t", created=time.time()))
        log = store.open_log("full-disk")
        assert log.begin(time.time())
        for n in range(lines_written):
            log.append_log(time.time(), logging.INFO, "INFO", "job", f"line {n}", f"line {n}")
        log.finish(Summary("ok", time.time(), time.time(), log.records))
        log.close()
        missed, lines = _read_lines(store, "full-disk")
        assert missed == 0 and [line for line in lines if line.startswith("line ")] == [
            f"line {n}" for n in range(lines_written)
        ]
        assert any("No space left on device" in line for line in lines), lines  # the viewers are told
        assert any("No space left on device" in r.getMessage() for r in caplog.records)  # and the host's log
    finally:
        store.close()
    assert list(tmp_path.iterdir()) == []


# -- one-URL stream_view assets: hostile names, methods, conditional requests, the host's decorators ----------------


HOSTILE_ASSET_NAMES = [
    "../viewer.js",
    "..%2fviewer.js",
    "%2e%2e/%2e%2e/etc/passwd",
    "/etc/passwd",
    "/proc/self/environ",
    "viewer.js%00",
    "viewer.js\x00.css",
    "a" * 60_000,
    "viewer\u2024js",
    "\uff56iewer.js",
    "VIEWER.JS",
    "viewer.js/",
    " viewer.js",
    "viewer.css/../viewer.js",
    "__init__.py",
    "viewer.html",
    "",
]


def _flask_host(runs: list[int]) -> Any:
    from flask import Flask

    from wsgi_logstream import logstream
    from wsgi_logstream.flask import blueprint
    from wsgi_logstream.flask import stream_view as flask_view

    host = Flask(__name__)
    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]
    host.add_url_rule("/once", "once", flask_view(logstream(lambda: runs.append(1))), methods=methods)
    host.register_blueprint(blueprint(logstream(lambda: runs.append(2)), "below"), url_prefix="/below")
    return host.test_client()


@pytest.mark.parametrize("name", HOSTILE_ASSET_NAMES, ids=range(len(HOSTILE_ASSET_NAMES)))
def test_a_hostile_asset_name_at_a_one_url_flask_view_is_a_plain_404_that_no_cache_keeps(name: str) -> None:
    runs: list[int] = []
    browser = _flask_host(runs)
    for query in (f"logstream_asset={quote(name)}", f"logstream_asset={quote(name, safe='/%')}"):
        with browser.get(f"/once?{query}") as reply:
            assert reply.status_code == 404 and reply.data == b"no such asset\n"
            assert reply.headers["Cache-Control"] == "no-store" and reply.headers["X-Content-Type-Options"] == "nosniff"
    assert runs == []  # an asset request never runs the operation


def test_other_methods_conditional_requests_and_repeated_fields_at_a_one_url_flask_view() -> None:
    runs: list[int] = []
    browser = _flask_host(runs)
    asset = load("viewer.js")
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
        with browser.open(f"/once?logstream_asset={asset.hashed_name}", method=method) as reply:
            assert reply.status_code == 405 and reply.headers["Allow"] == "GET, HEAD"
            assert reply.headers["Cache-Control"] == "no-store"
    with browser.open(f"/once?logstream_asset={asset.hashed_name}", method="HEAD") as reply:
        assert reply.status_code == 200 and reply.data == b""
    with browser.get(f"/once?logstream_asset={asset.hashed_name}", headers={"If-None-Match": asset.etag}) as reply:
        assert reply.status_code == 304 and reply.data == b"" and reply.headers["ETag"] == asset.etag
    with browser.get(f"/once?logstream_asset={asset.hashed_name}", headers={"If-None-Match": '"other"'}) as reply:
        assert reply.status_code == 200 and reply.data == asset.body
    # The last field counts, as parse_qs gives it: a traversal after a good name is still a 404.
    with browser.get(f"/once?logstream_asset={asset.hashed_name}&logstream_asset=../../etc/passwd") as reply:
        assert reply.status_code == 404
    assert runs == []
    # Below a blueprint (not one URL) the field means nothing: the stream runs as asked.
    with browser.get(f"/below/?format=text&logstream_asset={asset.hashed_name}") as reply:
        assert reply.status_code == 200 and b"-- ok" in reply.data
    assert runs == [2]


def test_the_hosts_login_and_permission_decorators_guard_a_one_url_django_views_assets_too() -> None:
    from django.contrib.auth.decorators import login_required, permission_required
    from django.contrib.auth.models import AnonymousUser, User
    from django.test import Client, RequestFactory, override_settings

    from wsgi_logstream import logstream
    from wsgi_logstream.django import stream_view as django_view

    runs: list[int] = []
    view = login_required(
        permission_required("catalog.run_reindex", raise_exception=True)(django_view(logstream(lambda: runs.append(1))))
    )
    asset = load("viewer.css")
    request = RequestFactory().get(f"/ops/once?logstream_asset={asset.hashed_name}", HTTP_HOST="localhost")
    request.user = AnonymousUser()
    assert view(request).status_code == 302  # to the login page: not the asset
    request.user = User.objects.get(username="carol")  # may not reindex
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        view(request)
    request.user = User.objects.get(username="bob")
    reply = view(request)
    assert reply.status_code == 200 and reply.content == asset.body
    assert runs == []
    with override_settings(ROOT_URLCONF="tests.apps.django_site"):
        assert django_site.urlpatterns  # the one-URL view of the test site: a POST still needs its CSRF token
        csrf = Client(enforce_csrf_checks=True, HTTP_HOST="localhost")
        assert csrf.post(f"/t/once/?logstream_asset={asset.hashed_name}").status_code == 403
        assert Client(HTTP_HOST="localhost").post(f"/t/once/?logstream_asset={asset.hashed_name}").status_code == 405


# -- ?grep= and the page's /regex/: costly patterns that got through ------------------------------------------------

#: Accepted by ?grep= before the fix; each takes seconds (or far longer) a line of at most 1,000 characters, in
#: the server's thread: 32 s for three a{0,1000}, hours for the group hidden in (?>...), (?(1)...) or ++ on 40 a's.
COSTLY_GREPS = [
    "(?>(a+)+b)",  # an atomic group backtracks inside as a plain one does
    "(?>a*a*a*a*b)",
    "(?:a*a*a*a*b)++",  # so does a possessive repetition while it tries its body
    "(x)?(?(1)y|(a+)+b)",  # and a conditional's branches
    "(x)?(?(1)a|a*a*a*a*b)",
    "a{0,1000}a{0,1000}a{0,1000}b",  # bounded, but over the whole searched line
    "a?" * 18 + "b",  # 2**18 ways at each place
    "a{0,9}" * 6 + "b",
]


@pytest.mark.parametrize("pattern", COSTLY_GREPS)
def test_a_costly_grep_hidden_from_the_checks_is_refused_with_a_400_and_runs_nothing(pattern: str) -> None:
    ran = threading.Event()
    with call(logstream(ran.set), "grep=" + quote(pattern)) as answer:
        assert answer.code == 400
        said = answer.read_to_end().decode()
        assert "time per line, so they are refused" in said or "exponential time, so they are refused" in said
    assert not ran.is_set()


@pytest.mark.parametrize(
    "pattern",
    [
        "a*a*b",
        "foo.*bar[0-9]+baz?",
        r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}",
        r"^\d{4}-\d{2}-\d{2} \d{1,2}:\d{2}",
        "(error|warn|fatal).*timeout",
        "[0-9a-f]{40}",
        r"\w{3,200}x",
        "(?>abc)+",
        "a*+b*+c*+",
    ],
)
def test_ordinary_greps_are_still_accepted(pattern: str) -> None:
    assert compile_grep(pattern) == pattern


def _as_line() -> None:
    logging.getLogger("tests.hostile3").info("%s", "a" * 1000)
    logging.getLogger("tests.hostile3").info("the last line")


#: Accepted by the page before the fix, each freezing the tab on the 1,000 a's: JavaScript tries a repeated
#: alternation's branches in turn, so (a|a)* is exponential though the server's parser makes it a class.
COSTLY_ON_THE_PAGE = [
    ("/(a|a)*b/", "regex refused: a repeat of a group that repeats or alternates, like (a+)+"),
    ("/(\\d|1|a)*b/", "regex refused: a repeat of a group that repeats or alternates, like (a+)+"),
    ("/(a|A)+b/i", "regex refused: a repeat of a group that repeats or alternates, like (a+)+"),
    ("/(?:.|a)*b/", "regex refused: a repeat of a group that repeats or alternates, like (a+)+"),
    (
        "/a{0,1000}a{0,1000}a{0,1000}b/",
        "regex refused: too many optional or variable repeats (?, {n,m}, *, +) in a row",
    ),
    ("/" + "a?" * 18 + "b/", "regex refused: too many optional or variable repeats (?, {n,m}, *, +) in a row"),
    ("/" + "a{0,9}" * 6 + "b/", "regex refused: too many optional or variable repeats (?, {n,m}, *, +) in a row"),
]


@pytest.mark.servers
@pytest.mark.page(size=(1000, 420))
def test_the_pages_regex_refuses_what_backtracks_in_javascript_and_the_tab_stays_responsive(page: Page) -> None:
    from tests.test_viewer_search import DRAWN, ENDED, _count, _exceptions, _type

    with job_page(page, _as_line) as served:
        assert served.job.wait(10)
        served.open()
        wait_for(page, ENDED)
        for pattern, why in COSTLY_ON_THE_PAGE:
            _type(page, "")
            _count(page, "")
            _type(page, pattern)  # a frozen tab would fail this wait, and every DevTools call after it
            _count(page, why)
            assert page.evaluate("document.getElementById('filter').getAttribute('aria-invalid')") == "true"
        # Distinct plain characters are still a class, and the choices allowed end at once on the long line.
        _type(page, "/(a|b|\\.)+$/")
        _count(page, "1 match")
        assert page.evaluate(DRAWN)[0] == ["i", "a" * 1000 + "\n"]
        _type(page, "/" + "a?" * 16 + "b/")
        _count(page, "0 matches")
        assert _exceptions(page) == []
