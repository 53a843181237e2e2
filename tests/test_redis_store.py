"""RedisStore on a real ``redis-server``, in this process: what the contract suite does not cover.

Batching, the bound on a runner's buffer while Redis is away, the outage
logged once, cancel heard across stores, many waiting readers on a few
connections, retention (keys gone after ``keep_finished``, a long log bounded
by ``max_history``) and a clean ``close()``. Two ``RedisStore`` objects with
the same prefix stand for two processes: they share nothing but Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.redis_server import RedisServer, begun, log_line, start_redis
from tests.servers import wait_until
from wsgi_logstream.channel import Summary
from wsgi_logstream.errors import StoreUnavailable
from wsgi_logstream.record import JobRecord, due_ending
from wsgi_logstream.redis import RedisStore
from wsgi_logstream.store import JobStore

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    started = start_redis(tmp_path_factory.mktemp("redis"))
    yield started
    started.stop()


@pytest.fixture
def control(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()


def _store(stores: list[RedisStore], url: str, prefix: str, **options: Any) -> RedisStore:
    store = RedisStore(url, prefix=prefix, **options)
    stores.append(store)
    return store


def _next_seq(store: RedisStore, job_id: str) -> int:
    record = store.get(job_id)
    return 0 if record is None else record.next_seq


def _read_all(store: JobStore, job_id: str, since: int = 0) -> tuple[int, list[int], Summary | None]:
    reader = store.reader(job_id, since)
    missed, seqs = 0, []
    deadline = time.monotonic() + 20
    try:
        while not reader.at_end:
            assert time.monotonic() < deadline, "the reader never reached the end"
            got_missed, entries = reader.take()
            missed += got_missed
            seqs += [entry.seq for entry in entries]
            if not entries and not got_missed:
                reader.wait(1.0)
        return missed, seqs, reader.summary
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("options", "error", "named"),
    [
        ({"prefix": ""}, ValueError, "prefix"),
        ({"prefix": "a{b}"}, ValueError, "prefix"),
        ({"prefix": 3}, TypeError, "prefix"),
        ({"lease": 0}, ValueError, "lease"),
        ({"lease": "10"}, TypeError, "lease"),
        ({"poll": 6.0}, ValueError, "poll"),
        ({"buffer": 0}, ValueError, "buffer"),
        ({"buffer": 1.5}, TypeError, "buffer"),
        ({"max_connections": 1}, ValueError, "max_connections"),
        ({"max_history": 0}, ValueError, "max_history"),
        ({"keep_finished": -1}, ValueError, "keep_finished"),
    ],
)
def test_a_bad_option_is_refused_with_its_name(options: dict[str, Any], error: type[Exception], named: str) -> None:
    with pytest.raises(error, match=named):
        RedisStore("redis://127.0.0.1:1/0", **options)


def test_a_store_needs_a_url_or_a_client() -> None:
    with pytest.raises(TypeError, match="url_or_client"):
        RedisStore(6379)  # type: ignore[arg-type]


def test_a_burst_of_records_reaches_redis_in_a_few_batched_calls_not_one_per_record(
    server: RedisServer, control: redis.Redis, prefix: str, stores: list[RedisStore]
) -> None:
    store = _store(stores, server.url, prefix)
    log = begun(store, "burst-job")
    before = control.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    for n in range(1, 5001):
        log_line(log, n)
    assert log.finish(Summary("ok", time.time(), time.time(), 5000))
    calls = control.info("commandstats")["cmdstat_evalsha"]["calls"] - before
    assert calls < 500, f"{calls} script calls for 5000 records"
    assert _read_all(store, "burst-job")[:2] == (0, list(range(1, 5001)))


def test_a_cancel_asked_through_another_process_store_is_heard_by_the_runner(
    server: RedisServer, prefix: str, stores: list[RedisStore]
) -> None:
    runner = _store(stores, server.url, prefix)
    web = _store(stores, server.url, prefix)
    log = begun(runner, "cancel-job")
    assert not log.cancel_event.is_set()
    assert web.request_cancel("cancel-job")
    wait_until(log.cancel_event.is_set, 10, "the runner to hear the cancel")
    assert log.finish(Summary("cancelled", time.time(), time.time(), 0))
    record = web.get("cancel-job")
    assert record is not None and record.status == "cancelled"


def test_fifty_waiting_readers_of_ten_jobs_share_a_few_connections_and_all_wake(
    server: RedisServer, control: redis.Redis, prefix: str, stores: list[RedisStore]
) -> None:
    baseline = len(control.client_list())
    runner = _store(stores, server.url, prefix)
    viewer = _store(stores, server.url, prefix, max_connections=3)
    logs = [begun(runner, f"job-{k:02d}") for k in range(10)]
    connections_of_runner = len(control.client_list()) - baseline
    got: dict[int, list[int]] = {}
    waiting = threading.Semaphore(0)

    def read(k: int) -> None:
        reader = viewer.reader(f"job-{k % 10:02d}", 0)
        seqs: list[int] = []
        deadline = time.monotonic() + 20
        try:
            while not seqs and time.monotonic() < deadline:
                _missed, entries = reader.take()
                seqs += [entry.seq for entry in entries]
                if not entries:
                    waiting.release()
                    reader.wait(5.0)
        finally:
            reader.close()
            got[k] = seqs

    threads = [threading.Thread(target=read, args=(k,)) for k in range(50)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert waiting.acquire(timeout=20), "a reader never started waiting"
    used = len(control.client_list()) - baseline - connections_of_runner
    assert used <= 3 + 1, f"{used} connections for 50 readers (the pool of 3 and the listener's)"
    for log in logs:
        log_line(log, 1)
    for thread in threads:
        thread.join(30)
    assert got == {k: [1] for k in range(50)}
    for log in logs:
        assert log.finish(Summary("ok", time.time(), time.time(), 1))


def test_after_keep_finished_a_jobs_keys_are_gone_from_redis(
    server: RedisServer, control: redis.Redis, prefix: str, stores: list[RedisStore]
) -> None:
    store = _store(stores, server.url, prefix, keep_finished=1.0)
    log = begun(store, "short-lived")
    for n in range(1, 11):
        log_line(log, n)
    assert log.finish(Summary("ok", time.time(), time.time(), 10))
    assert sorted(control.scan_iter(match=f"{{{prefix}:short-lived}}*")) == [
        f"{{{prefix}:short-lived}}:log".encode(),
        f"{{{prefix}:short-lived}}:record".encode(),
    ]
    wait_until(lambda: not list(control.scan_iter(match=f"{{{prefix}:*")), 10, "the job's keys to expire")
    assert store.list() == []  # and the list forgets it: nothing of the job is left in Redis
    assert list(control.scan_iter(match=f"*{prefix}*")) == []


def test_a_queued_job_no_worker_begins_leaves_no_key_behind_even_if_nobody_looks(
    server: RedisServer, control: redis.Redis, prefix: str, stores: list[RedisStore]
) -> None:
    store = _store(stores, server.url, prefix, keep_finished=1.0)
    now = time.time()
    store.create(JobRecord(id="never-taken", title="t", created=now, lease_until=now + 0.5))
    assert control.pttl(f"{{{prefix}:never-taken}}:record") > 0  # not kept for ever (-1)
    wait_until(lambda: not list(control.scan_iter(match=f"{{{prefix}:*")), 10, "the queued job's keys to expire")
    assert store.list() == []


def test_a_long_jobs_stream_stays_bounded_by_max_history_and_readers_get_exactly_the_last_lines(
    server: RedisServer, control: redis.Redis, prefix: str, stores: list[RedisStore]
) -> None:
    store = _store(stores, server.url, prefix, max_history=1000)
    log = begun(store, "long-job")
    key = f"{{{prefix}:long-job}}:log"
    node = int(control.config_get("stream-node-max-entries")["stream-node-max-entries"])
    longest = 0
    for chunk in range(1, 21):
        for n in range(chunk * 1000 - 999, chunk * 1000 + 1):
            log_line(log, n)
        wait_until(lambda w=chunk * 1000 + 1: _next_seq(store, "long-job") == w, 10, "a chunk written")
        longest = max(longest, control.xlen(key))
    assert longest <= 1000 + node, f"the stream held {longest} entries"
    assert log.finish(Summary("ok", time.time(), time.time(), 20000))
    missed, seqs, _ = _read_all(store, "long-job")
    assert missed == 19000 and seqs == list(range(19001, 20001))
    record = store.get("long-job")
    assert record is not None and (record.first_seq, record.next_seq, record.records) == (19001, 20001, 20000)


def test_a_reader_whose_job_is_forgotten_under_it_ends_and_is_told(
    server: RedisServer, prefix: str, stores: list[RedisStore]
) -> None:
    store = _store(stores, server.url, prefix, keep_finished=0.0)
    log = begun(store, "forgotten")
    reader = store.reader("forgotten", 0)
    try:
        for n in range(1, 4):
            log_line(log, n)
        seqs: list[int] = []
        wait_until(lambda: seqs.extend(e.seq for e in reader.take()[1]) or len(seqs) == 3, 10, "three lines")
        assert log.finish(Summary("ok", time.time(), time.time(), 3))  # keep_finished=0: its keys go at once
        wait_until(lambda: reader.take() == (0, []) and reader.at_end, 10, "the reader to end")
        assert reader.summary is not None and "no longer in the store" in (reader.summary.error or "")
    finally:
        reader.close()


def test_waiting_viewers_of_a_job_whose_keys_vanish_learn_it_from_one_look_of_the_listener(
    server: RedisServer, control: redis.Redis, prefix: str, stores: list[RedisStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(stores, server.url, prefix)
    reads = {"viewers": 0, "listener": 0}
    read, read_many = store._read, store._read_many

    def viewer_read(*args: Any, **kwargs: Any) -> Any:
        reads["viewers"] += 0 if kwargs.get("client") is not None else 1  # the listener passes its connection
        return read(*args, **kwargs)

    def listener_read(*args: Any, **kwargs: Any) -> Any:
        reads["listener"] += 1
        return read_many(*args, **kwargs)

    monkeypatch.setattr(store, "_read", viewer_read)
    monkeypatch.setattr(store, "_read_many", listener_read)
    log = begun(store, "vanishing")
    log_line(log, 1)
    readers = [store.reader("vanishing", 0) for _ in range(20)]
    ended: list[int] = []
    stop = threading.Event()

    def view(reader: Any) -> None:
        while not reader.at_end and not stop.is_set():
            reader.take()
            reader.wait(0.2)
        ended.append(1)

    threads = [threading.Thread(target=view, args=(reader,)) for reader in readers]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: all(reader.cursor == 2 for reader in readers), 10, "every viewer to read line 1")
        # The job is quiet: the listener looks at it again after Listener.LOOK, once for every viewer here,
        # and the viewers, waking every 0.2 s, take from its cache without reading Redis themselves.
        before = dict(reads)
        watch = store._listener._watches["vanishing"]
        looked = watch.looked
        wait_until(lambda: watch.looked > looked, 20, "the listener to look at the quiet job")
        assert reads["listener"] > before["listener"] and reads["viewers"] == before["viewers"], reads
        # The keys go as an expiry takes them (no end marker, no news): only a look at the job tells.
        control.delete(f"{{{prefix}:vanishing}}:record", f"{{{prefix}:vanishing}}:log")
        wait_until(lambda: len(ended) == len(readers), 30, "every viewer to end")
        assert all("no longer in the store" in (reader.summary.error or "") for reader in readers)
    finally:
        stop.set()
        log.close()
        for thread in threads:
            thread.join(10)
        for reader in readers:
            reader.close()


def test_closing_the_store_stops_its_listener_and_writers(
    server: RedisServer, prefix: str, stores: list[RedisStore]
) -> None:
    store = RedisStore(server.url, prefix=prefix)
    log = begun(store, "closing")
    reader = store.reader("closing", 0)
    reader.wait(0.01)  # starts the listener
    names = {thread.name for thread in threading.enumerate()}
    assert {"wsgi_logstream-redis-listener", "wsgi_logstream-writer-closing"} <= names
    reader.close()
    store.close()
    store.close()  # idempotent
    left = [t.name for t in threading.enumerate() if t.name.startswith("wsgi_logstream-") and t.is_alive()]
    assert left == []
    assert log.closed


def test_while_redis_is_down_the_runner_goes_on_drops_beyond_its_buffer_and_readers_are_told(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, stores: list[RedisStore]
) -> None:
    own = start_redis(tmp_path / "redis")
    try:
        store = _store(stores, own.url, "outage", buffer=100)
        log = begun(store, "outage-job")
        for n in range(1, 11):
            log_line(log, n)
        wait_until(lambda: _next_seq(store, "outage-job") == 11, 10, "ten lines written")
        with caplog.at_level(logging.WARNING, logger="wsgi_logstream"):
            own.stop()
            for n in range(11, 311):  # the operation goes on: appending never waits for Redis
                log_line(log, n)
            for _ in range(5):
                with pytest.raises(StoreUnavailable):
                    store.list()
            own.start()
            wait_until(lambda: store.get("outage-job") is not None, 20, "the store to answer again")
            for n in range(311, 321):
                log_line(log, n)
            assert log.finish(Summary("ok", time.time(), time.time(), 320))
        messages = [record.getMessage() for record in caplog.records if record.name == "wsgi_logstream"]
        assert sum("unreachable" in message for message in messages) == 1, messages
        assert sum("reachable again" in message for message in messages) == 1, messages
        missed, seqs, summary = _read_all(store, "outage-job")
        assert summary is not None and summary.status == "ok" and summary.records == 320
        assert missed >= 310 - 100 - 10 and missed == log.dropped
        assert len(seqs) + missed == 320 and seqs == sorted(set(seqs))
        assert seqs[:10] == list(range(1, 11)) and seqs[-10:] == list(range(311, 321))
    finally:
        own.stop()


def test_any_text_a_line_can_hold_comes_back_exactly(
    server: RedisServer, prefix: str, stores: list[RedisStore]
) -> None:
    store = _store(stores, server.url, prefix)
    log = begun(store, "odd-text")
    texts = [
        ("two\nlines", "INFO app: two\nlines"),
        ('quotes " and \\ backslash', 'quotes " and \\ backslash'),
        ("unicode: é ✓ 𝄞 \u2028", "INFO app: unicode: é ✓ 𝄞 \u2028"),
        ("a lone surrogate \udcff", "INFO app: a lone surrogate \udcff"),
        ("not at the end", "not at the end, and more"),
        ("", ""),
    ]
    for message, line in texts:
        log.append_log(1.5, 20, "INFO", "app.ü", message, line)
    log.append_progress(2.0, 3, None, "ünits")
    assert log.finish(Summary("ok", time.time(), time.time(), len(texts)))
    reader = store.reader("odd-text", 0)
    try:
        _missed, entries = reader.take()
    finally:
        reader.close()
    assert [(e.message, e.line, e.name, e.created) for e in entries[:-1]] == [
        (message, line, "app.ü", 1.5) for message, line in texts
    ]
    assert (entries[-1].kind, entries[-1].done, entries[-1].total, entries[-1].message) == (
        "progress",
        3,
        None,
        "ünits",
    )


def test_a_runner_whose_job_vanished_from_redis_stops_writing_and_its_operation_is_not_cancelled(
    server: RedisServer, control: redis.Redis, prefix: str, stores: list[RedisStore]
) -> None:
    store = _store(stores, server.url, prefix)
    log = begun(store, "vanishing")
    log_line(log, 1)
    wait_until(lambda: _next_seq(store, "vanishing") == 2, 10, "the first line written")
    control.delete(f"{{{prefix}:vanishing}}:record", f"{{{prefix}:vanishing}}:log")  # as a restart without data
    log_line(log, 2)
    wait_until(lambda: log.closed, 10, "the runner to notice")
    assert not log.cancel_event.is_set()
    assert not log.finish(Summary("ok", time.time(), time.time(), 2))
    assert store.get("vanishing") is None and not list(control.scan_iter(match=f"{{{prefix}:vanishing}}*"))


def test_readers_joining_at_any_point_of_a_busy_job_each_get_every_line_once_in_order(
    server: RedisServer, prefix: str, stores: list[RedisStore]
) -> None:
    total = 20_000
    runner = _store(stores, server.url, prefix, buffer=total, max_history=total)
    viewer = _store(stores, server.url, prefix, max_history=total)  # another process's: one listener, one cache
    log = begun(runner, "busy-job")
    results: dict[int, tuple[int, list[int]]] = {}
    threads: list[threading.Thread] = []

    def read(k: int, since: int) -> None:
        missed, seqs, _ = _read_all(viewer, "busy-job", since)
        results[k] = (since, seqs if not missed else [-missed])

    for n in range(1, total + 1):
        log_line(log, n)
        if n % 2000 == 0:  # a reader from the start and one from here, while lines keep coming
            for since in (0, n):
                thread = threading.Thread(target=read, args=(len(threads), since))
                threads.append(thread)
                thread.start()
    assert log.finish(Summary("ok", time.time(), time.time(), total))
    for thread in threads:
        thread.join(30)
    assert len(results) == len(threads) == 20
    assert log.dropped == 0
    for since, seqs in results.values():
        assert seqs == list(range(since + 1, total + 1)), f"from {since}: {seqs[:3]}...{seqs[-3:]}"


def test_a_silent_job_that_runs_longer_than_its_lease_is_not_lost_while_its_runner_lives(
    server: RedisServer, prefix: str, stores: list[RedisStore]
) -> None:
    store = _store(stores, server.url, prefix, lease=1.0, poll=0.1)
    log = begun(store, "silent")
    first = store.get("silent")
    assert first is not None and first.lease_until is not None

    def renewed_past_two_leases() -> JobRecord | None:
        record = store.get("silent")
        assert record is not None and due_ending(record, time.time()) is None, "lost while its runner lives"
        return record if record.lease_until is not None and record.lease_until > first.lease_until + 2.0 else None

    record = wait_until(renewed_past_two_leases, 10, "the lease to be renewed for two leases")
    assert record.status == "running"
    assert log.finish(Summary("ok", time.time(), time.time(), 0))


def test_a_section_entry_keeps_every_field_through_redis(
    server: RedisServer, prefix: str, stores: list[RedisStore]
) -> None:
    store = _store(stores, server.url, prefix)
    log = begun(store, "sections")
    log.append_section(1.25, "start", "import ✓", 2, "", 0.0)
    log.append_section(3.5, "end", "import ✓", 2, "ok", 2.25)
    assert log.finish(Summary("ok", time.time(), time.time(), 0))
    reader = store.reader("sections", 0)
    try:
        _missed, entries = reader.take()
    finally:
        reader.close()
    got = [(e.seq, e.kind, e.created, e.levelno, e.levelname, e.message, e.line, e.done) for e in entries]
    assert got == [
        (1, "section", 1.25, 2, "", "import ✓", "start", 0.0),
        (2, "section", 3.5, 2, "ok", "import ✓", "end", 2.25),
    ]
