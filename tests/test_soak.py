"""Soak: 10,000 sequential streams and rounds of 200 concurrent ones through one gunicorn gthread worker.

The worker's threads, file descriptors and resident memory are read with
``psutil`` after a warm-up (a first round of 200 concurrent streams grows the
worker's thread pool to its size, and the first requests import and allocate
what a worker keeps), then every 2,000 streams, then after a last round of 200
concurrent streams. None may grow past the warm-up figure beyond the bounds
stated here; the figures are printed (``pytest -s``).

"Sequential" here is four client threads, each opening its 2,500 streams one
after another (a new connection each, ``Connection: close``, no keep-alive),
so the worker sees a steady stream of short requests rather than one at a
time; the 200 concurrent streams are all open at once: each operation waits
until all 200 have arrived before it ends.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from tests.servers import Program, gunicorn, stats, wait_until

SEQUENTIAL = 10_000
CLIENT_THREADS = 4
CONCURRENT = 200
MB = 1 << 20
#: Bound on the worker's RSS growth from after the warm-up to the end.
RSS_BOUND = 16 * MB

FIGURES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _print_figures() -> Iterator[None]:
    yield
    for line in FIGURES:
        print(f"\n[soak] {line}", end="")
    print()


def _get(port: int, path: str) -> bytes:
    """One stream on a new connection, read to its end (the server closes it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _crowd(port: int) -> int:
    key = uuid.uuid4().hex

    def one(_: int) -> bool:
        body = _get(port, f"/crowd?format=text&n={CONCURRENT}&key={key}")
        return f"all {CONCURRENT} here".encode() in body and b"-- ok (after" in body

    with ThreadPoolExecutor(CONCURRENT) as pool:
        return sum(pool.map(one, range(CONCURRENT)))


def _usage(worker: psutil.Process) -> dict[str, int]:
    return {"threads": worker.num_threads(), "fds": worker.num_fds(), "rss": worker.memory_info().rss}


def _show(usage: dict[str, int]) -> str:
    return f"{usage['threads']} threads, {usage['fds']} fds, {usage['rss'] / MB:.1f} MB RSS"


@pytest.mark.servers
def test_ten_thousand_sequential_and_rounds_of_200_concurrent_streams_leave_no_growth() -> None:
    program: Program
    with gunicorn("tests.apps.hostile_app:application", worker_class="gthread", threads=CONCURRENT + 16) as program:
        worker = psutil.Process(stats(program.url)["pid"])
        port = program.port
        started = time.monotonic()
        assert _crowd(port) == CONCURRENT, "the first 200 streams were not all open at once"
        for _ in range(200):
            assert b"-- ok (after" in _get(port, "/tiny?format=text")
        wait_until(lambda: stats(program.url)["running"] == 0, 30, "the warm-up operations to end")
        warm = _usage(worker)
        samples = [warm]

        def client(count: int) -> int:
            ok = 0
            for _ in range(count):
                body = _get(port, "/tiny?format=text")
                ok += b"hostile: tiny\n" in body and b"-- ok (after" in body
            return ok

        sequential_started = time.monotonic()
        ok = 0
        for _ in range(SEQUENTIAL // 2000):
            with ThreadPoolExecutor(CLIENT_THREADS) as pool:
                ok += sum(pool.map(client, [2000 // CLIENT_THREADS] * CLIENT_THREADS))
            samples.append(_usage(worker))
        sequential_took = time.monotonic() - sequential_started
        assert ok == SEQUENTIAL, f"only {ok} of {SEQUENTIAL} streams ended with their summary"
        assert _crowd(port) == CONCURRENT
        wait_until(lambda: stats(program.url)["running"] == 0, 30, "the operations to end")
        final = wait_until(
            lambda: (u := _usage(worker))["threads"] <= warm["threads"] and u["fds"] <= warm["fds"] and u,
            30,
            f"the worker's threads and descriptors back to {_show(warm)}",
        )
        samples.append(final)
        total = time.monotonic() - started
    growth = max(s["rss"] for s in samples) - warm["rss"]
    assert growth < RSS_BOUND, f"RSS grew {growth / MB:.1f} MB: {[_show(s) for s in samples]}"
    FIGURES.append(
        f"{SEQUENTIAL:,} sequential streams ({CLIENT_THREADS} client threads) in {sequential_took:.1f}s"
        f" ({SEQUENTIAL / sequential_took:,.0f}/s) and 2 rounds of {CONCURRENT} concurrent, {total:.1f}s in all"
    )
    FIGURES.append(f"worker after warm-up: {_show(warm)}; at the end: {_show(final)}")
    FIGURES.append(
        "every 2,000 streams: " + "; ".join(f"{s['threads']}t/{s['fds']}fd/{s['rss'] / MB:.1f}MB" for s in samples)
    )
    FIGURES.append(f"peak RSS growth after warm-up {growth / MB:.2f} MB (bound {RSS_BOUND // MB} MB)")
