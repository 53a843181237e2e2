"""RedisStore beside MemoryStore: what sharing jobs through Redis costs (issue 12's benchmark).

Usage::

    python bench/redis_bench.py             # the figures in docs/benchmarks.md (a few minutes)
    python bench/redis_bench.py --quick     # smaller counts, same shape

It starts its own ``redis-server`` (free port, temporary directory, no
persistence) and gunicorn instances of ``bench/app_store_jobs.py`` (one
``gthread`` worker each):

* ``memory``: one instance; the job and its viewer are in the same worker
  (with a MemoryStore, no other worker can see the job);
* ``redis``: two instances sharing a RedisStore; the job runs in one, its
  viewer reads through the other, a separate process.

Figures, each the median over ``--rounds`` rounds, the two stores alternating:

* throughput: one job logs ``--records`` records as fast as it can; one
  NDJSON viewer, connected before the first record, reads them all: records
  over the time from the job's start to the viewer's end event;
* duration: the operation's own logging loop, timed inside the operation;
* latency: one record every millisecond (1,000 a second) for ``--latency-records``;
  for each, the time from the ``logging`` call to its arrival at the viewer
  (same machine clock), p50 / p99 / max;
* memory: in this process, a RedisStore with ``max_history=10000`` writes a
  job of ``--memory-records`` records; Redis's ``used_memory`` before and
  after, the stream's ``MEMORY USAGE`` and ``XLEN``, in bytes per line kept.

Every viewer's stream is checked (every record, in order, none dropped): a
failed check makes the run exit 1. Results go to ``bench/out/redis_results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


@contextlib.contextmanager
def process(args: list[str], port: int, env: dict[str, str], logfile: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_port(port, proc)
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(20)


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    port = free_port()
    program = shutil.which("redis-server") or "/usr/bin/redis-server"
    args = [program, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", ""]
    args += ["--appendonly", "no", "--maxmemory-policy", "noeviction"]
    with process(args, port, dict(os.environ), directory / "redis.log"):
        yield f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def gunicorn(
    env: dict[str, str], directory: Path, *, workers: int = 1, worker_class: str = "gthread"
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    args = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    args += ["--worker-class", worker_class, "--threads", "8", "--worker-connections", "2000"]
    args += ["--log-level", "warning", "--pythonpath", str(HERE), "app_store_jobs:application"]
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    with process(args, port, full, directory / f"gunicorn-{port}.log") as proc:
        yield port, proc


def post(port: int, path: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    found = re.search(r"(?im)^location:\s*(\S+)", head)
    if not found:
        raise RuntimeError(f"no Location in {head!r}")
    return found.group(1)


class Viewer:
    """An NDJSON stream read on a raw socket; each complete line stamped with its arrival time."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        self.buffer = b""
        self.head = False
        self.lines: list[tuple[float, bytes]] = []

    def read_head(self) -> None:
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"viewer got {head[:200]!r}")
        self.chunked = b"chunked" in head.lower()

    def read_to_end(self) -> float:
        """Read until the end event; returns the time it arrived."""
        pending = b""
        raw = self.buffer
        while True:
            now = time.time()
            body, raw = _dechunk(raw) if self.chunked else (raw, b"")
            pending += body
            *complete, pending = pending.split(b"\n")
            for line in complete:
                if line:
                    self.lines.append((now, line))
                    if line.startswith(b'{"event":"end"'):
                        self.sock.close()
                        return now
            data = self.sock.recv(1 << 20)
            if not data:
                self.sock.close()
                raise RuntimeError("the stream closed before its end event")
            raw += data


def _dechunk(raw: bytes) -> tuple[bytes, bytes]:
    """The chunk payloads complete in ``raw``, and what is left of it."""
    out = []
    pos = 0
    while True:
        end = raw.find(b"\r\n", pos)
        if end < 0:
            break
        size = int(raw[pos:end].split(b";")[0] or b"0", 16)
        if end + 2 + size + 2 > len(raw):
            break
        out.append(raw[end + 2 : end + 2 + size])
        pos = end + 2 + size + 2
        if size == 0:
            break
    return b"".join(out), raw[pos:]


