"""The journal keeps a job's whole log beyond its history in memory: replay from any line, download, caps."""

from __future__ import annotations

import http.client
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.inproc import call
from tests.servers import wsgiref_server
from tests.wire import ndjson_objects, parse_sse
from wsgi_logstream import jobs
from wsgi_logstream.channel import Summary
from wsgi_logstream.record import JobRecord
from wsgi_logstream.store import MemoryStore

log = logging.getLogger("tests.journal")


def _lines(count: int) -> Any:
    def target() -> None:
        for n in range(1, count + 1):
            log.info("line %d", n)

    return target


def _ndjson(app: Any, path: str, query: str = "") -> list[dict[str, Any]]:
    with call(app, "format=ndjson" + query, path=path) as stream:
        return ndjson_objects(stream.read_to_end())


def test_a_viewer_replays_from_before_the_history_held_in_memory(tmp_path: Path) -> None:
    store = MemoryStore(max_history=100, journal_dir=tmp_path)
    app = jobs(_lines(5000), store=store, formatter="%(message)s")
    job = app.start()
    assert job.wait(30)
    objects = _ndjson(app, f"/{job.id}")
    assert [obj["message"] for obj in objects if obj["event"] == "log"] == [f"line {n}" for n in range(1, 5001)]
    assert objects[-1]["event"] == "end" and objects[-1]["dropped"] == 0
    resumed = _ndjson(app, f"/{job.id}", "&since=1234")
    assert [obj["seq"] for obj in resumed if obj["event"] == "log"] == list(range(1235, 5001))
    with call(app, "format=sse", path=f"/{job.id}", headers={"Last-Event-ID": "17"}) as stream:
        events = [event for event in parse_sse(stream.read_to_end()).events if event.type == "message"]
    assert events[0].data == "line 18" and events[0].id == "18" and len(events) == 5000 - 17
    store.close()
    assert not any(tmp_path.iterdir())  # the store's directory went with it


def test_a_viewer_joining_a_running_job_late_gets_its_whole_log_then_live_lines(tmp_path: Path) -> None:
    release = threading.Event()

    def target() -> None:
        for n in range(1, 3001):
            log.info("early %d", n)
        assert release.wait(10)
        log.info("late")

    app = jobs(target, max_history=50, journal_dir=tmp_path, formatter="%(message)s", heartbeat=0.2)
    job = app.start()
    with call(app, "format=text", path=f"/{job.id}") as stream:
        stream.read_until(b"early 3000\n")
        assert job.status == "running"
        release.set()
        body = stream.read_to_end().decode()
    lines = [line for line in body.splitlines() if not line.startswith("--")]
    assert lines == [f"early {n}" for n in range(1, 3001)] + ["late"]
    assert job.wait(10)
    app.store.close()  # type: ignore[attr-defined]


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_million_line_log_downloads_as_a_file_in_bounded_chunks_with_bounded_memory(tmp_path: Path) -> None:
    store = MemoryStore(max_history=1000, journal_dir=tmp_path, journal_max_bytes=1 << 30)
    app = jobs(_lines(1), store=store)
    now = time.time()
    store.create(JobRecord(id="million-lines", title="a million", created=now))
    job_log = store.open_log("million-lines")
    assert job_log.begin(now)
    lines = 1_000_000
    for n in range(1, lines + 1):
        job_log.append_log(now, 20, "INFO", "bulk", f"line {n}", f"INFO bulk: line {n} " + "x" * 40)
    assert job_log.finish(Summary("ok", now, time.time(), lines))
    baseline = _rss_kib()
    peak = baseline
    received = 0
    count = 0
    last = b""
    with wsgiref_server(app) as url:
        host, port = url.split("//")[1].split(":")
        connection = http.client.HTTPConnection(host, int(port.rstrip("/")), timeout=60)
        try:
            connection.request("GET", "/million-lines/log.txt")
            response = connection.getresponse()
            assert response.status == 200
            assert response.getheader("Content-Disposition") == 'attachment; filename="million-lines.log"'
            while True:
                chunk = response.read1(1 << 20)
                if not chunk:
                    break
                received += len(chunk)
                count += chunk.count(b"\n")
                last = (last + chunk)[-200:]
                peak = max(peak, _rss_kib())
        finally:
            connection.close()
    growth_mib = (peak - baseline) / 1024
    print(f"\n[journal] downloaded {received / 1e6:.1f} MB, {count} lines; RSS growth {growth_mib:.1f} MiB")
    assert count == lines + 2  # the head, a million lines, the summary
    assert last.endswith(b": 1000000 lines, 0 dropped) --\n")
    assert received > 60_000_000
    assert growth_mib < 64, f"the download grew the process by {growth_mib:.1f} MiB"  # the log is ~67 MB
    store.close()


