"""Slow and vanishing clients, on real servers: the operation never waits for its reader.

Servers: the threaded ``wsgiref`` server of ``tests/servers.py`` (in this
process, so the test can see the threads, descriptors and logging handlers
directly) and gunicorn's ``gthread`` worker (``tests/apps/hostile_app.py``,
observed through its ``/stats`` route and ``psutil``).

What is held, with the figures printed (``pytest -s``):

- a client that never reads (a 4 KiB receive buffer) does not hold the target
  up: the target finishes while the client has read nothing, the channel never
  holds more than ``max_buffer`` entries, and when the client does read it is
  told how many lines it missed and still gets the end summary;
- a client reading one byte a second, likewise;
- 1,000 clients that read the head and vanish: every operation ends (with
  ``on_disconnect="cancel"``, each sees ``cancelled()``), and the process is
  left with the threads, descriptors and logging handlers it had;
- a client that half-closes its side (``shutdown(SHUT_WR)``) still gets the
  whole stream.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from tests.inproc import snapshot
from tests.servers import (
    Program,
    RawClient,
    dechunk,
    gunicorn,
    half_closed,
    read_all,
    stats,
    stuck_socket,
    wait_until,
    wsgiref_server,
)
from tests.wire import ndjson_objects
from wsgi_logstream import logstream, wait_cancelled
from wsgi_logstream.capture import current_sink

log = logging.getLogger("tests.hostile.clients")

TRIED: Counter[str] = Counter()
FIGURES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _print_counts() -> Iterator[None]:
    yield
    print("\n[clients] " + ", ".join(f"{key}: {count}" for key, count in sorted(TRIED.items())))
    for line in FIGURES:
        print(f"[clients] {line}")


# -- a flooding target, in this process -------------------------------------------------

RECORDS = 50_000
MAX_BUFFER = 500


class Flood:
    """Logs ``RECORDS`` lines of ~200 bytes as fast as it can; times itself; watches its channel."""

    def __init__(self) -> None:
        self.finished = threading.Event()
        self.duration = 0.0
        self.max_held = 0

    def __call__(self) -> None:
        sink = current_sink()
        assert sink is not None
        entries = sink.channel._entries
        padding = "f" * 180
        most = 0
        started = time.perf_counter()
        for number in range(RECORDS):
            log.info("flood %d %s", number, padding)
            if len(entries) > most:
                most = len(entries)
        self.duration = time.perf_counter() - started
        self.max_held = most
        log.info("flood done")
        self.finished.set()


def _check_dropped_then_summary(body: bytes, fmt: str) -> int:
    """The client was told it missed lines, got the last record and the summary; returns the dropped count."""
    if fmt == "ndjson":
        objects = ndjson_objects(body)
        dropped = sum(o["count"] for o in objects if o["event"] == "dropped")
        end = objects[-1]
        assert end["event"] == "end" and end["status"] == "ok" and end["dropped"] == dropped > 0
        assert objects[-2]["message"] == "flood done"
        numbers = [
            int(o["message"].split()[1]) for o in objects if o["event"] == "log" and o["message"] != "flood done"
        ]
        assert numbers == sorted(numbers), "records out of order"
        assert len(numbers) + dropped == RECORDS
        return int(dropped)
    text = body.decode("utf-8")
    assert "dropped: not kept for this reader --" in text, "no visible drop marker"
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith("-- ok (after ") and " 0 dropped" not in last, last
    assert "flood done\n" in text
    return int(last.rsplit(", ", 1)[1].split()[0])


@pytest.mark.parametrize("fmt", ["text", "ndjson"])
def test_a_client_that_never_reads_does_not_hold_up_the_target_and_the_buffer_stays_bounded(fmt: str) -> None:
    before = snapshot()
    target = Flood()
    app = logstream(target, max_buffer=MAX_BUFFER, formatter="%(message)s", heartbeat=1)
    with wsgiref_server(app) as url:
        with RawClient(url, f"/?format={fmt}") as fast:
            fast.read_to_end(timeout=60)
        fast_duration = target.duration
        target.finished.clear()
        sock = stuck_socket(url, f"/?format={fmt}")
        with sock:
            # The client has read nothing at all; the target must still finish.
            assert target.finished.wait(60), "the target waited for a client that does not read"
            stuck_duration = target.duration
            assert target.max_held <= MAX_BUFFER
            dropped = _check_dropped_then_summary(dechunk(read_all(sock)), fmt)
        wait_until(lambda: app.running == 0, message="the operations to end")
    wait_until(lambda: snapshot() == before, message=f"threads/fds/handlers back to {before}")
    TRIED[f"never-reading client ({fmt}, wsgiref)"] += 1
    FIGURES.append(
        f"never-reading client, {fmt}, wsgiref: target {stuck_duration:.2f}s stuck vs {fast_duration:.2f}s fast"
        f" (ratio {stuck_duration / fast_duration:.2f}); channel held at most {target.max_held}"
        f" of max_buffer={MAX_BUFFER}; client told {dropped} of {RECORDS} lines dropped"
    )


def _vanishing_clients(url: str, count: int, path: str, workers: int = 16) -> int:
    """``count`` clients (``workers`` at a time) that read the stream's head and vanish."""

    def one(_: int) -> int:
        with RawClient(url, path) as client:
            client.read_until(b"tick 0", timeout=30)
        return 1

    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(one, range(count)))