def check(lines: list[tuple[float, bytes]], records: int) -> list[tuple[float, dict[str, Any]]]:
    objects = [(when, json.loads(line)) for when, line in lines]
    logs = [(when, obj) for when, obj in objects if obj["event"] == "log"]
    end = objects[-1][1]
    seqs = [obj["seq"] for _, obj in logs]
    if seqs != list(range(1, records + 1)) or end.get("dropped") or end["status"] != "ok":
        raise RuntimeError(f"stream check failed: {len(seqs)} lines, end {end}")
    return logs


def one_job(store: str, ports: tuple[int, int], work: Path, query: str, records: int) -> dict[str, Any]:
    """Start a job through ``ports[0]``, view it through ``ports[1]``; the viewer is connected before it logs."""
    gate, result = work / f"gate-{uuid.uuid4().hex}", work / f"result-{uuid.uuid4().hex}"
    location = post(ports[0], f"/?{query}&gate={gate}&result={result}")
    viewer = Viewer(ports[1], f"{location}?format=ndjson")
    viewer.read_head()
    started = time.time()
    gate.touch()
    ended = viewer.read_to_end()
    deadline = time.monotonic() + 30
    while not result.exists() or not result.read_text():
        if time.monotonic() > deadline:
            raise RuntimeError("the operation never wrote its duration")
        time.sleep(0.01)
    logs = check(viewer.lines, records)
    return {"store": store, "seconds": ended - started, "duration": float(result.read_text()), "logs": logs}


def measure_memory(url: str, records: int, history: int) -> dict[str, Any]:
    import redis

    sys.path.insert(0, str(ROOT))
    from wsgi_logstream.channel import Summary
    from wsgi_logstream.record import JobRecord
    from wsgi_logstream.redis import RedisStore

    client = redis.Redis.from_url(url)
    store = RedisStore(url, prefix=f"mem-{uuid.uuid4().hex[:8]}", max_history=history)
    try:
        before = int(client.info("memory")["used_memory"])
        job_id = "memory-job"
        store.create(JobRecord(id=job_id, title="memory", created=time.time()))
        log_ = store.open_log(job_id)
        log_.begin(time.time())
        step = 5000
        started = time.perf_counter()
        for chunk in range(0, records, step):
            for i in range(chunk + 1, min(chunk + step, records) + 1):
                line = f"2026-11-30 12:00:00,000 INFO    app.import: row {i} imported"
                log_.append_log(time.time(), 20, "INFO", "app.import", f"row {i} imported", line)
            while (store.get(job_id) or JobRecord("", "", 0)).next_seq <= min(chunk + step, records):
                time.sleep(0.005)  # let the writer keep up, so that every line reaches Redis
        took = time.perf_counter() - started
        log_.finish(Summary("ok", time.time(), time.time(), records))
        key = f"{{{store.prefix}:{job_id}}}:log"
        after = int(client.info("memory")["used_memory"])
        stream = int(client.memory_usage(key, samples=0) or 0)
        length = int(client.xlen(key)) - 1  # the end marker is not a line
        return {
            "records": records,
            "max_history": history,
            "xlen": length,
            "stream_bytes": stream,
            "used_memory_delta": after - before,
            "bytes_per_line_kept": round(stream / max(length, 1), 1),
            "write_seconds": round(took, 2),
            "dropped": log_.dropped,
        }
    finally:
        store.close()
        client.close()


_RECORD = re.compile(rb'"seq":(\d+),.*"line":"line \d+ at ([0-9.]+)"')