def test_without_a_journal_a_download_says_how_many_lines_were_not_kept() -> None:
    app = jobs(_lines(1000), max_history=100, formatter="%(message)s")
    job = app.start()
    assert job.wait(10)
    with call(app, "format=text&download=1", path=f"/{job.id}") as stream:
        assert stream.header("Content-Disposition") == f'attachment; filename="{job.id}.log"'
        body = stream.read_to_end().decode().splitlines()
    assert body[1] == (
        "-- 900 lines not kept: the store keeps only its last max_history lines "
        "(give it journal_dir= to keep the whole log) --"
    )
    assert body[2:102] == [f"line {n}" for n in range(901, 1001)]
    objects = _ndjson(app, f"/{job.id}/log.ndjson")
    assert objects[1]["event"] == "dropped" and objects[1]["count"] == 900 and "not kept" in objects[1]["reason"]


def test_a_download_of_a_running_job_ends_where_the_job_was_and_says_it_runs(tmp_path: Path) -> None:
    release = threading.Event()
    logged = threading.Event()

    def target() -> None:
        for n in range(1, 11):
            log.info("line %d", n)
        logged.set()
        release.wait(10)

    app = jobs(target, journal_dir=tmp_path, formatter="%(message)s")
    job = app.start()
    try:
        assert logged.wait(10)
        with call(app, path=f"/{job.id}/log.txt") as stream:
            body = stream.read_to_end().decode().splitlines()
        assert body[1:11] == [f"line {n}" for n in range(1, 11)]
        assert body[-1].startswith("-- running (after ")
    finally:
        release.set()
        assert job.wait(10)
        app.store.close()  # type: ignore[attr-defined]