def test_a_thousand_clients_that_vanish_mid_stream_leave_nothing_behind() -> None:
    before = snapshot()
    runs = Counter[str]()
    lock = threading.Lock()

    def ticks() -> None:
        with lock:
            runs["started"] += 1
        number = 0
        while number < 1000:
            log.info("tick %d", number)
            number += 1
            if wait_cancelled(0.002):
                break
        with lock:
            runs["ended"] += 1
            runs["cancelled" if number < 1000 else "ran out"] += 1

    app = logstream(ticks, on_disconnect="cancel", formatter="%(message)s")
    with wsgiref_server(app) as url:
        started = time.monotonic()
        vanished = _vanishing_clients(url, 1000, "/?format=text")
        wait_until(lambda: runs["ended"] == 1000, timeout=60, message=f"every operation to end ({runs})")
        elapsed = time.monotonic() - started
        assert app.running == 0
    assert vanished == 1000 and runs["started"] == 1000 and runs["cancelled"] == 1000
    wait_until(lambda: snapshot() == before, message=f"threads/fds/handlers back to {before}")
    TRIED["vanishing clients (wsgiref)"] += vanished
    FIGURES.append(
        f"1000 vanishing clients, wsgiref: {runs['cancelled']} operations saw cancelled(), all ended in"
        f" {elapsed:.1f}s; threads/fds/handlers {before} before and after"
    )


def test_without_cancel_operations_of_vanished_clients_run_to_their_end_and_release_everything() -> None:
    before = snapshot()
    ended = threading.Semaphore(0)

    def short() -> None:
        for number in range(50):
            log.info("tick %d", number)
            wait_cancelled(0.001)
        ended.release()

    app = logstream(short, formatter="%(message)s")
    with wsgiref_server(app) as url:
        vanished = _vanishing_clients(url, 200, "/?format=ndjson")
        for _ in range(200):
            assert ended.acquire(timeout=30)
        wait_until(lambda: app.running == 0, message="the operations to end")
    wait_until(lambda: snapshot() == before, message=f"threads/fds/handlers back to {before}")
    TRIED["vanishing clients, on_disconnect=continue (wsgiref)"] += vanished


def test_a_half_closed_client_still_receives_the_whole_stream_from_wsgiref() -> None:
    def three() -> None:
        for number in range(3):
            log.info("line %d", number)
            wait_cancelled(0.05)

    with wsgiref_server(logstream(three, formatter="%(message)s")) as url:
        body = half_closed(url, "/?format=text").decode()
    assert "line 0\nline 1\nline 2\n" in body and body.rstrip().endswith("3 lines, 0 dropped) --")
    TRIED["half-closed client (wsgiref)"] += 1


# -- gunicorn gthread -----------------------------------------------------------------

THREADS = 32


@pytest.fixture(scope="module")
def server() -> Iterator[Program]:
    with gunicorn("tests.apps.hostile_app:application", worker_class="gthread", threads=THREADS) as program:
        yield program


def _worker(server: Program) -> psutil.Process:
    return psutil.Process(stats(server.url)["pid"])


def _no_more(now: dict[str, int], before: dict[str, int]) -> bool:
    return all(now[key] <= before[key] for key in before)


def _resources(process: psutil.Process) -> dict[str, int]:
    return {"threads": process.num_threads(), "fds": process.num_fds()}