def _viewer_group(port: int, path: str, count: int, lines: int, conn: Any) -> None:
    """In a client process of its own: ``count`` NDJSON streams; says "ready" once all have their head."""
    import selectors

    selector = selectors.DefaultSelector()
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    streams: dict[Any, dict[str, Any]] = {}
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(request)
        sock.setblocking(False)
        streams[sock] = {"buffer": b"", "seqs": [], "delays": [], "head": False}
        selector.register(sock, selectors.EVENT_READ)
    deadline = time.monotonic() + 120
    ended = 0
    ready = False
    while ended < count and time.monotonic() < deadline:
        if not ready and all(stream["head"] for stream in streams.values()):
            conn.send("ready")
            ready = True
        for key, _ in selector.select(0.5):
            now = time.time()
            sock = key.fileobj
            stream = streams[sock]
            data = sock.recv(1 << 16)
            if not data:
                selector.unregister(sock)
                ended += 1
                continue
            buffer = stream["buffer"] + data
            if not stream["head"]:
                if b"\r\n\r\n" not in buffer:
                    stream["buffer"] = buffer
                    continue
                stream["head"] = True
                buffer = buffer.split(b"\r\n\r\n", 1)[1]
            *complete, stream["buffer"] = buffer.split(b"\n")
            for line in complete:
                found = _RECORD.search(line)
                if found:
                    stream["seqs"].append(int(found.group(1)))
                    stream["delays"].append(now - float(found.group(2)))
    for sock in streams:
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(sock)
        sock.close()
    selector.close()
    complete_streams = sum(1 for stream in streams.values() if stream["seqs"] == list(range(1, lines + 1)))
    delays = [d for stream in streams.values() for d in stream["delays"]]
    # Past the first 2 s (10 lines), once every viewer is waiting: the steady state.
    steady = [
        d for stream in streams.values() for seq, d in zip(stream["seqs"], stream["delays"], strict=True) if seq > 10
    ]
    conn.send((complete_streams, delays, steady))


