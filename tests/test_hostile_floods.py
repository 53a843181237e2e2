"""Floods, in a gunicorn gthread worker: a million records as fast as the target can, and one 10 MB record.

The worker's resident memory is sampled (``psutil``, every 20 ms) before,
during and after each; the figures are printed (``pytest -s``) and the bound
each test asserts is stated beside it. A million records at ~150 bytes is
~150 MB of log: memory that grows with it rather than with ``max_buffer``
would blow the bound many times over.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest

from tests.apps.hostile_app import MAX_BUFFER
from tests.servers import Program, RawClient, dechunk, gunicorn, read_all, stats, stuck_socket, wait_until
from tests.wire import ndjson_objects

MB = 1 << 20
FLOOD = 1_000_000
#: Peak growth of the worker's RSS while a million records pass a stuck client.
#: max_buffer=1000 lines of ~150 bytes is well under 1 MB; the rest is allocator slack.
FLOOD_BOUND = 16 * MB
BIG = 10
#: Peak growth while one 10 MB record is formatted and sent: the record, its
#: formatted line, the chunk and the server's framing of it are copies.
BIG_BOUND = 12 * BIG * MB

FIGURES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _print_figures() -> Iterator[None]:
    yield
    for line in FIGURES:
        print(f"\n[floods] {line}", end="")
    print()


@pytest.fixture(scope="module")
def server() -> Iterator[Program]:
    with gunicorn("tests.apps.hostile_app:application", worker_class="gthread", threads=8) as program:
        yield program


class RssSampler:
    """The peak resident memory of a process while the ``with`` block runs."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.before = process.memory_info().rss
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.after = self.process.memory_info().rss
        self.peak = max(self.peak, self.after)

    @property
    def growth(self) -> int:
        return self.peak - self.before

    def __str__(self) -> str:
        return (
            f"worker RSS {self.before / MB:.1f} MB before, {self.peak / MB:.1f} MB peak,"
            f" {self.after / MB:.1f} MB after (peak growth {self.growth / MB:.1f} MB)"
        )


@pytest.mark.servers
def test_a_million_records_past_a_stuck_client_keep_memory_bounded_and_end_with_a_summary(server: Program) -> None:
    key = uuid.uuid4().hex
    worker = psutil.Process(stats(server.url)["pid"])
    with RawClient(server.url, "/tiny?format=text") as warm:
        warm.read_to_end()
    with RssSampler(worker) as rss, stuck_socket(server.url, f"/flood?n={FLOOD}&format=text&key={key}") as sock:
        state = wait_until(
            lambda: (s := stats(server.url, key)["state"]).get("finished") and s, 120, "the flood to finish"
        )
        started = time.monotonic()
        body = dechunk(read_all(sock, timeout=60)).decode()
        read_in = time.monotonic() - started
    assert state["max_held"] <= MAX_BUFFER
    markers = [line for line in body.split("\n") if line.endswith("dropped: not kept for this reader --")]
    assert markers, "a slow client was not shown that it missed lines"
    last = body.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith("-- ok (after ") and f"{FLOOD + 1} lines" in last, last
    dropped = int(last.rsplit(", ", 1)[1].split()[0])
    assert dropped > FLOOD // 2
    shown = sum(1 for line in body.split("\n") if " flood " in line)
    assert shown + dropped == FLOOD + 1, "every record is either shown or counted as dropped"
    assert rss.growth < FLOOD_BOUND, str(rss)
    FIGURES.append(
        f"{FLOOD:,} records past a stuck client: target {state['duration']:.1f}s"
        f" ({FLOOD / state['duration']:,.0f} records/s), channel held at most {state['max_held']}"
        f" of max_buffer={MAX_BUFFER}; client read {shown:,} lines in {read_in:.2f}s, saw {len(markers)}"
        f" drop marker(s) and {dropped:,} dropped in the summary; {rss} (bound {FLOOD_BOUND // MB} MB)"
    )


@pytest.mark.servers
@pytest.mark.parametrize("fmt", ["text", "ndjson"])
def test_one_10mb_record_arrives_whole_with_memory_bounded(server: Program, fmt: str) -> None:
    key = uuid.uuid4().hex
    worker = psutil.Process(stats(server.url)["pid"])
    with RssSampler(worker) as rss, RawClient(server.url, f"/big?mb={BIG}&format={fmt}&key={key}") as client:
        body = client.read_to_end(timeout=60)
    assert stats(server.url, key)["state"].get("finished")
    if fmt == "ndjson":
        objects = ndjson_objects(body)
        records = [o["message"] for o in objects if o["event"] == "log"]
        assert records == ["big record follows", "B" * (BIG * MB), "big done"]
        assert objects[-1]["event"] == "end" and objects[-1]["status"] == "ok"
    else:
        lines = body.decode().split("\n")
        assert max(len(line) for line in lines) > BIG * MB and lines[-2].startswith("-- ok (after ")
    assert rss.growth < BIG_BOUND, str(rss)
    FIGURES.append(f"one {BIG} MB record, {fmt}: arrived whole; {rss} (bound {BIG_BOUND // MB} MB)")