def test_a_job_that_reaches_journal_max_bytes_keeps_its_start_and_end_and_says_so(tmp_path: Path) -> None:
    store = MemoryStore(max_history=100, journal_dir=tmp_path, journal_max_bytes=60_000)
    app = jobs(_lines(3000), store=store, formatter="%(message)s")
    job = app.start()
    assert job.wait(10)
    objects = _ndjson(app, f"/{job.id}/log.ndjson")
    logs = [obj for obj in objects if obj["event"] == "log"]
    kept_at_start = [obj for obj in logs if obj["logger"] == "tests.journal" and obj["seq"] < 1000]
    assert kept_at_start and kept_at_start[0]["message"] == "line 1"
    note = [obj for obj in logs if obj["logger"] == "wsgi_logstream"]
    assert len(note) == 1 and "journal_max_bytes (60000 bytes)" in note[0]["message"]
    dropped = [obj for obj in objects if obj["event"] == "dropped"]
    assert len(dropped) == 1 and "not kept" in dropped[0]["reason"]
    assert logs[-1]["message"] == "line 3000"
    seqs = [obj["seq"] for obj in logs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    journal_files = list(tmp_path.glob("*/*.ndjson"))
    # At most the cap, and the one line that says the cap was reached.
    assert len(journal_files) == 1 and journal_files[0].stat().st_size <= 60_000 + 1000
    store.close()


def test_journal_total_bytes_deletes_finished_jobs_journals_first_and_retention_deletes_the_rest(
    tmp_path: Path,
) -> None:
    store = MemoryStore(max_history=10, journal_dir=tmp_path, journal_max_bytes=100_000, journal_total_bytes=150_000)
    app = jobs(_lines(1000), store=store, formatter="%(message)s")
    first = app.start()
    assert first.wait(10)
    files = sorted(tmp_path.glob("*/*.ndjson"))
    assert [path.stem for path in files] == [first.id]
    size = files[0].stat().st_size
    assert 50_000 < size <= 100_000
    second = app.start()
    assert second.wait(10)
    # The second job needed room: the finished first job's journal went, the second's is whole.
    assert [path.stem for path in tmp_path.glob("*/*.ndjson")] == [second.id]
    assert [obj["message"] for obj in _ndjson(app, f"/{second.id}") if obj["event"] == "log"][:2] == [
        "line 1",
        "line 2",
    ]
    first_now = _ndjson(app, f"/{first.id}")
    assert first_now[1]["event"] == "dropped" and first_now[1]["count"] == 990  # only its memory is left
    store.keep_finished = 0.0
    assert store.get(second.id) is None  # forgotten: retention took it and its file
    assert not list(tmp_path.glob("*/*.ndjson"))
    store.close()


def test_an_unusable_journal_dir_is_reported_once_to_the_host_and_to_the_viewers_and_the_job_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # As root, chmod does not stop writes; a directory below a regular file cannot be made by anyone.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    app = jobs(_lines(20), journal_dir=blocker / "journal", max_history=100, formatter="%(message)s")
    with caplog.at_level(logging.ERROR, logger="wsgi_logstream"):
        job = app.start()
        assert job.wait(10)
    errors = [r for r in caplog.records if r.name == "wsgi_logstream" and "journal" in r.getMessage()]
    assert len(errors) == 1 and "Not a directory" in errors[0].getMessage()
    assert job.status == "ok"
    objects = _ndjson(app, f"/{job.id}")
    assert objects[-1]["status"] == "ok"
    # Its first entry tells the viewers why the job keeps only what memory holds.
    with call(app, "format=text", path=f"/{job.id}") as stream:
        text = stream.read_to_end().decode()
    assert "journal: cannot use journal_dir" in text and "Not a directory" in text
    assert "line 20" in text


_DISK_FULL = textwrap.dedent(
    """
    import json, logging, resource, signal, sys
    from wsgi_logstream import jobs
    from tests.inproc import call
    from tests.wire import ndjson_objects

    # The "disk" holds 200 kB: past that, write() fails with EFBIG, as it fails with ENOSPC on a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
    log = logging.getLogger("child")

    def target():
        for n in range(1, 10_001):
            log.info("line %d %s", n, "y" * 30)

    app = jobs(target, journal_dir=sys.argv[1], max_history=100, formatter="%(message)s")
    job = app.start()
    assert job.wait(30)
    with call(app, "format=ndjson", path="/" + job.id) as stream:
        objects = ndjson_objects(stream.read_to_end())
    print(json.dumps(objects[-1]))
    print(json.dumps([o for o in objects if o.get("logger") == "wsgi_logstream"]))
    print(json.dumps([o["message"] for o in objects if o.get("logger") == "child"][:2]))
    app.store.close()
    """
)


def test_a_full_disk_is_reported_once_to_the_host_and_the_viewers_and_the_job_goes_on(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    child = subprocess.run(
        [sys.executable, "-c", _DISK_FULL, str(tmp_path / "journal")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert child.returncode == 0, child.stderr
    end, notes, first_lines = (json.loads(line) for line in child.stdout.splitlines()[-3:])
    assert end["status"] == "ok"
    assert len(notes) == 1 and "cannot write" in notes[0]["message"] and "File too large" in notes[0]["message"]
    assert first_lines == ["line 1 " + "y" * 30, "line 2 " + "y" * 30]  # replayed from the journal written before
    host_lines = [line for line in child.stderr.splitlines() if "wsgi_logstream journal: cannot write" in line]
    assert len(host_lines) == 1, child.stderr


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"journal_dir": 3}, "journal_dir must be a path"),
        ({"journal_max_bytes": 0}, "journal_max_bytes must be >= 1"),
        ({"journal_total_bytes": "1G"}, "journal_total_bytes must be an int"),
        ({"journal_max_bytes": 10, "journal_total_bytes": 5}, "must be >= journal_max_bytes"),
    ],
)
def test_bad_journal_options_are_errors_that_name_them(options: dict[str, Any], error: str) -> None:
    with pytest.raises((TypeError, ValueError), match=error):
        MemoryStore(**options)
    with pytest.raises((TypeError, ValueError), match=error):
        jobs(_lines(1), **options)


def test_journal_options_belong_to_the_store_when_one_is_given(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="journal_dir: options of the store"):
        jobs(_lines(1), store=MemoryStore(), journal_dir=tmp_path)


def test_closing_the_store_while_a_job_writes_its_journal_leaves_the_job_running_cleanly(tmp_path: Path) -> None:
    halfway = threading.Event()

    def target() -> None:
        for n in range(1, 20_001):
            log.info("line %d", n)
            if n == 5000:
                halfway.set()

    store = MemoryStore(max_history=100, journal_dir=tmp_path)
    app = jobs(target, store=store, formatter="%(message)s")
    job = app.start()
    assert halfway.wait(10)
    store.close()  # deletes every journal, the running job's included
    assert job.wait(30)
    assert job.status == "ok"
    assert not any(tmp_path.iterdir())
    objects = _ndjson(app, f"/{job.id}")
    assert objects[-1]["status"] == "ok" and objects[-2]["message"] == "line 20000"