def measure_viewers(
    url: str, common: dict[str, str], work: Path, viewers: int, lines: int, clients: int = 4
) -> dict[str, Any]:
    """``viewers`` NDJSON streams of one job, on one gunicorn of 4 gevent workers; the job logs 5 lines a second.

    The streams are read by ``clients`` processes, so that the readers' own delay stays small in the figure.
    """
    import multiprocessing

    import psutil
    import redis

    redis_port = int(url.rsplit(":", 1)[1].split("/")[0])
    env = {**common, "BENCH_STORE": "redis"}

    def redis_connections(pids: list[int]) -> list[int]:
        return [
            sum(1 for c in psutil.Process(pid).net_connections(kind="tcp") if c.raddr and c.raddr.port == redis_port)
            for pid in pids
        ]

    context = multiprocessing.get_context("fork")
    with gunicorn(env, work, workers=4, worker_class="gevent") as (port, master):
        gate, result = work / f"gate-{uuid.uuid4().hex}", work / f"result-{uuid.uuid4().hex}"
        location = post(port, f"/?n={lines}&rate=5&gate={gate}&result={result}")
        groups = []
        for k in range(clients):
            mine, theirs = context.Pipe()
            count = viewers // clients + (1 if k < viewers % clients else 0)
            proc = context.Process(target=_viewer_group, args=(port, f"{location}?format=ndjson", count, lines, theirs))
            proc.start()
            groups.append((proc, mine))
        for _proc, mine in groups:
            if not mine.poll(120) or mine.recv() != "ready":
                raise RuntimeError("a client never had all its streams")
        control = redis.Redis.from_url(url)
        workers = [child.pid for child in psutil.Process(master.pid).children()]
        per_worker = redis_connections(workers)
        clients_before = len(control.client_list())
        gate.touch()
        got = []
        for proc, mine in groups:
            if not mine.poll(180):
                raise RuntimeError("a client never finished")
            got.append(mine.recv())
            proc.join(30)
        peak_per_worker = redis_connections(workers)
        clients_after = len(control.client_list())
        control.close()
    delays = [d for _, group, _ in got for d in group]
    steady = [d for _, _, group in got for d in group]
    return {
        "viewers": viewers,
        "client_processes": clients,
        "lines": lines,
        "complete_viewers": sum(complete for complete, _, _ in got),
        "latency": percentiles(delays) if delays else {},
        "latency_after_2s": percentiles(steady) if steady else {},
        "redis_connections_per_worker_before": per_worker,
        "redis_connections_per_worker_after": peak_per_worker,
        "redis_clients_total": [clients_before, clients_after],
    }


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)]

    return {
        "p50_ms": round(at(0.5) * 1000, 2),
        "p99_ms": round(at(0.99) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--latency-records", type=int, default=5_000)
    parser.add_argument("--memory-records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--viewers", type=int, default=1000, help="viewers over 4 gevent workers (0: skip)")
    parser.add_argument("--viewer-lines", type=int, default=100, help="lines, 5 a second, in that phase")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.latency_records, args.memory_records, args.rounds = 20_000, 1_000, 100_000, 1
        args.viewers, args.viewer_lines = min(args.viewers, 200), 20
    load = os.getloadavg()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": [round(x, 2) for x in load],
        "cpus": os.cpu_count(),
        "settings": vars(args) | {"out": str(args.out)},
        "throughput": {"memory": [], "redis": []},
        "latency": {"memory": [], "redis": []},
    }
    with tempfile.TemporaryDirectory(prefix="redis-bench-") as tmp:
        work = Path(tmp)
        with redis_server(work) as url:
            common = {"REDIS_URL": url, "BENCH_PREFIX": f"bench-{uuid.uuid4().hex[:8]}"}
            with (
                gunicorn({**common, "BENCH_STORE": "memory"}, work) as (memory, _),
                gunicorn({**common, "BENCH_STORE": "redis"}, work) as (runner, _),
                gunicorn({**common, "BENCH_STORE": "redis"}, work) as (viewer, _),
            ):
                setups = {"memory": (memory, memory), "redis": (runner, viewer)}
                for round_ in range(args.rounds):
                    order = ["memory", "redis"] if round_ % 2 == 0 else ["redis", "memory"]
                    for store in order:
                        got = one_job(store, setups[store], work, f"n={args.records}&rate=0", args.records)
                        rate = args.records / got["seconds"]
                        results["throughput"][store].append({"lines_per_s": round(rate), "duration_s": got["duration"]})
                        log(f"throughput {store}: {rate:,.0f} lines/s, operation {got['duration']:.3f} s")
                    for store in order:
                        n = args.latency_records
                        got = one_job(store, setups[store], work, f"n={n}&rate=1000", n)
                        delays = [when - float(obj["line"].rsplit(" ", 1)[1]) for when, obj in got["logs"]]
                        figures = percentiles(delays)
                        results["latency"][store].append(figures)
                        log(f"latency {store}: {figures}")
            if args.viewers:
                log(f"{args.viewers} viewers over 4 gevent workers")
                results["viewers"] = measure_viewers(url, common, work, args.viewers, args.viewer_lines)
                log(f"viewers: {results['viewers']}")
            log(f"memory: {args.memory_records:,} lines, max_history 10000")
            results["memory"] = measure_memory(url, args.memory_records, 10_000)
            log(f"memory: {results['memory']}")
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    summary: dict[str, Any] = {}
    for store in ("memory", "redis"):
        runs = results["throughput"][store]
        summary[store] = {
            "lines_per_s": statistics.median(r["lines_per_s"] for r in runs),
            "duration_s": round(statistics.median(r["duration_s"] for r in runs), 4),
            "latency_p50_ms": statistics.median(r["p50_ms"] for r in results["latency"][store]),
            "latency_p99_ms": statistics.median(r["p99_ms"] for r in results["latency"][store]),
            "latency_max_ms": max(r["max_ms"] for r in results["latency"][store]),
        }
    summary["throughput_ratio"] = round(summary["redis"]["lines_per_s"] / summary["memory"]["lines_per_s"], 3)
    summary["duration_ratio"] = round(summary["redis"]["duration_s"] / summary["memory"]["duration_s"], 3)
    results["summary"] = summary
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "redis_results.json").write_text(json.dumps(results, indent=2))
    print(
        json.dumps({"summary": summary, "memory": results["memory"], "load": [load, results["load_after"]]}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