@pytest.mark.servers
def test_gunicorn_never_reading_client_does_not_hold_up_the_target(server: Program) -> None:
    key = uuid.uuid4().hex
    with RawClient(server.url, f"/flood?n={RECORDS}&format=text&key=fast{key}") as fast:
        fast.read_to_end(timeout=60)
    fast_duration = wait_until(lambda: stats(server.url, "fast" + key)["state"].get("duration"), 30, "the fast run")
    with stuck_socket(server.url, f"/flood?n={RECORDS}&format=text&key={key}") as sock:
        state = wait_until(lambda: (s := stats(server.url, key)["state"]).get("finished") and s, 60, "the target")
        assert state["max_held"] <= state["max_buffer"] == 1000
        body = dechunk(read_all(sock)).decode()
    assert "dropped: not kept for this reader --" in body and "flood done" in body
    assert body.rstrip("\n").rsplit("\n", 1)[-1].startswith("-- ok (after ")
    TRIED["never-reading client (gunicorn)"] += 1
    FIGURES.append(
        f"never-reading client, gunicorn gthread: target {state['duration']:.2f}s stuck vs {fast_duration:.2f}s fast"
        f" (ratio {state['duration'] / fast_duration:.2f}); channel held at most {state['max_held']} of 1000"
    )


@pytest.mark.servers
def test_gunicorn_client_reading_one_byte_a_second_does_not_hold_up_the_target(server: Program) -> None:
    key = uuid.uuid4().hex
    with stuck_socket(server.url, f"/flood?n={RECORDS}&format=ndjson&key={key}") as sock:
        # One byte a second, for at least three seconds and until the target says it finished
        # (at most 30 s): if the target waited for this client, it would never finish.
        read = b""
        while len(read) < 30:
            if read:
                time.sleep(1)  # the pace of this client is the point of the test
            read += sock.recv(1)
            if len(read) >= 3 and stats(server.url, key)["state"].get("finished"):
                break
        state = stats(server.url, key)["state"]
        assert state.get("finished"), f"the target had not finished after the client read {len(read)} bytes"
        assert state["max_held"] <= 1000
        body = dechunk(read + read_all(sock))
    objects = ndjson_objects(body)
    assert any(o["event"] == "dropped" for o in objects), "no drop marker"
    assert objects[-1]["event"] == "end" and objects[-1]["dropped"] > 0
    TRIED["one-byte-a-second client (gunicorn)"] += 1
    FIGURES.append(
        f"one-byte-a-second client, gunicorn: target done in {state['duration']:.2f}s, seen finished when"
        f" the client had read {len(read)} bytes; client told {objects[-1]['dropped']} lines dropped"
    )


@pytest.mark.servers
def test_gunicorn_a_thousand_vanishing_clients_leave_the_worker_as_it_was(server: Program) -> None:
    key = uuid.uuid4().hex
    worker = _worker(server)
    # Warm up: as many streams open at once as the worker has threads (each waits for all the
    # others), so its thread pool grows to its full size before it is measured.
    _vanishing_clients(server.url, 100, f"/ticks?format=text&key=warm{key}")
    crowd = f"/crowd?format=text&n={THREADS}&key=crowd{key}"

    def one_of_the_crowd(_: int) -> bool:
        with RawClient(server.url, crowd) as client:
            return f"all {THREADS} here".encode() in client.read_to_end()

    with ThreadPoolExecutor(THREADS) as pool:
        assert all(pool.map(one_of_the_crowd, range(THREADS)))
    wait_until(lambda: stats(server.url)["running"] == 0, 30, "the warm-up operations to end")
    before = _resources(worker)
    handlers = stats(server.url)["handlers"]
    vanished = _vanishing_clients(server.url, 1000, f"/ticks?format=text&key={key}")
    state = wait_until(lambda: (s := stats(server.url, key)["state"]).get("runs") == 1000 and s, 60, "every run to end")
    assert state["cancelled"] == 1000
    wait_until(lambda: stats(server.url)["running"] == 0, 30, "no operation running")
    wait_until(lambda: _no_more(_resources(worker), before), 30, f"worker threads/fds back to {before}")
    assert stats(server.url)["handlers"] == handlers
    TRIED["vanishing clients (gunicorn)"] += vanished
    FIGURES.append(
        f"1000 vanishing clients, gunicorn gthread: all {state['runs']} operations saw cancelled() after"
        f" {state['ticks'] / state['runs']:.1f} ticks on average; worker {before} before and after"
    )


@pytest.mark.servers
def test_gunicorn_half_closed_client_still_receives_the_whole_stream(server: Program) -> None:
    key = uuid.uuid4().hex
    with urllib.request.urlopen(f"{server.url}/release?key={key}", timeout=10):
        pass  # released before it starts: the operation logs two lines and ends
    body = half_closed(server.url, f"/wait?format=ndjson&key={key}")
    objects = ndjson_objects(body)
    assert [o.get("message", "")[:8] for o in objects if o["event"] == "log"] == ["waiting ", "released"]
    assert objects[-1]["event"] == "end" and objects[-1]["status"] == "ok"
    TRIED["half-closed client (gunicorn)"] += 1
